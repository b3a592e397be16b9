//! Releases in a real sled store on disk: idempotent ingest, scheduling, corrections,
//! retractions, listings, and durability across reopen.

#![allow(clippy::unwrap_used)] // Test helpers: a panic is a failed test.

mod common;

use common::*;
use siar_model::{DeliveryStatus, Event, Provenance, Queue, Source, Status, Target};
use siar_store::{ReleaseFilter, Store};

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
}

#[test]
fn ingest_is_idempotent_by_hash_guid_and_key() {
    let (_d, s) = open();
    let now = t("2026-11-29T01:00:00Z");
    let a = s
        .ingest(new_release("Satu", &[], now, Source::Api), now, &TestRouter)
        .unwrap();
    assert!(a.created);
    assert_eq!(a.release.status, Status::Published);
    assert_eq!(a.deliveries, 2);

    // Same content hash, other source: the same release.
    let again = s
        .ingest(new_release("Satu", &[], now, Source::Cli), now, &TestRouter)
        .unwrap();
    assert!(!again.created);
    assert_eq!(again.release.id, a.release.id);

    // Same upstream guid, different text: the same release.
    let up = |title: &str| {
        let mut n = new_release(
            title,
            &[],
            now,
            Source::Upstream {
                name: "mc".into(),
                guid: "g1".into(),
            },
        );
        n.provenance.content_hash = format!("h-{title}");
        n
    };
    let u1 = s.ingest(up("Dari Hulu"), now, &TestRouter).unwrap();
    let u2 = s.ingest(up("Dari Hulu Berubah"), now, &TestRouter).unwrap();
    assert!(u1.created && !u2.created);
    assert_eq!(u1.release.id, u2.release.id);

    // Same Idempotency-Key, different text: the same release.
    let keyed = |title: &str| {
        let mut n = new_release(title, &[], now, Source::Api);
        n.provenance.idempotency_key = Some("k-123".into());
        n
    };
    let k1 = s.ingest(keyed("Kunci A"), now, &TestRouter).unwrap();
    let k2 = s.ingest(keyed("Kunci B"), now, &TestRouter).unwrap();
    assert_eq!(k1.release.id, k2.release.id);
    assert!(!k2.created);

    // Nothing was enqueued twice.
    assert_eq!(s.deliveries_for_release(a.release.id).unwrap().len(), 2);
    assert!(s.check_outbox().unwrap().is_empty());
}

#[test]
fn slugs_are_unique_and_permanent() {
    let (_d, s) = open();
    let now = t("2026-11-29T01:00:00Z");
    let mut n = new_release("Rapat Koordinasi", &[], now, Source::Api);
    let a = s.ingest(n.clone(), now, &()).unwrap().release;
    n.provenance.content_hash = "other".into();
    let b = s.ingest(n, now, &()).unwrap().release;
    assert_eq!(a.slug, "rapat-koordinasi");
    assert_eq!(b.slug, "rapat-koordinasi-2");
    // A title used over and over still gets a unique slug, without probing forever.
    let mut last = String::new();
    for i in 0..12 {
        let mut m = new_release("Rapat Koordinasi", &[], now, Source::Api);
        m.provenance.content_hash = format!("again-{i}");
        last = s.ingest(m, now, &()).unwrap().release.slug;
    }
    assert!(
        last.starts_with("rapat-koordinasi-") && last.len() == "rapat-koordinasi-".len() + 10,
        "{last}"
    );
    assert_eq!(s.release_by_slug(&last).unwrap().unwrap().slug, last);
    assert_eq!(
        s.release_by_slug("rapat-koordinasi-2").unwrap().unwrap().id,
        b.id
    );
    // A correction keeps the slug even when the title changes.
    let mut c = common::content("Judul Baru Sama Sekali", &[]);
    c.body = vec!["x".into()];
    let prov = Provenance {
        source: Source::Api,
        content_hash: "v2".into(),
        received_at: now,
        idempotency_key: None,
    };
    let corrected = s
        .correct(a.id, c, "judul diperbaiki", prov, now, &())
        .unwrap()
        .release;
    assert_eq!(corrected.slug, "rapat-koordinasi");
}

