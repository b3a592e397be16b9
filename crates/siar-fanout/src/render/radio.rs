//! The radio script: a release as plain Indonesian text an announcer can read on air.
//!
//! A title line; the spoken dateline and date ("Banjarbaru, Rabu 1 September."); then the
//! body with everything a listener cannot hear removed or said in words: no parentheses,
//! closing codes, captions or URLs; `Rp7 miliar` becomes "7 miliar rupiah", `Rp25.000` "25
//! ribu rupiah", `15%` "15 persen", `pukul 10.00 Wita` "pukul 10 Wita", `1.500.000` "1,5
//! juta", a date `(1/9)` "1 September". The script ends at a sentence boundary within the
//! word budget (150 words, about 60 seconds at 150 words a minute); its length is stated.

use std::sync::LazyLock;

use chrono::{Datelike, NaiveDate};
use regex::{Captures, Regex};
use serde::Serialize;
use siar_model::Release;

use super::html::{weekday, MONTHS};
use super::FeedContext;

/// Words an announcer reads in a minute.
pub const WORDS_PER_MINUTE: usize = 150;

/// A script ready for air.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RadioScript {
    pub title: String,
    /// The text to read: title line, dateline line, body paragraphs; blank lines between.
    pub script: String,
    pub words: usize,
    /// Estimated reading time at [`WORDS_PER_MINUTE`].
    pub seconds: usize,
    /// True when the body was cut to fit the word budget.
    pub trimmed: bool,
    /// For a correction: what changed (for the editor, not for air).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correction: Option<String>,
    /// True for a retracted release: the script says it must not be broadcast.
    pub withdrawn: bool,
}

fn re(pattern: &str) -> Regex {
    // The patterns are constants of this module, covered by its tests.
    Regex::new(pattern).unwrap_or_else(|e| panic!("radio pattern {pattern}: {e}"))
}

static DATE_IN_PARENS: LazyLock<Regex> =
    LazyLock::new(|| re(r"\(\s*(\d{1,2})\s*/\s*(\d{1,2})(?:\s*/\s*\d{2,4})?\s*\)"));
