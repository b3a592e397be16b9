//! Dates as Kalsel releases write them, and `publish_at` as people type it.

use std::sync::LazyLock;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc, Weekday};
use regex::Regex;
use siar_model::{EventDate, Warning, YearSource};

/// How many years back a year-less date may reach.
const LOOKBACK_YEARS: i32 = 10;

/// A year-less date may name an event up to this many days after the ingest date (a release
/// sent the day before announcing tomorrow's event).
const LOOKAHEAD_DAYS: i64 = 7;

const WEEKDAYS: &str = r"senin|selasa|rabu|kamis|jum['’]?at|sabtu|minggu|ahad";
const MONTHS: &str = r"januari|februari|pebruari|maret|april|mei|juni|juli|agustus|september|oktober|nopember|november|desember";

static NUMERIC: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r"(?i)\b({WEEKDAYS})\s*,?\s*\(\s*(\d{{1,2}})\s*/\s*(\d{{1,2}})(?:\s*/\s*(\d{{4}}|\d{{2}}))?\s*\)"
    ))
    .expect("static regex")
});

static WRITTEN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r"(?i)\b({WEEKDAYS})\s*,?\s*\(?\s*(\d{{1,2}})\s+({MONTHS})\s+(\d{{4}})\s*\)?"
    ))
    .expect("static regex")
});

static TIME_AFTER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^\s*,?\s*(?:sekitar\s+)?(?:pukul|pkl\.?|jam)\s*(\d{1,2})[.:](\d{2})(?:\s*(wita|wib|wit)\b)?")
        .expect("static regex")
});

fn weekday(name: &str) -> Weekday {
    match name
        .to_lowercase()
        .chars()
        .take(3)
        .collect::<String>()
        .as_str()
    {
        "sen" => Weekday::Mon,
        "sel" => Weekday::Tue,
        "rab" => Weekday::Wed,
        "kam" => Weekday::Thu,
        "jum" => Weekday::Fri,
        "sab" => Weekday::Sat,
        _ => Weekday::Sun,
    }
}

fn month(name: &str) -> u32 {
    let n = name.to_lowercase();
    let months = [
        "jan", "feb", "mar", "apr", "mei", "jun", "jul", "agu", "sep", "okt", "nov", "des",
    ];
    if n.starts_with("peb") {
        return 2;
    }
    if n.starts_with("nop") {
        return 11;
    }
    months
        .iter()
        .position(|m| n.starts_with(m))
        .map_or(1, |i| i as u32 + 1)
}

pub(crate) fn weekday_name(w: Weekday) -> &'static str {
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

