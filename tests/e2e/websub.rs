//! WebSub: the hub is pinged for every affected topic, with retries.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::Form;

use crate::utils::*;

#[derive(Default)]
struct Hub {
    pings: Vec<(String, String)>,
    refused_first: bool,
}

async fn hub(
    State(h): State<Arc<Mutex<Hub>>>,
    Form(form): Form<Vec<(String, String)>>,
) -> StatusCode {
    let mut h = h.lock().unwrap();
    let get = |k: &str| {
        form.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    h.pings.push((get("hub.mode"), get("hub.url")));
    if !h.refused_first {
        h.refused_first = true;
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    StatusCode::NO_CONTENT
}

#[tokio::test]
async fn every_affected_topic_is_pinged_with_retries() {
    let state = Arc::new(Mutex::new(Hub::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hub_url = format!("http://{}/hub", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/hub", axum::routing::post(hub))
        .with_state(state.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_with(
        dir.path(),
        None,
        &[
            ("SIAR_FEEDS_WEBSUB_HUB", hub_url.as_str()),
            ("SIAR_SERVER_PUBLIC_URL", "https://s.example.id"),
        ],
    );
    let r = d
        .client()
        .post("/api/v1/releases?categories=pemilu")
        .header("Content-Type", "text/plain")
        .body(sample("kpu-kalsel-diskominfo.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let expected = [
        "https://s.example.id/feeds/rss.xml",
        "https://s.example.id/feeds/atom.xml",
        "https://s.example.id/feeds/feed.json",
        "https://s.example.id/feeds/pemilu/rss.xml",
        "https://s.example.id/feeds/pemilu/atom.xml",
        "https://s.example.id/feeds/pemilu/feed.json",
    ];
    eventually(20, "pings for every topic", || async {
        let h = state.lock().unwrap();
        expected
            .iter()
            .all(|t| h.pings.iter().any(|(_, u)| u == t))
            .then_some(())
    })
    .await;
    let first = {
        let h = state.lock().unwrap();
        assert!(h.pings.iter().all(|(mode, _)| mode == "publish"));
        assert!(
            !h.pings.iter().any(|(_, u)| u.contains("/archive/")),
            "archives are not topics"
        );
        h.pings[0].1.clone()
    };
    // The refused first ping was retried: its topic was pinged at least twice.
    eventually(10, "the refused ping to be retried", || async {
        (state
            .lock()
            .unwrap()
            .pings
            .iter()
            .filter(|(_, u)| *u == first)
            .count()
            >= 2)
            .then_some(())
    })
    .await;
    // The feeds advertise the hub.
    let r = reqwest::get(format!("{}/feeds/rss.xml", d.url))
        .await
        .unwrap();
    assert!(r.headers()["link"]
        .to_str()
        .unwrap()
        .contains(&format!("<{hub_url}>; rel=\"hub\"")));
    let body = r.text().await.unwrap();
    assert!(
        body.contains(&format!("<atom:link href=\"{hub_url}\" rel=\"hub\"")),
        "{}",
        &body[..600]
    );
    server.abort();
}
