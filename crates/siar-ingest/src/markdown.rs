//! Markdown with optional YAML front matter.
//!
//! ```text
//! ---
//! title: Pemprov Kalsel Gelar Rakor
//! categories: [pemerintahan, ekonomi]
//! publish_at: 2026-12-01 06:00
//! attachments:
//!   - url: https://example.go.id/foto.jpg
//!     type: image/jpeg
//!     caption: Suasana rapat
//!     credit: MC Kalsel
//! ---
//! BANJARBARU – Isi siaran …
//! ```
//! The front matter takes the same fields as JSON input. Without a `title` there, a leading
//! `# Heading` is the title. The body's blocks go through the same analysis as Kalsel text
//! (captions, dateline, date, closing codes, footer); the HTML kept is the Markdown rendering
//! of the body blocks, sanitised.

use chrono::{DateTime, Utc};
use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};
use siar_model::ReleaseContent;

use crate::json::Fields;
use crate::kalsel::{analyze, Para};
use crate::{ParseContext, ParseError, Warning};

fn options() -> Options {
    Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH
}

/// Splits `---` front matter from the body. Returns (front matter, body, body's first line).
fn split_front_matter(text: &str) -> Result<(Option<&str>, &str, usize), ParseError> {
    let Some(rest) = text.strip_prefix("---\n") else {
        return Ok((None, text, 1));
    };
    let mut offset = 0;
    for (i, line) in rest.split_inclusive('\n').enumerate() {
        if matches!(line.trim_end(), "---" | "...") {
            let fm = &rest[..offset];
            let body = &rest[offset + line.len()..];
            return Ok((Some(fm), body, i + 3));
        }
        offset += line.len();
    }
    Err(ParseError::at(
        1,
        "the front matter that starts here has no closing `---` line",
    ))
}

/// Plain text of one Markdown block: inline markup and raw HTML dropped, breaks as spaces.
/// Also says whether the block had any markup worth keeping as HTML.
fn plain(block: &str) -> (String, bool) {
    let mut out = String::new();
    let mut markup = false;
    for ev in Parser::new_ext(block, options()) {
        match ev {
            Event::Text(t) | Event::Code(t) => out.push_str(&t),
            Event::SoftBreak | Event::HardBreak => out.push(' '),
            Event::Start(Tag::Paragraph) | Event::End(TagEnd::Paragraph) => {}
            Event::Start(Tag::Item) => {
                markup = true;
                if !out.is_empty() {
                    out.push(' ');
                }
            }
            Event::Html(_) | Event::InlineHtml(_) => markup = true,
            _ => markup = true,
        }
    }
    (out.trim().to_owned(), markup)
}

fn heading_title(block: &str) -> Option<String> {
    let line = block.trim();
    if line.contains('\n') {
        return None;
    }
    let t = line.strip_prefix("# ")?;
    Some(plain(t).0)
}

pub(crate) fn parse(
    text: &str,
    ctx: &ParseContext,
) -> Result<(ReleaseContent, Option<DateTime<Utc>>), ParseError> {
    let (fm, body, first_line) = split_front_matter(text)?;
    let fields: Fields = match fm {
        Some(fm) if !fm.trim().is_empty() => {
            serde_yaml_ng::from_str(fm).map_err(|e| ParseError::Invalid {
                line: e.location().map(|l| l.line() + 1),
                message: format!("front matter: {e}"),
            })?
        }
        _ => Fields::default(),
    };
    if fields.text.is_some() || fields.body.is_some() || fields.body_html.is_some() {
        return Err(ParseError::at(
            1,
            "front matter may not carry `text`, `body` or `body_html`: write the body below it",
        ));
    }

    // Blocks separated by blank lines, each with its first line number.
    let mut blocks: Vec<(usize, String)> = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, line) in body.lines().enumerate() {
        if line.trim().is_empty() {
            blocks.extend(current.take());
        } else if let Some((_, b)) = current.as_mut() {
            b.push('\n');
            b.push_str(line);
        } else {
            current = Some((first_line + i, line.to_owned()));
        }
    }
    blocks.extend(current);

    let mut title = fields.title.clone();
    if let Some(h) = blocks.first().and_then(|(_, b)| heading_title(b)) {
        if title.is_none() || title.as_deref().map(str::trim) == Some(h.as_str()) {
            title = Some(h);
            blocks.remove(0);
        }
    }
    let Some(title) = title else {
        return Err(ParseError::at(
            1,
            "no title: give `title:` in the front matter or start the text with `# Title`",
        ));
    };
    if blocks.is_empty() {
        return Err(ParseError::at(
            first_line,
            "the release has a title but no body text",
        ));
    }

    let mut any_markup = false;
    let paras: Vec<Para> = blocks
        .iter()
        .map(|(line, raw)| {
            let (text, markup) = plain(raw);
            any_markup |= markup;
            Para { text, line: *line }
        })
        .collect();
    let a = analyze(&paras, ctx.today);
    let body_html = any_markup.then(|| {
        let last = a.body.last().map(|(i, _)| *i);
        let md: Vec<String> = a
            .body
            .iter()
            .map(|(i, _)| {
                let raw = blocks[*i].1.trim_end();
                match (&a.codes_suffix, Some(*i) == last) {
                    (Some(suffix), true) => {
                        raw.strip_suffix(suffix.as_str()).unwrap_or(raw).to_owned()
                    }
                    _ => raw.to_owned(),
                }
            })
            .collect();
        let mut html = String::new();
        pulldown_cmark::html::push_html(&mut html, Parser::new_ext(&md.join("\n\n"), options()));
        html
    });
    let mut warnings: Vec<Warning> = a.warnings;
    if fields.dateline.is_some() {
        warnings.retain(|w| w.code != "no_dateline");
    }
    if fields.event_date.is_some() {
        warnings.retain(|w| w.code != "no_event_date");
    }
    let mut content = ReleaseContent {
        title,
        captions: a.captions,
        dateline: a.dateline,
        event_date: a.event_date,
        body: a.body.into_iter().map(|(_, t)| t).collect(),
        body_html,
        closing_codes: a.codes,
        source_agency: a.agency,
        footer: a.footer,
        categories: Vec::new(),
        language: ctx.language.clone(),
        attachments: Vec::new(),
        warnings,
    };
    let publish_at = fields.apply(&mut content, ctx)?;
    Ok((content, publish_at))
}

