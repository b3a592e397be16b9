//! The Kalsel plain-text release (DESIGN §5).
//!
//! Reading happens in two steps. [`paragraphs`] turns lines into paragraphs: a blank line
//! always ends one; a single newline ends one too unless the line before reads on (no final
//! punctuation, and the next line starts in lower case or the line before ends with a comma or
//! a joining word), which is how wrapped lines look. [`analyze`] then sorts paragraphs into
//! captions, dateline, body, closing codes and footer, working from both ends: the footer and
//! codes from the end, captions and the dateline from the start. The Markdown reader reuses
//! [`analyze`] on its own blocks.

use std::sync::LazyLock;

use chrono::NaiveDate;
use regex::Regex;
use siar_model::{EventDate, ReleaseContent, Warning};

use crate::{clean, date, ParseContext, ParseError, MAX_TITLE_CHARS};

/// A paragraph and the 1-based line it starts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Para {
    pub text: String,
    pub line: usize,
}

/// What [`analyze`] found.
#[derive(Debug, Default)]
pub(crate) struct Analysis {
    pub captions: Vec<String>,
    pub dateline: Option<String>,
    pub event_date: Option<EventDate>,
    /// Body paragraphs: the index of the input paragraph and its text once the dateline and
    /// codes are cut off.
    pub body: Vec<(usize, String)>,
    pub codes: Vec<String>,
    pub agency: Option<String>,
    pub footer: Option<String>,
    /// The exact text cut from the end of the last body paragraph for the codes.
    pub codes_suffix: Option<String>,
    pub warnings: Vec<Warning>,
}

pub(crate) fn parse(text: &str, ctx: &ParseContext) -> Result<ReleaseContent, ParseError> {
    let mut warnings = Vec::new();
    let stripped;
    let text = match clean::strip_markup(text) {
        Some(s) => {
            warnings.push(clean::markup_warning(None));
            stripped = s;
            stripped.as_str()
        }
        None => text,
    };
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .collect();
    let title_at = lines
        .iter()
        .position(|(_, l)| !l.is_empty())
        .ok_or(ParseError::Empty)?;
    let (title_line, title) = lines[title_at];
    let title_chars = title.chars().count();
    if title_chars > MAX_TITLE_CHARS {
        return Err(ParseError::at(
            title_line,
            format!(
                "the first line, read as the title, is {title_chars} characters long; a title \
                 may have at most {MAX_TITLE_CHARS} (put the title on a line of its own)"
            ),
        ));
    }
    let paras = paragraphs(&lines[title_at + 1..]);
    if paras.is_empty() {
        return Err(ParseError::at(
            title_line,
            "the release has a title but no body text",
        ));
    }
    let a = analyze(&paras, ctx.today);
    warnings.extend(a.warnings);
    Ok(ReleaseContent {
        title: title.to_owned(),
        captions: a.captions,
        dateline: a.dateline,
        event_date: a.event_date,
        body: a.body.into_iter().map(|(_, t)| t).collect(),
        body_html: None,
        closing_codes: a.codes,
        source_agency: a.agency,
        footer: a.footer,
        categories: Vec::new(),
        language: ctx.language.clone(),
        attachments: Vec::new(),
        warnings,
    })
}

const JOINING_WORDS: &[&str] = &[
    "dan", "atau", "yang", "di", "ke", "dari", "untuk", "dengan", "oleh", "pada", "serta", "bahwa",
    "dalam", "para", "sebagai", "bagi", "kepada", "karena", "agar", "the", "of", "and",
];

fn ends_sentence(s: &str) -> bool {
    matches!(
        s.trim_end().chars().last(),
        Some('.' | '!' | '?' | '…' | ':' | ';' | '”' | '"' | '’' | ')' | ']')
    )
}

fn reads_on(prev: &str, next: &str) -> bool {
    if ends_sentence(prev) {
        return false;
    }
    let prev = prev.trim_end();
    if next.chars().next().is_some_and(char::is_lowercase) {
        return true;
    }
    if prev.ends_with([',', '-', '–', '—', '/', '&']) {
        return true;
    }
    let last_word = prev.rsplit(' ').next().unwrap_or("").to_lowercase();
    JOINING_WORDS.contains(&last_word.as_str())
}

