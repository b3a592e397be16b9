//! `siar store export` while the daemon runs, `siar store import` into an empty store: every
//! release, version, subscriber, consent record and delivery state comes back.

use serde_json::Value;

use crate::utils::*;

/// The records of a backup: every line but the header (it has the time) and the end marker.
fn records(backup: &[u8]) -> Vec<String> {
    let text = String::from_utf8(backup.to_vec()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() > 2, "a backup has a header and an end marker");
    assert!(lines[lines.len() - 1].starts_with("{\"end\""));
    lines[1..lines.len() - 1]
        .iter()
        .map(|l| (*l).to_owned())
        .collect()
}

/// What operators and partners see through the API: releases with every version, their
/// deliveries, and the list's subscribers with their consent trails.
async fn view(api: &Api) -> Value {
    let (_, list) = api.get_json("/api/v1/releases?limit=100").await;
    let mut releases = Vec::new();
    for r in list["items"].as_array().unwrap() {
        let id = r["id"].as_str().unwrap();
        let (_, full) = api.get_json(&format!("/api/v1/releases/{id}")).await;
        let (_, versions) = api
            .get_json(&format!("/api/v1/releases/{id}/versions"))
            .await;
        let (_, deliveries) = api
            .get_json(&format!("/api/v1/releases/{id}/deliveries"))
            .await;
        releases.push(serde_json::json!({
            "release": full, "versions": versions, "deliveries": deliveries,
        }));
    }
    let (_, subscribers) = api
        .get_json("/api/v1/lists/jurnalis/subscribers?limit=1000")
        .await;
    let (_, audit) = api.get_json("/api/v1/audit?limit=1000").await;
    serde_json::json!({"releases": releases, "subscribers": subscribers, "audit": audit})
}

const SECRET: &[(&str, &str)] = &[(
    "BACKUP_TEST_SECRET",
    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
)];

#[tokio::test]
async fn a_backup_of_the_running_daemon_restores_everything() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let restored = dir.path().join("restored");
    std::fs::create_dir_all(&live).unwrap();
    std::fs::create_dir_all(&restored).unwrap();
    let cfg = dir.path().join("siar.toml");
    // The partner's schedule is next New Year: its deliveries wait, so nothing changes while
    // the two daemons are compared.
    std::fs::write(
        &cfg,
        "[[lists]]\nid = \"jurnalis\"\nname = \"Jurnalis\"\n\n\
         [[partners]]\nid = \"media-center\"\nurl = \"http://127.0.0.1:9/hook\"\nformat = \"ninjs\"\n\
         schedule = \"0 0 0 1 1 *\"\nallow_private = true\nsecret_env = \"BACKUP_TEST_SECRET\"\n",
    )
    .unwrap();
    let d = Daemon::start_with(&live, Some(&cfg), SECRET);
    let api = d.client();
    let mut ids = Vec::new();
    for n in 1..=4 {
        let (s, r) = api.post_text(release_text(n)).await;
        assert_eq!(s, 201, "{r}");
        ids.push(r["id"].as_str().unwrap().to_owned());
    }
    let r = api
        .post(&format!(
            "/api/v1/releases/{}/corrections?note=Angka%20diperbaiki",
            ids[0]
        ))
        .header("Content-Type", "text/plain")
        .body(release_text(1).replace("lancar", "sangat lancar"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = api
        .post(&format!("/api/v1/releases/{}/retraction", ids[1]))
        .json(&serde_json::json!({"reason": "Data keliru"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let csv = dir.path().join("wartawan.csv");
    std::fs::write(&csv, "email\nani@redaksi.id\nbudi@redaksi.id\n").unwrap();
    let (ok, out, err) = run_cli(
        &live,
        &d.url,
        &[
            "--config",
            cfg.to_str().unwrap(),
            "subscribers",
            "import",
            csv.to_str().unwrap(),
            "--list",
            "jurnalis",
            "--confirmed",
            "--source",
            "persetujuan tertulis",
        ],
    );
    assert!(ok, "{}{err}", String::from_utf8_lossy(&out));
    let r = reqwest::Client::new()
        .post(format!("{}/subscribe", d.url))
        .form(&[("list", "jurnalis"), ("email", "citra@warga.id")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let before = view(&api).await;
    assert_eq!(before["releases"].as_array().unwrap().len(), 4);
    let deliveries = before["releases"].to_string();
    assert!(
        deliveries.contains("media-center") && deliveries.contains("\"pending\""),
        "the partner's deliveries wait: {deliveries}"
    );
    assert_eq!(
        before["subscribers"]["items"].as_array().unwrap().len(),
        3,
        "{}",
        before["subscribers"]
    );

    // Through the running daemon.
    let (ok, backup, err) = run_cli(
        &live,
        &d.url,
        &["--config", cfg.to_str().unwrap(), "store", "export"],
    );
    assert!(ok, "{err}");
    assert!(err.contains("exported"), "{err}");
    let file = dir.path().join("backup.jsonl");
    std::fs::write(&file, &backup).unwrap();
    assert!(d.logs().contains("Backup exported."));

    // Into an empty store, while no daemon uses it.
    let import = [
        "--config",
        cfg.to_str().unwrap(),
        "store",
        "import",
        file.to_str().unwrap(),
    ];
    let (ok, out, err) = run_cli(&restored, "http://127.0.0.1:9", &import);
    let out = String::from_utf8_lossy(&out).into_owned();
    assert!(ok, "{out}{err}");
    assert!(out.contains("imported") && out.contains("mail"), "{out}");
    // Never over a store that holds something.
    let (ok, _, err) = run_cli(&restored, "http://127.0.0.1:9", &import);
    assert!(!ok);
    assert!(err.contains("empty store"), "{err}");

    // Offline export of the restored store: record for record the same.
    let (ok, again, err) = run_cli(
        &restored,
        "http://127.0.0.1:9",
        &["--config", cfg.to_str().unwrap(), "store", "export"],
    );
    assert!(ok, "{err}");
    assert!(err.contains("straight from"), "{err}");
    assert_eq!(records(&again), records(&backup));

    // And a daemon on the restored store shows what the first one showed.
    let d2 = Daemon::start_with(&restored, Some(&cfg), SECRET);
    let after = view(&d2.client()).await;
    assert_eq!(after["releases"], before["releases"]);
    assert_eq!(after["subscribers"], before["subscribers"]);
    assert_eq!(after["audit"], before["audit"]);
    let trail = &after["subscribers"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["address"] == "ani@redaksi.id")
        .unwrap()["history"];
    assert!(
        trail.to_string().contains("persetujuan tertulis"),
        "{trail}"
    );
    drop(d2);
    drop(d);
}