static PARENS: LazyLock<Regex> = LazyLock::new(|| re(r"\s*\([^()]*\)"));
static URL: LazyLock<Regex> = LazyLock::new(|| {
    // A URL never ends with the sentence's punctuation.
    re(
        r"(?i)\b(?:https?://\S*[^\s.,;:!?]|www\.\S*[^\s.,;:!?]|[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:go\.id|co\.id|ac\.id|or\.id|com|id|net|org)\b(?:/\S*[^\s.,;:!?])?)",
    )
});
static RUPIAH_SCALED: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)\bRp\.?\s?(\d+(?:[.,]\d+)?)\s*(ribu|juta|miliar|milyar|triliun)\b"));
static RUPIAH: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)\bRp\.?\s?(\d{1,3}(?:\.\d{3})+|\d+)(?:,-|,00)?"));
static BIG_NUMBER: LazyLock<Regex> = LazyLock::new(|| re(r"\b\d{1,3}(?:\.\d{3})+\b"));
static PERCENT: LazyLock<Regex> = LazyLock::new(|| re(r"(\d+(?:,\d+)?)\s?%"));
static CLOCK: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)\b(pukul|jam)\s+(\d{1,2})[.:](\d{2})\b"));
static RANGE: LazyLock<Regex> = LazyLock::new(|| re(r"\b(\d+)\s*[-–—]\s*(\d+)\b"));
/// Abbreviations an announcer says in full (and whose periods must not end a sentence).
static ABBREVIATIONS: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    [
        (r"\bPlt\.?(\s)", "Pelaksana Tugas$1"),
        (r"\bPj\.?(\s)", "Penjabat$1"),
        (r"\bKab\.(\s)", "Kabupaten$1"),
        (r"\bKec\.(\s)", "Kecamatan$1"),
        (r"\bJl\.(\s)", "Jalan$1"),
        (r"\bNo\.(\s)", "nomor$1"),
        (r"\bdll\.", "dan lain-lain."),
        (r"\bdsb\.", "dan sebagainya."),
        (r"\bkm\b", "kilometer"),
        (r"\bkg\b", "kilogram"),
        (r"\bha\b", "hektare"),
    ]
    .into_iter()
    .map(|(p, to)| (re(p), to))
    .collect()
});
static SPACES: LazyLock<Regex> = LazyLock::new(|| re(r"\s+"));
static SPACE_BEFORE_PUNCT: LazyLock<Regex> = LazyLock::new(|| re(r"\s+([,.;:!?])"));
static SENTENCE_END: LazyLock<Regex> = LazyLock::new(|| re(r#"[.!?]["”’]?(\s+|$)"#));

/// `digits` with `.` thousands separators as the amount an announcer says: "1.500.000" →
/// "1,5 juta", "25.000" → "25 ribu", "2.750" → "2.750" (kept: "dua ribu tujuh ratus lima
/// puluh" is read from the digits).
fn spoken_amount(digits: &str) -> String {
    let n: u64 = match digits.replace('.', "").parse() {
        Ok(n) => n,
        Err(_) => return digits.to_owned(),
    };
    let scales = [
        (1_000_000_000_000u64, "triliun"),
        (1_000_000_000, "miliar"),
        (1_000_000, "juta"),
        (1_000, "ribu"),
    ];
    for (unit, name) in scales {
        if n >= unit {
            // Exact to one decimal, or left as digits.
            let tenths = n * 10 / unit;
            if tenths * unit == n * 10 {
                let (whole, frac) = (tenths / 10, tenths % 10);
                return if frac == 0 {
                    format!("{whole} {name}")
                } else {
                    format!("{whole},{frac} {name}")
                };
            }
            return digits.to_owned();
        }
    }
    digits.to_owned()
}

/// One paragraph said aloud.
pub fn speakable(text: &str) -> String {
    let mut s = text.replace(['“', '”', '"', '‘', '’'], "");
    s = DATE_IN_PARENS
        .replace_all(&s, |c: &Captures| {
            let day: u32 = c[1].parse().unwrap_or(0);
            let month: usize = c[2].parse().unwrap_or(0);
            match MONTHS.get(month.wrapping_sub(1)) {
                Some(m) if (1..=31).contains(&day) => format!("{day} {m}"),
                _ => String::new(),
            }
        })
        .into_owned();
    s = PARENS.replace_all(&s, "").into_owned();
    for (pattern, to) in ABBREVIATIONS.iter() {
        s = pattern.replace_all(&s, *to).into_owned();
    }
    s = URL.replace_all(&s, "").into_owned();
    s = RUPIAH_SCALED
        .replace_all(&s, |c: &Captures| {
            format!(
                "{} {} rupiah",
                &c[1],
                c[2].to_lowercase().replace("milyar", "miliar")
            )
        })
        .into_owned();
    s = RUPIAH
        .replace_all(&s, |c: &Captures| {
            format!("{} rupiah", spoken_amount(&c[1]))
        })
        .into_owned();
    s = PERCENT.replace_all(&s, "$1 persen").into_owned();
    s = CLOCK
        .replace_all(&s, |c: &Captures| {
            let hour = c[2].trim_start_matches('0');
            let hour = if hour.is_empty() { "0" } else { hour };
            if &c[3] == "00" {
                format!("{} {hour}", &c[1])
            } else {
                format!(
                    "{} {hour} lewat {} menit",
                    &c[1],
                    c[3].trim_start_matches('0')
                )
            }
        })
        .into_owned();
    s = BIG_NUMBER
        .replace_all(&s, |c: &Captures| spoken_amount(&c[0]))
        .into_owned();
    s = RANGE.replace_all(&s, "$1 sampai $2").into_owned();
    s = s.replace(" & ", " dan ").replace('/', " ");
    s = SPACES.replace_all(&s, " ").into_owned();
    s = SPACE_BEFORE_PUNCT.replace_all(&s, "$1").into_owned();
    s.replace(",,", ",").replace(",.", ".").trim().to_owned()
}

/// "BANJARBARU" → "Banjarbaru", "TANAH LAUT" → "Tanah Laut".
fn place_name(s: &str) -> String {
    s.split_whitespace()
        .map(|w| {
            let lower = w.to_lowercase();
            let mut cs = lower.chars();
            match cs.next() {
                Some(f) => f.to_uppercase().chain(cs).collect(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn spoken_date(d: NaiveDate) -> String {
    format!(
        "{} {} {}",
        weekday(d.weekday()),
        d.day(),
        MONTHS[d.month0() as usize]
    )
}

/// Sentences of `text`, each with its end punctuation.
fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for m in SENTENCE_END.find_iter(text) {
        let end = m.end();
        let s = text[start..end].trim();
        if !s.is_empty() {
            out.push(s);
        }
        start = end;
    }
    let rest = text[start..].trim();
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

fn words(s: &str) -> usize {
    s.split_whitespace().count()
}

/// The radio script of `r` within `budget` words.
pub fn radio_script(ctx: &FeedContext, r: &Release, budget: usize) -> RadioScript {
    let c = &r.content;
    let title = speakable(&c.title);
    let seconds = |w: usize| (w * 60).div_ceil(WORDS_PER_MINUTE);
    if let Some(ret) = &r.retraction {
        let script = format!(
            "PERHATIAN: siaran berjudul {title} telah ditarik dan tidak boleh disiarkan.\n\nAlasan: {}",
            speakable(&ret.reason)
        );
        let w = words(&script);
        return RadioScript {
            title,
            script,
            words: w,
            seconds: seconds(w),
            trimmed: false,
            correction: None,
            withdrawn: true,
        };
    }
    let date = c
        .event_date
        .as_ref()
        .map(|e| e.date)
        .unwrap_or_else(|| r.publish_at.with_timezone(&ctx.timezone).date_naive());
    let dateline = match &c.dateline {
        Some(place) => format!("{}, {}.", place_name(place), spoken_date(date)),
        None => format!("{}.", spoken_date(date)),
    };
    let mut used = words(&title) + words(&dateline);
    let mut paragraphs: Vec<String> = Vec::new();
    let mut trimmed = false;
    'body: for p in &c.body {
        let spoken = speakable(p);
        let mut kept: Vec<&str> = Vec::new();
        for sentence in sentences(&spoken) {
            let w = words(sentence);
            // The first sentence always goes in, whatever its length.
            if used + w > budget && !(paragraphs.is_empty() && kept.is_empty()) {
                trimmed = true;
                if !kept.is_empty() {
                    paragraphs.push(kept.join(" "));
                }
                break 'body;
            }
            used += w;
            kept.push(sentence);
        }
        if !kept.is_empty() {
            paragraphs.push(kept.join(" "));
        }
    }
    let title_line = if title.ends_with(['.', '!', '?']) {
        title.clone()
    } else {
        format!("{title}.")
    };
    let mut parts = vec![title_line, dateline];
    parts.extend(paragraphs);
    let script = parts.join("\n\n");
    let w = words(&script);
    RadioScript {
        title,
        script,
        words: w,
        seconds: seconds(w),
        trimmed,
        correction: (r.version > 1)
            .then(|| r.correction_notes.last().cloned())
            .flatten(),
        withdrawn: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real sentences from Kalsel releases, and what the announcer gets.
    #[test]
    fn speakable_rules() {
        let table = [
            // Parenthesised acronyms go; a date in parentheses is said.
            (
                "Komisi Pemilihan Umum (KPU) Kalimantan Selatan mendatangi Dinas Komunikasi dan Informatika Provinsi Kalimantan Selatan, Rabu (1/9).",
                "Komisi Pemilihan Umum Kalimantan Selatan mendatangi Dinas Komunikasi dan Informatika Provinsi Kalimantan Selatan, Rabu 1 September.",
            ),
            (
                "Musrefinah Lediya pada Kamis (15/2/2024) mengatakan, pihaknya siap.",
                "Musrefinah Lediya pada Kamis 15 Februari mengatakan, pihaknya siap.",
            ),
            (
                "dilaksanakan di Gedung Olahraga (GOR) Rudy Resnawan Banjarbaru 1 – 5 Desember 2021.",
                "dilaksanakan di Gedung Olahraga Rudy Resnawan Banjarbaru 1 sampai 5 Desember 2021.",
            ),
            (
                "“Kita akan mendukung, baik dari media kita (media center) maupun Radio Abdi Persada,” terangnya.",
                "Kita akan mendukung, baik dari media kita maupun Radio Abdi Persada, terangnya.",
            ),
            // Money, amounts, percentages.
            (
                "Pemprov Kalsel mengalokasikan anggaran Rp7 miliar untuk perbaikan jalan.",
                "Pemprov Kalsel mengalokasikan anggaran 7 miliar rupiah untuk perbaikan jalan.",
            ),
            (
                "Setiap keluarga menerima bantuan Rp 1.500.000 per bulan.",
                "Setiap keluarga menerima bantuan 1,5 juta rupiah per bulan.",
            ),
            (
                "Harga tiket masuk Rp25.000,- per orang.",
                "Harga tiket masuk 25 ribu rupiah per orang.",
            ),
            (
                "Dana desa tahun ini mencapai Rp1,2 triliun.",
                "Dana desa tahun ini mencapai 1,2 triliun rupiah.",
            ),
            (
                "Angka kemiskinan turun 4,5% dibanding tahun lalu.",
                "Angka kemiskinan turun 4,5 persen dibanding tahun lalu.",
            ),
            (
                "Sebanyak 2.000.000 dosis vaksin telah disalurkan.",
                "Sebanyak 2 juta dosis vaksin telah disalurkan.",
            ),
            // Times.
            (
                "Acara dimulai pukul 10.00 Wita di Banjarbaru.",
                "Acara dimulai pukul 10 Wita di Banjarbaru.",
            ),
            (
                "Rapat digelar Selasa pukul 08.30 Wita.",
                "Rapat digelar Selasa pukul 8 lewat 30 menit Wita.",
            ),
            // Abbreviations said in full; URLs dropped.
            (
                "Kunjungan ini disambut oleh Plt. Sekretaris Diskominfo Kalsel, Jajang Markoni.",
                "Kunjungan ini disambut oleh Pelaksana Tugas Sekretaris Diskominfo Kalsel, Jajang Markoni.",
            ),
            (
                "Informasi selengkapnya dapat dibaca di laman diskominfomc.kalselprov.go.id.",
                "Informasi selengkapnya dapat dibaca di laman.",
            ),
            (
                "Daftar lengkap ada di https://kalselprov.go.id/berita/123 mulai hari ini.",
                "Daftar lengkap ada di mulai hari ini.",
            ),
            (
                "Jalan sepanjang 12 km di Kab. Tanah Laut diperbaiki.",
                "Jalan sepanjang 12 kilometer di Kabupaten Tanah Laut diperbaiki.",
            ),
        ];
        for (input, expected) in table {
            assert_eq!(speakable(input), expected, "from: {input}");
        }
    }

    #[test]
    fn place_names_and_sentences() {
        assert_eq!(place_name("BANJARBARU"), "Banjarbaru");
        assert_eq!(place_name("TANAH LAUT"), "Tanah Laut");
        assert_eq!(
            sentences("Satu dua. “Tiga empat,” katanya. Lima"),
            ["Satu dua.", "“Tiga empat,” katanya.", "Lima"]
        );
        assert_eq!(
            spoken_date(NaiveDate::from_ymd_opt(2021, 9, 1).unwrap()),
            "Rabu 1 September"
        );
        assert_eq!(spoken_amount("2.750"), "2.750");
        assert_eq!(spoken_amount("12.500"), "12,5 ribu");
    }
}
