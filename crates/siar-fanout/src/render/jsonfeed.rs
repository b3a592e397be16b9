//! JSON Feed 1.1 (<https://www.jsonfeed.org/version/1.1/>).

use serde_json::{json, Map, Value};
use siar_model::{Release, Status};

use super::html::{photo, photo_caption};
use super::{display_title, release_html, summary, tag_id, FeedContext, FeedDoc};

fn item(ctx: &FeedContext, r: &Release) -> Value {
    let mut o = Map::new();
    o.insert("id".into(), json!(tag_id(ctx, r.id)));
    o.insert("url".into(), json!(ctx.permalink(r)));
    o.insert("title".into(), json!(display_title(r)));
    o.insert("content_html".into(), json!(release_html(ctx, r)));
    o.insert("summary".into(), json!(summary(r)));
    o.insert(
        "date_published".into(),
        json!(r.published_at.unwrap_or(r.publish_at).to_rfc3339()),
    );
    o.insert("date_modified".into(), json!(r.updated_at.to_rfc3339()));
    let author = r
        .content
        .source_agency
        .clone()
        .unwrap_or_else(|| ctx.publisher_short.clone());
    o.insert(
        "authors".into(),
        json!([{ "name": author, "url": ctx.public_url }]),
    );
    o.insert("language".into(), json!(r.content.language));
    if !r.content.categories.is_empty() {
        let tags: Vec<&str> = r.content.categories.iter().map(|c| c.as_str()).collect();
        o.insert("tags".into(), json!(tags));
    }
    if r.status != Status::Retracted {
        if let Some(a) = photo(r) {
            o.insert("image".into(), json!(ctx.absolute(&a.url)));
            if let Some(c) = photo_caption(r, a) {
                o.insert(
                    "_siar".into(),
                    json!({ "image_caption": c, "image_credit": a.credit }),
                );
            }
        }
        let attachments: Vec<Value> = r
            .content
            .attachments
            .iter()
            .map(|a| {
                let mut v = json!({ "url": ctx.absolute(&a.url), "mime_type": a.media_type });
                if let Some(c) = &a.caption {
                    v["title"] = json!(c);
                }
                if let Some(n) = a.length {
                    v["size_in_bytes"] = json!(n);
                }
                v
            })
            .collect();
        if !attachments.is_empty() {
            o.insert("attachments".into(), json!(attachments));
        }
    }
    Value::Object(o)
}

/// A JSON Feed 1.1 document. `next_url` points at the next older page (the archive).
pub fn render(ctx: &FeedContext, doc: &FeedDoc<'_>) -> String {
    let mut feed = json!({
        "version": "https://jsonfeed.org/version/1.1",
        "title": doc.title,
        "home_page_url": doc.home_url,
        "feed_url": doc.self_url,
        "description": doc.description,
        "language": ctx.language,
        "authors": [{ "name": ctx.publisher_name, "url": ctx.public_url }],
        "items": doc.releases.iter().map(|r| item(ctx, r)).collect::<Vec<_>>(),
    });
    if let Some(prev) = &doc.prev_archive {
        feed["next_url"] = json!(prev);
    }
    if let Some(hub) = &ctx.websub_hub {
        feed["hubs"] = json!([{ "type": "WebSub", "url": hub }]);
    }
    // Pretty output: feeds are read by people debugging integrations too, and they are
    // compressed on the wire anyway.
    serde_json::to_string_pretty(&feed).unwrap_or_default()
}
