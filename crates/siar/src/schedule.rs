//! When something happens: at once, or at the firings of a cron expression read in the
//! publisher's time zone.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

#[derive(Clone, Debug)]
pub enum When {
    Instant,
    Cron(Box<cron::Schedule>),
}

impl When {
    /// `instant`, or a cron expression with seconds first (`0 30 5,11,17 * * *`).
    pub fn parse(s: &str) -> Result<When, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("instant") {
            return Ok(When::Instant);
        }
        cron::Schedule::from_str(s)
            .map(|c| When::Cron(Box::new(c)))
            .map_err(|e| {
                format!(
                    "`{s}` is neither `instant` nor a cron expression with seconds first \
                     (e.g. `0 30 5,11,17 * * *`): {e}"
                )
            })
    }

    /// The first firing strictly after `now` (`now` itself for `Instant`).
    pub fn next_after(&self, now: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
        match self {
            When::Instant => now,
            When::Cron(c) => c
                .after(&now.with_timezone(&tz))
                .next()
                .map(|t| t.with_timezone(&Utc))
                // A schedule with no future firing (a fixed year long past) never fires.
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn radio_bulletins_in_wita() {
        let w = When::parse("0 30 5,11,17 * * *").unwrap();
        let tz = chrono_tz::Asia::Makassar;
        // 05:30 WITA is 21:30 UTC the day before.
        assert_eq!(
            w.next_after(t("2026-11-29T12:00:00Z"), tz),
            t("2026-11-29T21:30:00Z")
        );
        assert_eq!(
            w.next_after(t("2026-11-29T21:30:00Z"), tz),
            t("2026-11-30T03:30:00Z")
        );
        assert_eq!(
            w.next_after(t("2026-11-30T03:30:01Z"), tz),
            t("2026-11-30T09:30:00Z")
        );
    }

    #[test]
    fn instant_and_errors() {
        let now = t("2026-11-29T12:00:00Z");
        assert_eq!(
            When::parse("instant")
                .unwrap()
                .next_after(now, chrono_tz::UTC),
            now
        );
        assert!(When::parse("every day")
            .unwrap_err()
            .contains("seconds first"));
        assert!(When::parse("0 30 5 * *").is_err());
    }
}
