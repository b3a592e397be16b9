//! The command line: `parse` offline, `check-config`, and `release …` through the daemon.

use crate::utils::*;

fn siar(dir: &std::path::Path, url: &str, args: &[&str]) -> (bool, String, String) {
    let (ok, out, err) = run_cli(dir, url, args);
    (ok, String::from_utf8_lossy(&out).into_owned(), err)
}

#[test]
fn parse_prints_the_release_offline() {
    let dir = tempfile::tempdir().unwrap();
    let file = samples().join("kpu-kalsel-diskominfo.txt");
    let (ok, out, err) = siar(
        dir.path(),
        "http://127.0.0.1:9",
        &["parse", file.to_str().unwrap()],
    );
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["release"]["dateline"], "BANJARBARU");
    assert_eq!(v["release"]["event_date"]["date"], "2021-09-01");
    assert_eq!(v["warnings"], serde_json::json!([]));

    let bad = dir.path().join("judul.txt");
    std::fs::write(&bad, "Hanya Judul\n").unwrap();
    let (ok, _, err) = siar(
        dir.path(),
        "http://127.0.0.1:9",
        &["parse", bad.to_str().unwrap()],
    );
    assert!(!ok);
    assert!(
        err.contains("judul.txt: line 1: the release has a title but no body text"),
        "{err}"
    );
}

#[test]
fn check_config_names_the_bad_key() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "[server]\nlisten = \"127.0.0.1:9999\"\n").unwrap();
    let (ok, out, _) = siar(
        dir.path(),
        "",
        &["--config", good.to_str().unwrap(), "check-config"],
    );
    assert!(ok);
    assert!(out.contains("configuration OK"), "{out}");
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[publisher]\ntimezone = \"Mars/Olympus\"\n[feeds]\nitems = 0\n",
    )
    .unwrap();
    let (ok, _, err) = siar(
        dir.path(),
        "",
        &["--config", bad.to_str().unwrap(), "check-config"],
    );
    assert!(!ok);
    assert!(err.contains("publisher.timezone: `Mars/Olympus`"), "{err}");
    assert!(
        err.contains("feeds.items: must be between 1 and 1000"),
        "{err}"
    );

    // Partners: bad keys named, and a secret the environment does not hold.
    let partners = dir.path().join("partners.toml");
    std::fs::write(
        &partners,
        "[[partners]]\nid = \"mc\"\nurl = \"ftp://mc\"\nformat = \"pdf\"\nschedule = \"kadang-kadang\"\nsecret_env = \"SIAR_TEST_NO_SUCH_SECRET\"\nheaders = { webhook-id = \"x\" }\nconcurrency = 0\n",
    )
    .unwrap();
    let (ok, _, err) = siar(
        dir.path(),
        "",
        &["--config", partners.to_str().unwrap(), "check-config"],
    );
    assert!(!ok);
    for key in [
        "partners[0].url",
        "partners[0].format",
        "partners[0].schedule",
        "partners[0].headers",
        "partners[0].concurrency",
    ] {
        assert!(err.contains(key), "{key} not named in: {err}");
    }
    std::fs::write(
        &partners,
        "[[partners]]\nid = \"mc\"\nurl = \"https://mc.example.id/hook\"\nformat = \"ninjs\"\nsecret_env = \"SIAR_TEST_NO_SUCH_SECRET\"\n",
    )
    .unwrap();
    let (ok, _, err) = siar(
        dir.path(),
        "",
        &["--config", partners.to_str().unwrap(), "check-config"],
    );
    assert!(!ok);
    assert!(
        err.contains(
            "partners[0].secret_env: the environment variable SIAR_TEST_NO_SUCH_SECRET is not set"
        ),
        "{err}"
    );
}