/// Groups lines into paragraphs (see the module doc).
pub(crate) fn paragraphs(lines: &[(usize, &str)]) -> Vec<Para> {
    let mut out: Vec<Para> = Vec::new();
    let mut current: Option<Para> = None;
    let mut last_line = "";
    for &(n, line) in lines {
        if line.is_empty() {
            out.extend(current.take());
            continue;
        }
        match current.as_mut() {
            Some(p) if reads_on(last_line, line) => {
                p.text.push(' ');
                p.text.push_str(line);
            }
            Some(_) => {
                out.extend(current.take());
                current = Some(Para {
                    text: line.to_owned(),
                    line: n,
                });
            }
            None => {
                current = Some(Para {
                    text: line.to_owned(),
                    line: n,
                })
            }
        }
        last_line = line;
    }
    out.extend(current);
    out
}

static DATELINE: LazyLock<Regex> = LazyLock::new(|| {
    // PLACE – text, or PLACE, something short – text. PLACE is one to four capitalised words.
    Regex::new(
        r"^(?P<place>\p{Lu}[\p{L}.'’]*(?:\s\p{Lu}[\p{L}.'’]*){0,3})(?:\s*,\s*[^,.–—\-]{1,40}?)?\s*(?P<dash>[–—]|-{1,2})\s+(?P<rest>\S.*)$",
    )
    .expect("static regex")
});

static FOOTER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^(?:sumber|source)\s*:\s*\S.{0,200}$").expect("static regex")
});

static INITIALS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Z0-9]{1,8}$").expect("static regex"));

static AGENCY_CODE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(?P<agency>[A-Z][A-Za-z0-9.]*(?:[ .][A-Za-z0-9.]+){0,3})-(?P<code>[A-Z0-9]{1,8})$",
    )
    .expect("static regex")
});

static AGENCY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Z][A-Za-z0-9.]*(?: [A-Za-z0-9.]+){0,3}$").expect("static regex")
});

/// Splits "(DISPERSIPKALSEL-NRH/RDM/RH)" or "MC Kalsel/ARH" into an agency and codes.
fn classify_codes(inner: &str, parenthesised: bool) -> Option<(Option<String>, Vec<String>)> {
    let parts: Vec<&str> = inner.split('/').map(str::trim).collect();
    if parts.iter().any(|p| p.is_empty()) || parts.len() > 8 {
        return None;
    }
    if parts.len() == 1 && !parenthesised {
        return None;
    }
    let mut agency = None;
    let mut codes = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        if INITIALS.is_match(part) && part.chars().any(|c| c.is_ascii_uppercase()) {
            codes.push((*part).to_owned());
        } else if i == 0 {
            if let Some(c) = AGENCY_CODE.captures(part) {
                agency = Some(c["agency"].to_owned());
                codes.push(c["code"].to_owned());
            } else if parts.len() > 1 && AGENCY.is_match(part) {
                agency = Some((*part).to_owned());
            } else {
                return None;
            }
        } else {
            return None;
        }
    }
    if codes.is_empty() {
        return None;
    }
    Some((agency, codes))
}

struct Codes {
    rest: String,
    suffix: String,
    agency: Option<String>,
    codes: Vec<String>,
}

/// Finds closing codes at the very end of `text`.
fn split_codes(text: &str) -> Option<Codes> {
    let t = text.trim_end();
    if t.ends_with(')') {
        let open = t.rfind('(')?;
        let inner = &t[open + 1..t.len() - 1];
        let rest = t[..open].trim_end();
        // A lone "(ABC)" counts only after a finished sentence or on its own.
        let lone_ok = inner.contains('/') || rest.is_empty() || ends_sentence(rest);
        if lone_ok {
            if let Some((agency, codes)) = classify_codes(inner, true) {
                return Some(Codes {
                    rest: rest.to_owned(),
                    suffix: t[open..].to_owned(),
                    agency,
                    codes,
                });
            }
        }
        return None;
    }
    // Bare codes: what follows the last finished sentence, or the whole paragraph.
    let cut = t
        .char_indices()
        .filter(|&(i, c)| {
            matches!(c, '.' | '!' | '?' | '”' | '"')
                && t[i + c.len_utf8()..].starts_with(char::is_whitespace)
        })
        .map(|(i, c)| i + c.len_utf8())
        .next_back()
        .unwrap_or(0);
    let tail = t[cut..].trim();
    if tail.len() > 60 || !tail.contains('/') {
        return None;
    }
    let (agency, codes) = classify_codes(tail, false)?;
    Some(Codes {
        rest: t[..cut].trim_end().to_owned(),
        suffix: tail.to_owned(),
        agency,
        codes,
    })
}

