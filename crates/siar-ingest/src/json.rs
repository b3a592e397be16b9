//! JSON input, and the field set that Markdown front matter shares with it.
//!
//! ```json
//! {
//!   "title": "…", "body": ["paragraf 1", "paragraf 2"] or "paragraf 1\n\nparagraf 2",
//!   "body_html": "<p>…</p>", "captions": ["…"], "dateline": "BANJARBARU",
//!   "event_date": "2021-09-01", "closing_codes": ["ASC", "RDM"], "source_agency": "…",
//!   "footer": "…", "categories": ["pemerintahan"], "language": "id",
//!   "attachments": [{"url": "https://…/foto.jpg", "type": "image/jpeg", "caption": "…", "credit": "…"}],
//!   "publish_at": "2026-12-01 06:00"
//! }
//! ```
//! Instead of `title` and `body`, `text` may carry a whole Kalsel plain-text release; the other
//! fields then override what the text parser found. Unknown fields are an error, so a typo
//! never silently drops data.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use siar_model::{Attachment, Category, EventDate, ReleaseContent, YearSource};

use crate::{date, kalsel, ParseContext, ParseError};

#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self, split_commas: bool) -> Vec<String> {
        match self {
            OneOrMany::One(s) if split_commas => {
                s.split(',').map(|p| p.trim().to_owned()).collect()
            }
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// The fields a JSON release or a front matter block may carry.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct Fields {
    pub title: Option<String>,
    pub text: Option<String>,
    pub body: Option<OneOrMany>,
    pub body_html: Option<String>,
    #[serde(alias = "caption")]
    pub captions: Option<OneOrMany>,
    pub dateline: Option<String>,
    #[serde(alias = "date")]
    pub event_date: Option<NaiveDate>,
    #[serde(alias = "codes")]
    pub closing_codes: Option<OneOrMany>,
    #[serde(alias = "agency")]
    pub source_agency: Option<String>,
    #[serde(alias = "source")]
    pub footer: Option<String>,
    #[serde(alias = "category")]
    pub categories: Option<OneOrMany>,
    pub language: Option<String>,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    pub publish_at: Option<String>,
}

impl Fields {
    /// Lays these fields over `c` and returns the `publish_at` they ask for.
    pub(crate) fn apply(
        self,
        c: &mut ReleaseContent,
        ctx: &ParseContext,
    ) -> Result<Option<DateTime<Utc>>, ParseError> {
        if let Some(t) = self.title {
            c.title = t;
        }
        if let Some(v) = self.captions {
            c.captions = v.into_vec(false);
        }
        if let Some(d) = self.dateline {
            c.dateline = Some(d);
        }
        if let Some(d) = self.event_date {
            c.event_date = Some(EventDate {
                date: d,
                time: None,
                zone: None,
                raw: d.to_string(),
                year_source: YearSource::Explicit,
            });
        }
        if let Some(v) = self.closing_codes {
            c.closing_codes = v.into_vec(false);
        }
        if let Some(a) = self.source_agency {
            c.source_agency = Some(a);
        }
        if let Some(f) = self.footer {
            c.footer = Some(f);
        }
        if let Some(v) = self.categories {
            c.categories = v
                .into_vec(true)
                .iter()
                .filter(|s| !s.trim().is_empty())
                .map(|s| Category::parse(s))
                .collect::<Result<_, _>>()
                .map_err(|e| ParseError::invalid(format!("categories: {e}")))?;
        }
        if let Some(l) = self.language {
            c.language = l;
        }
        if !self.attachments.is_empty() {
            c.attachments = self.attachments;
        }
        if let Some(h) = self.body_html {
            c.body_html = Some(h);
        }
        self.publish_at
            .map(|w| date::parse_when(&w, ctx.timezone))
            .transpose()
            .map_err(|e| ParseError::invalid(format!("publish_at: {e}")))
    }
}

