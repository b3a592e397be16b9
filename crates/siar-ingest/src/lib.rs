//! Turns outside input into a [`ReleaseContent`]: the one place that knows how a Kalsel
//! newsroom writes a press release.
//!
//! - [`parse`] reads raw bytes in one of three [`Format`]s: the Kalsel plain-text release
//!   (`kalsel`, DESIGN §5), Markdown with YAML front matter, and JSON.
//! - `decode` (private) turns bytes into text: UTF-8 with or without BOM, UTF-16 with a BOM, or
//!   a legacy Windows-1252 file read with a warning. Binary data, empty input and input over
//!   the size limit are errors.
//! - [`feed`] reads upstream RSS/Atom documents into items and items into releases.
//! - [`parse_when`] reads a `publish_at` given as RFC 3339 or as local `YYYY-MM-DD HH:MM`.
//!
//! Every path ends in the same checks: no character that XML 1.0 forbids survives, markup in
//! plain text is removed with a warning, HTML is sanitised, and a release without a title or a
//! body is an error that names the line.
//!
//! ```
//! use siar_ingest::{parse, Format, ParseContext};
//! let ctx = ParseContext::new(chrono::NaiveDate::from_ymd_opt(2026, 11, 29).unwrap());
//! let text = "Judul Siaran\n\nBANJARBARU – Isi berita pada Rabu (1/9).\n\nPenutup. (ASC/RDM)";
//! let parsed = parse(text.as_bytes(), Format::Kalsel, &ctx).unwrap();
//! assert_eq!(parsed.content.dateline.as_deref(), Some("BANJARBARU"));
//! assert_eq!(parsed.content.closing_codes, ["ASC", "RDM"]);
//! assert_eq!(parsed.content.event_date.unwrap().date.to_string(), "2021-09-01");
//! ```

mod clean;
mod date;
mod decode;
pub mod feed;
mod json;
mod kalsel;
mod markdown;

use chrono::{DateTime, NaiveDate, Utc};
use sha2::{Digest, Sha256};
use siar_model::ReleaseContent;

pub use date::{parse_when, WhenError};
pub use siar_model::Warning;

/// The default limit on one input: 1 MiB, far above any real press release.
pub const DEFAULT_MAX_BYTES: usize = 1024 * 1024;

/// The longest title accepted, in characters.
pub const MAX_TITLE_CHARS: usize = 300;

/// The input formats siar reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Kalsel plain text (DESIGN §5).
    Kalsel,
    /// Markdown, optionally with YAML front matter between `---` lines.
    Markdown,
    /// A JSON object (see the `json` module for its fields).
    Json,
}

impl Format {
    /// The format a file name implies: `.txt` (or no extension) is Kalsel text, `.md` and
    /// `.markdown` are Markdown, `.json` is JSON.
    pub fn from_file_name(name: &str) -> Option<Format> {
        let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
        match ext.as_deref() {
            None | Some("txt") | Some("text") => Some(Format::Kalsel),
            Some("md") | Some("markdown") => Some(Format::Markdown),
            Some("json") => Some(Format::Json),
            _ => None,
        }
    }

    /// The format an HTTP `Content-Type` names (parameters such as `charset` are ignored).
    pub fn from_content_type(ct: &str) -> Option<Format> {
        let essence = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "text/plain" => Some(Format::Kalsel),
            "text/markdown" | "text/x-markdown" => Some(Format::Markdown),
            "application/json" => Some(Format::Json),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Kalsel => "kalsel",
            Format::Markdown => "markdown",
            Format::Json => "json",
        }
    }
}

/// What the parser needs to know about the world.
#[derive(Clone, Debug)]
pub struct ParseContext {
    /// The ingest date in the publisher's time zone: years are inferred relative to it.
    pub today: NaiveDate,
    /// The publisher's time zone, for local `publish_at` times.
    pub timezone: chrono_tz::Tz,
    /// Inputs longer than this are refused.
    pub max_bytes: usize,
    /// The language of releases that do not state one.
    pub language: String,
}

impl ParseContext {
    /// A context for Asia/Makassar (WITA), Indonesian, and the default size limit.
    pub fn new(today: NaiveDate) -> Self {
        Self {
            today,
            timezone: chrono_tz::Asia::Makassar,
            max_bytes: DEFAULT_MAX_BYTES,
            language: "id".into(),
        }
    }
}

/// A parsed input: the release fields plus what only the input can say.
#[derive(Clone, Debug, PartialEq)]
pub struct Parsed {
    pub content: ReleaseContent,
    /// When the input asks to be published (front matter or JSON `publish_at`).
    pub publish_at: Option<DateTime<Utc>>,
    /// SHA-256 (hex) of the format name and the normalised text: equal inputs, equal hashes.
    pub content_hash: String,
}

/// Why an input was refused. `line` is 1-based where it applies.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("the input is empty")]
    Empty,
    #[error("the input is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("the input is not text: {reason} at byte offset {offset}")]
    Binary { offset: usize, reason: String },
    #[error("{}{message}", line_prefix(*line))]
    Invalid {
        line: Option<usize>,
        message: String,
    },
}