#[test]
fn scheduled_release_is_published_once_at_its_time_even_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ingest_at = t("2026-11-29T01:00:00Z");
    let publish_at = t("2026-11-29T22:00:00Z"); // 06:00 WITA next day
    let id = {
        let s = Store::open(dir.path()).unwrap();
        let r = s
            .ingest(
                new_release("Embargo", &["ekonomi"], publish_at, Source::Api),
                ingest_at,
                &TestRouter,
            )
            .unwrap();
        assert_eq!(r.release.status, Status::Scheduled);
        assert_eq!(r.deliveries, 0, "nothing is owed before publish_at");
        assert_eq!(s.next_scheduled().unwrap(), Some(publish_at));
        assert!(s
            .publish_due(t("2026-11-29T21:59:59Z"), &TestRouter)
            .unwrap()
            .is_empty());
        assert!(s.deliveries_for_release(r.release.id).unwrap().is_empty());
        // Not public before its time.
        let public = s
            .list(
                &ReleaseFilter {
                    public_at: Some(t("2026-11-29T21:00:00Z")),
                    ..Default::default()
                },
                10,
                None,
            )
            .unwrap();
        assert!(public.items.is_empty());
        s.flush_blocking().unwrap();
        r.release.id
        // The daemon goes down here and stays down past publish_at.
    };
    let s = Store::open(dir.path()).unwrap();
    let late = t("2026-11-30T03:00:00Z");
    let published = s.publish_due(late, &TestRouter).unwrap();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].id, id);
    assert_eq!(published[0].published_at, Some(late));
    assert_eq!(s.next_scheduled().unwrap(), None);
    let ds = s.deliveries_for_release(id).unwrap();
    assert_eq!(ds.len(), 3, "semua, jurnalis and ekonomi");
    assert!(ds
        .iter()
        .all(|d| d.due_at >= publish_at && d.event == Event::Published));
    // Exactly once.
    assert!(s
        .publish_due(t("2026-11-30T04:00:00Z"), &TestRouter)
        .unwrap()
        .is_empty());
    assert_eq!(s.deliveries_for_release(id).unwrap().len(), 3);
    let audit = s.audit_log(10, Some(id)).unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.action == "publish" && e.detail.contains("after publish_at")),
        "{audit:?}"
    );
}

fn deliver_all(s: &Store, now: chrono::DateTime<chrono::Utc>) {
    for q in Queue::ALL {
        for c in s
            .claim(q, now, chrono::Duration::seconds(60), 100, "w", &mut |_| {
                true
            })
            .unwrap()
        {
            s.complete(&c, now).unwrap();
        }
    }
}

