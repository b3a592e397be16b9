//! The checks every parsed release goes through, whatever its format.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use regex::Regex;
use siar_model::{text, Attachment, ReleaseContent, Warning};

use crate::{ParseContext, ParseError, MAX_TITLE_CHARS};

static TAG: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)</?[a-z][a-z0-9-]*(?:\s[^<>]*)?/?>|<!--").expect("static regex")
});

static LANGUAGE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*$").expect("static regex"));

static MEDIA_TYPE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z]+/[a-z0-9][a-z0-9.+\-]*$").expect("static regex"));

/// Plain text with the markup taken out (elements such as `<script>` with their content),
/// or `None` when the text had no markup.
pub(crate) fn strip_markup(s: &str) -> Option<String> {
    if !TAG.is_match(s) {
        return None;
    }
    let cleaned = ammonia::Builder::empty().clean(s).to_string();
    Some(html_escape::decode_html_entities(&cleaned).into_owned())
}

pub(crate) fn markup_warning(line: Option<usize>) -> Warning {
    Warning::new(
        "markup_removed",
        "the text contained HTML markup; tags (and any script) were removed and the words kept",
        line,
    )
}

/// Sanitised HTML: only safe elements and attributes, links made `rel="noopener noreferrer"`.
pub(crate) fn sanitise_html(html: &str) -> String {
    ammonia::clean(html)
}

struct Cleaner {
    forbidden: usize,
    markup: bool,
}

impl Cleaner {
    /// One plain-text field: forbidden characters and markup out, whitespace collapsed.
    fn field(&mut self, s: &str) -> String {
        let (s, n) = text::strip_forbidden(s);
        self.forbidden += n;
        let s = match strip_markup(&s) {
            Some(plain) => {
                self.markup = true;
                plain
            }
            None => s,
        };
        text::collapse_whitespace(&s)
    }

    fn opt(&mut self, s: &Option<String>) -> Option<String> {
        s.as_deref()
            .map(|s| self.field(s))
            .filter(|s| !s.is_empty())
    }
}

/// Brings a parsed release to the shape every later stage relies on, or says why it cannot.
pub(crate) fn finish(c: &mut ReleaseContent, ctx: &ParseContext) -> Result<(), ParseError> {
    let mut k = Cleaner {
        forbidden: 0,
        markup: false,
    };
    let had_breaks = c.title.trim().contains(['\n', '\r', '\t']);
    c.title = k.field(&c.title);
    if had_breaks {
        c.warnings.push(Warning::new(
            "title_whitespace",
            "the title contained line breaks or tabs; they were replaced by spaces",
            None,
        ));
    }
    if c.title.is_empty() {
        return Err(ParseError::invalid("the release has no title"));
    }
    let n = c.title.chars().count();
    if n > MAX_TITLE_CHARS {
        return Err(ParseError::invalid(format!(
            "the title is {n} characters long; at most {MAX_TITLE_CHARS} are allowed"
        )));
    }
    c.captions = c
        .captions
        .iter()
        .map(|s| k.field(s))
        .filter(|s| !s.is_empty())
        .collect();
    c.dateline = k.opt(&c.dateline);
    c.body = c
        .body
        .iter()
        .map(|s| k.field(s))
        .filter(|s| !s.is_empty())
        .collect();
    c.closing_codes = c
        .closing_codes
        .iter()
        .map(|s| k.field(s))
        .filter(|s| !s.is_empty())
        .collect();
    c.source_agency = k.opt(&c.source_agency);
    c.footer = k.opt(&c.footer);
    if let Some(html) = &c.body_html {
        let (html, n) = text::strip_forbidden(html);
        k.forbidden += n;
        let clean = sanitise_html(&html);
        c.body_html = Some(clean).filter(|h| !h.trim().is_empty());
    }
    // Text a reader can see: an HTML body of empty elements (say, an empty code block) is
    // no body (found by fuzzing the front matter parser).
    if c.body.is_empty() {
        return Err(ParseError::invalid(
            "the release has a title but no body text",
        ));
    }
    let mut seen = BTreeSet::new();
    c.categories.retain(|cat| seen.insert(cat.clone()));
    c.language = c.language.trim().to_owned();
    if c.language.is_empty() {
        c.language = ctx.language.clone();
    }
    if !LANGUAGE.is_match(&c.language) {
        return Err(ParseError::invalid(format!(
            "language `{}` is not a language tag such as `id` or `en`",
            c.language.chars().take(40).collect::<String>()
        )));
    }
    let attachments = std::mem::take(&mut c.attachments);
    for (i, a) in attachments.into_iter().enumerate() {
        let a = Attachment {
            url: a.url.trim().to_owned(),
            media_type: a.media_type.trim().to_ascii_lowercase(),
            caption: k.opt(&a.caption),
            credit: k.opt(&a.credit),
            length: a.length,
        };
        check_attachment(&a).map_err(|m| ParseError::invalid(format!("attachments[{i}]: {m}")))?;
        c.attachments.push(a);
    }
    if k.forbidden > 0 {
        c.warnings.push(Warning::new(
            "forbidden_characters",
            format!(
                "removed {} control character(s) that XML 1.0 forbids",
                k.forbidden
            ),
            None,
        ));
    }
    if k.markup && !c.warnings.iter().any(|w| w.code == "markup_removed") {
        c.warnings.push(markup_warning(None));
    }
    Ok(())
}

fn check_attachment(a: &Attachment) -> Result<(), String> {
    let lower = a.url.to_ascii_lowercase();
    let absolute = (lower.starts_with("https://") || lower.starts_with("http://"))
        && a.url.len() > 8
        && !a.url.contains(char::is_whitespace);
    let media = a.url.starts_with("/media/") && !a.url.contains("..");
    // `upload:NAME` names a file sent in the same multipart request; the API resolves it.
    let upload = a.url.starts_with("upload:") && a.url.len() > "upload:".len();
    if !absolute && !media && !upload {
        return Err(format!(
            "url `{}` must be an absolute http(s) URL, a /media/ path, or upload:FILE for a file sent with the release",
            a.url.chars().take(80).collect::<String>()
        ));
    }
    if !MEDIA_TYPE.is_match(&a.media_type) {
        return Err(format!(
            "type `{}` is not a media type such as image/jpeg",
            a.media_type.chars().take(40).collect::<String>()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_removed_with_script_content() {
        let s = strip_markup("Halo <b>dunia</b><script>alert('x')</script> & a < b").unwrap();
        assert_eq!(s, "Halo dunia & a < b");
        assert_eq!(strip_markup("a < b & c > d"), None);
    }

    #[test]
    fn html_is_sanitised() {
        let h = sanitise_html(
            "<p onclick=\"x()\">Hi <a href=\"https://a.id\">a</a></p><script>bad()</script>",
        );
        assert!(!h.contains("onclick") && !h.contains("script"), "{h}");
        assert!(h.contains("rel=\"noopener noreferrer\""), "{h}");
    }
}
