//! Renderers: pure functions from releases to documents.
//!
//! Shared rules, whatever the format: a release's permanent id is
//! `tag:{tag_authority},{year}:release/{id}` with the year its id was made (so it can never
//! change); every URL is absolute; text is escaped and HTML sanitised; a retracted release
//! keeps its id and shows a withdrawal notice instead of its text; a corrected one shows what
//! changed ("Koreksi: …"). What readers see is in Bahasa Indonesia.

mod atom;
mod email;
mod html;
mod jsonfeed;
mod ninjs;
mod radio;
mod rss;

use chrono::{DateTime, Datelike, Utc};
use chrono_tz::Tz;
use siar_model::{Release, ReleaseId};

pub use self::atom::render as atom;
pub use self::email::{
    confirmation_email, dkim_config, message_id, release_email, subject, DigestEntry, ListMail,
    MailKind, MailList, Recipient, DKIM_SIGNED_HEADERS,
};
pub use self::html::{format_date, release_html, summary};
pub use self::jsonfeed::render as json_feed;
pub use self::ninjs::{ninjs, plain_text};
pub use self::radio::{radio_script, speakable, RadioScript, WORDS_PER_MINUTE};
pub use self::rss::render as rss;

/// What every renderer needs to know about the publisher and where siar is reachable.
#[derive(Clone, Debug)]
pub struct FeedContext {
    /// Base of every public URL, without a trailing slash.
    pub public_url: String,
    pub publisher_name: String,
    pub publisher_short: String,
    pub tag_authority: String,
    pub language: String,
    pub timezone: Tz,
    /// WebSub hub advertised in feeds, if any.
    pub websub_hub: Option<String>,
}

impl FeedContext {
    /// Diskominfo Kalsel on `https://siaran.kalselprov.go.id`: for examples and tests.
    pub fn example() -> Self {
        Self {
            public_url: "https://siaran.kalselprov.go.id".into(),
            publisher_name: "Dinas Komunikasi dan Informatika Provinsi Kalimantan Selatan".into(),
            publisher_short: "Diskominfo Kalsel".into(),
            tag_authority: "kalselprov.go.id".into(),
            language: "id".into(),
            timezone: chrono_tz::Asia::Makassar,
            websub_hub: None,
        }
    }

    /// `path` made absolute; URLs that already are stay as they are.
    pub fn absolute(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_owned()
        } else if let Some(p) = path.strip_prefix('/') {
            format!("{}/{p}", self.public_url)
        } else {
            format!("{}/{path}", self.public_url)
        }
    }

    pub fn permalink(&self, r: &Release) -> String {
        format!("{}/releases/{}", self.public_url, r.slug)
    }
}

/// The permanent id of a release in every feed and message.
pub fn tag_id(ctx: &FeedContext, id: ReleaseId) -> String {
    let made = i64::try_from(id.timestamp_ms())
        .ok()
        .and_then(DateTime::<Utc>::from_timestamp_millis)
        .unwrap_or_default();
    format!("tag:{},{}:release/{id}", ctx.tag_authority, made.year())
}

/// The title readers see: a retracted release says so first.
pub fn display_title(r: &Release) -> String {
    if r.retraction.is_some() {
        format!("DITARIK: {}", r.content.title)
    } else {
        r.content.title.clone()
    }
}

/// One feed document: the current feed or one of its archives.
#[derive(Clone, Debug)]
pub struct FeedDoc<'a> {
    pub title: String,
    pub description: String,
    /// This document's own absolute URL (`rel="self"`).
    pub self_url: String,
    /// The HTML page the feed belongs to.
    pub home_url: String,
    /// Newest first.
    pub releases: &'a [&'a Release],
    /// RFC 5005: the next older archive document, if any.
    pub prev_archive: Option<String>,
    /// RFC 5005, in archives: the next newer archive document, if any.
    pub next_archive: Option<String>,
    /// RFC 5005, in archives: the current (subscription) feed.
    pub current: Option<String>,
    /// When anything in the document last changed.
    pub updated: DateTime<Utc>,
}

impl FeedDoc<'_> {
    pub fn is_archive(&self) -> bool {
        self.current.is_some()
    }
}

/// The RFC 5005 namespace for `fh:archive`.
pub(crate) const FEED_HISTORY_NS: &str = "http://purl.org/syndication/history/1.0";

#[cfg(test)]
mod tests;
