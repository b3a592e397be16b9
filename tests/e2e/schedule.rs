//! Publishing at `publish_at`, also when the daemon was down at that moment.

use chrono::{Duration, Utc};
use serde_json::Value;
use siar_model::{Provenance, ReleaseContent, Source};
use siar_store::{NewRelease, Store};

use crate::utils::*;

#[tokio::test]
async fn a_future_release_waits_then_publishes() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let api = d.client();
    let at = (Utc::now() + Duration::milliseconds(1500)).to_rfc3339();
    let r = api
        .post("/api/v1/releases")
        .query(&[("publish_at", at.as_str())])
        .header("Content-Type", "text/plain")
        .body(release_text(7))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r: Value = r.json().await.unwrap();
    assert_eq!(r["status"], "scheduled");
    assert!(r["published_at"].is_null());
    let id = r["id"].as_str().unwrap().to_owned();
    let published = eventually(15, "the release to be published", || async {
        let (_, r) = api.get_json(&format!("/api/v1/releases/{id}")).await;
        (r["status"] == "published").then_some(r)
    })
    .await;
    let publish_at =
        chrono::DateTime::parse_from_rfc3339(published["publish_at"].as_str().unwrap()).unwrap();
    let published_at =
        chrono::DateTime::parse_from_rfc3339(published["published_at"].as_str().unwrap()).unwrap();
    assert!(
        published_at >= publish_at,
        "published early: {published_at} < {publish_at}"
    );
    let m = d.metrics().await;
    assert!(m.contains("siar_releases_ingested_total 1\n"), "{m}");
    assert!(m.contains("siar_releases_published_total 1\n"), "{m}");
}

#[tokio::test]
async fn local_wita_publish_at_is_read_in_the_publishers_zone() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let r = d
        .client()
        .post("/api/v1/releases?publish_at=2099-01-01%2006:00")
        .header("Content-Type", "text/plain")
        .body(release_text(8))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r: Value = r.json().await.unwrap();
    assert_eq!(r["publish_at"], "2098-12-31T22:00:00Z");
    assert_eq!(r["status"], "scheduled");
}

#[tokio::test]
async fn a_release_due_while_down_is_published_late_once_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let now = Utc::now();
    let id = {
        // The daemon is down; a release was scheduled for an hour ago.
        let store = Store::open(&dir.path().join("data")).unwrap();
        let content = ReleaseContent {
            title: "Terlambat Terbit".into(),
            body: vec!["Isi.".into()],
            language: "id".into(),
            ..Default::default()
        };
        let new = NewRelease {
            content,
            publish_at: now - Duration::hours(1),
            provenance: Provenance {
                source: Source::Api,
                content_hash: "late".into(),
                received_at: now,
                idempotency_key: None,
            },
        };
        let r = store
            .ingest(new, now - Duration::hours(2), &())
            .unwrap()
            .release;
        store.flush_blocking().unwrap();
        r.id
    };
    let d = Daemon::start(dir.path());
    let api = d.client();
    let r = eventually(10, "the late release to be published", || async {
        let (_, r) = api.get_json(&format!("/api/v1/releases/{id}")).await;
        (r["status"] == "published").then_some(r)
    })
    .await;
    let published_at =
        chrono::DateTime::parse_from_rfc3339(r["published_at"].as_str().unwrap()).unwrap();
    assert!(published_at >= now, "published at start-up, not before");
    eventually(5, "a log line about the late publication", || async {
        d.logs().contains("Published late").then_some(())
    })
    .await;
    let (_, audit) = api.get_json(&format!("/api/v1/audit?release={id}")).await;
    let publishes = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "publish")
        .count();
    assert_eq!(publishes, 1);
    // A restart does not publish it again.
    let status = d.terminate();
    assert!(status.success());
    let d = Daemon::start(dir.path());
    let (_, audit) = d
        .client()
        .get_json(&format!("/api/v1/audit?release={id}"))
        .await;
    let publishes = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "publish")
        .count();
    assert_eq!(publishes, 1);
}
