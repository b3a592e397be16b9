//! Feeds served from memory.
//!
//! Every feed document (the main feed and one per category, in RSS, Atom and JSON Feed, plus
//! their RFC 5005 archives) is rendered once per change — a publication, correction,
//! retraction — compressed (gzip, brotli) and hashed, and kept in memory. A request only picks
//! the bytes, so polling readers cost almost nothing: conditional requests get `304`.
//!
//! Archives: the public releases in order of publication; the current feed holds the newest
//! `feeds.items`; archive page k holds the k-th `feeds.items` oldest, so a page never changes
//! once full (unless one of its releases is corrected or retracted).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use siar_fanout::render::{self, FeedContext, FeedDoc};
use siar_model::{Category, Release};
use siar_store::ReleaseFilter;

use crate::app::App;

/// The three formats, by file name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedFormat {
    Rss,
    Atom,
    Json,
}

impl FeedFormat {
    pub const ALL: [FeedFormat; 3] = [FeedFormat::Rss, FeedFormat::Atom, FeedFormat::Json];

    pub fn file(self) -> &'static str {
        match self {
            FeedFormat::Rss => "rss.xml",
            FeedFormat::Atom => "atom.xml",
            FeedFormat::Json => "feed.json",
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            FeedFormat::Rss => "application/rss+xml; charset=utf-8",
            FeedFormat::Atom => "application/atom+xml; charset=utf-8",
            FeedFormat::Json => "application/feed+json; charset=utf-8",
        }
    }
}

/// One rendered document with everything a response needs, headers included: a request
/// only compares validators and clones prepared values.
pub struct Rendered {
    pub identity: Bytes,
    gzip: Bytes,
    brotli: Bytes,
    /// Hex of the SHA-256 of `identity`, shortened; the strong ETags are built from it.
    tag: String,
    last_modified: DateTime<Utc>,
    /// Strong ETags of the identity, gzip and brotli representations.
    etags: [HeaderValue; 3],
    last_modified_header: HeaderValue,
    content_type: HeaderValue,
    cache_control: HeaderValue,
    /// `Link: <self>; rel="self"` (and the hub).
    link: Option<HeaderValue>,
}

/// What the public sees at one moment: every feed document by path (`/feeds/rss.xml`,
/// `/feeds/pemilu/atom.xml`, `/feeds/archive/1/feed.json`…) and the public releases the pages
/// are drawn from. Feeds and pages come from the same snapshot, so they always agree.
#[derive(Default)]
pub struct Snapshot {
    pub docs: HashMap<String, Arc<Rendered>>,
    /// Public releases, oldest published first.
    pub releases: Vec<Release>,
    /// Index into `releases` by slug.
    pub by_slug: HashMap<String, usize>,
    /// Each category with its number of public releases.
    pub categories: BTreeMap<Category, usize>,
}

/// The current [`Snapshot`], replaced whole on every rebuild. Readers never wait: a feed
/// request loads the snapshot without a lock.
#[derive(Default)]
pub struct FeedCache {
    current: arc_swap::ArcSwap<Snapshot>,
}

impl FeedCache {
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    pub fn get(&self, path: &str) -> Option<Arc<Rendered>> {
        self.snapshot().docs.get(path).cloned()
    }

    /// Every feed path currently served, sorted.
    pub fn paths(&self) -> Vec<String> {
        let mut v: Vec<String> = self.snapshot().docs.keys().cloned().collect();
        v.sort();
        v
    }

    fn replace(&self, s: Snapshot) {
        self.current.store(Arc::new(s));
    }
}

pub fn feed_context(app: &App) -> FeedContext {
    let c = &app.config;
    FeedContext {
        public_url: c.server.public_url.trim_end_matches('/').to_owned(),
        publisher_name: c.publisher.name.clone(),
        publisher_short: c.publisher.short_name.clone(),
        tag_authority: c.publisher.tag_authority.clone(),
        language: c.publisher.language.clone(),
        timezone: c.timezone(),
        websub_hub: Some(c.feeds.websub_hub.clone()).filter(|h| !h.is_empty()),
    }
}

/// Every release the public may see now, in order of publication (oldest first).
pub fn public_releases(app: &App) -> siar_store::Result<Vec<Release>> {
    let filter = ReleaseFilter {
        public_at: Some(app.clock.now()),
        category: None,
    };
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let page = app.store.list(&filter, 500, cursor.as_deref())?;
        all.extend(page.items);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    all.sort_by_key(|r| (r.published_at.unwrap_or(r.publish_at), r.id));
    Ok(all)
}

