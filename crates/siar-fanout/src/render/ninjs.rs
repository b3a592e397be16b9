//! IPTC ninjs 3.1: a release as a news item for newsroom systems (the media center).

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};
use siar_model::Release;

use super::{display_title, release_html, summary, tag_id, FeedContext};

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The release as plain text: the dateline opening the first paragraph, blank lines between
/// paragraphs; a withdrawal notice instead for a retracted release.
pub fn plain_text(r: &Release) -> String {
    if let Some(ret) = &r.retraction {
        return format!("Siaran pers ini telah ditarik. Alasan: {}", ret.reason);
    }
    let mut paragraphs: Vec<String> = r.content.body.clone();
    if let (Some(place), Some(first)) = (&r.content.dateline, paragraphs.first_mut()) {
        *first = format!("{place} – {first}");
    }
    paragraphs.join("\n\n")
}

/// The ninjs item for the release as it stands: `pubStatus` `canceled` once retracted, the
/// photo and audio as associations with their captions, `embargoedUntil` for a release that
/// was held until its `publish_at`.
pub fn ninjs(ctx: &FeedContext, r: &Release) -> Value {
    let c = &r.content;
    let text = plain_text(r);
    let words = text.split_whitespace().count();
    let mut item = Map::new();
    let mut put = |k: &str, v: Value| {
        item.insert(k.to_owned(), v);
    };
    put("uri", json!(tag_id(ctx, r.id)));
    put("type", json!("text"));
    put("representationType", json!("full"));
    put("version", json!(r.version.to_string()));
    put("firstCreated", json!(time(r.created_at)));
    put("versionCreated", json!(time(r.updated_at)));
    if r.publish_at > r.created_at {
        put("embargoedUntil", json!(time(r.publish_at)));
    }
    put(
        "pubStatus",
        json!(if r.retraction.is_some() {
            "canceled"
        } else {
            "usable"
        }),
    );
    put("language", json!(c.language));
    put(
        "headlines",
        json!([{"role": "main", "value": display_title(r)}]),
    );
    put(
        "descriptions",
        json!([{"role": "summary", "contentType": "text/plain", "value": summary(r)}]),
    );
    put(
        "bodies",
        json!([
            {"role": "main", "contentType": "text/html", "value": release_html(ctx, r)},
            {"role": "main", "contentType": "text/plain", "value": text,
             "charCount": text.chars().count(), "wordCount": words},
        ]),
    );
    let by = c
        .source_agency
        .clone()
        .unwrap_or_else(|| ctx.publisher_short.clone());
    put("by", json!(by));
    if let Some(place) = &c.dateline {
        put("located", json!(place));
    }
    if !c.categories.is_empty() {
        let subjects: Vec<Value> = c
            .categories
            .iter()
            .map(|cat| {
                json!({
                    "name": cat.as_str(),
                    "rel": "category",
                    "uri": format!("{}/categories/{}", ctx.public_url, cat.as_str()),
                })
            })
            .collect();
        put("subjects", Value::Array(subjects));
    }
    let mut notes: Vec<String> = r
        .correction_notes
        .iter()
        .map(|n| format!("Koreksi: {n}"))
        .collect();
    if let Some(ret) = &r.retraction {
        notes.push(format!("Ditarik: {}", ret.reason));
    }
    if !notes.is_empty() {
        put("edNote", json!(notes.join(" ")));
    }
    put(
        "renditions",
        json!([{"name": "web", "href": ctx.permalink(r), "contentType": "text/html"}]),
    );
    put("copyrightHolder", json!(ctx.publisher_name));
    if r.retraction.is_none() {
        let associations: Vec<Value> = c
            .attachments
            .iter()
            .enumerate()
            .filter_map(|(i, a)| {
                let kind = match a.media_type.split('/').next() {
                    Some("image") => "picture",
                    Some("audio") => "audio",
                    Some("video") => "video",
                    _ => return None,
                };
                let href = ctx.absolute(&a.url);
                let mut rendition =
                    json!({"name": "original", "href": href, "contentType": a.media_type});
                if let Some(n) = a.length {
                    rendition["sizeInBytes"] = json!(n);
                }
                let mut assoc = json!({
                    "name": format!("{kind}{}", i + 1),
                    "rel": if kind == "picture" && i == 0 { "featured" } else { "related" },
                    "uri": href,
                    "type": kind,
                    "renditions": [rendition],
                });
                if let Some(caption) = &a.caption {
                    assoc["descriptions"] =
                        json!([{"role": "caption", "contentType": "text/plain", "value": caption}]);
                    assoc["headlines"] = json!([{"value": caption}]);
                }
                if let Some(credit) = &a.credit {
                    assoc["by"] = json!(credit);
                }
                Some(assoc)
            })
            .collect();
        if !associations.is_empty() {
            put("associations", Value::Array(associations));
        }
    }
    Value::Object(item)
}