#[cfg(test)]
mod tests {
    use crate::{parse, Format, ParseContext, ParseError};

    fn ctx() -> ParseContext {
        ParseContext::new(chrono::NaiveDate::from_ymd_opt(2026, 11, 29).unwrap())
    }

    #[test]
    fn front_matter_and_body() {
        let md = "---\ntitle: Pemprov Gelar Rakor\ncategories: [Pemerintahan, ekonomi]\npublish_at: 2026-12-01 06:00\n\
                  attachments:\n  - url: https://example.go.id/foto.jpg\n    type: image/jpeg\n    caption: Suasana rapat\n    credit: MC Kalsel\n---\n\
                  BANJARBARU – Rapat **penting** digelar, Rabu (1/9).\n\nSuasana rapat koordinasi\n\nRapat ditutup sore hari. (ASC/RH)\n";
        let p = parse(md.as_bytes(), Format::Markdown, &ctx()).unwrap();
        let c = &p.content;
        assert_eq!(c.title, "Pemprov Gelar Rakor");
        assert_eq!(
            c.categories.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
            ["pemerintahan", "ekonomi"]
        );
        assert_eq!(
            p.publish_at.unwrap().to_rfc3339(),
            "2026-11-30T22:00:00+00:00"
        );
        assert_eq!(c.attachments[0].caption.as_deref(), Some("Suasana rapat"));
        assert_eq!(c.attachments[0].credit.as_deref(), Some("MC Kalsel"));
        assert_eq!(c.dateline.as_deref(), Some("BANJARBARU"));
        assert_eq!(
            c.body,
            [
                "Rapat penting digelar, Rabu (1/9).",
                "Rapat ditutup sore hari."
            ]
        );
        assert_eq!(c.captions, ["Suasana rapat koordinasi"]);
        assert_eq!(c.closing_codes, ["ASC", "RH"]);
        let html = c.body_html.as_deref().unwrap();
        assert!(html.contains("<strong>penting</strong>"), "{html}");
        assert!(
            !html.contains("ASC/RH") && !html.contains("Suasana rapat koordinasi"),
            "{html}"
        );
    }

    #[test]
    fn heading_is_the_title_and_raw_html_is_sanitised() {
        let md = "# Judul dari Heading\n\nBANJARMASIN – Isi <img src=x onerror=alert(1)> [tautan](https://kalselprov.go.id).\n";
        let c = parse(md.as_bytes(), Format::Markdown, &ctx())
            .unwrap()
            .content;
        assert_eq!(c.title, "Judul dari Heading");
        let html = c.body_html.unwrap();
        assert!(!html.contains("onerror"), "{html}");
        assert!(html.contains("href=\"https://kalselprov.go.id\""), "{html}");
    }

    #[test]
    fn front_matter_errors_name_the_line_and_field() {
        let bad_key = "---\ntitle: A\ncategroies: [x]\n---\nIsi.\n";
        let e = parse(bad_key.as_bytes(), Format::Markdown, &ctx()).unwrap_err();
        assert!(e.to_string().contains("categroies"), "{e}");
        assert_eq!(e.line(), Some(3));
        let unclosed = "---\ntitle: A\nIsi.\n";
        assert!(parse(unclosed.as_bytes(), Format::Markdown, &ctx())
            .unwrap_err()
            .to_string()
            .contains("closing"));
        let no_title = "Isi saja tanpa judul.\n";
        assert!(matches!(
            parse(no_title.as_bytes(), Format::Markdown, &ctx()),
            Err(ParseError::Invalid { .. })
        ));
        let bad_url = "---\ntitle: A\nattachments:\n  - url: javascript:alert(1)\n    type: image/png\n---\nIsi.\n";
        let e = parse(bad_url.as_bytes(), Format::Markdown, &ctx()).unwrap_err();
        assert!(e.to_string().contains("attachments[0]"), "{e}");
    }
}
