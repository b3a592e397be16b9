//! Partner webhooks against real HTTP servers on 127.0.0.1, each scripted to misbehave in
//! its own way, every signature checked with the `standardwebhooks` crate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;

use crate::utils::*;

/// One request a partner received.
#[derive(Clone, Debug)]
struct Received {
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Received {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }
}

type Log = Arc<Mutex<HashMap<String, Vec<Received>>>>;

async fn partner(
    State(log): State<Log>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let n = {
        let mut log = log.lock().unwrap();
        let v = log.entry(name.clone()).or_default();
        v.push(Received {
            headers,
            body: body.to_vec(),
        });
        v.len()
    };
    match name.as_str() {
        // Down three times, then fine.
        "mc" if n <= 3 => (StatusCode::INTERNAL_SERVER_ERROR, "sedang gangguan").into_response(),
        "gone" => StatusCode::GONE.into_response(),
        "limited" => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "2")],
            "pelan-pelan",
        )
            .into_response(),
        "slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            StatusCode::OK.into_response()
        }
        "moved" => (StatusCode::FOUND, [("location", "/p/h1")]).into_response(),
        "down" => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        "bad" => (StatusCode::BAD_REQUEST, "format tidak dikenal").into_response(),
        _ => (StatusCode::OK, "diterima").into_response(),
    }
}

/// The scripted partners on 127.0.0.1: their base URL and the server task.
async fn serve_partners(log: &Log) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/p/{name}", axum::routing::post(partner))
        .with_state(log.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, server)
}

fn config(base: &str, hole: &str, closed: &str) -> String {
    let mut c = String::new();
    let mut add = |id: &str, url: &str, extra: &str| {
        c.push_str(&format!(
            "[[partners]]\nid = \"{id}\"\nurl = \"{url}\"\nformat = \"ninjs\"\nsecret_env = \"SIAR_TEST_SECRET\"\nallow_private = true\ntimeout_secs = 1\nretry_schedule_secs = [0, 1, 1, 1, 1, 1, 1, 1]\n{extra}\n"
        ));
    };
    for i in 1..=10 {
        add(&format!("h{i}"), &format!("{base}/p/h{i}"), "");
    }
    for id in ["mc", "gone", "limited", "slow", "moved", "bad"] {
        add(id, &format!("{base}/p/{id}"), "");
    }
    add("hole", hole, "");
    // Always 503: the breaker must pause it (its retries come fast here).
    add(
        "down",
        &format!("{base}/p/down"),
        "breaker_failures = 3\nbreaker_cooldown_secs = 2",
    );
    add("refused", closed, "");
    add(
        "auth",
        &format!("{base}/p/auth"),
        "headers = { Authorization = \"Bearer mitra-123\" }",
    );
    // The guard: the same kind of URL without allow_private is refused.
    c.push_str(&format!(
        "[[partners]]\nid = \"private\"\nurl = \"{base}/p/private\"\nformat = \"ninjs\"\nsecret_env = \"SIAR_TEST_SECRET\"\n\n"
    ));
    c.push_str(&format!(
        "[[partners]]\nid = \"radio\"\nurl = \"{base}/p/radio\"\nformat = \"radio-script\"\nsecret_env = \"SIAR_TEST_SECRET\"\nallow_private = true\nwords = 80\n"
    ));
    c
}

async fn deliveries(api: &Api, release: &str) -> HashMap<String, serde_json::Value> {
    let (s, v) = api
        .get_json(&format!("/api/v1/releases/{release}/deliveries"))
        .await;
    assert_eq!(s, 200);
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let target = d["target"].as_str().unwrap().trim_start_matches("partner:");
            let (v, e) = (d["version"].as_u64().unwrap(), d["event"].as_str().unwrap());
            (format!("{target}@v{v}.{e}"), d.clone())
        })
        .collect()
}