#[test]
fn correction_goes_to_who_received_it_and_replaces_what_was_waiting() {
    let (_d, s) = open();
    let now = t("2026-11-29T01:00:00Z");
    let r = s
        .ingest(
            new_release("Anggaran", &[], now, Source::Api),
            now,
            &TestRouter,
        )
        .unwrap()
        .release;
    // "semua" receives v1; "jurnalis" has not yet.
    let c = s
        .claim(
            Queue::Webhook,
            now,
            chrono::Duration::seconds(30),
            10,
            "w",
            &mut |_| true,
        )
        .unwrap();
    assert_eq!(c.len(), 1);
    s.complete(&c[0], now).unwrap();

    let mut v2 = common::content("Anggaran", &["ekonomi"]);
    v2.body = vec!["Angka diperbaiki.".into()];
    let prov = Provenance {
        source: Source::Api,
        content_hash: "v2".into(),
        received_at: now,
        idempotency_key: None,
    };
    let later = now + chrono::Duration::minutes(5);
    let out = s
        .correct(
            r.id,
            v2.clone(),
            "angka anggaran diperbaiki",
            prov.clone(),
            later,
            &TestRouter,
        )
        .unwrap();
    assert!(out.created);
    assert_eq!(out.release.version, 2);
    assert_eq!(out.release.correction_notes, ["angka anggaran diperbaiki"]);
    assert_eq!(s.versions(r.id).unwrap().len(), 2);
    assert_eq!(
        s.version(r.id, 1).unwrap().unwrap().content.body,
        ["Isi Anggaran."]
    );

    let ds = s.deliveries_for_release(r.id).unwrap();
    let find = |target: &str, version: u32| {
        ds.iter()
            .filter(|d| d.target.to_string() == target && d.version == version)
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(find("partner:semua", 2)[0].event, Event::Corrected);
    assert_eq!(
        find("list:jurnalis", 1)[0].status,
        DeliveryStatus::Superseded
    );
    assert_eq!(
        find("list:jurnalis", 2)[0].event,
        Event::Published,
        "never got v1, so v2 is news to it"
    );
    assert_eq!(
        find("partner:ekonomi", 2)[0].event,
        Event::Published,
        "newly matching"
    );

    // The same correction again changes nothing.
    let again = s
        .correct(
            r.id,
            v2,
            "angka anggaran diperbaiki",
            prov,
            later,
            &TestRouter,
        )
        .unwrap();
    assert!(!again.created);
    assert_eq!(s.deliveries_for_release(r.id).unwrap().len(), ds.len());
    assert!(s.check_outbox().unwrap().is_empty());
}

#[test]
fn retraction_goes_only_to_who_received_it() {
    let (_d, s) = open();
    let now = t("2026-11-29T01:00:00Z");
    let r = s
        .ingest(
            new_release("Ditarik", &[], now, Source::Api),
            now,
            &TestRouter,
        )
        .unwrap()
        .release;
    let c = s
        .claim(
            Queue::List,
            now,
            chrono::Duration::seconds(30),
            10,
            "w",
            &mut |_| true,
        )
        .unwrap();
    s.complete(&c[0], now).unwrap();
    let r2 = s
        .retract(r.id, "data keliru", "api", now, &TestRouter)
        .unwrap();
    assert_eq!(r2.status, Status::Retracted);
    assert_eq!(r2.retraction.as_ref().unwrap().reason, "data keliru");
    let ds = s.deliveries_for_release(r.id).unwrap();
    let retracted: Vec<_> = ds.iter().filter(|d| d.event == Event::Retracted).collect();
    assert_eq!(retracted.len(), 1);
    assert_eq!(retracted[0].target, Target::List("jurnalis".into()));
    let semua: Vec<_> = ds
        .iter()
        .filter(|d| d.target == Target::Partner("semua".into()))
        .collect();
    assert_eq!(semua.len(), 1);
    assert_eq!(semua[0].status, DeliveryStatus::Superseded);
    // Retracting twice is harmless; correcting a retracted release is refused.
    s.retract(r.id, "lagi", "api", now, &TestRouter).unwrap();
    assert_eq!(s.deliveries_for_release(r.id).unwrap().len(), ds.len());
    let prov = Provenance {
        source: Source::Api,
        content_hash: "z".into(),
        received_at: now,
        idempotency_key: None,
    };
    assert!(s
        .correct(r.id, common::content("x", &[]), "n", prov, now, &TestRouter)
        .is_err());
    // Retracted releases stay listed (feeds show them withdrawn).
    let page = s
        .list(
            &ReleaseFilter {
                public_at: Some(now),
                ..Default::default()
            },
            10,
            None,
        )
        .unwrap();
    assert_eq!(page.items.len(), 1);
}

#[test]
fn retracting_a_scheduled_release_means_it_never_appears() {
    let (_d, s) = open();
    let now = t("2026-11-29T01:00:00Z");
    let r = s
        .ingest(
            new_release("Batal", &[], now + chrono::Duration::hours(1), Source::Api),
            now,
            &TestRouter,
        )
        .unwrap()
        .release;
    s.retract(r.id, "batal", "api", now, &TestRouter).unwrap();
    assert!(s
        .publish_due(now + chrono::Duration::hours(2), &TestRouter)
        .unwrap()
        .is_empty());
    assert!(s.deliveries_for_release(r.id).unwrap().is_empty());
}

#[test]
fn listing_pages_newest_first_by_category() {
    let (_d, s) = open();
    let base = t("2026-11-01T00:00:00Z");
    for i in 0..25 {
        let at = base + chrono::Duration::hours(i);
        let cats: &[&str] = if i % 2 == 0 { &["ekonomi"] } else { &[] };
        s.ingest(
            new_release(&format!("Rilis {i}"), cats, at, Source::Api),
            base + chrono::Duration::hours(12),
            &(),
        )
        .unwrap();
    }
    let now = base + chrono::Duration::hours(12);
    // Public view at `now`: releases 0..=12 only.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = s
            .list(
                &ReleaseFilter {
                    public_at: Some(now),
                    ..Default::default()
                },
                5,
                cursor.as_deref(),
            )
            .unwrap();
        seen.extend(page.items.iter().map(|r| r.content.title.clone()));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let expected: Vec<String> = (0..=12).rev().map(|i| format!("Rilis {i}")).collect();
    assert_eq!(seen, expected);
    // Everything, for the operator.
    let all = s.list(&ReleaseFilter::default(), 100, None).unwrap();
    assert_eq!(all.items.len(), 25);
    assert_eq!(all.items[0].content.title, "Rilis 24");
    let eko = s
        .list(
            &ReleaseFilter {
                category: Some(siar_model::Category::parse("ekonomi").unwrap()),
                ..Default::default()
            },
            100,
            None,
        )
        .unwrap();
    assert_eq!(eko.items.len(), 13);
    assert!(s.list(&ReleaseFilter::default(), 5, Some("zz")).is_err());
}

#[test]
fn flushed_writes_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let now = t("2026-11-29T01:00:00Z");
    let id = {
        let s = Store::open(dir.path()).unwrap();
        let id = s
            .ingest(
                new_release(
                    "Tahan Lama",
                    &["ekonomi"],
                    now,
                    Source::File {
                        name: "a.txt".into(),
                    },
                ),
                now,
                &TestRouter,
            )
            .unwrap()
            .release
            .id;
        s.flush_blocking().unwrap();
        id
    };
    let s = Store::open(dir.path()).unwrap();
    let r = s.release(id).unwrap().unwrap();
    assert_eq!(r.content.title, "Tahan Lama");
    assert_eq!(s.deliveries_for_release(id).unwrap().len(), 3);
    let audit = s.audit_log(10, None).unwrap();
    assert_eq!(audit.last().unwrap().actor, "file:a.txt");
    assert!(audit.iter().any(|e| e.action == "ingest"));
}