pub(crate) fn parse(
    text: &str,
    ctx: &ParseContext,
) -> Result<(ReleaseContent, Option<DateTime<Utc>>), ParseError> {
    let mut fields: Fields = serde_json::from_str(text).map_err(|e| ParseError::Invalid {
        line: Some(e.line()).filter(|&l| l > 0),
        message: format!("invalid JSON release: {e}"),
    })?;
    let mut content = match fields.text.take() {
        Some(t) => {
            if fields.body.is_some() {
                return Err(ParseError::invalid(
                    "give either `text` (a whole release) or `body`, not both",
                ));
            }
            kalsel::parse(&t, ctx).map_err(|e| ParseError::invalid(format!("text: {e}")))?
        }
        None => {
            let body = match fields.body.take() {
                Some(OneOrMany::Many(v)) => v,
                Some(OneOrMany::One(s)) => {
                    let lines: Vec<(usize, &str)> = s
                        .lines()
                        .enumerate()
                        .map(|(i, l)| (i + 1, l.trim()))
                        .collect();
                    kalsel::paragraphs(&lines)
                        .into_iter()
                        .map(|p| p.text)
                        .collect()
                }
                None => Vec::new(),
            };
            ReleaseContent {
                body,
                language: ctx.language.clone(),
                ..ReleaseContent::default()
            }
        }
    };
    let publish_at = fields.apply(&mut content, ctx)?;
    Ok((content, publish_at))
}

#[cfg(test)]
mod tests {
    use crate::{parse, Format, ParseContext};

    fn ctx() -> ParseContext {
        ParseContext::new(chrono::NaiveDate::from_ymd_opt(2026, 11, 29).unwrap())
    }

    #[test]
    fn structured_json() {
        let j = r#"{"title": "Judul\nBaris Dua", "body": ["Satu.", "Dua <script>x()</script>."],
                    "dateline": "BANJARBARU", "event_date": "2021-09-01", "codes": ["ASC"],
                    "categories": "pemerintahan, Sosial Budaya", "publish_at": "2026-12-01T06:00:00+08:00"}"#;
        let p = parse(j.as_bytes(), Format::Json, &ctx()).unwrap();
        let c = &p.content;
        assert_eq!(c.title, "Judul Baris Dua");
        assert_eq!(c.body, ["Satu.", "Dua ."]);
        assert_eq!(c.categories.len(), 2);
        assert_eq!(
            c.event_date.as_ref().unwrap().date.to_string(),
            "2021-09-01"
        );
        assert!(c.warnings.iter().any(|w| w.code == "title_whitespace"));
        assert!(c.warnings.iter().any(|w| w.code == "markup_removed"));
        assert_eq!(
            p.publish_at.unwrap().to_rfc3339(),
            "2026-11-30T22:00:00+00:00"
        );
    }

    #[test]
    fn json_with_kalsel_text_and_overrides() {
        let j = serde_json::json!({
            "text": "Judul\n\nBANJARBARU – Isi, Rabu (1/9).\n\nAkhir. (ASC/RH)",
            "categories": ["pemilu"]
        });
        let c = parse(j.to_string().as_bytes(), Format::Json, &ctx())
            .unwrap()
            .content;
        assert_eq!(c.dateline.as_deref(), Some("BANJARBARU"));
        assert_eq!(c.closing_codes, ["ASC", "RH"]);
        assert_eq!(c.categories[0].as_str(), "pemilu");
    }

    #[test]
    fn json_errors_name_the_problem() {
        let e = |s: &str| {
            parse(s.as_bytes(), Format::Json, &ctx())
                .unwrap_err()
                .to_string()
        };
        assert!(e("{\"title\": \"A\",\n \"bdy\": \"x\"}").contains("line 2"));
        assert!(e("{\"title\": \"A\",\n \"bdy\": \"x\"}").contains("bdy"));
        assert!(e("{\"title\": \"A\"}").contains("no body"));
        assert!(e("{\"body\": \"x\"}").contains("no title"));
        assert!(e("[1,2]").contains("invalid JSON release"));
        assert!(
            e("{\"title\": \"A\", \"body\": \"x\", \"publish_at\": \"kapan-kapan\"}")
                .contains("publish_at")
        );
        assert!(
            e("{\"title\": \"A\", \"body\": \"x\", \"language\": \"bahasa indonesia\"}")
                .contains("language")
        );
    }
}
