//! Photos and audio uploaded with a release: stored content-addressed, served with long
//! cache headers, referred to from the release, limited in size and type.

use reqwest::multipart::{Form, Part};
use serde_json::Value;

use crate::utils::*;

/// A tiny but real JPEG header, enough for type sniffing.
fn jpeg() -> Vec<u8> {
    let mut b = vec![
        0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00, 0x01,
    ];
    b.extend(std::iter::repeat_n(0x42, 2000));
    b.extend([0xFF, 0xD9]);
    b
}

/// An MP3 with an ID3 header.
fn mp3() -> Vec<u8> {
    let mut b = b"ID3\x04\x00\x00\x00\x00\x00\x00".to_vec();
    b.extend(std::iter::repeat_n(0x11, 5000));
    b
}

#[tokio::test]
async fn uploads_are_stored_served_and_attached() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_with(
        dir.path(),
        None,
        &[
            ("SIAR_SERVER_PUBLIC_URL", "https://s.example.id"),
            ("SIAR_MEDIA_MAX_BYTES", "100000"),
        ],
    );
    let api = d.client();
    let md = "---\ntitle: Peresmian Jembatan\nattachments:\n  - url: upload:jembatan.jpg\n    type: image/jpeg\n    caption: Gubernur meresmikan jembatan\n    credit: MC Kalsel\n---\nBANJARMASIN – Jembatan diresmikan, Senin (23/11).\n";
    let form = Form::new()
        .part(
            "release",
            Part::bytes(md.as_bytes().to_vec())
                .file_name("rilis.md")
                .mime_str("text/markdown")
                .unwrap(),
        )
        .part("media", Part::bytes(jpeg()).file_name("jembatan.jpg"))
        .part(
            "media",
            Part::bytes(mp3())
                .file_name("wawancara.mp3")
                .mime_str("audio/mpeg")
                .unwrap(),
        );
    let r = api
        .post("/api/v1/releases")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let r: Value = r.json().await.unwrap();
    let atts = r["content"]["attachments"].as_array().unwrap();
    assert_eq!(atts.len(), 2);
    let photo = &atts[0];
    assert_eq!(photo["type"], "image/jpeg");
    assert_eq!(photo["caption"], "Gubernur meresmikan jembatan");
    assert_eq!(photo["length"], jpeg().len());
    let url = photo["url"].as_str().unwrap();
    assert!(url.starts_with("/media/") && url.ends_with(".jpg"), "{url}");
    let audio = &atts[1];
    assert_eq!(audio["type"], "audio/mpeg");
    assert_eq!(audio["length"], mp3().len());

    let resp = reqwest::get(format!("{}{url}", d.url)).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "image/jpeg");
    assert_eq!(
        resp.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(
        resp.headers()["content-length"],
        jpeg().len().to_string().as_str()
    );
    let etag = resp.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(resp.bytes().await.unwrap().to_vec(), jpeg());
    let again = reqwest::Client::new()
        .get(format!("{}{url}", d.url))
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(
        reqwest::get(format!("{}/media/..%2Fdata", d.url))
            .await
            .unwrap()
            .status(),
        404
    );

    // The feed carries the photo (Media RSS, absolute URL) and the audio as an enclosure with its length.
    let body = eventually(15, "the release in the feed", || async {
        let body = reqwest::get(format!("{}/feeds/rss.xml", d.url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        body.contains("Peresmian Jembatan").then_some(body)
    })
    .await;
    let ch = rss::Channel::read_from(body.as_bytes()).unwrap();
    let item = &ch.items()[0];
    assert_eq!(
        item.extensions()["media"]["content"][0].attrs()["url"],
        format!("https://s.example.id{url}")
    );
    let enc = item.enclosure().unwrap();
    assert_eq!(enc.length(), mp3().len().to_string());
    assert_eq!(enc.mime_type(), "audio/mpeg");
}

#[tokio::test]
async fn bad_uploads_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_with(
        dir.path(),
        None,
        &[
            ("SIAR_MEDIA_MAX_BYTES", "4096"),
            ("SIAR_MEDIA_MAX_FILES", "2"),
        ],
    );
    let api = d.client();
    let release = || Part::bytes(release_text(1).into_bytes()).file_name("rilis.txt");
    let send = |form: Form| async {
        let r = api
            .post("/api/v1/releases")
            .multipart(form)
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        (s, r.json::<Value>().await.unwrap())
    };
    let svg = b"<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>".to_vec();
    let (s, e) = send(
        Form::new()
            .part("release", release())
            .part("media", Part::bytes(svg).file_name("x.svg")),
    )
    .await;
    assert_eq!(s, 415, "{e}");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("x.svg"),
        "{e}"
    );
    let (s, e) = send(Form::new().part("release", release()).part(
        "media",
        Part::bytes(jpeg().repeat(3)).file_name("besar.jpg"),
    ))
    .await;
    assert_eq!(s, 413, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("media.max_bytes"),
        "{e}"
    );
    let three = Form::new()
        .part("release", release())
        .part("media", Part::bytes(jpeg()).file_name("a.jpg"))
        .part("media", Part::bytes(jpeg()).file_name("b.jpg"))
        .part("media", Part::bytes(jpeg()).file_name("c.jpg"));
    let (s, e) = send(three).await;
    assert_eq!(s, 413, "{e}");
    let (s, e) = send(Form::new().part("media", Part::bytes(jpeg()).file_name("a.jpg"))).await;
    assert_eq!(s, 400, "{e}");
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no `release` part"));
    let md = "---\ntitle: T\nattachments:\n  - url: upload:hilang.jpg\n    type: image/jpeg\n---\nIsi.\n";
    let (s, e) = send(Form::new().part(
        "release",
        Part::bytes(md.as_bytes().to_vec()).file_name("r.md"),
    ))
    .await;
    assert_eq!(s, 422, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("upload:hilang.jpg"),
        "{e}"
    );
    // Nothing was stored by the failures.
    let (_, page) = api.get_json("/api/v1/releases").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 0);
}
