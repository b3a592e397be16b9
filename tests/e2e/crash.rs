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

/// What the partners' sink received: (partner, webhook-id) per request, in order.
/// What the partners' sink received: (partner, webhook-id).
pub(crate) type Sink = std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>;

/// Partners at `{base}/p/{partner}`, all answering 204: logs each arrival.
pub(crate) async fn partners_sink(log: &Sink) -> String {
    serve_local(
        axum::Router::new()
            .route("/p/{partner}", axum::routing::post(sink))
            .with_state(log.clone()),
    )
    .await
}

async fn sink(
    axum::extract::State(log): axum::extract::State<Sink>,
    axum::extract::Path(partner): axum::extract::Path<String>,
    headers: axum::http::HeaderMap,
) -> axum::http::StatusCode {
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    log.lock().unwrap().push((partner, id));
    axum::http::StatusCode::NO_CONTENT
}

/// 20 partners, 100 releases: 2,000 deliveries. SIGKILL mid-fan-out, restart, and count per
/// partner: every release arrived, and repeats only among the deliveries that can have been
/// in flight at the kill (each partner's worker leases one batch at a time).
#[tokio::test]
async fn a_kill_mid_fan_out_loses_no_delivery() {
    const PARTNERS: usize = 20;
    const RELEASES: usize = 100;
    const CONCURRENCY: usize = 2;
    let log: Sink = Default::default();
    let base = partners_sink(&log).await;

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("siar.toml");
    let mut c = String::new();
    for i in 0..PARTNERS {
        c.push_str(&format!(
            "[[partners]]\nid = \"p{i}\"\nurl = \"{base}/p/p{i}\"\nformat = \"ninjs\"\nsecret_env = \"SIAR_TEST_SECRET\"\nallow_private = true\nconcurrency = {CONCURRENCY}\n\n"
        ));
    }
    std::fs::write(&cfg, c).unwrap();
    let env = [("SIAR_TEST_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")];
    let d = Daemon::start_with(dir.path(), Some(&cfg), &env);
    let api = std::sync::Arc::new(d.client());
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..RELEASES {
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
    // Mid-fan-out: some deliveries made, most not.
    let total = PARTNERS * RELEASES;
    eventually(60, "the fan-out to be under way", || async {
        (log.lock().unwrap().len() >= total / 5).then_some(())
    })
    .await;
    d.kill9();
    let at_kill = log.lock().unwrap().len();
    assert!(at_kill < total, "the kill came after the fan-out ended");

    let d = Daemon::start_with(dir.path(), Some(&cfg), &env);
    let unique = || {
        log.lock()
            .unwrap()
            .iter()
            .cloned()
            .collect::<BTreeSet<(String, String)>>()
    };
    eventually(
        120,
        "every delivery to arrive after the restart",
        || async { (unique().len() >= total).then_some(()) },
    )
    .await;
    // Let stragglers arrive, then count.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let got = log.lock().unwrap().clone();
    let unique = unique();
    for i in 0..PARTNERS {
        let partner = format!("p{i}");
        let releases: BTreeSet<String> = unique
            .iter()
            .filter(|(p, _)| *p == partner)
            .map(|(_, id)| id.split('.').next().unwrap().to_owned())
            .collect();
        assert_eq!(releases, acked, "partner {partner} is missing releases");
    }
    let repeats = got.len() - unique.len();
    // In flight at the kill: per partner, the batch being sent and the one before it, settled
    // but maybe not yet on disk (siar::deliver::IN_FLIGHT_BOUND).
    let bound = PARTNERS * siar::deliver::IN_FLIGHT_BOUND;
    assert!(
        repeats <= bound,
        "{repeats} repeats; at most {bound} deliveries can have been in flight"
    );
    eprintln!(
        "crash mid-fan-out: {at_kill} of {total} received before the kill, {repeats} repeats after"
    );
    drop(d);
}

/// A list of 20,000: SIGKILL mid-send, restart, and count what the relay (aiosmtpd) accepted:
/// every recipient got the release, and repeats only among the mails that can have been in
/// flight at the kill (sends running plus those awaiting their settle batch's flush).
#[tokio::test]
async fn a_kill_mid_mailing_skips_nobody_and_repeats_only_in_flight_mails() {
    const RECIPIENTS: usize = 20_000;
    const MAX_CONNECTIONS: usize = 8;
    // Sends in flight (twice the sessions) plus up to two settle batches (one being flushed,
    // one filling): see `siar::mail`.
    let bound = 2 * MAX_CONNECTIONS + 2 * siar::mail::SETTLE_BATCH;
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpRecorder::start_envelopes_only(dir.path(), "relay");
    let cfg = dir.path().join("siar.toml");
    std::fs::write(
        &cfg,
        format!(
            "[smtp]\nurl = \"{}\"\nfrom = \"Diskominfo Kalsel <siaran@kalselprov.go.id>\"\nmax_connections = {MAX_CONNECTIONS}\nrate_per_second = 100000\n\n[[lists]]\nid = \"warga\"\nname = \"Siaran Pers untuk Warga\"\n",
            smtp.url()
        ),
    )
    .unwrap();
    let d = Daemon::start_with(dir.path(), Some(&cfg), &[]);
    let api = d.client();
    let addresses: Vec<String> = (0..RECIPIENTS)
        .map(|i| format!("warga{i:05}@banjar.id"))
        .collect();
    for batch in addresses.chunks(5_000) {
        let r = api
            .post("/api/v1/lists/warga/subscribers")
            .json(
                &serde_json::json!({"addresses": batch, "confirmed": true, "source": "crash test"}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let (s, r) = api.post_text(release_text(1)).await;
    assert_eq!(s, 201, "{r}");
    let id = r["id"].as_str().unwrap().to_owned();
    eventually(120, "a quarter of the list mailed", || async {
        (smtp.count() >= RECIPIENTS / 4).then_some(())
    })
    .await;
    d.kill9();
    let at_kill = smtp.count();
    assert!(
        at_kill < RECIPIENTS,
        "the kill came after the whole list was mailed"
    );

    let d = Daemon::start_with(dir.path(), Some(&cfg), &[]);
    let api = d.client();
    eventually(240, "the mailing to finish after the restart", || async {
        let (_, ds) = api
            .get_json(&format!("/api/v1/releases/{id}/deliveries"))
            .await;
        let done = ds["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["target"] == "list:warga" && d["status"] == "delivered");
        done.then_some(())
    })
    .await;
    let mut got: std::collections::HashMap<String, usize> = Default::default();
    for m in smtp.messages() {
        for t in m.to {
            *got.entry(t).or_default() += 1;
        }
    }
    let missing: Vec<&String> = addresses.iter().filter(|a| !got.contains_key(*a)).collect();
    assert!(
        missing.is_empty(),
        "{} recipients never got the release, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert_eq!(
        got.len(),
        RECIPIENTS,
        "mail went to addresses not on the list"
    );
    let repeats: usize = got.values().map(|n| n - 1).sum();
    println!(
        "mailing crash: {RECIPIENTS} recipients, {at_kill} mailed before SIGKILL, {} mails in all, {repeats} repeats (bound {bound})",
        smtp.count()
    );
    assert!(
        repeats <= bound,
        "{repeats} repeats exceed the in-flight bound {bound}"
    );
}
