//! Atom 1.0: `summary` then `content type="html"`, `xml:lang`, self/hub/archive links,
//! `fh:archive`, photos and audio as `rel="enclosure"` links.

use std::collections::BTreeMap;

use atom_syndication::extension::{Extension, ExtensionMap};
use atom_syndication::{
    Category, Content, Entry, Feed, FixedDateTime, Generator, Link, Person, Text,
};
use chrono::{DateTime, Utc};
use siar_model::{Release, Status};

use super::{display_title, release_html, summary, tag_id, FeedContext, FeedDoc, FEED_HISTORY_NS};

fn fixed(t: DateTime<Utc>) -> FixedDateTime {
    t.fixed_offset()
}

fn link(rel: &str, href: &str, mime: Option<&str>) -> Link {
    Link {
        href: href.to_owned(),
        rel: rel.to_owned(),
        mime_type: mime.map(str::to_owned),
        ..Link::default()
    }
}

fn entry(ctx: &FeedContext, r: &Release) -> Entry {
    let mut links = vec![link("alternate", &ctx.permalink(r), Some("text/html"))];
    if r.status != Status::Retracted {
        for a in &r.content.attachments {
            links.push(Link {
                length: a.length.map(|n| n.to_string()),
                title: a.caption.clone(),
                ..link("enclosure", &ctx.absolute(&a.url), Some(&a.media_type))
            });
        }
    }
    let author = r
        .content
        .source_agency
        .clone()
        .unwrap_or_else(|| ctx.publisher_short.clone());
    Entry {
        title: Text::plain(display_title(r)),
        id: tag_id(ctx, r.id),
        updated: fixed(r.updated_at),
        published: Some(fixed(r.published_at.unwrap_or(r.publish_at))),
        authors: vec![Person {
            name: author,
            uri: Some(ctx.public_url.clone()),
            ..Person::default()
        }],
        categories: r
            .content
            .categories
            .iter()
            .map(|c| Category {
                term: c.as_str().to_owned(),
                ..Category::default()
            })
            .collect(),
        links,
        summary: Some(Text::plain(summary(r))),
        content: Some(Content {
            value: Some(release_html(ctx, r)),
            content_type: Some("html".into()),
            ..Content::default()
        }),
        ..Entry::default()
    }
}

/// An Atom 1.0 document.
pub fn render(ctx: &FeedContext, doc: &FeedDoc<'_>) -> String {
    let mut links = vec![
        link("self", &doc.self_url, Some("application/atom+xml")),
        link("alternate", &doc.home_url, Some("text/html")),
    ];
    if let Some(hub) = &ctx.websub_hub {
        links.push(link("hub", hub, None));
    }
    for (rel, href) in [
        ("prev-archive", &doc.prev_archive),
        ("next-archive", &doc.next_archive),
        ("current", &doc.current),
    ] {
        if let Some(h) = href {
            links.push(link(rel, h, Some("application/atom+xml")));
        }
    }
    let mut namespaces = BTreeMap::new();
    let mut extensions = ExtensionMap::new();
    if doc.is_archive() {
        namespaces.insert("fh".to_owned(), FEED_HISTORY_NS.to_owned());
        let archive = Extension {
            name: "fh:archive".into(),
            ..Extension::default()
        };
        extensions.insert(
            "fh".into(),
            BTreeMap::from([("archive".into(), vec![archive])]),
        );
    }
    let feed = Feed {
        title: Text::plain(doc.title.clone()),
        id: doc.self_url.clone(),
        updated: fixed(doc.updated),
        authors: vec![Person {
            name: ctx.publisher_name.clone(),
            uri: Some(ctx.public_url.clone()),
            ..Person::default()
        }],
        generator: Some(Generator {
            value: "siar".into(),
            uri: None,
            version: Some(env!("CARGO_PKG_VERSION").into()),
        }),
        links,
        subtitle: Some(Text::plain(doc.description.clone())),
        rights: Some(Text::plain(format!("© {}", ctx.publisher_name))),
        entries: doc.releases.iter().map(|r| entry(ctx, r)).collect(),
        lang: Some(ctx.language.clone()),
        namespaces,
        extensions,
        ..Feed::default()
    };
    feed.to_string()
}
