//! The pages in a real browser: headless Chromium driven over WebDriver (Debian's `chromium`
//! and `chromium-driver`; scripts/test installs them). A reader finds the newsroom, subscribes,
//! confirms and later leaves with the buttons on siar's pages; an operator signs in to /admin
//! and sends a failed delivery again.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

use crate::utils::*;

/// chromedriver on a free port; killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn browser() -> (Driver, Client) {
    let port = free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver (Debian package chromium-driver; scripts/test installs it)");
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=412,915"]}),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // Plain HTTP to chromedriver on loopback: no TLS needed.
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&driver.url)
            .await
        {
            Ok(c) => return (driver, c),
            Err(e) if Instant::now() > deadline => panic!("chromedriver did not start: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn type_into(c: &Client, css: &str, text: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .send_keys(text)
        .await
        .unwrap();
}

async fn text_of(c: &Client, css: &str) -> String {
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Waits (a click navigates in the background) until `css` shows `expected`.
async fn wait_text(c: &Client, css: &str, expected: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = match c.find(Locator::Css(css)).await {
            Ok(e) => e.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if now.contains(expected) {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "`{css}` shows {now:?}, not {expected:?}:\n{}",
                c.source().await.unwrap()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A partner that refuses the first delivery for good (400) and takes the rest.
async fn fussy_partner(calls: Arc<AtomicUsize>) -> String {
    serve_local(axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let calls = calls.clone();
            async move {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    (axum::http::StatusCode::BAD_REQUEST, "format belum didukung")
                } else {
                    (axum::http::StatusCode::OK, "diterima")
                }
            }
        }),
    ))
    .await
}

#[tokio::test]
async fn a_reader_subscribes_and_an_operator_retries_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpRecorder::start(dir.path(), "relay");
    let calls = Arc::new(AtomicUsize::new(0));
    let partner = fussy_partner(calls.clone()).await;
    // The browser follows links to siar itself, so siar's public URL is its real address.
    let port = free_port();
    let public = format!("http://127.0.0.1:{port}");
    let cfg = dir.path().join("siar.toml");
    std::fs::write(
        &cfg,
        format!(
            "[smtp]\nurl = \"{}\"\nfrom = \"Diskominfo Kalsel <siaran@kalselprov.go.id>\"\n\n\
             [[lists]]\nid = \"jurnalis\"\nname = \"Siaran Pers untuk Jurnalis\"\n\n\
             [[partners]]\nid = \"media-center\"\nname = \"Media Center Kalsel\"\nurl = \"{partner}/hook\"\n\
             format = \"ninjs\"\nsecret_env = \"BROWSER_TEST_SECRET\"\nallow_private = true\n",
            smtp.url()
        ),
    )
    .unwrap();
    let listen = format!("127.0.0.1:{port}");
    let d = Daemon::start_with(
        dir.path(),
        Some(&cfg),
        &[
            ("SIAR_SERVER_LISTEN", listen.as_str()),
            ("SIAR_SERVER_PUBLIC_URL", public.as_str()),
            (
                "BROWSER_TEST_SECRET",
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            ),
        ],
    );
    let api = d.client();
    let first = api.post_text(release_text(1)).await.1["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The pages are redrawn just after publishing (and a browser may keep one for a minute).
    eventually(10, "the newsroom to list the release", || async {
        let page = reqwest::get(format!("{public}/")).await.unwrap();
        page.text()
            .await
            .unwrap()
            .contains("Rilis Uji Nomor 1")
            .then_some(())
    })
    .await;
    let (_driver, c) = browser().await;

    // The newsroom: the release is listed, and the form subscribes.
    c.goto(&format!("{public}/")).await.unwrap();
    let html = c.source().await.unwrap();
    assert!(html.contains("Rilis Uji Nomor 1"), "{html}");
    type_into(&c, "input[type=email]", "ani@redaksi.id").await;
    click(&c, "form[action$='/subscribe'] button[type=submit]").await;
    wait_text(&c, "main", "Periksa kotak surat Anda").await;

    // The confirmation mail's link opens a page; its button confirms.
    let mail = eventually(20, "the confirmation mail", || async {
        smtp.to("ani@redaksi.id").pop()
    })
    .await;
    let link = link_under(&mail.text(), &public, "confirm");
    c.goto(&format!("{public}{link}")).await.unwrap();
    assert_eq!(text_of(&c, "h1").await, "Konfirmasi langganan");
    click(&c, "main form button").await;
    wait_text(&c, "h1", "Langganan aktif").await;
    let (_, subs) = api.get_json("/api/v1/lists/jurnalis/subscribers").await;
    assert_eq!(subs["items"][0]["status"], "confirmed", "{subs}");

    // A release: the partner refuses it for good, the subscriber gets it.
    assert_eq!(api.post_text(release_text(2)).await.0, 201);
    let failed = eventually(20, "the partner's delivery to fail", || async {
        let (_, ds) = api
            .get_json(&format!("/api/v1/releases/{first}/deliveries"))
            .await;
        ds["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["target"] == "partner:media-center" && d["status"] == "failed")
            .map(|d| d["id"].as_str().unwrap().to_owned())
    })
    .await;

    // The operator: /admin asks for the token, then shows the failure with a button.
    c.goto(&format!("{public}/admin")).await.unwrap();
    assert!(c.source().await.unwrap().contains("Token API"));
    type_into(&c, "input[name=token]", "salah").await;
    click(&c, "main form button").await;
    wait_text(&c, "main", "Token salah.").await;
    type_into(&c, "input[name=token]", TOKEN).await;
    click(&c, "main form button").await;
    wait_text(&c, "h1", "Panel operator siar").await;
    let failures = text_of(&c, "section[aria-labelledby=gagal]").await;
    assert!(
        failures.contains("partner:media-center") && failures.contains("400"),
        "{failures}"
    );
    let partners = text_of(&c, "section[aria-labelledby=mitra]").await;
    assert!(partners.contains("Media Center Kalsel"), "{partners}");
    let lists = text_of(&c, "section[aria-labelledby=daftar]").await;
    assert!(lists.contains("Siaran Pers untuk Jurnalis"), "{lists}");
    click(
        &c,
        &format!(
            "section[aria-labelledby=gagal] form[action='/admin/deliveries/{failed}/retry'] button"
        ),
    )
    .await;
    wait_text(&c, "main", "Pengiriman dijadwalkan ulang").await;
    eventually(20, "the retried delivery to arrive", || async {
        let (_, d) = api
            .get_json(&format!("/api/v1/releases/{first}/deliveries"))
            .await;
        d["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["id"] == failed.as_str() && d["status"] == "delivered")
            .then_some(())
    })
    .await;
    c.goto(&format!("{public}/admin")).await.unwrap();
    wait_text(
        &c,
        "section[aria-labelledby=gagal]",
        "Tidak ada pengiriman yang gagal",
    )
    .await;
    assert!(
        calls.load(Ordering::SeqCst) >= 3,
        "first refused, then the retry and the second release"
    );

    // The reader leaves with the button behind the mail's unsubscribe link.
    let mail = eventually(20, "the release mail", || async {
        smtp.to("ani@redaksi.id")
            .into_iter()
            .find(|m| m.subject().contains("Rilis Uji Nomor 2"))
    })
    .await;
    let link = link_under(&mail.text(), &public, "unsubscribe");
    c.goto(&format!("{public}{link}")).await.unwrap();
    assert_eq!(text_of(&c, "h1").await, "Berhenti berlangganan");
    click(&c, "main form button").await;
    wait_text(&c, "h1", "Anda telah berhenti berlangganan").await;
    let (_, subs) = api.get_json("/api/v1/lists/jurnalis/subscribers").await;
    assert_eq!(subs["items"][0]["status"], "unsubscribed", "{subs}");
    c.close().await.unwrap();
}