fn line_prefix(line: Option<usize>) -> String {
    line.map(|l| format!("line {l}: ")).unwrap_or_default()
}

impl ParseError {
    pub(crate) fn at(line: usize, message: impl Into<String>) -> Self {
        ParseError::Invalid {
            line: Some(line),
            message: message.into(),
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        ParseError::Invalid {
            line: None,
            message: message.into(),
        }
    }

    /// A stable machine-readable name, used as the API error code.
    pub fn code(&self) -> &'static str {
        match self {
            ParseError::Empty => "empty_input",
            ParseError::TooLarge { .. } => "input_too_large",
            ParseError::Binary { .. } => "not_text",
            ParseError::Invalid { .. } => "invalid_release",
        }
    }

    pub fn line(&self) -> Option<usize> {
        match self {
            ParseError::Invalid { line, .. } => *line,
            _ => None,
        }
    }
}

/// Parses one input. The result has passed every check; its warnings say what was odd.
pub fn parse(bytes: &[u8], format: Format, ctx: &ParseContext) -> Result<Parsed, ParseError> {
    let decoded = decode::decode(bytes, ctx.max_bytes)?;
    let mut warnings = decoded.warnings;
    let (text, removed) = siar_model::text::strip_forbidden(&decoded.text);
    if removed > 0 {
        warnings.push(Warning::new(
            "forbidden_characters",
            format!("removed {removed} control character(s) that XML 1.0 forbids"),
            None,
        ));
    }
    let (mut content, publish_at) = match format {
        Format::Kalsel => (kalsel::parse(&text, ctx)?, None),
        Format::Markdown => markdown::parse(&text, ctx)?,
        Format::Json => json::parse(&text, ctx)?,
    };
    warnings.append(&mut content.warnings);
    content.warnings = warnings;
    clean::finish(&mut content, ctx)?;
    Ok(Parsed {
        content,
        publish_at,
        content_hash: content_hash(format, &text),
    })
}

/// The hash that makes re-sent input idempotent.
pub fn content_hash(format: Format, text: &str) -> String {
    let mut h = Sha256::new();
    h.update(format.as_str().as_bytes());
    h.update([0]);
    h.update(text.as_bytes());
    hex::encode(h.finalize())
}

/// The fuzzing oracle (the `cargo fuzz` targets under `fuzz/` and the corpus replay test call
/// it): parsing `data` as `format` must not panic; an accepted release has a title, a body and
/// only characters XML 1.0 allows; and parsing is deterministic (the same result, the same
/// content hash). Panics when any of that fails.
#[doc(hidden)]
pub fn fuzz_check(data: &[u8], format: Format) {
    let ctx = ParseContext::new(NaiveDate::from_ymd_opt(2026, 11, 29).unwrap_or_default());
    let first = parse(data, format, &ctx);
    let again = parse(data, format, &ctx);
    match (&first, &again) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a.content_hash, b.content_hash, "the hash is deterministic");
            assert_eq!(a.content.title, b.content.title);
            let c = &a.content;
            assert!(
                !c.title.trim().is_empty(),
                "an accepted release has a title"
            );
            assert!(!c.body.is_empty(), "an accepted release has a body");
            let fields = [&c.title]
                .into_iter()
                .chain(&c.body)
                .chain(&c.captions)
                .chain(&c.closing_codes);
            for f in fields {
                assert!(
                    f.chars().all(siar_model::text::is_xml_char),
                    "a character XML 1.0 forbids in {f:?}"
                );
            }
        }
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "errors are deterministic"),
        _ => panic!("parsing the same bytes twice gave different results"),
    }
}

#[cfg(test)]
mod robustness {
    use super::*;
    use proptest::prelude::*;

    fn ctx() -> ParseContext {
        ParseContext::new(NaiveDate::from_ymd_opt(2026, 11, 29).unwrap())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Whatever the bytes, every parser returns a release or an error, never panics, and
        /// an accepted release has a title, a body and only XML-safe characters.
        #[test]
        fn never_panics_and_output_is_clean(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            for format in [Format::Kalsel, Format::Markdown, Format::Json] {
                if let Ok(p) = parse(&bytes, format, &ctx()) {
                    prop_assert!(!p.content.title.is_empty());
                    let c = &p.content;
                    let fields = [&c.title].into_iter().chain(&c.body).chain(&c.captions).chain(&c.closing_codes);
                    for f in fields {
                        prop_assert!(f.chars().all(siar_model::text::is_xml_char), "{:?}", f);
                    }
                }
            }
        }

        #[test]
        fn text_like_input_never_panics(s in "[A-Za-z \\n()/–.,“”0-9:<>#*-]{0,400}") {
            for format in [Format::Kalsel, Format::Markdown, Format::Json] {
                let _ = parse(s.as_bytes(), format, &ctx());
            }
        }
    }
}
