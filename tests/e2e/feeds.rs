//! Feeds from the running daemon: content, ids, conditional GET, compression, HEAD,
//! categories, archives, and nothing before `publish_at`.

use std::io::Read;

use serde_json::Value;

use crate::utils::*;

fn raw_client() -> reqwest::Client {
    // No automatic decompression: the tests look at what siar sends.
    reqwest::Client::builder().no_gzip().build().unwrap()
}

async fn feed(url: &str) -> (reqwest::header::HeaderMap, String) {
    let r = raw_client().get(url).send().await.unwrap();
    assert_eq!(r.status(), 200, "{url}");
    let h = r.headers().clone();
    (h, r.text().await.unwrap())
}

async fn items_in(url: &str) -> usize {
    let r = raw_client().get(url).send().await.unwrap();
    if r.status() != 200 {
        return 0;
    }
    rss::Channel::read_from(&r.bytes().await.unwrap()[..])
        .map(|c| c.items().len())
        .unwrap_or(0)
}

async fn wait_items(url: &str, n: usize) {
    eventually(15, &format!("{n} items in {url}"), || async {
        (items_in(url).await == n).then_some(())
    })
    .await;
}

/// A daemon with one sample release published, once its RSS feed shows it; and that feed's URL.
async fn daemon_with_one_release(dir: &std::path::Path) -> (Daemon, String) {
    let d = Daemon::start(dir);
    let (s, _) = d.client().post_text(sample("geopark-meratus.txt")).await;
    assert_eq!(s, 201);
    let url = format!("{}/feeds/rss.xml", d.url);
    wait_items(&url, 1).await;
    (d, url)
}

