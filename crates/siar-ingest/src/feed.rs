//! Upstream RSS 2.0 and Atom feeds: documents into items, items into releases.
//!
//! An item's HTML is flattened to paragraphs and read like Kalsel text (so datelines, dates,
//! captions and closing codes are found the same way); enclosures become attachments. The
//! item's guid (RSS `guid`, else `link`; Atom `id`) is what makes a later poll of the same item
//! a correction rather than a new release.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use regex::Regex;
use siar_model::{Attachment, Category};

use crate::{clean, content_hash, Format, ParseContext, ParseError, Parsed};

/// One entry of an upstream feed.
#[derive(Clone, Debug, PartialEq)]
pub struct FeedItem {
    pub guid: String,
    pub title: String,
    pub link: Option<String>,
    /// The fullest HTML the item has: `content:encoded` / `content`, else the summary.
    pub html: String,
    pub published: Option<DateTime<Utc>>,
    pub categories: Vec<String>,
    pub enclosures: Vec<Attachment>,
}

/// Reads an RSS 2.0 or Atom document.
pub fn read_feed(bytes: &[u8]) -> Result<Vec<FeedItem>, ParseError> {
    match rss::Channel::read_from(bytes) {
        Ok(ch) => return Ok(ch.items().iter().filter_map(rss_item).collect()),
        Err(rss::Error::InvalidStartTag) => {}
        Err(e) => return Err(ParseError::invalid(format!("invalid RSS feed: {e}"))),
    }
    let feed = atom_syndication::Feed::read_from(bytes)
        .map_err(|e| ParseError::invalid(format!("neither RSS nor Atom: {e}")))?;
    Ok(feed.entries().iter().map(atom_entry).collect())
}

fn rss_item(i: &rss::Item) -> Option<FeedItem> {
    let guid = i
        .guid()
        .map(|g| g.value().to_owned())
        .or_else(|| i.link().map(str::to_owned))?;
    Some(FeedItem {
        guid,
        title: i.title().unwrap_or_default().to_owned(),
        link: i.link().map(str::to_owned),
        html: i
            .content()
            .or(i.description())
            .unwrap_or_default()
            .to_owned(),
        published: i
            .pub_date()
            .and_then(|d| DateTime::parse_from_rfc2822(d).ok())
            .map(|d| d.with_timezone(&Utc)),
        categories: i.categories().iter().map(|c| c.name().to_owned()).collect(),
        enclosures: i
            .enclosure()
            .map(|e| Attachment {
                url: e.url().to_owned(),
                media_type: e.mime_type().to_owned(),
                caption: None,
                credit: None,
                length: e.length().parse().ok().filter(|&n| n > 0),
            })
            .into_iter()
            .collect(),
    })
}

fn atom_entry(e: &atom_syndication::Entry) -> FeedItem {
    let html = e
        .content()
        .and_then(|c| c.value())
        .or(e.summary().map(|s| s.as_str()))
        .unwrap_or_default()
        .to_owned();
    FeedItem {
        guid: e.id().to_owned(),
        title: e.title().as_str().to_owned(),
        link: e
            .links()
            .iter()
            .find(|l| l.rel() == "alternate")
            .map(|l| l.href().to_owned()),
        html,
        published: e.published().map(|d| d.with_timezone(&Utc)),
        categories: e.categories().iter().map(|c| c.term().to_owned()).collect(),
        enclosures: e
            .links()
            .iter()
            .filter(|l| l.rel() == "enclosure")
            .map(|l| Attachment {
                url: l.href().to_owned(),
                media_type: l
                    .mime_type()
                    .unwrap_or("application/octet-stream")
                    .to_owned(),
                caption: None,
                credit: None,
                length: l.length().and_then(|n| n.parse().ok()),
            })
            .collect(),
    }
}