#[tokio::test]
async fn release_commands_go_through_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let work = dir.path().to_owned();
    let url = d.url.clone();
    let run = move |args: Vec<String>| {
        let (work, url) = (work.clone(), url.clone());
        tokio::task::spawn_blocking(move || {
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            siar(&work, &url, &a)
        })
    };
    let kpu = samples()
        .join("kpu-kalsel-diskominfo.txt")
        .display()
        .to_string();
    let voli = samples().join("voli-polda.txt").display().to_string();
    let (ok, out, err) = run(vec![
        "release".into(),
        "add".into(),
        kpu.clone(),
        voli.clone(),
        "--category".into(),
        "pemerintahan".into(),
    ])
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert_eq!(out.matches(" created ").count(), 2, "{out}");
    let id = out
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned();

    let (ok, out, _) = run(vec!["release".into(), "add".into(), kpu.clone()])
        .await
        .unwrap();
    assert!(ok);
    assert!(out.contains(&format!("{id} already known")), "{out}");

    let (ok, out, _) = run(vec!["release".into(), "list".into()]).await.unwrap();
    assert!(ok);
    assert!(
        out.contains("KPU Kalsel Sambangi") && out.contains("Polda Kalsel"),
        "{out}"
    );

    let (ok, out, _) = run(vec!["release".into(), "show".into(), id.clone()])
        .await
        .unwrap();
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["provenance"]["source"]["kind"], "cli");
    assert_eq!(
        v["content"]["categories"],
        serde_json::json!(["pemerintahan"])
    );

    let fixed = dir.path().join("kpu-fixed.txt");
    std::fs::write(
        &fixed,
        String::from_utf8(sample("kpu-kalsel-diskominfo.txt"))
            .unwrap()
            .replace("Edy Ariansyah", "Edy Ariyansyah"),
    )
    .unwrap();
    let (ok, out, err) = run(vec![
        "release".into(),
        "correct".into(),
        id.clone(),
        fixed.display().to_string(),
        "--note".into(),
        "Ejaan nama diperbaiki".into(),
    ])
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert!(out.contains("now version 2"), "{out}");

    let (ok, out, _) = run(vec![
        "release".into(),
        "retract".into(),
        id.clone(),
        "--reason".into(),
        "Ditarik".into(),
    ])
    .await
    .unwrap();
    assert!(ok);
    assert!(out.contains("retracted"));

    let (ok, _, err) = run(vec![
        "release".into(),
        "show".into(),
        "01J8ZQ4G5N6W4P8Y2D9T3K7M1C".into(),
    ])
    .await
    .unwrap();
    assert!(!ok);
    assert!(err.contains("404 not_found"), "{err}");

    // Unreachable daemon: a clear error, exit 1.
    let (ok, _, err) = tokio::task::spawn_blocking(|| {
        siar(
            std::path::Path::new("."),
            "http://127.0.0.1:9",
            &["release", "list"],
        )
    })
    .await
    .unwrap();
    assert!(!ok);
    assert!(err.contains("cannot reach siar"), "{err}");
}

/// `siar subscribers import` (pending, or confirmed only with a stated source) and `export`.
#[test]
fn subscribers_import_and_export() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("siar.toml");
    std::fs::write(&cfg, "[[lists]]\nid = \"jurnalis\"\nname = \"Jurnalis\"\n").unwrap();
    let d = Daemon::start_with(dir.path(), Some(&cfg), &[]);
    let csv = dir.path().join("wartawan.csv");
    std::fs::write(
        &csv,
        "nama,email\nAni,ani@redaksi.id\nBudi, Budi@Redaksi.ID \nRusak,bukan alamat\nCitra,citra@redaksi.id\n",
    )
    .unwrap();
    let path = csv.to_str().unwrap();
    let (ok, out, err) = siar(
        dir.path(),
        &d.url,
        &["subscribers", "import", path, "--list", "jurnalis"],
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("3 added as pending"), "{out}");
    assert!(out.contains("1 invalid") && out.contains("line 4"), "{out}");
    // --confirmed needs --source.
    let (ok, _, err) = siar(
        dir.path(),
        &d.url,
        &[
            "subscribers",
            "import",
            path,
            "--list",
            "jurnalis",
            "--confirmed",
        ],
    );
    assert!(!ok);
    assert!(err.contains("--source"), "{err}");
    let (ok, out, err) = siar(
        dir.path(),
        &d.url,
        &[
            "subscribers",
            "import",
            path,
            "--list",
            "jurnalis",
            "--confirmed",
            "--source",
            "persetujuan tertulis 2 Nov",
        ],
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("3 added as confirmed"), "{out}");
    // An unknown list is a clear error.
    let (ok, _, err) = siar(
        dir.path(),
        &d.url,
        &["subscribers", "import", path, "--list", "tidak-ada"],
    );
    assert!(!ok);
    assert!(err.contains("no list"), "{err}");

    let (ok, out, err) = siar(
        dir.path(),
        &d.url,
        &["subscribers", "export", "--list", "jurnalis"],
    );
    assert!(ok, "{err}");
    let mut lines = out.lines();
    assert_eq!(
        lines.next(),
        Some("address,status,created_at,confirmed_at,left_at,consent")
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 3, "{out}");
    assert!(rows[1].starts_with("budi@redaksi.id,confirmed,"), "{out}");
    assert!(
        rows[1].contains("import (confirmed): persetujuan tertulis 2 Nov"),
        "{out}"
    );
}
