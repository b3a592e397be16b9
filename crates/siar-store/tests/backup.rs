//! Backups on real sled: an export taken while writers run is a consistent snapshot, an
//! import restores it record for record, and a damaged backup or a non-empty store is refused
//! without writing anything.

#![allow(clippy::unwrap_used)] // Tests: a panic is a failed test.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chrono::Utc;
use common::{new_release, TestRouter};
use siar_model::Source;
use siar_store::{ImportRow, MediaStore, Store};

/// Every line of an export but the header (which has its time) and the end marker.
fn records(export: &[u8]) -> Vec<String> {
    let text = std::str::from_utf8(export).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    lines[1..lines.len() - 1]
        .iter()
        .map(|l| (*l).to_owned())
        .collect()
}

fn export(store: &Store, media: Option<&MediaStore>) -> Vec<u8> {
    let mut out = Vec::new();
    store.export(media, &mut out).unwrap();
    out
}

#[test]
fn a_backup_taken_under_load_restores_a_consistent_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("data")).unwrap();
    let media = MediaStore::open(&dir.path().join("data/media")).unwrap();
    let photo = media
        .put(b"\xFF\xD8\xFFfoto uji", "jpg", "image/jpeg")
        .unwrap();
    let rows: Vec<ImportRow> = (0..300)
        .map(|i| ImportRow {
            address: format!("warga{i}@contoh.id"),
        })
        .collect();
    store
        .import_subscribers("jurnalis", &rows, Some("formulir kertas"), Utc::now())
        .unwrap();

    // Writers: one ingests releases (each with its deliveries, one atomic step), one settles
    // deliveries as they come.
    let stop = Arc::new(AtomicBool::new(false));
    let ingest = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let now = Utc::now();
                store
                    .ingest(
                        new_release(&format!("Rilis {n}"), &["ekonomi"], now, Source::Api),
                        now,
                        &TestRouter,
                    )
                    .unwrap();
                n += 1;
            }
            n
        })
    };
    let settle = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let now = Utc::now();
                let claims = store
                    .claim_partner("semua", now, chrono::Duration::seconds(60), 8, "uji")
                    .unwrap();
                for c in claims {
                    store.complete(&c, now).unwrap();
                }
            }
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    let taken = export(&store, Some(&media));
    std::thread::sleep(std::time::Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    let ingested = ingest.join().unwrap();
    settle.join().unwrap();
    assert!(
        ingested > 20,
        "the writer kept writing ({ingested} releases)"
    );

    let backup = dir.path().join("backup.jsonl");
    std::fs::write(&backup, &taken).unwrap();
    let restored = Store::open(&dir.path().join("restored")).unwrap();
    let restored_media = MediaStore::open(&dir.path().join("restored/media")).unwrap();
    let summary = restored.import(&backup, &restored_media).unwrap();
    assert_eq!(summary.media, 1);
    assert!(summary.trees["mail"] >= 300, "{summary:?}");

    // Record for record what was exported, and the photo byte for byte.
    assert_eq!(
        records(&export(&restored, Some(&restored_media))),
        records(&taken)
    );
    assert_eq!(
        std::fs::read(restored_media.path(&photo.name).unwrap()).unwrap(),
        b"\xFF\xD8\xFFfoto uji"
    );

    // Consistent: every release has all three of its deliveries, and every delivery its
    // release — the snapshot fell between two steps, never inside one.
    let page = restored
        .list(&Default::default(), usize::MAX, None)
        .unwrap();
    assert!(!page.items.is_empty());
    assert!(page.items.len() < ingested, "taken while the writer ran");
    let mut delivered = 0;
    for r in &page.items {
        let ds = restored.deliveries_for_release(r.id).unwrap();
        assert_eq!(
            ds.len(),
            3,
            "release {} has {} deliveries",
            r.content.title,
            ds.len()
        );
        delivered += ds
            .iter()
            .filter(|d| d.status == siar_model::DeliveryStatus::Delivered)
            .count();
    }
    assert!(delivered > 0, "settled deliveries kept their state");
    // …and no delivery without its release.
    let delivery_records = records(&taken)
        .iter()
        .filter(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            use base64::Engine as _;
            if v["tree"] != "outbox" {
                return false;
            }
            let key = base64::engine::general_purpose::STANDARD
                .decode(v["key"].as_str().unwrap())
                .unwrap();
            key.first() == Some(&b'D')
        })
        .count();
    assert_eq!(delivery_records, 3 * page.items.len());
    assert_eq!(
        restored.subscriber_counts("jurnalis").unwrap()["confirmed"],
        300
    );
    let s = restored
        .subscriber("jurnalis", "warga7@contoh.id")
        .unwrap()
        .unwrap();
    assert_eq!(
        s.history.first().map(|c| c.source.as_str()),
        Some("import (confirmed): formulir kertas")
    );
}

#[test]
fn a_damaged_backup_or_a_full_store_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("data")).unwrap();
    let now = Utc::now();
    for i in 0..5 {
        store
            .ingest(
                new_release(&format!("Rilis {i}"), &[], now, Source::Api),
                now,
                &TestRouter,
            )
            .unwrap();
    }
    let good = export(&store, None);
    let text = String::from_utf8(good.clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "truncated",
            lines[..lines.len() - 3].join("\n") + "\n",
            "truncated",
        ),
        (
            "altered",
            text.replacen(&lines[2][lines[2].len() - 12..], "AAAAAAAAAA\"}", 1),
            "altered",
        ),
        (
            "not a backup",
            "{\"hello\":1}\n".into(),
            "not a siar backup",
        ),
        (
            "a line cut",
            text.replacen(lines[3], &lines[3][..10], 1),
            "line 4",
        ),
    ];
    for (what, content, expect) in cases {
        let path = dir.path().join(format!("{what}.jsonl"));
        std::fs::write(&path, content).unwrap();
        let target = Store::open(&dir.path().join(format!("into-{what}"))).unwrap();
        let m = MediaStore::open(&dir.path().join(format!("into-{what}/media"))).unwrap();
        let err = target.import(&path, &m).unwrap_err().to_string();
        assert!(err.contains(expect), "{what}: {err}");
        assert!(
            target
                .list(&Default::default(), 10, None)
                .unwrap()
                .items
                .is_empty(),
            "{what}: nothing written"
        );
    }
    // A store that holds anything is not overwritten.
    let path = dir.path().join("good.jsonl");
    std::fs::write(&path, &good).unwrap();
    let m = MediaStore::open(&dir.path().join("data/media")).unwrap();
    let err = store.import(&path, &m).unwrap_err().to_string();
    assert!(err.contains("empty store"), "{err}");
    assert_eq!(records(&export(&store, None)), records(&good));
}