static BLOCK_END: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)</\s*(?:p|div|h[1-6]|li|blockquote|tr|figure|figcaption)\s*>|<\s*br\s*/?\s*>")
        .expect("static regex")
});

/// HTML to plain text with a blank line between blocks.
pub fn html_to_text(html: &str) -> String {
    let spaced = BLOCK_END.replace_all(html, "\n\n");
    let text = clean::strip_markup(&spaced).unwrap_or_else(|| spaced.into_owned());
    let mut out = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() {
            if !out.ends_with("\n\n") && !out.is_empty() {
                out.push_str(if out.ends_with('\n') { "\n" } else { "\n\n" });
            }
        } else {
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(line);
        }
    }
    out.trim().to_owned()
}

/// Turns a feed item into a release, read like Kalsel text.
pub fn item_to_release(item: &FeedItem, ctx: &ParseContext) -> Result<Parsed, ParseError> {
    let title = siar_model::text::collapse_whitespace(&html_to_text(&item.title));
    let text = format!("{title}\n\n{}", html_to_text(&item.html));
    let mut p = crate::parse(text.as_bytes(), Format::Kalsel, ctx)?;
    p.content.categories = item
        .categories
        .iter()
        .filter_map(|c| Category::parse(c).ok())
        .collect();
    p.content.attachments = item
        .enclosures
        .iter()
        .filter(|a| a.url.starts_with("http"))
        .cloned()
        .collect();
    p.content_hash = content_hash(Format::Kalsel, &format!("{text}\n{:?}", item.enclosures));
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSS: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/">
<channel><title>MC Kalsel</title><link>https://mc.example/</link><description>d</description>
<item><title>Gubernur Resmikan Jembatan</title><link>https://mc.example/a</link>
<guid isPermaLink="false">mc-1</guid><category>Infrastruktur</category>
<pubDate>Wed, 01 Sep 2021 10:00:00 +0800</pubDate>
<content:encoded><![CDATA[<p>BANJARMASIN – Gubernur meresmikan jembatan, Rabu (1/9).</p><p>Warga menyambut baik. (MC/RH)</p>]]></content:encoded>
<enclosure url="https://mc.example/a.jpg" type="image/jpeg" length="1234"/>
</item></channel></rss>"#;

    #[test]
    fn rss_items_become_releases() {
        let items = read_feed(RSS.as_bytes()).unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].guid, "mc-1");
        let ctx = ParseContext::new(chrono::NaiveDate::from_ymd_opt(2026, 11, 29).unwrap());
        let p = item_to_release(&items[0], &ctx).unwrap();
        let c = &p.content;
        assert_eq!(c.title, "Gubernur Resmikan Jembatan");
        assert_eq!(c.dateline.as_deref(), Some("BANJARMASIN"));
        assert_eq!(
            c.body,
            [
                "Gubernur meresmikan jembatan, Rabu (1/9).",
                "Warga menyambut baik."
            ]
        );
        assert_eq!(c.closing_codes, ["MC", "RH"]);
        assert_eq!(c.categories[0].as_str(), "infrastruktur");
        assert_eq!(c.attachments[0].length, Some(1234));
    }

    #[test]
    fn atom_entries_are_read() {
        let atom = r#"<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>t</title><id>urn:x</id><updated>2021-09-01T00:00:00Z</updated>
<entry><id>urn:item:7</id><title>Judul</title><updated>2021-09-01T00:00:00Z</updated>
<content type="html">&lt;p&gt;BANJARBARU – Isi.&lt;/p&gt;</content></entry></feed>"#;
        let items = read_feed(atom.as_bytes()).unwrap();
        assert_eq!(items[0].guid, "urn:item:7");
        assert_eq!(html_to_text(&items[0].html), "BANJARBARU – Isi.");
    }

    #[test]
    fn junk_is_an_error() {
        assert!(read_feed(b"<html><body>not a feed</body></html>").is_err());
        assert!(read_feed(b"\x00\x01").is_err());
    }
}