async fn attempts(api: &Api, delivery: &serde_json::Value) -> Vec<serde_json::Value> {
    let (s, v) = api
        .get_json(&format!(
            "/api/v1/deliveries/{}/attempts",
            delivery["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(s, 200);
    v["items"].as_array().unwrap().clone()
}

fn count(log: &Log, name: &str) -> usize {
    log.lock().unwrap().get(name).map_or(0, Vec::len)
}

fn received(log: &Log, name: &str) -> Vec<Received> {
    log.lock().unwrap().get(name).cloned().unwrap_or_default()
}

#[tokio::test]
async fn partners_get_signed_deliveries_with_retries_and_isolation() {
    let log: Log = Arc::default();
    let (base, server) = serve_partners(&log).await;
    // A black hole: accepts connections and never answers.
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hole_url = format!("http://{}/hook", hole.local_addr().unwrap());
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    let hole_thread = std::thread::spawn(move || {
        for s in hole.incoming().take(50) {
            match s {
                Ok(s) => keep.lock().unwrap().push(s),
                Err(_) => break,
            }
        }
    });
    // A port nobody listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/hook", l.local_addr().unwrap())
    };

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("siar.toml");
    // The operator is mailed when a partner is disabled.
    let smtp = SmtpRecorder::start(dir.path(), "ops-relay");
    std::fs::write(
        &cfg,
        format!(
            "{}\n[smtp]\nurl = \"{}\"\nfrom = \"siar <siar@kalselprov.go.id>\"\n\n[ops]\nemail = \"ops@kalselprov.go.id\"\n",
            config(&base, &hole_url, &closed),
            smtp.url()
        ),
    )
    .unwrap();
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(*b"rahasia-mitra-siar-kalsel-2026!!")
    );
    let old_secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(*b"rahasia-lama-yang-sedang-diganti")
    );
    let secrets = format!("{secret} {old_secret}");
    let d = Daemon::start_with(
        dir.path(),
        Some(&cfg),
        &[
            ("SIAR_TEST_SECRET", secrets.as_str()),
            ("SIAR_SERVER_PUBLIC_URL", "https://siaran.kalselprov.go.id"),
        ],
    );
    let api = d.client();
    let started = std::time::Instant::now();
    let (s, r) = api.post_text(sample("kpu-kalsel-diskominfo.txt")).await;
    assert_eq!(s, 201, "{r}");
    let id = r["id"].as_str().unwrap().to_owned();

    // Healthy partners get it within a second or two, whatever the others do.
    eventually(10, "every healthy partner received the release", || async {
        ((1..=10).all(|i| count(&log, &format!("h{i}")) >= 1)
            && count(&log, "radio") == 1
            && count(&log, "auth") == 1)
            .then_some(())
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "instant partners waited {:?} (a black hole and a slow partner must not hold them up)",
        started.elapsed()
    );

    // The media center: 500 three times, delivered on the fourth attempt, same webhook-id.
    eventually(20, "the media center got its fourth attempt", || async {
        (count(&log, "mc") >= 4).then_some(())
    })
    .await;
    let mc = received(&log, "mc");
    let ids: Vec<String> = mc.iter().map(|r| r.header("webhook-id")).collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
    assert_eq!(ids[0], format!("{id}.v1.published"));
    let item = mc[3].json();
    assert_eq!(item["type"], "release.published");
    assert!(item["data"]["uri"]
        .as_str()
        .unwrap()
        .starts_with("tag:kalselprov.go.id,"));
    assert_eq!(item["data"]["pubStatus"], "usable");
    assert_eq!(
        item["data"]["headlines"][0]["value"],
        "KPU Kalsel Sambangi Diskominfo Kalsel Terkait Penyebarluasan Informasi"
    );

    // Every request from siar carries valid signatures, under the new and the old secret.
    let all: Vec<Received> = log.lock().unwrap().values().flatten().cloned().collect();
    assert!(all.len() >= 15);
    for s in [&secret, &old_secret] {
        let wh = standardwebhooks::Webhook::new(s).unwrap();
        for r in &all {
            let mut h = standardwebhooks_headers(&r.headers);
            wh.verify(&r.body, &h)
                .unwrap_or_else(|e| panic!("signature of {}: {e:?}", r.header("webhook-id")));
            h.insert("webhook-id", "someone-else".parse().unwrap());
            assert!(wh.verify(&r.body, &h).is_err());
        }
    }
    assert_eq!(
        received(&log, "auth")[0].header("authorization"),
        "Bearer mitra-123"
    );

    // The radio gets a script to read.
    let radio = received(&log, "radio")[0].json();
    let script = radio["data"]["script"].as_str().unwrap();
    assert!(script.starts_with("KPU Kalsel Sambangi"), "{script}");
    assert!(!script.contains('(') && !script.contains("ASC"), "{script}");
    assert!(radio["data"]["words"].as_u64().unwrap() <= 80);

    // What the outbox says, and each attempt log.
    let ds = eventually(20, "settled deliveries", || async {
        let ds = deliveries(&api, &id).await;
        let st = |k: &str| ds[k]["status"].as_str().unwrap().to_owned();
        let settled = st("mc@v1.published") == "delivered"
            && st("gone@v1.published") == "failed"
            && st("bad@v1.published") == "failed"
            && st("moved@v1.published") == "failed"
            && st("private@v1.published") == "failed"
            && ds["hole@v1.published"]["attempts"].as_u64().unwrap() >= 1
            && ds["refused@v1.published"]["attempts"].as_u64().unwrap() >= 1
            && ds["slow@v1.published"]["attempts"].as_u64().unwrap() >= 1
            && ds["limited@v1.published"]["attempts"].as_u64().unwrap() >= 1
            && st("hole@v1.published") == "pending"
            && st("slow@v1.published") == "pending";
        settled.then_some(ds)
    })
    .await;
    assert_eq!(ds["mc@v1.published"]["attempts"], 4);
    let mc_attempts = attempts(&api, &ds["mc@v1.published"]).await;
    let outcomes: Vec<&str> = mc_attempts
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["retry", "retry", "retry", "delivered"]);
    assert_eq!(mc_attempts[0]["status"], 500);
    assert_eq!(mc_attempts[0]["response"], "sedang gangguan");
    assert_eq!(mc_attempts[0]["error_class"], "http_5xx");
    let class = |k: &str| {
        let ds = &ds;
        let api = &api;
        let k = k.to_owned();
        async move { attempts(api, &ds[&k]).await[0].clone() }
    };
    // A redirect is not followed: the partner it pointed to got one request, its own.
    assert_eq!(class("moved@v1.published").await["error_class"], "redirect");
    assert_eq!(count(&log, "h1"), 1);
    assert_eq!(class("bad@v1.published").await["error_class"], "http_4xx");
    assert_eq!(
        class("private@v1.published").await["error_class"],
        "refused_address"
    );
    assert_eq!(count(&log, "private"), 0, "the guard never connected");
    assert_eq!(
        class("refused@v1.published").await["error_class"],
        "connect"
    );
    // Timeouts and 429s wait at least a minute; Retry-After is read.
    for k in [
        "hole@v1.published",
        "slow@v1.published",
        "limited@v1.published",
    ] {
        let a = class(k).await;
        let at = chrono::DateTime::parse_from_rfc3339(a["at"].as_str().unwrap()).unwrap();
        let next = chrono::DateTime::parse_from_rfc3339(a["next_at"].as_str().unwrap()).unwrap();
        assert!(next - at >= chrono::Duration::seconds(59), "{k}: {a}");
        assert_eq!(a["outcome"], "retry", "{k}");
    }
    assert_eq!(class("hole@v1.published").await["error_class"], "timeout");
    assert_eq!(
        class("limited@v1.published").await["error_class"],
        "http_429"
    );

    // The breaker: three quick failures, then a pause of the cool-down before one probe.
    eventually(15, "a probe after the cool-down", || async {
        (count(&log, "down") >= 4).then_some(())
    })
    .await;
    let down = attempts(&api, &ds["down@v1.published"]).await;
    let at =
        |i: usize| chrono::DateTime::parse_from_rfc3339(down[i]["at"].as_str().unwrap()).unwrap();
    assert!(
        at(2) - at(0) < chrono::Duration::milliseconds(3000),
        "{down:?}"
    );
    assert!(
        at(3) - at(2) >= chrono::Duration::milliseconds(1900),
        "{down:?}"
    );
    assert!(d.logs().contains("breaker open"));

    // 410 disabled the partner: a second release does not reach it, the others get it.
    let (s, r2) = api.post_text(release_text(1)).await;
    assert_eq!(s, 201, "{r2}");
    eventually(10, "healthy partners got the second release", || async {
        (1..=10)
            .all(|i| count(&log, &format!("h{i}")) >= 2)
            .then_some(())
    })
    .await;
    assert_eq!(count(&log, "gone"), 1);
    assert!(d.logs().contains("Partner disabled"), "{}", d.logs());
    let notice = eventually(
        10,
        "the operator's mail about the disabled partner",
        || async { smtp.to("ops@kalselprov.go.id").pop() },
    )
    .await;
    assert!(
        notice.subject().contains("partner gone disabled"),
        "{}",
        notice.subject()
    );
    assert!(notice.text().contains("410"), "{}", notice.text());
    assert!(
        notice.text().contains("siar deliveries enable gone"),
        "{}",
        notice.text()
    );
    // And the metrics say so. siar counts an attempt once the partner's answer is in, a moment
    // after the partner logged the request.
    let lines = [
        "siar_partner_disabled{partner=\"gone\"} 1",
        "siar_partner_disabled{partner=\"h1\"} 0",
        "siar_webhook_attempts_total{partner=\"h1\",outcome=\"delivered\"} 2",
        "siar_webhook_attempts_total{partner=\"gone\",outcome=\"gone\"} 1",
        "siar_webhook_attempt_seconds_count{partner=\"h1\"} 2",
    ];
    let mut metrics = String::new();
    for _ in 0..50 {
        metrics = d.metrics().await;
        if lines.iter().all(|l| metrics.contains(l)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for line in lines {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }

    // A correction and a retraction reach who received the release, marked as such.
    let (s, _) = {
        let resp = api
            .post(&format!(
                "/api/v1/releases/{id}/corrections?note=Nama%20diperbaiki"
            ))
            .header("Content-Type", "text/plain")
            .body(
                String::from_utf8(sample("kpu-kalsel-diskominfo.txt"))
                    .unwrap()
                    .replace("Edy Ariansyah", "Edy Ariansyah, S.H."),
            )
            .send()
            .await
            .unwrap();
        let st = resp.status().as_u16();
        (st, resp.text().await.unwrap())
    };
    assert!(s == 200 || s == 201, "correction answered {s}");
    eventually(10, "the correction reached h2", || async {
        received(&log, "h2")
            .iter()
            .any(|r| r.json()["type"] == "release.corrected")
            .then_some(())
    })
    .await;
    let corrected = received(&log, "h2")
        .into_iter()
        .find(|r| r.json()["type"] == "release.corrected")
        .unwrap();
    assert_eq!(corrected.header("webhook-id"), format!("{id}.v2.corrected"));
    assert_eq!(corrected.json()["data"]["version"], "2");
    // The partner that refuses everything has refused version 2 too before the retraction
    // (were it still being attempted, it might have received it, and would be told).
    eventually(10, "bad's version 2 settled", || async {
        let ds = deliveries(&api, &id).await;
        (ds["bad@v2.published"]["status"] == "failed").then_some(())
    })
    .await;
    let resp = api
        .post(&format!("/api/v1/releases/{id}/retraction"))
        .json(&serde_json::json!({"reason": "Data keliru"}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    eventually(10, "the retraction reached h3", || async {
        received(&log, "h3")
            .iter()
            .any(|r| r.json()["type"] == "release.retracted")
            .then_some(())
    })
    .await;
    let retracted = received(&log, "h3")
        .into_iter()
        .find(|r| r.json()["type"] == "release.retracted")
        .unwrap();
    assert_eq!(retracted.json()["data"]["pubStatus"], "canceled");
    // The disabled partner never received the release: its correction waited and was then
    // superseded, and it is owed no retraction.
    let ds = deliveries(&api, &id).await;
    assert_eq!(ds["gone@v2.published"]["status"], "superseded");
    assert!(!ds
        .keys()
        .any(|k| k.starts_with("gone@") && k.ends_with("retracted")));
    // A partner that failed version 1 for good got version 2 as a first publication; it
    // received neither, so it is owed no retraction.
    assert!(ds.contains_key("bad@v2.published"));
    assert!(!ds
        .keys()
        .any(|k| k.starts_with("bad@") && k.ends_with("retracted")));
    eventually(10, "h4's retraction settled", || async {
        let ds = deliveries(&api, &id).await;
        (ds["h4@v2.retracted"]["status"] == "delivered").then_some(())
    })
    .await;
    assert_eq!(count(&log, "gone"), 1);

    // The operator's tools: list a partner's failures, and queue them again after a fix.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(siar_bin())
            .args(args)
            .current_dir(dir.path())
            .env("SIAR_URL", &d.url)
            .env("SIAR_API_TOKEN", TOKEN)
            .env_remove("SIAR_CONFIG")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let listed = cli(&[
        "deliveries",
        "list",
        "--status",
        "failed",
        "--partner",
        "bad",
    ]);
    assert_eq!(
        listed.lines().count(),
        4,
        "header and three failures:\n{listed}"
    );
    assert!(
        listed.lines().skip(1).all(|l| l.contains("partner:bad")),
        "{listed}"
    );
    let none = cli(&[
        "deliveries",
        "list",
        "--partner",
        "bad",
        "--since",
        "2999-01-01 00:00",
    ]);
    assert_eq!(none.lines().count(), 1, "{none}");
    let before = count(&log, "bad");
    let out = cli(&[
        "deliveries",
        "recover",
        "--partner",
        "bad",
        "--since",
        "2020-01-01 00:00",
    ]);
    assert!(
        out.starts_with("3 failed deliveries to bad queued again"),
        "{out}"
    );
    eventually(
        10,
        "the recovered deliveries were attempted again",
        || async { (count(&log, "bad") == before + 3).then_some(()) },
    )
    .await;

    // How the partners stand, then enabling the disabled one sends what waited for it.
    let table = cli(&["deliveries", "partners"]);
    let row = |id: &str| {
        table
            .lines()
            .find(|l| l.starts_with(&format!("{id} ")))
            .unwrap_or_else(|| panic!("no {id} in:\n{table}"))
            .to_owned()
    };
    assert!(
        row("gone").contains("disabled: the partner answered 410"),
        "{table}"
    );
    assert!(row("h1").ends_with("enabled"), "{table}");
    let (_, parts) = api.get_json("/api/v1/partners").await;
    let down = parts["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "down")
        .unwrap()
        .clone();
    assert!(
        down["consecutive_failures"].as_u64().unwrap() >= 3,
        "{down}"
    );
    assert_ne!(down["breaker"], "closed", "{down}");
    assert_eq!(
        cli(&["deliveries", "enable", "gone"]).trim(),
        "gone: enabled"
    );
    eventually(10, "the enabled partner was called again", || async {
        (count(&log, "gone") >= 2).then_some(())
    })
    .await;

    drop(d);
    server.abort();
    drop(held);
    let _ = std::net::TcpStream::connect(
        hole_url
            .trim_start_matches("http://")
            .trim_end_matches("/hook"),
    );
    drop(hole_thread);
}

fn standardwebhooks_headers(h: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        if let Some(v) = h.get(name) {
            out.insert(name, v.to_str().unwrap().parse().unwrap());
        }
    }
    out
}

/// An instant partner gets a release within a second of its `publish_at`, a cron partner at
/// its schedule's next firing after that, and nobody anything before.
#[tokio::test]
async fn schedules_and_publish_at_are_kept() {
    let log: Log = Arc::default();
    let (base, server) = serve_partners(&log).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("siar.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[partners]]\nid = \"now\"\nurl = \"{base}/p/now\"\nformat = \"ninjs\"\nsecret_env = \"S\"\nallow_private = true\n\n\
             [[partners]]\nid = \"radio\"\nurl = \"{base}/p/radio\"\nformat = \"radio-script\"\nsecret_env = \"S\"\nallow_private = true\nschedule = \"*/5 * * * * *\"\n"
        ),
    )
    .unwrap();
    let d = Daemon::start_with(
        dir.path(),
        Some(&cfg),
        &[("S", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")],
    );
    let api = d.client();
    let publish_at = chrono::Utc::now() + chrono::Duration::milliseconds(2500);
    let r = api
        .post("/api/v1/releases")
        .query(&[("publish_at", publish_at.to_rfc3339().as_str())])
        .header("Content-Type", "text/plain")
        .body(release_text(3))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        count(&log, "now") + count(&log, "radio"),
        0,
        "nothing before publish_at"
    );
    eventually(10, "the instant partner received it", || async {
        (count(&log, "now") == 1).then_some(())
    })
    .await;
    let arrived = chrono::Utc::now();
    assert!(arrived >= publish_at, "delivered before publish_at");
    assert!(
        arrived - publish_at < chrono::Duration::milliseconds(1500),
        "instant partner got it {} ms after publish_at",
        (arrived - publish_at).num_milliseconds()
    );
    eventually(15, "the radio received it at its firing", || async {
        (count(&log, "radio") == 1).then_some(())
    })
    .await;
    let ds = deliveries(&api, &id).await;
    let due =
        chrono::DateTime::parse_from_rfc3339(ds["radio@v1.published"]["due_at"].as_str().unwrap())
            .unwrap();
    assert!(due >= publish_at, "the radio's firing is after publish_at");
    assert_eq!(due.timestamp() % 5, 0, "due at a firing of */5: {due}");
    assert_eq!(due.timestamp_subsec_millis(), 0);
    let delivered = chrono::DateTime::parse_from_rfc3339(
        ds["radio@v1.published"]["delivered_at"].as_str().unwrap(),
    )
    .unwrap();
    assert!(delivered >= due && delivered - due < chrono::Duration::seconds(2));
    drop(d);
    server.abort();
}

/// The days a failing partner has to recover before it is disabled are counted from its
/// first failure, across restarts.
#[tokio::test]
async fn a_partners_failure_run_survives_a_restart() {
    let log: Log = Arc::default();
    let (base, server) = serve_partners(&log).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("siar.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[partners]]\nid = \"down\"\nurl = \"{base}/p/down\"\nformat = \"ninjs\"\nsecret_env = \"S\"\nallow_private = true\nretry_schedule_secs = [0, 3600]\n"
        ),
    )
    .unwrap();
    let env = [("S", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")];
    let d = Daemon::start_with(dir.path(), Some(&cfg), &env);
    let (s, _) = d.client().post_text(release_text(9)).await;
    assert_eq!(s, 201);
    let since = eventually(10, "the first failure is recorded", || async {
        let (_, v) = d.client().get_json("/api/v1/partners").await;
        v["items"][0]["failing_since"].as_str().map(str::to_owned)
    })
    .await;
    assert!(d.terminate().success());
    let d = Daemon::start_with(dir.path(), Some(&cfg), &env);
    let (_, v) = d.client().get_json("/api/v1/partners").await;
    assert_eq!(v["items"][0]["failing_since"], since.as_str());
    assert_eq!(v["items"][0]["queued"], 1, "{v}");
    assert!(v["items"][0]["disabled"].is_null());
    drop(d);
    server.abort();
}

/// `rate_per_minute` caps a partner's attempts; the rest wait their turn.
#[tokio::test]
async fn a_partners_rate_limit_is_kept() {
    let log: Log = Arc::default();
    let (base, server) = serve_partners(&log).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("siar.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[partners]]\nid = \"slowly\"\nurl = \"{base}/p/slowly\"\nformat = \"ninjs\"\nsecret_env = \"S\"\nallow_private = true\nrate_per_minute = 2\n\n\
             [[partners]]\nid = \"fast\"\nurl = \"{base}/p/fast\"\nformat = \"ninjs\"\nsecret_env = \"S\"\nallow_private = true\n"
        ),
    )
    .unwrap();
    let d = Daemon::start_with(
        dir.path(),
        Some(&cfg),
        &[("S", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")],
    );
    for n in 0..3 {
        let (s, _) = d.client().post_text(release_text(n)).await;
        assert_eq!(s, 201);
    }
    eventually(10, "the unlimited partner got all three", || async {
        (count(&log, "fast") == 3).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(count(&log, "slowly"), 2, "two a minute");
    let (_, v) = d.client().get_json("/api/v1/partners").await;
    let slowly = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "slowly")
        .unwrap()
        .clone();
    assert_eq!(slowly["queued"], 1, "{slowly}");
    drop(d);
    server.abort();
}
