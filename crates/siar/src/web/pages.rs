//! The public newsroom pages, in Bahasa Indonesia: the index, one page per release, one per
//! category. Semantic HTML that works without JavaScript and on a phone, with feed
//! autodiscovery and Open Graph tags. Drawn from the same snapshot as the feeds, so a page
//! shows exactly what the feeds show.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, PreEscaped, DOCTYPE};
use siar_fanout::render::{display_title, format_date, release_html, summary, FeedContext};
use siar_model::{Category, Release};

use super::feeds::{feed_context, Snapshot};
use crate::app::App;

/// How many releases the index and category pages list.
const LISTED: usize = 30;

const STYLE: &str = "
body{font:17px/1.6 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;color:#1b1b1b;background:#fff}
header,main,footer{max-width:46rem;margin:0 auto;padding:0 1rem}
header{border-bottom:3px solid #0b5394;padding-top:1rem}
header p{margin:.2rem 0 1rem;color:#444}
a{color:#0b5394}
h1{line-height:1.25}
article.ringkas{border-bottom:1px solid #ddd;padding:.5rem 0}
article.ringkas h2{font-size:1.2rem;margin:.3rem 0}
.meta{color:#555;font-size:.9rem}
figure{margin:1rem 0}
img{max-width:100%;height:auto}
figcaption{font-size:.9rem;color:#444}
.koreksi,.ditarik{border-left:4px solid #b45f06;padding:.2rem .8rem;background:#fff8ef}
.ditarik{border-color:#990000;background:#fff0f0}
nav ul{padding-left:1.2rem}
footer{border-top:1px solid #ddd;margin-top:2rem;padding-bottom:2rem;color:#555;font-size:.9rem}
";

fn absolute_feed(ctx: &FeedContext, base: &str, file: &str) -> String {
    format!("{}{base}/{file}", ctx.public_url)
}

/// The page frame: head with feeds and Open Graph, header, footer.
pub(crate) fn layout(
    app: &App,
    title: &str,
    description: &str,
    canonical: &str,
    feed_base: &str,
    og: Markup,
    body: Markup,
) -> Markup {
    let ctx = feed_context(app);
    let publisher = &app.config.publisher;
    html! {
        (DOCTYPE)
        html lang=(ctx.language) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                meta name="description" content=(description);
                link rel="canonical" href=(canonical);
                link rel="alternate" type="application/rss+xml" title={ (title) " (RSS)" } href=(absolute_feed(&ctx, feed_base, "rss.xml"));
                link rel="alternate" type="application/atom+xml" title={ (title) " (Atom)" } href=(absolute_feed(&ctx, feed_base, "atom.xml"));
                link rel="alternate" type="application/feed+json" title={ (title) " (JSON Feed)" } href=(absolute_feed(&ctx, feed_base, "feed.json"));
                meta property="og:site_name" content=(publisher.short_name);
                meta property="og:locale" content="id_ID";
                meta property="og:title" content=(title);
                meta property="og:description" content=(description);
                meta property="og:url" content=(canonical);
                (og)
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    p { a href={ (ctx.public_url) "/" } { strong { (publisher.short_name) } } }
                    p { (publisher.name) }
                }
                main { (body) }
                footer {
                    p {
                        "Ikuti siaran pers ini lewat "
                        a href=(absolute_feed(&ctx, feed_base, "rss.xml")) { "RSS" } ", "
                        a href=(absolute_feed(&ctx, feed_base, "atom.xml")) { "Atom" } " atau "
                        a href=(absolute_feed(&ctx, feed_base, "feed.json")) { "JSON Feed" } "."
                    }
                    p { "© " (publisher.name) }
                }
            }
        }
    }
}

fn time(app: &App, t: chrono::DateTime<chrono::Utc>) -> Markup {
    html! { time datetime=(t.to_rfc3339()) { (format_date(t, app.config.timezone())) } }
}

fn listing(app: &App, ctx: &FeedContext, releases: &[&Release]) -> Markup {
    html! {
        @if releases.is_empty() {
            p { "Belum ada siaran pers." }
        }
        @for r in releases {
            article.ringkas {
                h2 { a href=(ctx.permalink(r)) { (display_title(r)) } }
                p.meta {
                    "Terbit " (time(app, r.published_at.unwrap_or(r.publish_at)))
                    @if !r.content.categories.is_empty() {
                        " · "
                        @for (i, c) in r.content.categories.iter().enumerate() {
                            @if i > 0 { ", " }
                            a href={ (ctx.public_url) "/categories/" (c) } { (c) }
                        }
                    }
                }
                p { (summary(r)) }
            }
        }
    }
}

pub(crate) fn page(markup: Markup) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=60"),
        ],
        markup.into_string(),
    )
        .into_response()
}

fn not_found(app: &App, what: &str) -> Response {
    let ctx = feed_context(app);
    let body = html! {
        h1 { "Halaman tidak ditemukan" }
        p { (what) }
        p { a href={ (ctx.public_url) "/" } { "Kembali ke daftar siaran pers" } }
    };
    let markup = layout(
        app,
        "Halaman tidak ditemukan",
        what,
        &format!("{}/", ctx.public_url),
        "/feeds",
        html! {},
        body,
    );
    let mut resp = page(markup);
    *resp.status_mut() = StatusCode::NOT_FOUND;
    resp
}

fn newest(snap: &Snapshot, filter: impl Fn(&Release) -> bool) -> Vec<&Release> {
    snap.releases
        .iter()
        .rev()
        .map(|r| r.as_ref())
        .filter(|r| filter(r))
        .take(LISTED)
        .collect()
}

/// `/`: the latest releases, the categories, the feeds.
pub async fn index(State(app): State<Arc<App>>) -> Response {
    let snap = app.feeds.snapshot();
    let ctx = feed_context(&app);
    let title = format!("Siaran Pers {}", app.config.publisher.short_name);
    let description = format!("Siaran pers terbaru dari {}.", app.config.publisher.name);
    let body = html! {
        h1 { (title) }
        section aria-labelledby="terbaru" {
            h2 #terbaru { "Terbaru" }
            (listing(&app, &ctx, &newest(&snap, |_| true)))
        }
        @if !snap.categories.is_empty() {
            nav aria-labelledby="kategori" {
                h2 #kategori { "Kategori" }
                ul {
                    @for (c, n) in &snap.categories {
                        li { a href={ (ctx.public_url) "/categories/" (c) } { (c) } " (" (n) ")" }
                    }
                }
            }
        }
        section aria-labelledby="langganan" {
            h2 #langganan { "Berlangganan" }
            p { "Redaksi dan pembaca dapat mengikuti setiap siaran pers secara otomatis:" }
            ul {
                li { a href=(absolute_feed(&ctx, "/feeds", "rss.xml")) { "RSS" } }
                li { a href=(absolute_feed(&ctx, "/feeds", "atom.xml")) { "Atom" } }
                li { a href=(absolute_feed(&ctx, "/feeds", "feed.json")) { "JSON Feed" } }
            }
            @if !app.config.lists.is_empty() {
                (super::subscribe::form(&app, &ctx))
            }
        }
    };
    page(layout(
        &app,
        &title,
        &description,
        &format!("{}/", ctx.public_url),
        "/feeds",
        html! {
            meta property="og:type" content="website";
        },
        body,
    ))
}

/// `/releases/{slug}`: one release, whole.
pub async fn release(State(app): State<Arc<App>>, Path(slug): Path<String>) -> Response {
    let snap = app.feeds.snapshot();
    let Some(r) = snap.by_slug.get(&slug).and_then(|&i| snap.releases.get(i)) else {
        return not_found(&app, "Siaran pers ini tidak ada, atau belum diterbitkan.");
    };
    let ctx = feed_context(&app);
    let c = &r.content;
    let title = display_title(r);
    let description = summary(r);
    let photo = c
        .attachments
        .iter()
        .find(|a| a.media_type.starts_with("image/"));
    let og = html! {
        meta property="og:type" content="article";
        meta property="article:published_time" content=(r.published_at.unwrap_or(r.publish_at).to_rfc3339());
        meta property="article:modified_time" content=(r.updated_at.to_rfc3339());
        @for cat in &c.categories { meta property="article:tag" content=(cat); }
        @if let Some(p) = photo {
            meta property="og:image" content=(ctx.absolute(&p.url));
            @if let Some(alt) = p.caption.as_deref().or(c.captions.first().map(String::as_str)) {
                meta property="og:image:alt" content=(alt);
            }
        }
    };
    let feed_base = c
        .categories
        .first()
        .map(|cat| format!("/feeds/{cat}"))
        .unwrap_or_else(|| "/feeds".into());
    let body = html! {
        article {
            h1 { (title) }
            p.meta {
                @if let Some(place) = &c.dateline { (place) ", " }
                "terbit " (time(&app, r.published_at.unwrap_or(r.publish_at)))
                @if r.version > 1 { " · diperbarui " (time(&app, r.updated_at)) " (versi " (r.version) ")" }
            }
            @if let Some(d) = &c.event_date {
                p.meta { "Tanggal kegiatan: " time datetime=(d.date.to_string()) { (d.raw) } }
            }
            @if let Some(ret) = &r.retraction {
                div.ditarik role="note" { (PreEscaped(release_html(&ctx, r))) }
                p.meta { "Siaran ini ditarik pada " (time(&app, ret.at)) "." }
            } @else {
                @for (i, note) in r.correction_notes.iter().enumerate().rev() {
                    p.koreksi role="note" { strong { "Koreksi" } " (versi " (i + 2) "): " (note) }
                }
                (PreEscaped(release_body_only(&ctx, r)))
            }
            @if !c.categories.is_empty() {
                p.meta {
                    "Kategori: "
                    @for (i, cat) in c.categories.iter().enumerate() {
                        @if i > 0 { ", " }
                        a href={ (ctx.public_url) "/categories/" (cat) } { (cat) }
                    }
                }
            }
        }
        p { a href={ (ctx.public_url) "/" } { "← Semua siaran pers" } }
    };
    page(layout(
        &app,
        &title,
        &description,
        &ctx.permalink(r),
        &feed_base,
        og,
        body,
    ))
}

/// The release HTML without the correction notes, which the page shows in its own boxes.
fn release_body_only(ctx: &FeedContext, r: &Release) -> String {
    let mut plain = r.clone();
    plain.correction_notes.clear();
    release_html(ctx, &plain)
}

/// `/categories/{category}`
pub async fn category(State(app): State<Arc<App>>, Path(name): Path<String>) -> Response {
    let snap = app.feeds.snapshot();
    let Some(cat) = Category::parse(&name)
        .ok()
        .filter(|c| snap.categories.contains_key(c))
    else {
        return not_found(&app, "Kategori ini belum memiliki siaran pers.");
    };
    let ctx = feed_context(&app);
    let title = format!("Siaran Pers {}: {cat}", app.config.publisher.short_name);
    let description = format!(
        "Siaran pers {} dalam kategori {cat}.",
        app.config.publisher.name
    );
    let body = html! {
        h1 { "Kategori: " (cat) }
        (listing(&app, &ctx, &newest(&snap, |r| r.content.categories.contains(&cat))))
        p { a href={ (ctx.public_url) "/" } { "← Semua siaran pers" } }
    };
    let canonical = format!("{}/categories/{cat}", ctx.public_url);
    page(layout(
        &app,
        &title,
        &description,
        &canonical,
        &format!("/feeds/{cat}"),
        html! {
            meta property="og:type" content="website";
        },
        body,
    ))
}
