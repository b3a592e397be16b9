//! The SMTP client against real servers: Python's aiosmtpd (tests/smtp/recorder.py) and TCP
//! peers that refuse or never answer. Sessions are capped, reused and rotated; every send is
//! bounded in time; replies are classified by the command they answer.

#![allow(clippy::unwrap_used)] // Tests: a panic is a failed test.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use siar_fanout::smtp::{Relay, RelayConfig, SendOutcome};

struct Recorder {
    child: Child,
    port: u16,
    out: PathBuf,
    faults: PathBuf,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn recorder(dir: &Path, pipelining: bool) -> Recorder {
    let out = dir.join("out.jsonl");
    let faults = dir.join("faults.json");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/smtp/recorder.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg(&out)
        .arg(&faults)
        .env("PIPELINING", if pipelining { "1" } else { "0" })
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 with aiosmtpd (scripts/test installs it)");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line.trim().strip_prefix("port ").unwrap().parse().unwrap();
    Recorder {
        child,
        port,
        out,
        faults,
    }
}

impl Recorder {
    fn sessions(&self) -> Vec<String> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["session"].as_str().unwrap().to_owned()
            })
            .collect()
    }
}

fn config(port: u16) -> RelayConfig {
    let mut c = RelayConfig::from_url(&format!("smtp://127.0.0.1:{port}?tls=none")).unwrap();
    c.rate_per_second = 100_000;
    c.timeout = Duration::from_secs(5);
    c
}

const MESSAGE: &[u8] = b"From: a@kalselprov.go.id\r\nTo: b@redaksi.id\r\nSubject: uji\r\n\r\nbaris satu\r\n.baris dengan titik\r\n";

#[tokio::test]
async fn sessions_are_capped_reused_and_rotated() {
    for pipelining in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let r = recorder(dir.path(), pipelining);
        let mut c = config(r.port);
        c.max_connections = 2;
        c.rotate_after = 5;
        let relay = Arc::new(Relay::new(c));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..20 {
            let relay = relay.clone();
            tasks.spawn(async move {
                relay
                    .send(
                        "bounces@kalselprov.go.id",
                        &format!("w{i}@redaksi.id"),
                        MESSAGE,
                    )
                    .await
            });
        }
        while let Some(o) = tasks.join_next().await {
            assert_eq!(o.unwrap(), SendOutcome::Sent);
        }
        let sessions = r.sessions();
        assert_eq!(sessions.len(), 20);
        // Never more than two at once; each rotated after five messages: at least four in all,
        // and no session carried more than five.
        let distinct: BTreeSet<&String> = sessions.iter().collect();
        assert!(distinct.len() >= 4, "{distinct:?}");
        for s in &distinct {
            assert!(sessions.iter().filter(|x| x == s).count() <= 5);
        }
        assert_eq!(relay.sessions_opened() as usize, distinct.len());
        // The dot-stuffed line arrived intact.
        let text = std::fs::read_to_string(&r.out).unwrap();
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        use base64::Engine as _;
        let data = base64::engine::general_purpose::STANDARD
            .decode(first["data"].as_str().unwrap())
            .unwrap();
        assert!(String::from_utf8_lossy(&data).contains("\r\n.baris dengan titik\r\n"));
    }
}

