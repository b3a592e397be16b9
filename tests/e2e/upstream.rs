//! Upstream feeds polled on a cron schedule, against a real HTTP server whose feed changes.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::utils::*;

#[derive(Default)]
struct Feed {
    xml: String,
    etag: String,
    requests: usize,
    not_modified: usize,
}

async fn serve_feed(State(feed): State<Arc<Mutex<Feed>>>, headers: HeaderMap) -> Response {
    let mut f = feed.lock().unwrap();
    f.requests += 1;
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        == Some(f.etag.as_str())
    {
        f.not_modified += 1;
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, f.etag.clone())]).into_response();
    }
    (
        [
            (header::CONTENT_TYPE, "application/rss+xml".to_owned()),
            (header::ETAG, f.etag.clone()),
        ],
        f.xml.clone(),
    )
        .into_response()
}

fn rss(items: &[(&str, &str, &str)]) -> String {
    let items: String = items
        .iter()
        .map(|(guid, title, body)| {
            format!(
                "<item><title>{title}</title><guid isPermaLink=\"false\">{guid}</guid><link>https://mc.example/{guid}</link>\
                 <description><![CDATA[{body}]]></description></item>"
            )
        })
        .collect();
    format!("<?xml version=\"1.0\"?><rss version=\"2.0\"><channel><title>MC</title><link>https://mc.example/</link><description>d</description>{items}</channel></rss>")
}

async fn releases(api: &Api) -> Vec<Value> {
    let (_, page) = api.get_json("/api/v1/releases?limit=500").await;
    page["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn new_items_become_releases_and_changed_items_corrections() {
    let feed = Arc::new(Mutex::new(Feed {
        xml: rss(&[("a-1", "Gubernur Tinjau Banjir", "<p>BANJARMASIN – Gubernur meninjau banjir, Senin (23/11).</p><p>Bantuan disalurkan. (MC/RH)</p>")]),
        etag: "\"v1\"".into(),
        ..Feed::default()
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new()
        .route("/feed.xml", axum::routing::get(serve_feed))
        .with_state(feed.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("siar.toml");
    std::fs::write(
        &config,
        format!(
            "[[ingest.upstream]]\nname = \"mc\"\nurl = \"http://127.0.0.1:{port}/feed.xml\"\nschedule = \"* * * * * *\"\ncategories = [\"pemerintahan\"]\n"
        ),
    )
    .unwrap();
    let d = Daemon::start_with(dir.path(), Some(&config), &[]);
    let api = d.client();

    let first = eventually(15, "the upstream item to become a release", || async {
        let rs = releases(&api).await;
        (rs.len() == 1).then(|| rs[0].clone())
    })
    .await;
    assert_eq!(
        first["provenance"]["source"],
        serde_json::json!({"kind": "upstream", "name": "mc", "guid": "a-1"})
    );
    assert_eq!(first["content"]["title"], "Gubernur Tinjau Banjir");
    assert_eq!(first["content"]["dateline"], "BANJARMASIN");
    assert_eq!(
        first["content"]["categories"],
        serde_json::json!(["pemerintahan"])
    );

    // Conditional GET: unchanged polls get 304 and change nothing.
    eventually(15, "a 304 from the upstream", || async {
        (feed.lock().unwrap().not_modified >= 2).then_some(())
    })
    .await;
    assert_eq!(releases(&api).await.len(), 1);

    // The item changes and a new one appears.
    {
        let mut f = feed.lock().unwrap();
        f.xml = rss(&[
            ("b-2", "Pasar Murah Digelar", "<p>BANJARBARU – Pasar murah digelar, Selasa (24/11).</p>"),
            ("a-1", "Gubernur Tinjau Banjir", "<p>BANJARMASIN – Gubernur meninjau banjir di tiga kecamatan, Senin (23/11).</p><p>Bantuan disalurkan. (MC/RH)</p>"),
        ]);
        f.etag = "\"v2\"".into();
    }
    let id = first["id"].as_str().unwrap().to_owned();
    eventually(15, "the correction and the new release", || async {
        let rs = releases(&api).await;
        let a = rs.iter().find(|r| r["id"] == id.as_str())?;
        (rs.len() == 2 && a["version"] == 2).then_some(())
    })
    .await;
    let (_, a) = api.get_json(&format!("/api/v1/releases/{id}")).await;
    assert_eq!(
        a["correction_notes"],
        serde_json::json!(["Diperbarui oleh sumber mc"])
    );
    assert!(a["content"]["body"][0]
        .as_str()
        .unwrap()
        .contains("tiga kecamatan"));

    // A restart polls again and duplicates nothing.
    assert!(d.terminate().success());
    let before = feed.lock().unwrap().requests;
    let d = Daemon::start_with(dir.path(), Some(&config), &[]);
    let api = d.client();
    eventually(15, "two more polls after the restart", || async {
        (feed.lock().unwrap().requests >= before + 2).then_some(())
    })
    .await;
    let rs = releases(&api).await;
    assert_eq!(rs.len(), 2);
    assert!(rs.iter().all(|r| r["version"].as_u64().unwrap() <= 2));
    server.abort();
}
