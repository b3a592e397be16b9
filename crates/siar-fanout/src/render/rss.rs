//! RSS 2.0 with `content:encoded`, `dc:creator`, Media RSS, `atom:link` (self, hub, RFC 5005
//! archives) and `fh:archive`.

use std::collections::BTreeMap;

use rss::extension::atom::{AtomExtension, Link};
use rss::extension::dublincore::DublinCoreExtension;
use rss::extension::{Extension, ExtensionMap};
use rss::{Category, Channel, Enclosure, Guid, Item};
use siar_model::{Release, Status};

use super::html::{photo, photo_caption};
use super::{display_title, release_html, summary, tag_id, FeedContext, FeedDoc, FEED_HISTORY_NS};

const MEDIA_NS: &str = "http://search.yahoo.com/mrss/";

fn atom_link(rel: &str, href: &str, mime: Option<&str>) -> Link {
    Link {
        href: href.to_owned(),
        rel: rel.to_owned(),
        mime_type: mime.map(str::to_owned),
        ..Link::default()
    }
}

fn ext(name: &str, value: Option<String>, attrs: &[(&str, &str)]) -> Extension {
    Extension {
        name: name.to_owned(),
        value,
        attrs: attrs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        children: BTreeMap::new(),
    }
}

fn media(ctx: &FeedContext, r: &Release) -> ExtensionMap {
    let mut map = ExtensionMap::new();
    let Some(a) = photo(r) else { return map };
    let url = ctx.absolute(&a.url);
    let length = a.length.map(|n| n.to_string());
    let mut attrs = vec![
        ("url", url.as_str()),
        ("type", a.media_type.as_str()),
        ("medium", "image"),
    ];
    if let Some(n) = &length {
        attrs.push(("fileSize", n));
    }
    let mut content = ext("media:content", None, &attrs);
    if let Some(c) = photo_caption(r, a) {
        content.children.insert(
            "description".into(),
            vec![ext(
                "media:description",
                Some(c.to_owned()),
                &[("type", "plain")],
            )],
        );
    }
    if let Some(credit) = &a.credit {
        content.children.insert(
            "credit".into(),
            vec![ext("media:credit", Some(credit.clone()), &[])],
        );
    }
    map.insert(
        "media".into(),
        BTreeMap::from([("content".into(), vec![content])]),
    );
    map
}

fn item(ctx: &FeedContext, r: &Release) -> Item {
    let creator = r
        .content
        .source_agency
        .clone()
        .unwrap_or_else(|| ctx.publisher_short.clone());
    let enclosure = r
        .content
        .attachments
        .iter()
        .find(|a| a.media_type.starts_with("audio/") && a.length.is_some())
        .filter(|_| r.status != Status::Retracted)
        .map(|a| Enclosure {
            url: ctx.absolute(&a.url),
            length: a.length.unwrap_or(0).to_string(),
            mime_type: a.media_type.clone(),
        });
    Item {
        title: Some(display_title(r)),
        link: Some(ctx.permalink(r)),
        description: Some(summary(r)),
        content: Some(release_html(ctx, r)),
        guid: Some(Guid {
            value: tag_id(ctx, r.id),
            permalink: false,
        }),
        pub_date: Some(r.published_at.unwrap_or(r.publish_at).to_rfc2822()),
        categories: r
            .content
            .categories
            .iter()
            .map(|c| Category {
                name: c.as_str().to_owned(),
                domain: None,
            })
            .collect(),
        dublin_core_ext: Some(DublinCoreExtension {
            creators: vec![creator],
            ..DublinCoreExtension::default()
        }),
        extensions: if r.status == Status::Retracted {
            ExtensionMap::new()
        } else {
            media(ctx, r)
        },
        enclosure,
        ..Item::default()
    }
}

/// An RSS 2.0 document.
pub fn render(ctx: &FeedContext, doc: &FeedDoc<'_>) -> String {
    let mut links = vec![atom_link(
        "self",
        &doc.self_url,
        Some("application/rss+xml"),
    )];
    if let Some(hub) = &ctx.websub_hub {
        links.push(atom_link("hub", hub, None));
    }
    for (rel, href) in [
        ("prev-archive", &doc.prev_archive),
        ("next-archive", &doc.next_archive),
        ("current", &doc.current),
    ] {
        if let Some(h) = href {
            links.push(atom_link(rel, h, Some("application/rss+xml")));
        }
    }
    let mut namespaces = BTreeMap::from([("media".to_owned(), MEDIA_NS.to_owned())]);
    let mut extensions = ExtensionMap::new();
    if doc.is_archive() {
        namespaces.insert("fh".into(), FEED_HISTORY_NS.into());
        extensions.insert(
            "fh".into(),
            BTreeMap::from([("archive".into(), vec![ext("fh:archive", None, &[])])]),
        );
    }
    let channel = Channel {
        title: doc.title.clone(),
        link: doc.home_url.clone(),
        description: doc.description.clone(),
        language: Some(ctx.language.clone()),
        copyright: Some(format!("© {}", ctx.publisher_name)),
        last_build_date: Some(doc.updated.to_rfc2822()),
        generator: Some(format!("siar {}", env!("CARGO_PKG_VERSION"))),
        docs: Some("https://www.rssboard.org/rss-specification".into()),
        ttl: Some("15".into()),
        items: doc.releases.iter().map(|r| item(ctx, r)).collect(),
        atom_ext: Some(AtomExtension { links }),
        namespaces,
        extensions,
        ..Channel::default()
    };
    channel.to_string()
}
