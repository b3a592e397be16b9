#![allow(dead_code)]

use chrono::{DateTime, TimeZone, Utc};
use siar_model::{Category, Provenance, ReleaseContent, Router, Source, Target};
use siar_store::NewRelease;

/// Partner "semua" takes everything; partner "ekonomi" only that category; list "jurnalis"
/// everything. Nothing is scheduled except partner "radio", due at the next whole hour.
pub struct TestRouter;

impl Router for TestRouter {
    fn targets(&self, c: &ReleaseContent) -> Vec<Target> {
        let mut t = vec![
            Target::Partner("semua".into()),
            Target::List("jurnalis".into()),
        ];
        if c.categories.iter().any(|c| c.as_str() == "ekonomi") {
            t.push(Target::Partner("ekonomi".into()));
        }
        t
    }
    fn due_at(&self, target: &Target, now: DateTime<Utc>) -> DateTime<Utc> {
        match target {
            Target::Partner(p) if p == "radio" => {
                let next = now.timestamp() / 3600 * 3600 + 3600;
                Utc.timestamp_opt(next, 0).unwrap()
            }
            _ => now,
        }
    }
}

pub fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

pub fn content(title: &str, cats: &[&str]) -> ReleaseContent {
    ReleaseContent {
        title: title.into(),
        body: vec![format!("Isi {title}.")],
        categories: cats.iter().map(|c| Category::parse(c).unwrap()).collect(),
        language: "id".into(),
        ..Default::default()
    }
}

pub fn new_release(
    title: &str,
    cats: &[&str],
    publish_at: DateTime<Utc>,
    source: Source,
) -> NewRelease {
    NewRelease {
        content: content(title, cats),
        publish_at,
        provenance: Provenance {
            source,
            content_hash: format!("hash-of-{title}"),
            received_at: publish_at,
            idempotency_key: None,
        },
    }
}