#[tokio::test]
async fn at_most_max_connections_sessions_are_open_at_once() {
    // A server that counts how many connections it holds at once and answers like a relay.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let dir = tempfile::tempdir().unwrap();
    let r = recorder(dir.path(), true);
    let upstream = r.port;
    {
        let (open, peak) = (open.clone(), peak.clone());
        tokio::spawn(async move {
            loop {
                let (client, _) = listener.accept().await.unwrap();
                let (open, peak) = (open.clone(), peak.clone());
                tokio::spawn(async move {
                    let now = open.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                    peak.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                    // Relay the bytes to the real server (a transparent TCP proxy); the session
                    // has ended when the client closes its side.
                    let server = tokio::net::TcpStream::connect(("127.0.0.1", upstream))
                        .await
                        .unwrap();
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut sr, &mut cw).await;
                    });
                    let _ = tokio::io::copy(&mut cr, &mut sw).await;
                    open.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                });
            }
        });
    }
    let mut c = config(port);
    c.max_connections = 3;
    // No rotation here (a rotated session's close reaches the proxy a moment late).
    c.rotate_after = 1000;
    let relay = Arc::new(Relay::new(c));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..30 {
        let relay = relay.clone();
        tasks.spawn(async move { relay.send("", &format!("w{i}@redaksi.id"), MESSAGE).await });
    }
    while let Some(o) = tasks.join_next().await {
        assert_eq!(o.unwrap(), SendOutcome::Sent);
    }
    let peak = peak.load(std::sync::atomic::Ordering::SeqCst);
    assert!((1..=3).contains(&peak), "{peak} sessions open at once");
    assert_eq!(
        relay.sessions_opened(),
        peak as u64,
        "idle sessions are reused"
    );
}

#[tokio::test]
async fn a_silent_relay_times_out_and_a_closed_port_is_retried() {
    // Accepts and never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut c = config(silent.local_addr().unwrap().port());
    c.timeout = Duration::from_secs(1);
    let relay = Relay::new(c);
    let started = Instant::now();
    let o = relay.send("", "a@redaksi.id", MESSAGE).await;
    assert!(matches!(o, SendOutcome::Retry { .. }), "{o:?}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    drop(silent);

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let relay = Relay::new(config(port));
    let o = relay.send("", "a@redaksi.id", MESSAGE).await;
    assert!(
        matches!(
            o,
            SendOutcome::Retry {
                class: "connect",
                ..
            }
        ),
        "{o:?}"
    );
}

#[tokio::test]
async fn replies_are_classified_and_the_session_stays_in_step() {
    for pipelining in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let r = recorder(dir.path(), pipelining);
        std::fs::write(
            &r.faults,
            r#"{"mail_421_first": 1, "rcpt_451_first": 1, "rcpt_550": ["hilang@redaksi.id"]}"#,
        )
        .unwrap();
        let mut c = config(r.port);
        c.max_connections = 1;
        c.rate_per_second = 1000;
        let relay = Relay::new(c);
        // 421 to MAIL: retry, the session dropped, the pace halved.
        let o = relay.send("", "a@redaksi.id", MESSAGE).await;
        assert!(
            matches!(
                o,
                SendOutcome::Retry {
                    code: Some(421),
                    ..
                }
            ),
            "{o:?}"
        );
        assert!(relay.current_rate() < 1000.0);
        // 451 to RCPT: retry; the same session goes on.
        let o = relay.send("", "a@redaksi.id", MESSAGE).await;
        assert!(
            matches!(
                o,
                SendOutcome::Retry {
                    code: Some(451),
                    ..
                }
            ),
            "{o:?}"
        );
        // 550 to RCPT: the mailbox bounced.
        let o = relay.send("", "hilang@redaksi.id", MESSAGE).await;
        assert!(matches!(o, SendOutcome::Bounced { code: 550, .. }), "{o:?}");
        // And the next mail on the same session goes through.
        assert_eq!(
            relay.send("", "a@redaksi.id", MESSAGE).await,
            SendOutcome::Sent
        );
        assert_eq!(
            relay.send("", "b@redaksi.id", MESSAGE).await,
            SendOutcome::Sent
        );
        assert_eq!(r.sessions().len(), 2);
        // The 421 closed one session; everything after went over one more.
        assert_eq!(relay.sessions_opened(), 2, "pipelining {pipelining}");
        // Commands were pipelined exactly when the relay offered it.
        let expected = if pipelining { 2 } else { 0 };
        assert_eq!(relay.sessions_pipelined(), expected);
    }
}
