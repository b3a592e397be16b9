//! The daemon's life under a service manager: readiness and stopping told over the
//! sd_notify socket, SIGTERM within its deadline even with a delivery hanging, and SIGHUP
//! loading a new configuration (or refusing a bad one) without dropping queued deliveries.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::utils::*;

const SECRET: (&str, &str) = (
    "LIFECYCLE_TEST_SECRET",
    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
);

/// A partner that counts deliveries, answering after `delay`.
async fn partner(calls: Arc<AtomicUsize>, delay: Duration) -> String {
    serve_local(axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let calls = calls.clone();
            async move {
                tokio::time::sleep(delay).await;
                calls.fetch_add(1, Ordering::SeqCst);
                "diterima"
            }
        }),
    ))
    .await
}

fn partner_config(url: &str, schedule: &str) -> String {
    format!(
        "[[partners]]\nid = \"media-center\"\nurl = \"{url}/hook\"\nformat = \"ninjs\"\n\
         schedule = \"{schedule}\"\nsecret_env = \"{}\"\nallow_private = true\ntimeout_secs = 60\n",
        SECRET.0
    )
}

#[tokio::test]
async fn readiness_and_stopping_are_told_to_the_service_manager() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let d = Daemon::start_with(
        dir.path(),
        None,
        &[("NOTIFY_SOCKET", socket_path.to_str().unwrap())],
    );
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).unwrap();
    assert_eq!(std::str::from_utf8(&buf[..n]).unwrap().trim(), "READY=1");
    // Ready means serving.
    let (s, _) = d.client().get_json("/api/v1/releases").await;
    assert_eq!(s, 200);
    let status = d.terminate();
    assert!(status.success());
    let n = socket.recv(&mut buf).unwrap();
    assert_eq!(std::str::from_utf8(&buf[..n]).unwrap().trim(), "STOPPING=1");
}

#[tokio::test]
async fn sigterm_keeps_its_deadline_and_the_hanging_delivery_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    // Answers after 40 s: longer than the shutdown grace period.
    let base = partner(calls.clone(), Duration::from_secs(40)).await;
    let cfg = dir.path().join("siar.toml");
    std::fs::write(&cfg, partner_config(&base, "instant")).unwrap();
    let d = Daemon::start_with(dir.path(), Some(&cfg), &[SECRET]);
    let api = d.client();
    let (_, r) = api.post_text(release_text(1)).await;
    let id = r["id"].as_str().unwrap().to_owned();
    eventually(10, "the delivery to be in flight", || async {
        let (_, ds) = api
            .get_json(&format!("/api/v1/releases/{id}/deliveries"))
            .await;
        (ds["items"][0]["status"] == "in_flight").then_some(())
    })
    .await;
    let started = Instant::now();
    let status = d.terminate();
    let took = started.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(
        took < Duration::from_secs(25),
        "stopped within its deadline ({took:?})"
    );

    // After the restart the delivery is owed again, and goes (to a partner that now answers).
    let calls2 = Arc::new(AtomicUsize::new(0));
    let base2 = partner(calls2.clone(), Duration::ZERO).await;
    std::fs::write(&cfg, partner_config(&base2, "instant")).unwrap();
    let d = Daemon::start_with(dir.path(), Some(&cfg), &[SECRET]);
    let api = d.client();
    eventually(20, "the delivery after the restart", || async {
        let (_, ds) = api
            .get_json(&format!("/api/v1/releases/{id}/deliveries"))
            .await;
        (ds["items"][0]["status"] == "delivered").then_some(())
    })
    .await;
    assert_eq!(calls2.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn sighup_loads_a_valid_configuration_and_refuses_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let base = partner(calls.clone(), Duration::ZERO).await;
    let cfg = dir.path().join("siar.toml");
    // First the partner takes releases only on New Year's Day: they queue.
    std::fs::write(&cfg, partner_config(&base, "0 0 0 1 1 *")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let d = Daemon::start_with(
        dir.path(),
        Some(&cfg),
        &[SECRET, ("SIAR_SERVER_LISTEN", listen.as_str())],
    );
    let api = d.client();
    let mut ids = Vec::new();
    for n in 1..=3 {
        let (s, r) = api.post_text(release_text(n)).await;
        assert_eq!(s, 201);
        ids.push(r["id"].as_str().unwrap().to_owned());
    }
    let (_, partners) = api.get_json("/api/v1/partners").await;
    assert_eq!(partners["items"][0]["queued"], 3, "{partners}");

    // A bad configuration: refused, named, and the daemon runs on.
    std::fs::write(
        &cfg,
        partner_config(&base, "instant").replace("format = \"ninjs\"", "format = \"fax\""),
    )
    .unwrap();
    d.send_signal("-HUP");
    eventually(10, "the refusal in the log", || async {
        d.logs().contains("not reloading").then_some(())
    })
    .await;
    assert!(d.logs().contains("format"), "{}", d.logs());
    let (s, _) = api.get_json("/api/v1/releases").await;
    assert_eq!(s, 200, "still serving");

    // A good one: restarted in place (same process), and the queued deliveries go out.
    let pid = d.pid();
    std::fs::write(&cfg, partner_config(&base, "instant")).unwrap();
    d.send_signal("-HUP");
    eventually(30, "the three queued deliveries", || async {
        (calls.load(Ordering::SeqCst) >= 3).then_some(())
    })
    .await;
    assert_eq!(d.pid(), pid);
    assert!(d.logs().contains("restarting in place"), "{}", d.logs());
    for id in &ids {
        let (_, ds) = api
            .get_json(&format!("/api/v1/releases/{id}/deliveries"))
            .await;
        assert_eq!(ds["items"][0]["status"], "delivered", "{ds}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 3, "each exactly once");
    let status = d.terminate();
    assert!(status.success());
}
