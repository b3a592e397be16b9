//! A press release: what a parser finds in it, what the store keeps of it, and its history.

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::ReleaseId;

/// A category name: lowercase ASCII letters, digits and hyphens, 1–40 bytes ("pemilu-2024").
/// It appears in feed URLs (`/feeds/{category}/rss.xml`), so it must be URL-safe.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Category(String);

crate::ids::string_schema!(
    Category,
    "Lowercase letters, digits and hyphens, at most 40 bytes.",
    "pemerintahan"
);

#[derive(Debug, thiserror::Error)]
#[error("category `{0}` has no letters or digits")]
pub struct CategoryError(String);

impl Category {
    pub const MAX_LEN: usize = 40;

    /// Normalises free text ("Pemilu 2024") into a category ("pemilu-2024").
    pub fn parse(s: &str) -> Result<Self, CategoryError> {
        let slug = crate::text::slugify(s, Self::MAX_LEN);
        if slug.is_empty() {
            return Err(CategoryError(s.chars().take(60).collect()));
        }
        Ok(Self(slug))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Category {
    type Error = CategoryError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Category> for String {
    fn from(c: Category) -> String {
        c.0
    }
}

impl std::fmt::Display for Category {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// How the year of an event date was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum YearSource {
    /// The text gave it: `(1/9/2021)` or `1 September 2021`.
    Explicit,
    /// The text gave a weekday and `d/m`; the year is the latest one, not after the ingest
    /// date, on which that day falls on that weekday.
    Weekday,
    /// No year and no weekday that any plausible year matches: the ingest year, with a warning.
    Assumed,
}

/// The date the release is about ("Rabu (1/9)"), as found in the text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EventDate {
    #[schema(value_type = String, format = Date)]
    pub date: NaiveDate,
    /// Local time if the text gave one ("pukul 10.00 Wita").
    #[schema(value_type = Option<String>, example = "10:00:00")]
    pub time: Option<NaiveTime>,
    /// The time zone the text named, upper case ("WITA").
    pub zone: Option<String>,
    /// The exact words the date was read from.
    pub raw: String,
    pub year_source: YearSource,
}

/// A photo, audio clip or document that goes with a release.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Attachment {
    /// Absolute `http(s)` URL, or a path under `/media/` for stored files.
    pub url: String,
    /// MIME type ("image/jpeg", "audio/mpeg").
    #[serde(rename = "type")]
    pub media_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credit: Option<String>,
    /// Size in bytes, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<u64>,
}

/// Something odd about the input that did not stop it from being accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Warning {
    /// Stable machine-readable name, e.g. `weekday_mismatch`, `legacy_encoding`.
    pub code: String,
    pub message: String,
    /// 1-based line in the input, where one applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
}

impl Warning {
    pub fn new(code: &str, message: impl Into<String>, line: Option<usize>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
            line,
        }
    }
}

/// The fields of one version of a release, as a parser produces them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReleaseContent {
    pub title: String,
    /// Photo captions found in the text; never part of the body.
    #[serde(default)]
    pub captions: Vec<String>,
    /// The place the dateline names, as written ("BANJARBARU").
    #[serde(default)]
    pub dateline: Option<String>,
    #[serde(default)]
    pub event_date: Option<EventDate>,
    /// Body paragraphs as plain text, without dateline prefix, captions or closing codes.
    #[serde(default)]
    pub body: Vec<String>,
    /// Sanitised HTML of the body when the input had markup (Markdown, HTML from a feed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_html: Option<String>,
    /// Writer and editor initials ("ASC", "RDM", "RH").
    #[serde(default)]
    pub closing_codes: Vec<String>,
    /// The agency named with the codes ("DISPERSIPKALSEL", "MC Kalsel"), if any.
    #[serde(default)]
    pub source_agency: Option<String>,
    /// A republisher's line such as "sumber : diskominfomc.kalselprov.go.id".
    #[serde(default)]
    pub footer: Option<String>,
    #[serde(default)]
    pub categories: Vec<Category>,
    /// BCP 47 language tag; "id" unless the input says otherwise.
    pub language: String,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    /// What the parser noticed but accepted.
    #[serde(default)]
    pub warnings: Vec<Warning>,
}

impl ReleaseContent {
    /// The first body paragraph, for summaries.
    pub fn lead(&self) -> &str {
        self.body.first().map(String::as_str).unwrap_or("")
    }
}

/// Where a release came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    Api,
    Cli,
    File { name: String },
    Upstream { name: String, guid: String },
}

impl Source {
    /// A short actor name for the audit log.
    pub fn actor(&self) -> String {
        match self {
            Source::Api => "api".into(),
            Source::Cli => "cli".into(),
            Source::File { name } => format!("file:{name}"),
            Source::Upstream { name, .. } => format!("upstream:{name}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Provenance {
    pub source: Source,
    /// SHA-256 (hex) of the normalised input text.
    pub content_hash: String,
    pub received_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Accepted, waiting for `publish_at`. Visible only through the authenticated API.
    Scheduled,
    Published,
    Retracted,
}

/// One version of a release. Version 1 is the original; each correction adds one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Version {
    pub release_id: ReleaseId,
    pub number: u32,
    pub content: ReleaseContent,
    pub created_at: DateTime<Utc>,
    /// What this version changed; `None` for version 1.
    pub correction_note: Option<String>,
    pub provenance: Provenance,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Retraction {
    pub at: DateTime<Utc>,
    pub reason: String,
}

/// A release as it stands now: its current version plus what happened to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Release {
    pub id: ReleaseId,
    /// Permanent URL name: `/releases/{slug}`.
    pub slug: String,
    pub status: Status,
    /// When it becomes (or became) public.
    pub publish_at: DateTime<Utc>,
    /// When siar actually published it (late if the daemon was down at `publish_at`).
    pub published_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The current version's number.
    pub version: u32,
    /// The current version's fields.
    pub content: ReleaseContent,
    /// The note of every correction, oldest first (index 0 is version 2's).
    #[serde(default)]
    pub correction_notes: Vec<String>,
    pub retraction: Option<Retraction>,
    /// Provenance of version 1.
    pub provenance: Provenance,
}

impl Release {
    /// True once the release may be shown to anyone without the API token.
    pub fn is_public(&self) -> bool {
        self.status != Status::Scheduled
    }
}

/// One line of the audit log: who did what to which release.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    /// "api", "cli", "file:NAME", "upstream:NAME", "scheduler", "worker".
    pub actor: String,
    /// "ingest", "publish", "correct", "retract", "retry_delivery"…
    pub action: String,
    pub release_id: Option<ReleaseId>,
    #[serde(default)]
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_normalise_and_reject_empty() {
        assert_eq!(
            Category::parse("Pemerintahan").unwrap().as_str(),
            "pemerintahan"
        );
        assert_eq!(
            Category::parse(" Olah Raga ").unwrap().as_str(),
            "olah-raga"
        );
        assert!(Category::parse("!!!").is_err());
        let c: Category = serde_json::from_str("\"Sosial Budaya\"").unwrap();
        assert_eq!(c.as_str(), "sosial-budaya");
        assert!(serde_json::from_str::<Category>("\"—\"").is_err());
    }
}