#[tokio::test]
async fn feeds_carry_the_releases_with_permanent_ids() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_with(
        dir.path(),
        None,
        &[("SIAR_SERVER_PUBLIC_URL", "https://siaran.example.go.id")],
    );
    let api = d.client();
    let (_, kpu) = api.post_text(sample("kpu-kalsel-diskominfo.txt")).await;
    let r = api
        .post("/api/v1/releases?categories=olahraga")
        .header("Content-Type", "text/plain")
        .body(sample("voli-polda.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let rss_url = format!("{}/feeds/rss.xml", d.url);
    wait_items(&rss_url, 2).await;

    let (h, body) = feed(&rss_url).await;
    assert_eq!(h["content-type"], "application/rss+xml; charset=utf-8");
    assert!(h["cache-control"]
        .to_str()
        .unwrap()
        .starts_with("public, max-age=300"));
    assert!(h.contains_key("etag") && h.contains_key("last-modified"));
    assert_eq!(
        h["link"],
        "<https://siaran.example.go.id/feeds/rss.xml>; rel=\"self\""
    );
    let ch = rss::Channel::read_from(body.as_bytes()).unwrap();
    rss::validation::Validate::validate(&ch).expect("valid RSS 2.0 (the rss crate's check)");
    let kpu_item = ch
        .items()
        .iter()
        .find(|i| i.title() == kpu["content"]["title"].as_str())
        .unwrap();
    let guid = kpu_item.guid().unwrap().value().to_owned();
    assert_eq!(
        guid,
        format!(
            "tag:kalselprov.go.id,2026:release/{}",
            kpu["id"].as_str().unwrap()
        )
    );
    assert_eq!(kpu_item.link(), Some("https://siaran.example.go.id/releases/kpu-kalsel-sambangi-diskominfo-kalsel-terkait-penyebarluasan-informasi"));

    // Atom and JSON Feed carry the same ids.
    let (h, atom) = feed(&format!("{}/feeds/atom.xml", d.url)).await;
    assert_eq!(h["content-type"], "application/atom+xml; charset=utf-8");
    let atom = atom_syndication::Feed::read_from(atom.as_bytes()).unwrap();
    assert!(atom.entries().iter().any(|e| e.id() == guid));
    let (h, json) = feed(&format!("{}/feeds/feed.json", d.url)).await;
    assert_eq!(h["content-type"], "application/feed+json; charset=utf-8");
    let json: Value = serde_json::from_str(&json).unwrap();
    assert!(json["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["id"] == guid.as_str()));

    // One category, one feed of its own.
    wait_items(&format!("{}/feeds/olahraga/rss.xml", d.url), 1).await;
    let r = raw_client()
        .get(format!("{}/feeds/tidak-ada/rss.xml", d.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // A correction keeps the id; the feed shows what changed.
    let id = kpu["id"].as_str().unwrap();
    let fixed = String::from_utf8(sample("kpu-kalsel-diskominfo.txt"))
        .unwrap()
        .replace("Edy Ariansyah", "Edy Ariyansyah");
    let r = api
        .post(&format!(
            "/api/v1/releases/{id}/corrections?note=Ejaan%20nama%20diperbaiki"
        ))
        .header("Content-Type", "text/plain")
        .body(fixed)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let corrected = eventually(15, "the correction in the feed", || async {
        let (_, body) = feed(&rss_url).await;
        let ch = rss::Channel::read_from(body.as_bytes()).ok()?;
        let item = ch
            .items()
            .iter()
            .find(|i| i.guid().map(|g| g.value()) == Some(guid.as_str()))?
            .clone();
        item.content()?.contains("Koreksi").then_some(item)
    })
    .await;
    assert!(corrected
        .content()
        .unwrap()
        .contains("Ejaan nama diperbaiki"));
    assert_eq!(
        rss::Channel::read_from(feed(&rss_url).await.1.as_bytes())
            .unwrap()
            .items()
            .len(),
        2,
        "still one entry"
    );

    // A retraction keeps the entry under the same id, withdrawn.
    let r = api
        .post(&format!("/api/v1/releases/{id}/retraction"))
        .json(&serde_json::json!({"reason": "Salah kirim"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    eventually(15, "the withdrawal in the feed", || async {
        let (_, body) = feed(&rss_url).await;
        let ch = rss::Channel::read_from(body.as_bytes()).ok()?;
        let item = ch
            .items()
            .iter()
            .find(|i| i.guid().map(|g| g.value()) == Some(guid.as_str()))?
            .clone();
        (item.title()?.starts_with("DITARIK: ") && item.content()?.contains("Salah kirim"))
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn conditional_get_compression_and_head() {
    let dir = tempfile::tempdir().unwrap();
    let (d, url) = daemon_with_one_release(dir.path()).await;
    let c = raw_client();
    let first = c.get(&url).send().await.unwrap();
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    let last_modified = first.headers()["last-modified"]
        .to_str()
        .unwrap()
        .to_owned();
    let identity = first.bytes().await.unwrap();
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && !etag.starts_with("W/"),
        "strong ETag: {etag}"
    );

    let r = c
        .get(&url)
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    assert_eq!(
        r.headers()["etag"],
        etag.as_str(),
        "a 304 repeats the validators"
    );
    assert_eq!(r.headers()["last-modified"], last_modified.as_str());
    assert!(r.bytes().await.unwrap().is_empty());
    let r = c
        .get(&url)
        .header("If-Modified-Since", &last_modified)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    let r = c
        .get(&url)
        .header("If-None-Match", "\"something-else\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .get(&url)
        .header("If-Modified-Since", "Mon, 01 Jan 2001 00:00:00 GMT")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let r = c
        .get(&url)
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip");
    assert_eq!(r.headers()["vary"], "Accept-Encoding");
    let gz_etag = r.headers()["etag"].to_str().unwrap().to_owned();
    assert_ne!(gz_etag, etag, "each encoding has its own strong ETag");
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&r.bytes().await.unwrap()[..])
        .read_to_end(&mut out)
        .unwrap();
    assert_eq!(out, identity);
    let r = c
        .get(&url)
        .header("Accept-Encoding", "gzip")
        .header("If-None-Match", &gz_etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);

    let r = c
        .get(&url)
        .header("Accept-Encoding", "gzip, deflate, br")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "br");
    let mut out = Vec::new();
    brotli::Decompressor::new(&r.bytes().await.unwrap()[..], 4096)
        .read_to_end(&mut out)
        .unwrap();
    assert_eq!(out, identity);
    let r = c
        .get(&url)
        .header("Accept-Encoding", "br;q=0, gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip");

    let r = c.head(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["etag"], etag.as_str());
    assert_eq!(
        r.headers()["content-length"],
        identity.len().to_string().as_str()
    );
    assert!(r.bytes().await.unwrap().is_empty());

    // /metrics counts feed requests and the 304s among them.
    let m = c
        .get(format!("{}/metrics", d.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |name: &str| -> u64 {
        m.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing:\n{m}"))
    };
    assert_eq!(value("siar_feed_not_modified_total"), 3, "{m}");
    assert!(value("siar_feed_requests_total") >= 8, "{m}");
}

#[tokio::test]
async fn nothing_appears_before_publish_at() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let api = d.client();
    let (s, _) = api.post_text(release_text(1)).await;
    assert_eq!(s, 201);
    let at = (chrono::Utc::now() + chrono::Duration::seconds(3)).to_rfc3339();
    let r = api
        .post("/api/v1/releases?categories=embargo")
        .query(&[("publish_at", at.as_str())])
        .header("Content-Type", "text/plain")
        .body(release_text(2))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let url = format!("{}/feeds/rss.xml", d.url);
    wait_items(&url, 1).await;
    for path in ["/feeds/rss.xml", "/feeds/atom.xml", "/feeds/feed.json"] {
        let (_, body) = feed(&format!("{}{path}", d.url)).await;
        assert!(
            !body.contains("Rilis Uji Nomor 2"),
            "{path} shows an embargoed release"
        );
    }
    let r = raw_client()
        .get(format!("{}/feeds/embargo/rss.xml", d.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "not even its category feed exists yet");
    wait_items(&url, 2).await;
    wait_items(&format!("{}/feeds/embargo/rss.xml", d.url), 1).await;
}

#[tokio::test]
async fn older_releases_move_to_linked_archives() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_with(
        dir.path(),
        None,
        &[
            ("SIAR_FEEDS_ITEMS", "2"),
            ("SIAR_SERVER_PUBLIC_URL", "https://s.example.id"),
        ],
    );
    let api = d.client();
    for n in 0..5 {
        let (s, _) = api.post_text(release_text(n)).await;
        assert_eq!(s, 201);
    }
    let url = format!("{}/feeds/rss.xml", d.url);
    eventually(15, "two archive pages", || async {
        let r = raw_client()
            .get(format!("{}/feeds/archive/2/rss.xml", d.url))
            .send()
            .await
            .unwrap();
        (r.status() == 200).then_some(())
    })
    .await;
    let (_, current) = feed(&url).await;
    let ch = rss::Channel::read_from(current.as_bytes()).unwrap();
    let titles: Vec<_> = ch
        .items()
        .iter()
        .map(|i| i.title().unwrap().to_owned())
        .collect();
    assert_eq!(titles, ["Rilis Uji Nomor 4", "Rilis Uji Nomor 3"]);
    let links = ch.atom_ext().unwrap().links();
    let prev = links
        .iter()
        .find(|l| l.rel() == "prev-archive")
        .unwrap()
        .href();
    assert_eq!(prev, "https://s.example.id/feeds/archive/2/rss.xml");

    let (h2, page2) = feed(&format!("{}/feeds/archive/2/rss.xml", d.url)).await;
    let ch2 = rss::Channel::read_from(page2.as_bytes()).unwrap();
    assert_eq!(
        ch2.items()
            .iter()
            .map(|i| i.title().unwrap())
            .collect::<Vec<_>>(),
        ["Rilis Uji Nomor 2"]
    );
    assert!(page2.contains("<fh:archive"));
    assert!(
        h2["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age=300"),
        "a partial page may still change"
    );
    let (h1, page1) = feed(&format!("{}/feeds/archive/1/rss.xml", d.url)).await;
    let ch1 = rss::Channel::read_from(page1.as_bytes()).unwrap();
    assert_eq!(
        ch1.items()
            .iter()
            .map(|i| i.title().unwrap())
            .collect::<Vec<_>>(),
        ["Rilis Uji Nomor 1", "Rilis Uji Nomor 0"]
    );
    assert!(
        h1["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age=604800"),
        "a full page is long-lived"
    );
    let l1 = ch1.atom_ext().unwrap().links();
    assert!(l1
        .iter()
        .any(|l| l.rel() == "next-archive"
            && l.href() == "https://s.example.id/feeds/archive/2/rss.xml"));
    assert!(l1
        .iter()
        .any(|l| l.rel() == "current" && l.href() == "https://s.example.id/feeds/rss.xml"));
    assert!(!l1.iter().any(|l| l.rel() == "prev-archive"));

    let (_, json) = feed(&format!("{}/feeds/feed.json", d.url)).await;
    let json: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        json["next_url"],
        "https://s.example.id/feeds/archive/2/feed.json"
    );
}

#[tokio::test]
async fn feeds_pass_python_feedparser() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let api = d.client();
    for name in [
        "kpu-kalsel-diskominfo.txt",
        "geopark-meratus.txt",
        "voli-polda.txt",
    ] {
        let (s, _) = api.post_text(sample(name)).await;
        assert_eq!(s, 201);
    }
    let hostile = serde_json::json!({"title": "Uji <script>x()</script> & \u{1}🎉", "body": ["A & B < C > D ]]> 🌧️"]});
    let r = api
        .post("/api/v1/releases")
        .json(&hostile)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    wait_items(&format!("{}/feeds/rss.xml", d.url), 4).await;
    let script = r#"
import sys, feedparser
for url in sys.argv[1:]:
    f = feedparser.parse(url)
    assert f.bozo == 0, (url, f.bozo_exception)
    assert len(f.entries) == 4, (url, len(f.entries))
    for e in f.entries:
        assert e.id.startswith("tag:kalselprov.go.id,"), e.id
        assert e.link.startswith("http"), e.link
    print("ok", url, f.version)
"#;
    // feedparser 6 reads RSS and Atom; JSON Feed is read by feed-rs below.
    let urls: Vec<String> = ["rss.xml", "atom.xml"]
        .iter()
        .map(|f| format!("{}/feeds/{f}", d.url))
        .collect();
    let out = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(&urls)
        .output()
        .await
        .expect("python3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "feedparser rejected a feed (scripts/test installs feedparser with pip):\n{stderr}"
    );
    for f in ["rss.xml", "atom.xml", "feed.json"] {
        let (_, body) = feed(&format!("{}/feeds/{f}", d.url)).await;
        let parsed = feed_rs::parser::parse(body.as_bytes())
            .unwrap_or_else(|e| panic!("feed-rs rejected {f}: {e}"));
        assert_eq!(parsed.entries.len(), 4, "{f}");
        assert!(body.chars().all(siar_model::text::is_xml_char), "{f}");
        assert!(!body.contains("x()"), "{f}: script survived");
    }
}

/// One answer read off a raw connection.
struct RawResponse {
    status: u16,
    /// Names lowercased, in order.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response from `buf` + `stream` (what is left over stays in `buf`), parsed by
/// httparse; `head` says the request was `HEAD` (no body whatever the length says).
fn read_response(stream: &mut std::net::TcpStream, buf: &mut Vec<u8>, head: bool) -> RawResponse {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(n) = resp.parse(buf).unwrap() {
            let status = resp.code.unwrap();
            let headers: Vec<(String, String)> = resp
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8(h.value.to_vec()).unwrap(),
                    )
                })
                .collect();
            let len: usize = match (head, status) {
                (true, _) | (_, 304) => 0,
                _ => headers
                    .iter()
                    .find(|(n, _)| n == "content-length")
                    .map(|(_, v)| v.parse().unwrap())
                    .expect("content-length"),
            };
            while buf.len() < n + len {
                let mut chunk = [0u8; 65536];
                let k = stream.read(&mut chunk).unwrap();
                assert!(k > 0, "closed in the middle of a body");
                buf.extend_from_slice(&chunk[..k]);
            }
            let body = buf[n..n + len].to_vec();
            buf.drain(..n + len);
            return RawResponse {
                status,
                headers,
                body,
            };
        }
        let mut chunk = [0u8; 65536];
        let k = stream.read(&mut chunk).unwrap();
        assert!(
            k > 0,
            "closed before a response: {}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&chunk[..k]);
    }
}

/// True if the server closes the connection (nothing more to read).
fn closed_by_server(stream: &mut std::net::TcpStream, buf: &[u8]) -> bool {
    let mut rest = Vec::new();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    buf.is_empty() && matches!(stream.read_to_end(&mut rest), Ok(0))
}

#[tokio::test]
async fn raw_connections_get_pipelined_answers_from_both_http_paths() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let (d, url) = daemon_with_one_release(dir.path()).await;
    let (h, body) = feed(&url).await;
    let etag = h["etag"].to_str().unwrap().to_owned();
    let addr = d.url.trim_start_matches("http://").to_owned();

    tokio::task::spawn_blocking(move || {
        let connect = || {
            let s = std::net::TcpStream::connect(&addr).unwrap();
            s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
                .unwrap();
            s
        };
        // Six requests in one write: feed polls (answered on the wire path), then one for the
        // router (the connection moves to hyper), then a feed poll again (hyper's feed path).
        let mut c = connect();
        let inm = format!("If-None-Match: {etag}\r\n");
        let reqs = [
            (
                "GET /feeds/rss.xml?from=reader HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(),
                false,
            ),
            (
                format!("GET /feeds/rss.xml HTTP/1.1\r\nHost: x\r\n{inm}\r\n"),
                false,
            ),
            (
                "HEAD /feeds/rss.xml HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(),
                true,
            ),
            (
                "GET /feeds/nope.xml HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(),
                false,
            ),
            ("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(), false),
            (
                format!("GET /feeds/rss.xml HTTP/1.1\r\nHost: x\r\n{inm}\r\n"),
                false,
            ),
            (
                "HEAD /feeds/rss.xml HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(),
                true,
            ),
        ];
        let all: String = reqs.iter().map(|(r, _)| r.as_str()).collect();
        c.write_all(all.as_bytes()).unwrap();
        let mut buf = Vec::new();
        let got: Vec<RawResponse> = reqs
            .iter()
            .map(|(_, head)| read_response(&mut c, &mut buf, *head))
            .collect();
        let statuses: Vec<u16> = got.iter().map(|r| r.status).collect();
        assert_eq!(statuses, [200, 304, 200, 404, 200, 304, 200]);
        assert_eq!(got[0].body, body.as_bytes(), "the feed, whole");
        assert_eq!(got[0].header("etag"), Some(etag.as_str()));
        assert_eq!(
            got[0].header("content-type"),
            Some("application/rss+xml; charset=utf-8")
        );
        assert!(got[0].header("date").is_some(), "every answer is dated");
        assert_eq!(
            got[2].header("content-length"),
            Some(body.len().to_string().as_str()),
            "HEAD gives GET's length"
        );
        assert!(got[2].body.is_empty());
        assert_eq!(got[3].body, b"Feed tidak ditemukan.\n");
        assert!(
            String::from_utf8_lossy(&got[4].body).contains("ok"),
            "the router answered"
        );
        // The wire path and hyper's path answer a poll with the same headers.
        let without_date = |r: &RawResponse| -> Vec<(String, String)> {
            r.headers
                .iter()
                .filter(|(n, _)| n != "date")
                .cloned()
                .collect()
        };
        assert_eq!(without_date(&got[1]), without_date(&got[5]));
        assert_eq!(without_date(&got[2]), without_date(&got[6]));
        for name in ["etag", "last-modified", "cache-control", "vary", "link"] {
            assert!(got[1].header(name).is_some(), "a 304 repeats {name}");
        }
        assert_eq!(got[1].header("content-type"), None);

        // One request on a new connection: the connection, what is left unread, the answer.
        let exchange = |raw: &[u8], head: bool| {
            let mut c = connect();
            // A server refusing a head may answer and close before reading all of it: the
            // answer is what counts.
            let _ = c.write_all(raw);
            let mut buf = Vec::new();
            let r = read_response(&mut c, &mut buf, head);
            (c, buf, r)
        };

        // A head sent a few bytes at a time is waited for.
        let mut c = connect();
        let req = format!("GET /feeds/rss.xml HTTP/1.1\r\nHost: x\r\n{inm}\r\n");
        for piece in req.as_bytes().chunks(7) {
            c.write_all(piece).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let mut buf = Vec::new();
        assert_eq!(read_response(&mut c, &mut buf, false).status, 304);

        // HTTP/1.0 closes after the answer unless asked to keep the connection.
        let (mut c, buf, r) = exchange(b"GET /feeds/rss.xml HTTP/1.0\r\n\r\n", false);
        assert_eq!((r.status, r.body.len()), (200, body.len()));
        assert!(
            closed_by_server(&mut c, &buf),
            "HTTP/1.0 without keep-alive"
        );
        let mut c = connect();
        let req = format!("GET /feeds/rss.xml HTTP/1.0\r\nConnection: keep-alive\r\n{inm}\r\n");
        c.write_all(req.as_bytes()).unwrap();
        let mut buf = Vec::new();
        let r = read_response(&mut c, &mut buf, false);
        assert_eq!(r.status, 304);
        assert_eq!(r.header("connection"), Some("keep-alive"));
        c.write_all(req.as_bytes()).unwrap();
        assert_eq!(read_response(&mut c, &mut buf, false).status, 304);

        // `Connection: close` is honoured, and said.
        let (mut c, buf, r) = exchange(
            b"HEAD /feeds/rss.xml HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            true,
        );
        assert_eq!((r.status, r.header("connection")), (200, Some("close")));
        assert!(closed_by_server(&mut c, &buf), "Connection: close");

        // What the wire path does not read goes to hyper, which answers as it always has.
        let bad = exchange(b"GET /feeds/rss.xml HTTP/1.1\r\nBad Header\r\n\r\n", false);
        assert_eq!(bad.2.status, 400);
        let mut huge = b"GET /feeds/rss.xml HTTP/1.1\r\nHost: x\r\n".to_vec();
        for i in 0..2000 {
            huge.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "y".repeat(200)).as_bytes());
        }
        huge.extend_from_slice(b"\r\n");
        assert_eq!(exchange(&huge, false).2.status, 431);
        let post = b"POST /feeds/rss.xml HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi";
        assert_eq!(exchange(post, false).2.status, 405);

        // Stopping does not wait for idle keep-alive connections: each is closed.
        let (mut idle, buf, r) = exchange(b"HEAD /feeds/rss.xml HTTP/1.1\r\nHost: x\r\n\r\n", true);
        assert_eq!(r.status, 200);
        let started = std::time::Instant::now();
        assert!(d.terminate().success());
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "stopping took {:?} with an idle connection open",
            started.elapsed()
        );
        assert!(closed_by_server(&mut idle, &buf));
    })
    .await
    .unwrap();
}
