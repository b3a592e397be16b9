//! The reliability suite: SIGKILL at ten seeded random moments of a mixed fan-out (feeds, 20
//! partners, a 5,000-recipient list) — after the last restart nothing is lost and repeats stay
//! within the in-flight bound of each kill; a store on a full or read-only filesystem; the
//! relay down from the start. (A partner that accepts and never answers is in
//! `webhooks::partners_get_signed_deliveries_with_retries_and_isolation`.)
//!
//! The seed is printed; `SIAR_RELIABILITY_SEED=N` replays a run.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use crate::utils::*;

/// xorshift64*: a small seeded generator, so a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

const PARTNERS: usize = 20;
const RECIPIENTS: usize = 5_000;
const KILLS: usize = 10;
const MAX_CONNECTIONS: usize = 8;

#[tokio::test]
async fn ten_seeded_kills_during_a_mixed_fan_out_lose_nothing() {
    let seed = std::env::var("SIAR_RELIABILITY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_261_129u64);
    println!("reliability seed {seed} (SIAR_RELIABILITY_SEED={seed} replays it)");
    let mut rng = Rng(seed.max(1));

    // (partner, webhook-id); the id is `release.vN.event`.
    let hooks: crate::crash::Sink = Default::default();
    let base = crate::crash::partners_sink(&hooks).await;
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpRecorder::start_envelopes_only(dir.path(), "relay");
    let cfg = dir.path().join("siar.toml");
    let mut c = format!(
        "[smtp]\nurl = \"{}\"\nfrom = \"Diskominfo Kalsel <siaran@kalselprov.go.id>\"\n\
         max_connections = {MAX_CONNECTIONS}\nrate_per_second = 100000\n\n\
         [[lists]]\nid = \"warga\"\nname = \"Siaran Pers untuk Warga\"\n\n",
        smtp.url()
    );
    for i in 0..PARTNERS {
        c.push_str(&format!(
            "[[partners]]\nid = \"p{i}\"\nurl = \"{base}/p/p{i}\"\nformat = \"ninjs\"\n\
             secret_env = \"SIAR_TEST_SECRET\"\nallow_private = true\n\n"
        ));
    }
    std::fs::write(&cfg, c).unwrap();
    let env = [("SIAR_TEST_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")];

    let d = Daemon::start_with(dir.path(), Some(&cfg), &env);
    let addresses: Vec<String> = (0..RECIPIENTS)
        .map(|i| format!("warga{i:05}@banjar.id"))
        .collect();
    let r = d
        .client()
        .post("/api/v1/lists/warga/subscribers")
        .json(&serde_json::json!({"addresses": addresses, "confirmed": true, "source": "uji keandalan"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Each round: start (but the first), publish while a random moment passes, SIGKILL.
    let mut acked = BTreeSet::new();
    let mut daemon = Some(d);
    let mut at_kills = Vec::new();
    for round in 0..KILLS {
        let d = daemon
            .take()
            .unwrap_or_else(|| Daemon::start_with(dir.path(), Some(&cfg), &env));
        let api = Arc::new(d.client());
        // A release sent concurrently with the countdown: the kill may land before, while or
        // after it is stored.
        let mut publishing = tokio::task::JoinSet::new();
        {
            let api = api.clone();
            let n = round;
            publishing.spawn(async move {
                let (s, r) = api.post_text(release_text(n)).await;
                (s == 201).then(|| r["id"].as_str().unwrap().to_owned())
            });
        }
        let wait = rng.between(50, 1_500);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        d.kill9();
        while let Some(r) = publishing.join_next().await {
            if let Ok(Some(id)) = r {
                acked.insert(id);
            }
        }
        at_kills.push((wait, hooks.lock().unwrap().len(), smtp.count()));
    }

    // The last start: everything owed goes out.
    let d = Daemon::start_with(dir.path(), Some(&cfg), &env);
    let api = d.client();
    let (_, list) = api.get_json("/api/v1/releases?limit=500").await;
    let stored: BTreeSet<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    let lost: Vec<&String> = acked.difference(&stored).collect();
    assert!(lost.is_empty(), "acknowledged releases lost: {lost:?}");
    let expected_hooks = PARTNERS * stored.len();
    let expected_mails = RECIPIENTS * stored.len();
    let mail_key = |m: &Received| (m.to[0].clone(), m.message_id.clone());
    let deadline = std::time::Instant::now() + Duration::from_secs(400);
    loop {
        let hooks_now = hooks
            .lock()
            .unwrap()
            .iter()
            .cloned()
            .collect::<BTreeSet<_>>()
            .len();
        let mails_now = smtp
            .messages()
            .iter()
            .map(mail_key)
            .collect::<BTreeSet<_>>()
            .len();
        if hooks_now >= expected_hooks && mails_now >= expected_mails {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "after the last restart only {hooks_now} of {expected_hooks} webhooks and {mails_now} of {expected_mails} mails arrived:\n{}",
            d.logs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Partners: every stored release, to every partner.
    let got = hooks.lock().unwrap().clone();
    let unique: BTreeSet<(String, String)> = got.iter().cloned().collect();
    for i in 0..PARTNERS {
        let partner = format!("p{i}");
        let releases: BTreeSet<String> = unique
            .iter()
            .filter(|(p, _)| *p == partner)
            .map(|(_, id)| id.split('.').next().unwrap().to_owned())
            .collect();
        assert_eq!(releases, stored, "partner {partner} lost releases");
    }
    // The list: every recipient, every release, exactly the stored ones.
    let mails = smtp.messages();
    let mut per_release: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut mail_unique = BTreeSet::new();
    for m in &mails {
        let release = m
            .message_id
            .trim_start_matches('<')
            .split('.')
            .next()
            .unwrap()
            .to_owned();
        per_release
            .entry(release)
            .or_default()
            .insert(m.to[0].clone());
        mail_unique.insert(mail_key(m));
    }
    assert_eq!(
        per_release.keys().cloned().collect::<BTreeSet<_>>(),
        stored,
        "mail went out for exactly the stored releases"
    );
    for (release, to) in &per_release {
        assert_eq!(to.len(), RECIPIENTS, "release {release}: recipients missed");
    }
    // Feeds: every release (the feed holds the latest 30).
    let feed: serde_json::Value = reqwest::get(format!("{}/feeds/feed.json", d.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let in_feed = feed["items"].to_string();
    for id in &stored {
        assert!(
            in_feed.contains(id.as_str()),
            "release {id} missing from the feed"
        );
    }

    // Repeats: only what can have been in flight at each kill.
    let hook_repeats = got.len() - unique.len();
    let hook_bound = KILLS * PARTNERS * siar::deliver::IN_FLIGHT_BOUND;
    let mail_repeats = mails.len() - mail_unique.len();
    let mail_bound = KILLS * (2 * MAX_CONNECTIONS + 2 * siar::mail::SETTLE_BATCH);
    println!(
        "reliability: {KILLS} kills at {:?} (ms, webhooks and mails received by then); {} releases ({} acknowledged); {} webhook deliveries + {} mails, 0 lost; repeats: webhooks {hook_repeats} (bound {hook_bound}), mail {mail_repeats} (bound {mail_bound})",
        at_kills,
        stored.len(),
        acked.len(),
        unique.len(),
        mail_unique.len(),
    );
    assert!(
        hook_repeats <= hook_bound,
        "{hook_repeats} webhook repeats > {hook_bound}"
    );
    assert!(
        mail_repeats <= mail_bound,
        "{mail_repeats} mail repeats > {mail_bound}"
    );
    drop(d);
}

/// A tmpfs mounted for one test (root only), unmounted when dropped.
struct Mount(std::path::PathBuf);

impl Mount {
    fn tmpfs(at: &std::path::Path, size: &str) -> Mount {
        std::fs::create_dir_all(at).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mounting a tmpfs (the test needs root, as CI has)");
        Mount(at.to_owned())
    }

    fn remount(&self, mode: &str) {
        let ok = std::process::Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(&self.0)
            .status()
            .unwrap()
            .success();
        assert!(ok, "remount {mode}");
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Posts distinct releases until one is refused; returns that answer.
async fn post_until_refused(api: &Api) -> (u16, serde_json::Value) {
    for n in 1000..1200 {
        let (s, r) = api.post_text(release_text(n)).await;
        if s != 201 {
            return (s, r);
        }
    }
    panic!("200 releases were accepted on a filesystem that cannot take them");
}

/// Waits for `/readyz` to answer 200 (the workers start just after the listener).
async fn ready(d: &Daemon) -> String {
    eventually(10, "siar to be ready", || async {
        let (s, body) = readyz(d).await;
        (s == 200).then_some(body)
    })
    .await
}

async fn readyz(d: &Daemon) -> (u16, String) {
    let r = reqwest::get(format!("{}/readyz", d.url)).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn a_full_or_read_only_filesystem_is_refused_clearly_and_siar_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = Mount::tmpfs(&dir.path().join("mnt"), "32m");
    let store = mnt.0.join("data");
    let env = [("SIAR_STORE_PATH", store.to_str().unwrap())];
    let mut d = Daemon::start_with(dir.path(), None, &env);
    let mut acked = Vec::new();
    for n in 0..3 {
        let (s, r) = d.client().post_text(release_text(n)).await;
        assert_eq!(s, 201);
        acked.push(r["id"].as_str().unwrap().to_owned());
    }

    {
        let (what, expect) = ("full", "No space left on device");
        // The disk fills up.
        let filler = mnt.0.join("filler");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&filler).unwrap();
            while f.write_all(&[0u8; 1 << 20]).is_ok() {}
            let _ = f.sync_all();
        }
        // Clear errors: a 503 that says why, and /readyz says it too.
        let (s, r) = post_until_refused(&d.client()).await;
        assert_eq!(s, 503, "{what}: {r}");
        assert_eq!(r["error"]["code"], "storage_unavailable", "{r}");
        assert!(
            r["error"]["message"].as_str().unwrap().contains(expect),
            "{what}: {r}"
        );
        let (s, body) = readyz(&d).await;
        assert_eq!(s, 503, "{body}");
        assert!(body.contains(expect), "{body}");
        // What was stored can still be read.
        for id in &acked {
            let (s, _) = d.client().get_json(&format!("/api/v1/releases/{id}")).await;
            assert_eq!(s, 200, "{what}: release {id} unreadable");
        }

        // Space returns: siar cannot clear sled's kept error in place, so it stops and asks
        // its service manager for a restart (exit status non-zero).
        std::fs::remove_file(&filler).unwrap();
        let status = d
            .wait_exit(30)
            .unwrap_or_else(|| panic!("{what}: siar did not ask to be restarted:\n{}", d.logs()));
        assert!(!status.success(), "{what}: {status:?}");
        assert!(d.logs().contains("restarting to reopen it"), "{}", d.logs());

        // Restarted (as systemd's Restart=on-failure does): ready, nothing lost or corrupted,
        // and taking releases again.
        d = Daemon::start_with(dir.path(), None, &env);
        let body = ready(&d).await;
        assert!(body.contains("ready"), "{what}: {body}");
        let (_, list) = d.client().get_json("/api/v1/releases?limit=500").await;
        let ids: Vec<&str> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        for id in &acked {
            assert!(
                ids.contains(&id.as_str()),
                "{what}: acknowledged release {id} lost"
            );
            let (s, r) = d.client().get_json(&format!("/api/v1/releases/{id}")).await;
            assert_eq!(s, 200);
            assert!(r["content"]["title"]
                .as_str()
                .unwrap()
                .starts_with("Rilis Uji"));
        }
        let (s, r) = d.client().post_text(release_text(2000 + acked.len())).await;
        assert_eq!(s, 201, "{what}: {r}");
        acked.push(r["id"].as_str().unwrap().to_owned());
    }

    // A read-only filesystem (Linux will not remount one read-only under a process writing
    // to it, so siar meets it at start-up): a clear error and exit status 1, nothing changed;
    // started again once it is writable, everything is there.
    assert!(d.terminate().success());
    mnt.remount("ro");
    let out = std::process::Command::new(siar_bin())
        .arg("serve")
        .current_dir(dir.path())
        .env_remove("SIAR_CONFIG")
        .env("SIAR_API_TOKEN", TOKEN)
        .env("SIAR_SERVER_LISTEN", "127.0.0.1:0")
        .env("SIAR_STORE_PATH", &store)
        .env("SIAR_INGEST_INBOX", dir.path().join("inbox"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("opening the store at") && stderr.contains("Read-only file system"),
        "{stderr}"
    );
    mnt.remount("rw");
    d = Daemon::start_with(dir.path(), None, &env);
    ready(&d).await;
    for id in &acked {
        let (s, _) = d.client().get_json(&format!("/api/v1/releases/{id}")).await;
        assert_eq!(s, 200, "release {id} after the read-only start");
    }
    let (s, r) = d.client().post_text(release_text(3000)).await;
    assert_eq!(s, 201, "{r}");
    drop(d);
}

#[tokio::test]
async fn a_relay_down_from_the_start_loses_nothing_once_it_comes_up() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = dir.path().join("siar.toml");
    std::fs::write(
        &cfg,
        format!(
            "[smtp]\nurl = \"smtp://127.0.0.1:{port}\"\nfrom = \"Diskominfo Kalsel <siaran@kalselprov.go.id>\"\n\
             timeout_secs = 5\nretry_schedule_secs = [1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2]\n\n\
             [[lists]]\nid = \"warga\"\nname = \"Siaran Pers untuk Warga\"\n"
        ),
    )
    .unwrap();
    let d = Daemon::start_with(dir.path(), Some(&cfg), &[]);
    let api = d.client();
    let addresses: Vec<String> = (0..50).map(|i| format!("warga{i:02}@banjar.id")).collect();
    let r = api
        .post("/api/v1/lists/warga/subscribers")
        .json(&serde_json::json!({"addresses": addresses, "confirmed": true, "source": "uji"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut ids = Vec::new();
    for n in 0..2 {
        let (s, r) = api.post_text(release_text(n)).await;
        assert_eq!(s, 201);
        ids.push(r["id"].as_str().unwrap().to_owned());
    }
    // Nobody answers: the mails wait and are retried, counted as network failures.
    eventually(20, "retries against the missing relay", || async {
        let m = d.metrics().await;
        let n = metric(&m, "siar_smtp_replies_total{class=\"network\"}").unwrap_or(0.0);
        (n >= 50.0).then_some(())
    })
    .await;
    let (s, body) = readyz(&d).await;
    assert_eq!(s, 200, "a missing relay does not make siar unready: {body}");

    // The relay comes up on its port: every recipient gets both releases, once.
    let smtp = SmtpRecorder::start_on(dir.path(), "relay", port);
    eventually(60, "both mailings once the relay is up", || async {
        (smtp.count() >= 100).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut got = BTreeSet::new();
    for m in smtp.messages() {
        assert!(
            got.insert((m.to[0].clone(), m.subject())),
            "a repeat: {:?}",
            m.to
        );
    }
    assert_eq!(got.len(), 100);
    drop(d);
}
