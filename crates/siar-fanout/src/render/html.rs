//! A release as an HTML fragment (feeds, pages, mails) and as a plain summary.

use std::fmt::Write;

use chrono::{DateTime, Datelike, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};
use siar_model::{Attachment, Release};

use super::FeedContext;

/// Month names in Bahasa Indonesia, January first.
pub(crate) const MONTHS: [&str; 12] = [
    "Januari",
    "Februari",
    "Maret",
    "April",
    "Mei",
    "Juni",
    "Juli",
    "Agustus",
    "September",
    "Oktober",
    "November",
    "Desember",
];

/// The weekday's name in Bahasa Indonesia.
pub(crate) fn weekday(w: Weekday) -> &'static str {
    match w {
        Weekday::Mon => "Senin",
        Weekday::Tue => "Selasa",
        Weekday::Wed => "Rabu",
        Weekday::Thu => "Kamis",
        Weekday::Fri => "Jumat",
        Weekday::Sat => "Sabtu",
        Weekday::Sun => "Minggu",
    }
}

/// "Senin, 30 November 2026 06.00 WITA": how Indonesian newsrooms write a time.
pub fn format_date(t: DateTime<Utc>, tz: Tz) -> String {
    let l = t.with_timezone(&tz);
    format!(
        "{}, {} {} {} {:02}.{:02} {}",
        weekday(l.weekday()),
        l.day(),
        MONTHS[l.month0() as usize],
        l.year(),
        l.hour(),
        l.minute(),
        l.format("%Z")
    )
}

/// The first image attachment, if any: the release's photo.
pub(crate) fn photo(r: &Release) -> Option<&Attachment> {
    r.content
        .attachments
        .iter()
        .find(|a| a.media_type.starts_with("image/"))
}

/// The photo's caption: its own, else the first caption found in the text.
pub(crate) fn photo_caption<'a>(r: &'a Release, a: &'a Attachment) -> Option<&'a str> {
    a.caption
        .as_deref()
        .or(r.content.captions.first().map(String::as_str))
}

/// The lead paragraph with its dateline, as plain text, cut at a word boundary near 320
/// characters: what `description` / `summary` carry.
pub fn summary(r: &Release) -> String {
    if let Some(ret) = &r.retraction {
        return format!("Siaran pers ini telah ditarik. Alasan: {}", ret.reason);
    }
    let lead = r.content.lead();
    let mut s = match &r.content.dateline {
        Some(place) if r.content.body_html.is_none() => format!("{place} – {lead}"),
        _ => lead.to_owned(),
    };
    if s.chars().count() > 320 {
        let cut: String = s.chars().take(320).collect();
        let at = cut.rfind(' ').unwrap_or(cut.len());
        s = format!("{}…", cut[..at].trim_end_matches([',', ';', ':']));
    }
    s
}

/// The release as sanitised HTML with absolute URLs: correction notes first, the photo with
/// its caption, the body with the dateline in bold, the closing codes. A retracted release is
/// only its withdrawal notice.
pub fn release_html(ctx: &FeedContext, r: &Release) -> String {
    let mut h = String::new();
    if let Some(ret) = &r.retraction {
        let _ = write!(
            h,
            "<p><strong>Siaran pers ini telah ditarik</strong> pada {}.</p><p>Alasan: {}</p>",
            text(&format_date(ret.at, ctx.timezone)),
            text(&ret.reason)
        );
        return h;
    }
    for (i, note) in r.correction_notes.iter().enumerate().rev() {
        let _ = write!(
            h,
            "<p><strong>Koreksi</strong> (versi {}): {}</p>",
            i + 2,
            text(note)
        );
    }
    if let Some(a) = photo(r) {
        let caption = photo_caption(r, a);
        let alt = caption.unwrap_or(&r.content.title);
        let _ = write!(
            h,
            "<figure><img src=\"{}\" alt=\"{}\"/>",
            attr(&ctx.absolute(&a.url)),
            attr(alt)
        );
        if caption.is_some() || a.credit.is_some() {
            h.push_str("<figcaption>");
            if let Some(c) = caption {
                h.push_str(&text(c));
            }
            if let Some(credit) = &a.credit {
                let _ = write!(h, " (Foto: {})", text(credit));
            }
            h.push_str("</figcaption>");
        }
        h.push_str("</figure>");
    }
    match &r.content.body_html {
        Some(body) => h.push_str(&absolutise(ctx, body)),
        None => {
            for (i, p) in r.content.body.iter().enumerate() {
                match (&r.content.dateline, i) {
                    (Some(place), 0) => {
                        let _ = write!(h, "<p><strong>{}</strong> – {}</p>", text(place), text(p));
                    }
                    _ => {
                        let _ = write!(h, "<p>{}</p>", text(p));
                    }
                }
            }
        }
    }
    if !r.content.closing_codes.is_empty() {
        let codes = r.content.closing_codes.join("/");
        let codes = match &r.content.source_agency {
            Some(a) => format!("{a}-{codes}"),
            None => codes,
        };
        let _ = write!(h, "<p>({})</p>", text(&codes));
    }
    h
}

/// Re-sanitises stored HTML with every relative link made absolute against the public URL.
fn absolutise(ctx: &FeedContext, html: &str) -> String {
    let base = format!("{}/", ctx.public_url);
    match ammonia::Url::parse(&base) {
        Ok(url) => ammonia::Builder::default()
            .url_relative(ammonia::UrlRelative::RewriteWithBase(url))
            .clean(html)
            .to_string(),
        // A public URL that does not parse has been refused by config validation; drop
        // relative links rather than emit them.
        Err(_) => ammonia::Builder::default()
            .url_relative(ammonia::UrlRelative::Deny)
            .clean(html)
            .to_string(),
    }
}