#[test]
fn meta_records_round_trip() {
    let (_d, s) = open();
    assert_eq!(s.meta_get::<String>("upstream:mc").unwrap(), None);
    s.meta_put("upstream:mc", &"etag-1".to_string()).unwrap();
    assert_eq!(
        s.meta_get::<String>("upstream:mc").unwrap().as_deref(),
        Some("etag-1")
    );
}

#[test]
fn deliveries_are_listed_by_status_and_replayed() {
    let (_d, s) = open();
    let now = t("2026-11-29T01:00:00Z");
    s.ingest(
        new_release("Gagal", &[], now, Source::Api),
        now,
        &TestRouter,
    )
    .unwrap();
    let c = s
        .claim(
            Queue::Webhook,
            now,
            chrono::Duration::seconds(30),
            10,
            "w",
            &mut |_| true,
        )
        .unwrap();
    s.fail(&c[0], "HTTP 404", now).unwrap();
    let failed = s
        .deliveries_with_status(DeliveryStatus::Failed, 10, None)
        .unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].last_error.as_deref(), Some("HTTP 404"));
    let r = s.retry_delivery(failed[0].id, "operator", now).unwrap();
    assert_eq!(r.status, DeliveryStatus::Pending);
    assert!(s
        .deliveries_with_status(DeliveryStatus::Failed, 10, None)
        .unwrap()
        .is_empty());
    let again = s
        .claim(
            Queue::Webhook,
            now,
            chrono::Duration::seconds(30),
            10,
            "w",
            &mut |_| true,
        )
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].delivery.attempts, 2);
    deliver_all(&s, now);
    assert!(s.check_outbox().unwrap().is_empty());
}

#[test]
fn a_batch_is_one_step_and_repeats_inside_it_map_to_one_release() {
    let (_d, s) = open();
    let now = t("2026-11-29T01:00:00Z");
    let a = new_release("Sama", &[], now, Source::Api);
    let mut b = new_release("Sama", &[], now, Source::Api);
    b.provenance.content_hash = "other-text-same-title".into();
    let out = s
        .ingest_many(vec![a.clone(), b, a], now, &TestRouter)
        .unwrap();
    assert_eq!(out.len(), 3);
    assert!(out[0].created && out[1].created && !out[2].created);
    assert_eq!(
        out[2].release.id, out[0].release.id,
        "the repeat maps to the first"
    );
    assert_eq!(out[0].release.slug, "sama");
    assert_eq!(out[1].release.slug, "sama-2");
    assert_eq!(
        s.list(&ReleaseFilter::default(), 10, None)
            .unwrap()
            .items
            .len(),
        2
    );
    assert_eq!(
        s.deliveries_for_release(out[0].release.id).unwrap().len(),
        2
    );
    assert!(s.check_outbox().unwrap().is_empty());
}

#[test]
fn many_releases_due_at_once_are_published_in_groups_earliest_first() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let ingest_at = t("2026-11-29T20:00:00Z");
    let mut ids = Vec::new();
    for i in 0..5 {
        let at = t("2026-11-29T22:00:00Z") + chrono::Duration::minutes(i);
        let r = s
            .ingest(
                new_release(&format!("Embargo {i}"), &[], at, Source::Api),
                ingest_at,
                &TestRouter,
            )
            .unwrap();
        ids.push(r.release.id);
    }
    let now = t("2026-11-30T00:00:00Z");
    let first = s.publish_due_max(now, &TestRouter, 2).unwrap();
    assert_eq!(
        first.iter().map(|r| r.id).collect::<Vec<_>>(),
        ids[..2].to_vec(),
        "the earliest due first"
    );
    let second = s.publish_due_max(now, &TestRouter, 2).unwrap();
    assert_eq!(
        second.iter().map(|r| r.id).collect::<Vec<_>>(),
        ids[2..4].to_vec()
    );
    let rest = s.publish_due_max(now, &TestRouter, 2).unwrap();
    assert_eq!(
        rest.iter().map(|r| r.id).collect::<Vec<_>>(),
        ids[4..].to_vec()
    );
    assert!(s.publish_due_max(now, &TestRouter, 2).unwrap().is_empty());
    for id in ids {
        assert_eq!(
            s.deliveries_for_release(id).unwrap().len(),
            2,
            "each published once"
        );
    }
}