/// Finds the first event date in `text`. `line` is where `text` starts, for warnings.
pub(crate) fn find_event_date(
    text: &str,
    today: NaiveDate,
    line: usize,
    warnings: &mut Vec<Warning>,
) -> Option<EventDate> {
    let numeric = NUMERIC.captures(text);
    let written = WRITTEN.captures(text);
    let (caps, written_form) = match (numeric, written) {
        (Some(n), Some(w)) => {
            if n.get(0)?.start() <= w.get(0)?.start() {
                (n, false)
            } else {
                (w, true)
            }
        }
        (Some(n), None) => (n, false),
        (None, Some(w)) => (w, true),
        (None, None) => return None,
    };
    let whole = caps.get(0)?;
    let wd = weekday(&caps[1]);
    let day: u32 = caps[2].parse().ok()?;
    let (mon, year): (u32, Option<i32>) = if written_form {
        (month(&caps[3]), caps[4].parse().ok())
    } else {
        let mon = caps[3].parse().ok()?;
        let year = caps.get(4).and_then(|y| {
            let y: i32 = y.as_str().parse().ok()?;
            Some(if y < 100 { 2000 + y } else { y })
        });
        (mon, year)
    };
    let mut raw_end = whole.end();
    let mut time = None;
    let mut zone = None;
    if let Some(t) = TIME_AFTER.captures(&text[whole.end()..]) {
        let h: u32 = t[1].parse().unwrap_or(99);
        let m: u32 = t[2].parse().unwrap_or(99);
        if let Some(nt) = NaiveTime::from_hms_opt(h, m, 0) {
            time = Some(nt);
            zone = t.get(3).map(|z| z.as_str().to_uppercase());
            raw_end = whole.end() + t.get(0).map_or(0, |m| m.end());
        }
    }
    let raw = text[whole.start()..raw_end].trim().to_owned();

    let (date, year_source) = match year {
        Some(y) => {
            let Some(date) = NaiveDate::from_ymd_opt(y, mon, day) else {
                warnings.push(Warning::new(
                    "invalid_date",
                    format!("`{raw}` is not a calendar date"),
                    Some(line),
                ));
                return None;
            };
            if date.weekday() != wd {
                warnings.push(Warning::new(
                    "weekday_mismatch",
                    format!(
                        "`{raw}`: {} fell on a {}, not a {}",
                        date.format("%-d/%-m/%Y"),
                        weekday_name(date.weekday()),
                        weekday_name(wd)
                    ),
                    Some(line),
                ));
            }
            (date, YearSource::Explicit)
        }
        None => {
            if !(1..=12).contains(&mon) || !(1..=31).contains(&day) {
                warnings.push(Warning::new(
                    "invalid_date",
                    format!("`{raw}` is not a calendar date"),
                    Some(line),
                ));
                return None;
            }
            let latest = today + chrono::Duration::days(LOOKAHEAD_DAYS);
            let found = (today.year() - LOOKBACK_YEARS..=latest.year())
                .rev()
                .filter_map(|y| NaiveDate::from_ymd_opt(y, mon, day))
                .find(|d| *d <= latest && d.weekday() == wd);
            match found {
                Some(d) => (d, YearSource::Weekday),
                None => {
                    let fallback = (today.year() - LOOKBACK_YEARS..=latest.year())
                        .rev()
                        .filter_map(|y| NaiveDate::from_ymd_opt(y, mon, day))
                        .find(|d| *d <= latest);
                    let Some(d) = fallback else {
                        warnings.push(Warning::new(
                            "invalid_date",
                            format!("`{raw}` is not a calendar date"),
                            Some(line),
                        ));
                        return None;
                    };
                    warnings.push(Warning::new(
                        "weekday_mismatch",
                        format!(
                            "`{raw}`: no year from {} to {} has {day}/{mon} on a {}; assumed {}",
                            today.year() - LOOKBACK_YEARS,
                            latest.year(),
                            weekday_name(wd),
                            d.year()
                        ),
                        Some(line),
                    ));
                    (d, YearSource::Assumed)
                }
            }
        }
    };
    Some(EventDate {
        date,
        time,
        zone,
        raw,
        year_source,
    })
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{input}` is not a time: give RFC 3339 (2026-12-01T06:00:00+08:00) or local `YYYY-MM-DD HH:MM` ({zone})")]
pub struct WhenError {
    input: String,
    zone: String,
}

/// Reads WHEN: RFC 3339, or local `YYYY-MM-DD HH:MM[:SS]` (a `T` may replace the space) in
/// `tz`, the publisher's time zone.
pub fn parse_when(input: &str, tz: chrono_tz::Tz) -> Result<DateTime<Utc>, WhenError> {
    let s = input.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Ok(dt.with_timezone(&Utc));
    }
    let err = || WhenError {
        input: input.chars().take(60).collect(),
        zone: tz.name().to_owned(),
    };
    let local = [
        "%Y-%m-%d %H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%dT%H:%M:%S",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
    .ok_or_else(err)?;
    tz.from_local_datetime(&local)
        .single()
        .map(|dt| dt.with_timezone(&Utc))
        .ok_or_else(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 29).unwrap()
    }

    fn find(text: &str) -> (Option<EventDate>, Vec<Warning>) {
        let mut w = Vec::new();
        (find_event_date(text, today(), 1, &mut w), w)
    }

    #[test]
    fn year_is_inferred_from_the_weekday() {
        let cases = [
            // (text, date, source) — from the samples and real releases.
            (
                "Diskominfo Kalsel, Rabu (1/9).",
                "2021-09-01",
                YearSource::Weekday,
            ),
            (
                "pada Kamis (15/2) mengatakan",
                "2024-02-15",
                YearSource::Weekday,
            ),
            ("Senin (23/11) pagi", "2026-11-23", YearSource::Weekday),
            ("Jum'at (27/11)", "2026-11-27", YearSource::Weekday),
            ("Selasa (1/12)", "2026-12-01", YearSource::Weekday),
            ("Sabtu (6/3/2021)", "2021-03-06", YearSource::Explicit),
            ("Sabtu (6/3/21)", "2021-03-06", YearSource::Explicit),
            ("Rabu, 1 September 2021", "2021-09-01", YearSource::Explicit),
        ];
        for (text, date, source) in cases {
            let (d, w) = find(text);
            let d = d.unwrap_or_else(|| panic!("no date in {text}"));
            assert_eq!(d.date.to_string(), date, "{text}");
            assert_eq!(d.year_source, source, "{text}");
            assert!(w.is_empty(), "{text}: {w:?}");
        }
    }

    #[test]
    fn time_and_zone_follow_the_date() {
        let (d, _) = find("Selasa (7/9/2021) pukul 10.00 Wita di Banjarbaru");
        let d = d.unwrap();
        assert_eq!(d.time, NaiveTime::from_hms_opt(10, 0, 0));
        assert_eq!(d.zone.as_deref(), Some("WITA"));
        assert_eq!(d.raw, "Selasa (7/9/2021) pukul 10.00 Wita");
    }

    #[test]
    fn a_weekday_no_year_matches_is_a_warning() {
        // 29 February fell on a Monday (2016), Saturday (2020) and Thursday (2024): never on a
        // Tuesday in the years searched. The latest real 29 February is assumed.
        let (d, w) = find("Selasa (29/2)");
        let d = d.unwrap();
        assert_eq!(d.year_source, YearSource::Assumed);
        assert_eq!(d.date.to_string(), "2024-02-29");
        assert_eq!(w[0].code, "weekday_mismatch");
    }

    #[test]
    fn explicit_year_with_wrong_weekday_warns() {
        let (d, w) = find("Senin (1/9/2021)");
        assert_eq!(d.unwrap().date.to_string(), "2021-09-01");
        assert_eq!(w[0].code, "weekday_mismatch");
        assert!(w[0].message.contains("Rabu"), "{}", w[0].message);
    }

    #[test]
    fn impossible_dates_are_warnings_not_panics() {
        let (d, w) = find("Senin (45/13)");
        assert!(d.is_none());
        assert_eq!(w[0].code, "invalid_date");
        let (d, w) = find("Senin (31/2/2021)");
        assert!(d.is_none());
        assert_eq!(w[0].code, "invalid_date");
    }

    #[test]
    fn publish_at_reads_rfc3339_and_local_wita() {
        let tz = chrono_tz::Asia::Makassar;
        assert_eq!(
            parse_when("2026-12-01 06:00", tz).unwrap().to_rfc3339(),
            "2026-11-30T22:00:00+00:00"
        );
        assert_eq!(
            parse_when("2026-12-01T06:00:00+07:00", tz)
                .unwrap()
                .to_rfc3339(),
            "2026-11-30T23:00:00+00:00"
        );
        let e = parse_when("besok pagi", tz).unwrap_err();
        assert!(e.to_string().contains("Asia/Makassar"));
    }
}
