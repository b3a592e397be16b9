//! What the outbox costs per delivery: 1,000 releases published at one moment to 20
//! partners, then every delivery claimed and settled in batches of 32, on one thread.
//! `cargo run --release -p siar-store --example outbox_cost`

use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use siar_model::{Attempt, Provenance, ReleaseContent, Router, Source, Target};
use siar_store::{NewRelease, Settlement, Store};

struct Partners;

impl Router for Partners {
    fn targets(&self, _: &ReleaseContent) -> Vec<Target> {
        (0..20).map(|i| Target::Partner(format!("p{i}"))).collect()
    }
    fn due_at(&self, _: &Target, now: DateTime<Utc>) -> DateTime<Utc> {
        now
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let now = Utc::now();
    let at = now + Duration::seconds(10);
    for i in 0..1000 {
        let content = ReleaseContent {
            title: format!("Rilis nomor {i}"),
            body: vec![format!("Isi rilis {i}. ").repeat(40)],
            language: "id".into(),
            ..Default::default()
        };
        store.ingest(
            NewRelease {
                content,
                publish_at: at,
                provenance: Provenance {
                    source: Source::Api,
                    content_hash: format!("h{i}"),
                    received_at: now,
                    idempotency_key: None,
                },
            },
            now,
            &Partners,
        )?;
    }
    store.flush_blocking()?;
    let t = Instant::now();
    let mut n = 0;
    loop {
        let p = store.publish_due_max(at, &Partners, 25)?;
        if p.is_empty() {
            break;
        }
        n += p.len();
    }
    store.flush_blocking()?;
    let publish = t.elapsed();
    let t = Instant::now();
    let (mut claim_t, mut settle_t) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
    let mut delivered = 0;
    for p in 0..20 {
        let partner = format!("p{p}");
        loop {
            let c0 = Instant::now();
            let claims = store.claim_partner(&partner, at, Duration::seconds(60), 32, "w")?;
            claim_t += c0.elapsed();
            if claims.is_empty() {
                break;
            }
            let items: Vec<_> = claims
                .into_iter()
                .map(|c| {
                    let a = Attempt {
                        number: c.delivery.attempts,
                        at,
                        status: Some(204),
                        duration_ms: 1,
                        outcome: "delivered".into(),
                        error_class: String::new(),
                        error: String::new(),
                        response: String::new(),
                        next_at: None,
                    };
                    (c, Settlement::Delivered, Some(a))
                })
                .collect();
            let s0 = Instant::now();
            let r = store.settle_many(&items, at)?;
            settle_t += s0.elapsed();
            delivered += r.iter().filter(|r| r.is_ok()).count();
        }
    }
    store.flush_blocking()?;
    let fanout = t.elapsed();
    println!(
        "published {n} releases in {:.3} s ({:.1} µs per delivery); {delivered} deliveries claimed+settled in {:.3} s (claim {:.1} µs, settle {:.1} µs per delivery)",
        publish.as_secs_f64(),
        publish.as_secs_f64() * 1e6 / (n * 20) as f64,
        fanout.as_secs_f64(),
        claim_t.as_secs_f64() * 1e6 / delivered as f64,
        settle_t.as_secs_f64() * 1e6 / delivered as f64,
    );
    Ok(())
}