fn dateline(text: &str) -> Option<(String, String)> {
    let c = DATELINE.captures(text)?;
    let place = c.name("place")?.as_str();
    let dash = c.name("dash")?.as_str();
    let all_caps = !place.chars().any(char::is_lowercase);
    // "Banjarmasin - text" needs the spaced dash; mixed-case place names are otherwise too
    // easy to mistake for a sentence ("Kepala Dinas – ...").
    if !all_caps && dash.starts_with('-') && place.split(' ').count() > 2 {
        return None;
    }
    Some((place.to_owned(), c.name("rest")?.as_str().to_owned()))
}

/// A short line with no final punctuation and no quotation: how captions look.
fn looks_like_caption(text: &str) -> bool {
    let last = text.trim_end().chars().last();
    // Cheapest tests first: most paragraphs end with a full stop or are long.
    if matches!(
        last,
        Some('.' | '!' | '?' | '…' | ':' | ';' | ',' | '”' | '"' | '’')
    ) || text.len() > 180 * 4
    {
        return false;
    }
    let words = text.split_whitespace().count();
    (2..=24).contains(&words)
        && text.chars().count() <= 180
        && !text.contains(['“', '”', '"'])
        && text
            .chars()
            .next()
            .is_some_and(|c| c.is_uppercase() || c.is_ascii_digit())
        && dateline(text).is_none()
}

/// Sorts paragraphs into the parts of a release (see the module doc).
pub(crate) fn analyze(paras: &[Para], today: NaiveDate) -> Analysis {
    let mut a = Analysis::default();
    let mut texts: Vec<(usize, String)> = paras
        .iter()
        .enumerate()
        .map(|(i, p)| (i, p.text.clone()))
        .collect();

    if let Some((_, last)) = texts.last() {
        if FOOTER.is_match(last.trim()) {
            a.footer = Some(last.trim().to_owned());
            texts.pop();
        }
    }
    if let Some((_, last)) = texts.last_mut() {
        if let Some(c) = split_codes(last) {
            *last = c.rest;
            a.codes = c.codes;
            a.agency = c.agency;
            a.codes_suffix = Some(c.suffix);
            if last.is_empty() {
                texts.pop();
            }
        }
    }

    // Captions before the lead paragraph.
    let mut start = 0;
    while start + 1 < texts.len() && looks_like_caption(&texts[start].1) {
        a.captions.push(texts[start].1.clone());
        start += 1;
    }
    let mut body: Vec<(usize, String)> = Vec::new();
    let count = texts.len();
    for (k, (i, text)) in texts.into_iter().enumerate().skip(start) {
        let is_lead = k == start;
        let is_last = k + 1 == count;
        if is_lead {
            match dateline(&text) {
                Some((place, rest)) => {
                    a.dateline = Some(place);
                    body.push((i, rest));
                }
                None => {
                    a.warnings.push(Warning::new(
                        "no_dateline",
                        "the first paragraph does not start with a dateline (`KOTA – `)",
                        Some(paras[i].line),
                    ));
                    body.push((i, text));
                }
            }
        } else if !is_last && looks_like_caption(&text) {
            a.captions.push(text);
        } else {
            body.push((i, text));
        }
    }
    for (i, text) in &body {
        if let Some(d) = date::find_event_date(text, today, paras[*i].line, &mut a.warnings) {
            a.event_date = Some(d);
            break;
        }
    }
    if a.event_date.is_none() {
        a.warnings.push(Warning::new(
            "no_event_date",
            "no date such as `Rabu (1/9)` was found in the text",
            None,
        ));
    }
    a.body = body;
    a
}

#[cfg(test)]
mod tests;
