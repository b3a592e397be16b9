//! The drop folder.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::utils::*;

async fn wait_for(path: &Path, secs: u64) {
    let p = path.to_owned();
    eventually(secs, &format!("{} to appear", path.display()), || {
        let p = p.clone();
        async move { p.exists().then_some(()) }
    })
    .await;
}

async fn count(api: &Api) -> usize {
    let (_, page) = api.get_json("/api/v1/releases?limit=500").await;
    page["items"].as_array().unwrap().len()
}

#[tokio::test]
async fn dropped_files_are_ingested_or_rejected_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let api = d.client();
    let inbox = dir.path().join("inbox");
    wait_for(&inbox.join("done"), 10).await;

    std::fs::write(inbox.join("geopark.txt"), sample("geopark-meratus.txt")).unwrap();
    std::fs::write(inbox.join("kosong.txt"), b"").unwrap();
    std::fs::write(inbox.join("sampah.txt"), b"\x00\x01\x02binary\x00junk").unwrap();
    std::fs::write(inbox.join("besar.txt"), vec![b'a'; 5 * 1024 * 1024]).unwrap();
    std::fs::write(inbox.join("judul.txt"), b"Hanya Judul\n").unwrap();
    std::fs::write(inbox.join("laporan.pdf"), b"%PDF-1.4").unwrap();

    wait_for(&inbox.join("done/geopark.txt"), 15).await;
    let rejected = inbox.join("rejected");
    for (name, reason) in [
        ("kosong.txt", "empty"),
        ("sampah.txt", "not text"),
        ("besar.txt", "over the limit"),
        ("judul.txt", "line 1"),
        ("laporan.pdf", "unsupported file type"),
    ] {
        wait_for(&rejected.join(format!("{name}.error.txt")), 15).await;
        assert!(rejected.join(name).exists(), "{name} kept in rejected/");
        let why = std::fs::read_to_string(rejected.join(format!("{name}.error.txt"))).unwrap();
        assert!(why.contains(reason), "{name}: {why}");
    }
    assert_eq!(count(&api).await, 1);
    let (_, page) = api.get_json("/api/v1/releases").await;
    let r = &page["items"][0];
    assert_eq!(
        r["provenance"]["source"],
        serde_json::json!({"kind": "file", "name": "geopark.txt"})
    );
    assert_eq!(r["content"]["dateline"], "BANJARMASIN");
    // Nothing is left in the inbox itself.
    let left: Vec<_> = std::fs::read_dir(&inbox)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_file())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn half_written_files_are_never_read() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let api = d.client();
    let inbox = dir.path().join("inbox");
    wait_for(&inbox.join("done"), 10).await;
    let text = sample("kpu-kalsel-diskominfo.txt");
    let (first, rest) = text.split_at(text.len() / 2);

    // 1. Written under a .part name, then renamed: ignored until the rename.
    let part = inbox.join("kpu.txt.part");
    std::fs::write(&part, first).unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(part.exists(), "a .part file must not be touched");
    let mut whole = first.to_vec();
    whole.extend_from_slice(rest);
    std::fs::write(&part, &whole).unwrap();
    std::fs::rename(&part, inbox.join("kpu.txt")).unwrap();
    wait_for(&inbox.join("done/kpu.txt"), 15).await;

    // 2. Written in two halves with a pause shorter than settle_ms: read only when whole.
    let slow = inbox.join("voli.txt");
    let voli = sample("voli-polda.txt");
    let (a, b) = voli.split_at(voli.len() / 2);
    std::fs::write(&slow, a).unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&slow)
        .unwrap();
    std::io::Write::write_all(&mut f, b).unwrap();
    drop(f);
    wait_for(&inbox.join("done/voli.txt"), 15).await;

    let (_, page) = api.get_json("/api/v1/releases").await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    for r in items {
        assert!(
            !r["content"]["closing_codes"].as_array().unwrap().is_empty(),
            "read whole: {r}"
        );
    }
}

#[tokio::test]
async fn a_restart_never_ingests_a_file_twice() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    {
        let d = Daemon::start(dir.path());
        wait_for(&inbox.join("done"), 10).await;
        std::fs::write(inbox.join("kpu.txt"), sample("kpu-kalsel-diskominfo.txt")).unwrap();
        wait_for(&inbox.join("done/kpu.txt"), 15).await;
        d.kill9();
    }
    // The same file arrives again (as after a crash before the move, or a second drop).
    std::fs::write(inbox.join("kpu.txt"), sample("kpu-kalsel-diskominfo.txt")).unwrap();
    let d = Daemon::start(dir.path());
    let api = d.client();
    eventually(15, "the second copy to move to done/", || {
        let inbox = inbox.clone();
        async move {
            let n = std::fs::read_dir(inbox.join("done")).unwrap().count();
            (n == 2 && !inbox.join("kpu.txt").exists()).then_some(())
        }
    })
    .await;
    assert_eq!(
        count(&api).await,
        1,
        "the same file must map to the same release"
    );
    let (_, page) = api.get_json("/api/v1/releases").await;
    let r: &Value = &page["items"][0];
    assert_eq!(r["version"], 1);
}
