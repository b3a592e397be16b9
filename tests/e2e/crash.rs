//! Durability: every acknowledged release survives SIGKILL.

use std::collections::BTreeSet;

use crate::utils::*;

#[tokio::test]
async fn every_acknowledged_release_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let api = std::sync::Arc::new(d.client());
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..48 {
        let api = api.clone();
        tasks.spawn(async move {
            let (s, r) = api.post_text(release_text(n)).await;
            assert_eq!(s, 201, "{r}");
            r["id"].as_str().unwrap().to_owned()
        });
    }
    let mut acked = BTreeSet::new();
    while let Some(id) = tasks.join_next().await {
        acked.insert(id.unwrap());
    }
    // Kill at once: no shutdown, no flush beyond what each 201 already waited for.
    d.kill9();

    let d = Daemon::start(dir.path());
    let api = d.client();
    for id in &acked {
        let (s, r) = api.get_json(&format!("/api/v1/releases/{id}")).await;
        assert_eq!(s, 200, "acknowledged release {id} lost after SIGKILL");
        assert_eq!(r["status"], "published");
    }
    let (_, page) = api.get_json("/api/v1/releases?limit=500").await;
    assert_eq!(page["items"].as_array().unwrap().len(), acked.len());
}