fn compress(body: &[u8]) -> (Bytes, Bytes) {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let gzip = gz
        .write_all(body)
        .and_then(|()| gz.finish())
        .unwrap_or_default();
    let mut br = Vec::new();
    let params = brotli::enc::BrotliEncoderParams {
        quality: 11,
        ..Default::default()
    };
    let brotli_ok = brotli::BrotliCompress(&mut &body[..], &mut br, &params).is_ok();
    (
        Bytes::from(gzip),
        Bytes::from(if brotli_ok { br } else { Vec::new() }),
    )
}

fn header_value(s: &str) -> HeaderValue {
    // Everything passed here is ASCII we built ourselves; an odd configured URL degrades to
    // an empty header rather than a failed render.
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn rendered(
    body: String,
    format: FeedFormat,
    updated: DateTime<Utc>,
    max_age: u64,
    links: &[(String, &str)],
) -> Rendered {
    let identity = Bytes::from(body);
    let digest = Sha256::digest(&identity);
    let tag = hex::encode(&digest[..16]);
    let (gzip, brotli) = compress(&identity);
    let link: Vec<String> = links
        .iter()
        .map(|(href, rel)| format!("<{href}>; rel=\"{rel}\""))
        .collect();
    Rendered {
        identity,
        gzip,
        brotli,
        etags: [
            header_value(&format!("\"{tag}\"")),
            header_value(&format!("\"{tag}-gz\"")),
            header_value(&format!("\"{tag}-br\"")),
        ],
        tag,
        last_modified: updated,
        last_modified_header: header_value(&http_date(updated)),
        content_type: HeaderValue::from_static(format.content_type()),
        cache_control: header_value(&format!("public, max-age={max_age}")),
        link: (!link.is_empty()).then(|| header_value(&link.join(", "))),
    }
}

/// How long complete archive pages may be cached.
const ARCHIVE_MAX_AGE: u64 = 7 * 24 * 3600;

/// Renders every feed document from the public releases.
pub fn build(app: &App, releases: &[Release]) -> HashMap<String, Arc<Rendered>> {
    let ctx = feed_context(app);
    let n = app.config.feeds.items;
    let max_age = app.config.feeds.max_age_secs;
    let mut docs = HashMap::new();
    let mut by_category: BTreeMap<&Category, Vec<Release>> = BTreeMap::new();
    for r in releases {
        for c in &r.content.categories {
            by_category.entry(c).or_default().push(r.clone());
        }
    }
    let name = &app.config.publisher.short_name;
    let mut sets: Vec<(String, String, String, &[Release])> = vec![(
        "/feeds".to_owned(),
        format!("Siaran Pers {name}"),
        format!("Siaran pers terbaru dari {}", app.config.publisher.name),
        releases,
    )];
    for (c, rs) in &by_category {
        sets.push((
            format!("/feeds/{c}"),
            format!("Siaran Pers {name}: {c}"),
            format!(
                "Siaran pers {} dalam kategori {c}",
                app.config.publisher.name
            ),
            rs.as_slice(),
        ));
    }
    for (base, title, description, rs) in sets {
        let total = rs.len();
        let current_len = total.min(n);
        let archived = total - current_len;
        let pages = archived.div_ceil(n);
        let home = if base == "/feeds" {
            format!("{}/", ctx.public_url)
        } else {
            format!(
                "{}/categories/{}",
                ctx.public_url,
                base.trim_start_matches("/feeds/")
            )
        };
        for format in FeedFormat::ALL {
            let file = format.file();
            let url = |path: &str| format!("{}{path}", ctx.public_url);
            let archive_path = |k: usize| format!("{base}/archive/{k}/{file}");
            // The current document: the newest `n`, newest first.
            let newest: Vec<Release> = rs[archived..].iter().rev().cloned().collect();
            let updated = rs.iter().map(|r| r.updated_at).max().unwrap_or_default();
            let doc = FeedDoc {
                title: title.clone(),
                description: description.clone(),
                self_url: url(&format!("{base}/{file}")),
                home_url: home.clone(),
                releases: &newest,
                prev_archive: (pages > 0).then(|| url(&archive_path(pages))),
                next_archive: None,
                current: None,
                updated,
            };
            docs.insert(
                format!("{base}/{file}"),
                Arc::new(rendered(
                    render_as(format, &ctx, &doc),
                    format,
                    updated,
                    max_age,
                    &self_and_hub(&ctx, &doc.self_url),
                )),
            );
            for k in 1..=pages {
                let start = (k - 1) * n;
                let end = (k * n).min(archived);
                let page: Vec<Release> = rs[start..end].iter().rev().cloned().collect();
                let updated = page.iter().map(|r| r.updated_at).max().unwrap_or_default();
                let doc = FeedDoc {
                    title: format!("{title} (arsip {k})"),
                    description: description.clone(),
                    self_url: url(&archive_path(k)),
                    home_url: home.clone(),
                    releases: &page,
                    prev_archive: (k > 1).then(|| url(&archive_path(k - 1))),
                    next_archive: (k < pages).then(|| url(&archive_path(k + 1))),
                    current: Some(url(&format!("{base}/{file}"))),
                    updated,
                };
                let full = end - start == n;
                let age = if full { ARCHIVE_MAX_AGE } else { max_age };
                docs.insert(
                    archive_path(k),
                    Arc::new(rendered(
                        render_as(format, &ctx, &doc),
                        format,
                        updated,
                        age,
                        &self_and_hub(&ctx, &doc.self_url),
                    )),
                );
            }
        }
    }
    docs
}

fn self_and_hub(ctx: &FeedContext, self_url: &str) -> Vec<(String, &'static str)> {
    let mut links = vec![(self_url.to_owned(), "self")];
    if let Some(hub) = &ctx.websub_hub {
        links.push((hub.clone(), "hub"));
    }
    links
}

fn render_as(format: FeedFormat, ctx: &FeedContext, doc: &FeedDoc<'_>) -> String {
    match format {
        FeedFormat::Rss => render::rss(ctx, doc),
        FeedFormat::Atom => render::atom(ctx, doc),
        FeedFormat::Json => render::json_feed(ctx, doc),
    }
}

/// Re-renders every feed from the store and swaps the new snapshot in. Returns the paths of
/// the subscription feeds (not archives) whose bytes changed: the WebSub topics to ping.
pub fn rebuild(app: &App) -> siar_store::Result<Vec<String>> {
    let releases = public_releases(app)?;
    let docs = build(app, &releases);
    let before = app.feeds.snapshot();
    let mut changed: Vec<String> = docs
        .iter()
        .filter(|(path, _)| !path.contains("/archive/"))
        .filter(|(path, doc)| before.docs.get(*path).is_none_or(|old| old.tag != doc.tag))
        .map(|(path, _)| path.clone())
        .collect();
    changed.sort();
    let by_slug = releases
        .iter()
        .enumerate()
        .map(|(i, r)| (r.slug.clone(), i))
        .collect();
    let mut categories = BTreeMap::new();
    for r in &releases {
        for c in &r.content.categories {
            *categories.entry(c.clone()).or_insert(0) += 1;
        }
    }
    app.feeds.replace(Snapshot {
        docs,
        releases,
        by_slug,
        categories,
    });
    Ok(changed)
}

/// Rebuilds the feeds whenever something public changed, until `shutdown`. Changes that come
/// while a rebuild runs are folded into the next one.
pub async fn run(app: Arc<App>, shutdown: tokio_util::sync::CancellationToken) {
    let hub = Some(app.config.feeds.websub_hub.clone()).filter(|h| !h.is_empty());
    let client = reqwest::Client::builder()
        .user_agent(concat!(
            "siar/",
            env!("CARGO_PKG_VERSION"),
            " (WebSub publisher)"
        ))
        .timeout(std::time::Duration::from_secs(15))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_default();
    loop {
        let a = app.clone();
        match tokio::task::spawn_blocking(move || rebuild(&a)).await {
            Ok(Ok(changed)) => {
                tracing::debug!(changed = changed.len(), "Feeds rendered.");
                // At start-up every feed counts as changed: something may have been published
                // while siar was down, and an extra ping costs the hub one fetch.
                if let Some(hub) = &hub {
                    for path in changed {
                        let topic = format!(
                            "{}{path}",
                            app.config.server.public_url.trim_end_matches('/')
                        );
                        let (client, hub) = (client.clone(), hub.clone());
                        tokio::spawn(async move {
                            match siar_fanout::websub::ping_with_retries(&client, &hub, &topic)
                                .await
                            {
                                (n, None) => {
                                    tracing::info!(%topic, attempts = n, "WebSub hub notified.")
                                }
                                (n, Some(e)) => {
                                    tracing::warn!(%topic, attempts = n, error = %e, "WebSub hub never accepted the ping; readers will still see the change when they poll.")
                                }
                            }
                        });
                    }
                }
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "Could not render the feeds; serving the previous ones.")
            }
            Err(e) => {
                tracing::error!(error = %e, "The feed renderer failed; serving the previous feeds.")
            }
        }
        tokio::select! {
            _ = app.public_changed.notified() => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

fn accepts(headers: &HeaderMap, coding: &str) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|part| {
            let mut it = part.split(';');
            let name = it.next().unwrap_or("").trim();
            let q_zero = it.any(|p| {
                let p = p.trim().replace(' ', "");
                p == "q=0" || p == "q=0.0" || p == "q=0.00" || p == "q=0.000"
            });
            name.eq_ignore_ascii_case(coding) && !q_zero
        })
}

fn http_date(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// True if `If-None-Match` names this version: any of its representations (they differ only
/// in encoding), or `*`.
fn matches_etag(doc: &Rendered, inm: &HeaderValue) -> bool {
    // Fast path: the client repeats exactly the ETag it was given.
    if doc.etags.iter().any(|e| e == inm) {
        return true;
    }
    inm.to_str().is_ok_and(|v| {
        v.split(',').map(str::trim).any(|t| {
            let t = t.trim_start_matches("W/").trim_matches('"');
            t == "*" || t.split('-').next() == Some(doc.tag.as_str())
        })
    })
}

/// Serves one rendered document with validators, compression and `304`s.
pub fn respond(doc: &Rendered, headers: &HeaderMap) -> Response {
    let enc = headers.get(header::ACCEPT_ENCODING).map(|_| ());
    let (body, coding, etag) = if enc.is_some() && accepts(headers, "br") && !doc.brotli.is_empty()
    {
        (&doc.brotli, Some("br"), &doc.etags[2])
    } else if enc.is_some() && accepts(headers, "gzip") && !doc.gzip.is_empty() {
        (&doc.gzip, Some("gzip"), &doc.etags[1])
    } else {
        (&doc.identity, None, &doc.etags[0])
    };
    let not_modified = match headers.get(header::IF_NONE_MATCH) {
        Some(inm) => matches_etag(doc, inm),
        None => headers
            .get(header::IF_MODIFIED_SINCE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| DateTime::parse_from_rfc2822(&v.replace("GMT", "+0000")).ok())
            .is_some_and(|since| doc.last_modified.timestamp() <= since.timestamp()),
    };
    // Built in place: one header map, no merging.
    let mut resp = Response::new(Body::empty());
    let h = resp.headers_mut();
    h.insert(header::ETAG, etag.clone());
    h.insert(header::LAST_MODIFIED, doc.last_modified_header.clone());
    h.insert(header::CACHE_CONTROL, doc.cache_control.clone());
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if let Some(link) = &doc.link {
        h.insert(header::LINK, link.clone());
    }
    if not_modified {
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        return resp;
    }
    h.insert(header::CONTENT_TYPE, doc.content_type.clone());
    if let Some(c) = coding {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(c));
    }
    *resp.body_mut() = Body::from(body.clone());
    resp
}

/// The short path for feed requests (see [`crate::http`]): `Some` answer for a `GET` or
/// `HEAD` of a feed path, `None` to let the router handle the request.
pub fn answer<B>(app: &App, req: &axum::http::Request<B>) -> Option<Response> {
    let path = req.uri().path();
    if !path.starts_with("/feeds/") {
        return None;
    }
    let method = req.method();
    if method != axum::http::Method::GET && method != axum::http::Method::HEAD {
        return None;
    }
    let snap = app.feeds.current.load();
    let mut resp = match snap.docs.get(path) {
        Some(doc) => respond(doc, req.headers()),
        None => (StatusCode::NOT_FOUND, "Feed tidak ditemukan.\n").into_response(),
    };
    if method == axum::http::Method::HEAD {
        // The length of what GET would send, without the bytes.
        let len = http_body::Body::size_hint(resp.body()).exact();
        *resp.body_mut() = Body::empty();
        if let Some(n) = len.filter(|_| resp.status() == StatusCode::OK) {
            resp.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
    }
    Some(resp)
}

/// Every `/feeds/…` request that reaches the router: the path is the key.
pub async fn serve(State(app): State<Arc<App>>, req: Request) -> Response {
    let snap = app.feeds.current.load();
    match snap.docs.get(req.uri().path()) {
        Some(doc) => respond(doc, req.headers()),
        None => (StatusCode::NOT_FOUND, "Feed tidak ditemukan.\n").into_response(),
    }
}
