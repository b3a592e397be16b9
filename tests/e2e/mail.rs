//! Email lists against a real SMTP server (aiosmtpd): double opt-in, one-click unsubscribe,
//! the bulk-sender headers, corrections and retractions, digests, rate limits, and the faults
//! a relay throws (421, 451, 550 on RCPT, the relay down for a while).

use std::path::Path;

use mail_parser::MimeHeaders;
use serde_json::json;

use crate::utils::*;

pub(crate) const PUBLIC: &str = "https://siaran.example.go.id";

pub(crate) fn mail_config(dir: &Path, smtp_url: &str, extra: &str) -> std::path::PathBuf {
    let cfg = dir.join("siar.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[smtp]
url = "{smtp_url}"
from = "Diskominfo Kalsel <siaran@kalselprov.go.id>"
max_connections = 4
rate_per_second = 1000
timeout_secs = 10
return_path = "bounces+{{verp}}@kalselprov.go.id"
unsubscribe_mailto = "mailto:berhenti@kalselprov.go.id"
retry_schedule_secs = [1, 1, 2, 2, 2, 2, 2, 2, 2, 2]
subscribe_per_address_per_hour = 3
subscribe_per_ip_per_hour = 1000

[[lists]]
id = "jurnalis"
name = "Siaran Pers untuk Jurnalis"
description = "Setiap siaran pers, segera setelah terbit."
{extra}
"#
        ),
    )
    .unwrap();
    cfg
}

pub(crate) fn start(dir: &Path, cfg: &Path) -> Daemon {
    Daemon::start_with(dir, Some(cfg), &[("SIAR_SERVER_PUBLIC_URL", PUBLIC)])
}

/// The path (`/confirm/…` or `/unsubscribe/…`) of the first link in `text` that has it.
pub(crate) fn link_path(text: &str, kind: &str) -> String {
    link_under(text, PUBLIC, kind)
}

pub(crate) async fn subscribe_form(d: &Daemon, address: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/subscribe", d.url))
        .form(&[("email", address), ("list", "jurnalis")])
        .send()
        .await
        .unwrap()
}

pub(crate) async fn post_path(d: &Daemon, path: &str, body: &'static str) -> reqwest::Response {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{}{path}", d.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn subscriber_status(api: &Api, address: &str) -> String {
    let (_, page) = api.get_json("/api/v1/lists/jurnalis/subscribers").await;
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["address"] == address)
        .map(|s| s["status"].as_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// The list delivery of a release, once the outbox has it.
pub(crate) async fn list_delivery(api: &Api, release: &str) -> Vec<String> {
    let (_, ds) = api
        .get_json(&format!("/api/v1/releases/{release}/deliveries"))
        .await;
    ds["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["target"] == "list:jurnalis")
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Waits until every list delivery of `release` is settled; returns the last one's
/// recipient counts.
pub(crate) async fn mailing_done(api: &Api, release: &str, deliveries: usize) -> serde_json::Value {
    eventually(30, "the mailing to finish", || async {
        let ids = list_delivery(api, release).await;
        if ids.len() < deliveries {
            return None;
        }
        let (_, ds) = api
            .get_json(&format!("/api/v1/releases/{release}/deliveries"))
            .await;
        let settled = ds["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["target"] == "list:jurnalis")
            .all(|d| d["status"] == "delivered" || d["status"] == "failed");
        if !settled {
            return None;
        }
        let (s, r) = api
            .get_json(&format!(
                "/api/v1/deliveries/{}/recipients",
                ids.last().unwrap()
            ))
            .await;
        (s == 200).then_some(r)
    })
    .await
}

/// Adds confirmed subscribers to a list through the API.
pub(crate) async fn import_confirmed(api: &Api, list: &str, addresses: &[impl serde::Serialize]) {
    let r = api
        .post(&format!("/api/v1/lists/{list}/subscribers"))
        .json(&json!({"addresses": addresses, "confirmed": true, "source": "test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

pub(crate) async fn publish(api: &Api, n: usize) -> String {
    let (s, r) = api.post_text(release_text(n)).await;
    assert_eq!(s, 201, "{r}");
    r["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn subscribe_confirm_receive_and_unsubscribe_in_one_click() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpRecorder::start(dir.path(), "relay");
    let cfg = mail_config(dir.path(), &smtp.url(), "");
    let d = start(dir.path(), &cfg);
    let api = d.client();

    // The newsroom page offers the form.
    let home = reqwest::get(format!("{}/", d.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        home.contains("action=\"https://siaran.example.go.id/subscribe\""),
        "{home}"
    );
    assert!(home.contains("type=\"email\""));

    // Three people subscribe: two by the form, one by JSON.
    for a in ["ani@redaksi.id", "budi@redaksi.id"] {
        let r = subscribe_form(&d, a).await;
        assert_eq!(r.status(), 202);
        assert!(r.text().await.unwrap().contains("Periksa kotak surat Anda"));
    }
    let r = reqwest::Client::new()
        .post(format!("{}/subscribe", d.url))
        .json(&json!({"email": "  Citra@Redaksi.ID ", "list": "jurnalis"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["status"],
        "confirmation_sent"
    );
    // Bad input: a clear answer, nothing stored.
    let r = subscribe_form(&d, "bukan-alamat").await;
    assert_eq!(r.status(), 400);
    let r = reqwest::Client::new()
        .post(format!("{}/subscribe", d.url))
        .json(&json!({"email": "x@y.id", "list": "tidak-ada"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let confirmations = eventually(20, "three confirmation mails", || async {
        let m = smtp.messages();
        (m.len() >= 3).then_some(m)
    })
    .await;
    assert_eq!(confirmations.len(), 3);
    let mut confirm_links = std::collections::BTreeMap::new();
    for m in &confirmations {
        assert!(
            m.subject().starts_with("Konfirmasi langganan"),
            "{}",
            m.subject()
        );
        assert_eq!(m.header("Auto-Submitted"), "auto-generated");
        confirm_links.insert(m.to[0].clone(), link_path(&m.text(), "confirm"));
    }
    assert!(
        confirm_links.contains_key("citra@redaksi.id"),
        "{confirm_links:?}"
    );
    assert_eq!(subscriber_status(&api, "ani@redaksi.id").await, "pending");

    // Following the link (as a mail scanner would) only shows a page with a button.
    let ani_link = confirm_links["ani@redaksi.id"].clone();
    let page = reqwest::get(format!("{}{ani_link}", d.url)).await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("<form method=\"post\"") && html.contains("Konfirmasi"),
        "{html}"
    );
    assert_eq!(subscriber_status(&api, "ani@redaksi.id").await, "pending");
    // The button confirms; pressing it again changes nothing.
    for _ in 0..2 {
        let r = post_path(&d, &ani_link, "").await;
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains("Langganan aktif"));
    }
    for a in ["budi@redaksi.id", "citra@redaksi.id"] {
        assert_eq!(post_path(&d, &confirm_links[a], "").await.status(), 200);
    }
    // A forged or damaged link is refused.
    assert_eq!(post_path(&d, "/confirm/AAAA.BBBB", "").await.status(), 400);
    let (_, page) = api.get_json("/api/v1/lists/jurnalis/subscribers").await;
    let ani = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["address"] == "ani@redaksi.id")
        .unwrap()
        .clone();
    assert_eq!(ani["status"], "confirmed");
    let actions: Vec<&str> = ani["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["requested", "confirmed"]);
    assert_eq!(ani["history"][0]["source"], "form");
    assert_eq!(ani["history"][0]["ip"], "127.0.0.1");

    // Publish: each subscriber gets the release once.
    let before = smtp.messages().len();
    let id = publish(&api, 1).await;
    let counts = mailing_done(&api, &id, 1).await;
    assert_eq!(counts["sent"], 3, "{counts}");
    let mails = smtp.messages()[before..].to_vec();
    assert_eq!(mails.len(), 3);
    let (_, release) = api.get_json(&format!("/api/v1/releases/{id}")).await;
    let title = release["content"]["title"].as_str().unwrap();
    let ani_mail = mails
        .iter()
        .find(|m| m.to == ["ani@redaksi.id"])
        .unwrap()
        .clone();
    let m = ani_mail.parsed();
    assert_eq!(m.subject().unwrap(), title);
    assert!(m
        .content_type()
        .unwrap()
        .c_type
        .eq_ignore_ascii_case("multipart"));
    assert_eq!(m.content_type().unwrap().subtype(), Some("alternative"));
    assert_eq!(m.text_body_count(), 1);
    assert_eq!(m.html_body_count(), 1);
    assert_eq!(m.attachment_count(), 0);
    assert!(m.date().is_some());
    assert_eq!(
        ani_mail.header("List-Id"),
        "\"Siaran Pers untuk Jurnalis\" <jurnalis.kalselprov.go.id>"
    );
    assert_eq!(
        ani_mail.header("List-Unsubscribe-Post"),
        "List-Unsubscribe=One-Click"
    );
    assert_eq!(ani_mail.header("Auto-Submitted"), "auto-generated");
    assert_eq!(ani_mail.header("Precedence"), "bulk");
    let lu = ani_mail.header("List-Unsubscribe");
    assert!(
        lu.starts_with(&format!("<{PUBLIC}/unsubscribe/"))
            && lu.ends_with(", <mailto:berhenti@kalselprov.go.id>"),
        "{lu}"
    );
    assert!(m.message_id().unwrap().contains(&format!("{id}.v1.new.")));
    // VERP: the return path names the recipient.
    assert_eq!(ani_mail.from, "bounces+ani=redaksi.id@kalselprov.go.id");
    assert!(ani_mail.text().contains("Berhenti berlangganan:"));
    let unsub = link_path(&lu, "unsubscribe");

    // The unsubscribe link: a GET shows a page and changes nothing…
    let page = reqwest::get(format!("{}{unsub}", d.url)).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Berhenti berlangganan"));
    assert_eq!(subscriber_status(&api, "ani@redaksi.id").await, "confirmed");
    // …a one-click POST unsubscribes at once, 200 and no redirect (RFC 8058).
    let r = post_path(&d, &unsub, "List-Unsubscribe=One-Click").await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("location").is_none());
    assert_eq!(
        subscriber_status(&api, "ani@redaksi.id").await,
        "unsubscribed"
    );

    // The next release reaches the other two only.
    let before = smtp.messages().len();
    let id2 = publish(&api, 2).await;
    let counts = mailing_done(&api, &id2, 1).await;
    assert_eq!(counts["sent"], 2, "{counts}");
    let to: Vec<String> = smtp.messages()[before..]
        .iter()
        .map(|m| m.to[0].clone())
        .collect();
    assert!(!to.contains(&"ani@redaksi.id".to_owned()), "{to:?}");
    let metrics = d.metrics().await;
    assert!(
        metrics.contains("siar_mail_messages_total{list=\"jurnalis\",outcome=\"sent\"} 5"),
        "{metrics}"
    );
    // Five list mails and three confirmations, all taken by the relay; nothing left queued.
    for line in [
        "siar_smtp_replies_total{class=\"2xx\"} 8",
        "siar_smtp_send_seconds_count 8",
        "siar_smtp_send_seconds_bucket{le=\"+Inf\"} 8",
        "siar_smtp_replies_total{class=\"5xx\"} 0",
        "siar_queue_depth{channel=\"list\"} 0",
        "siar_queue_oldest_due_seconds{channel=\"webhook\"} 0",
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }
    assert!(
        metrics.contains("siar_mail_confirmations_sent_total 3"),
        "{metrics}"
    );
    for line in [
        "siar_releases_ingested_total 2",
        "siar_releases_published_total 2",
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }
    assert!(
        metrics.contains("siar_list_subscribers{list=\"jurnalis\",status=\"unsubscribed\"} 1"),
        "{metrics}"
    );

    // A correction goes to who got it, marked; a retraction likewise.
    let before = smtp.messages().len();
    let r = api
        .post(&format!(
            "/api/v1/releases/{id2}/corrections?note=Angka%20anggaran%20diperbaiki"
        ))
        .header("Content-Type", "text/plain")
        .body(release_text(2).replace("lancar", "sangat lancar"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let counts = mailing_done(&api, &id2, 2).await;
    assert_eq!(counts["sent"], 2, "{counts}");
    let corrections = smtp.messages()[before..].to_vec();
    assert_eq!(corrections.len(), 2);
    for c in &corrections {
        assert!(c.subject().starts_with("KOREKSI: "), "{}", c.subject());
        assert!(c.text().contains("Angka anggaran diperbaiki"));
        assert!(c.parsed().message_id().unwrap().contains(".v2.correction."));
    }
    let before = smtp.messages().len();
    let r = api
        .post(&format!("/api/v1/releases/{id2}/retraction"))
        .json(&json!({"reason": "Diterbitkan keliru"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    mailing_done(&api, &id2, 3).await;
    let retractions = smtp.messages()[before..].to_vec();
    assert_eq!(retractions.len(), 2);
    assert!(retractions
        .iter()
        .all(|m| m.subject().starts_with("DITARIK: ")));

    // Re-subscribing after unsubscribing takes a fresh confirmation; the old link is void.
    let before = smtp.messages().len();
    assert_eq!(subscribe_form(&d, "ani@redaksi.id").await.status(), 202);
    let fresh = eventually(20, "a fresh confirmation", || async {
        smtp.messages()[before..]
            .iter()
            .find(|m| m.to == ["ani@redaksi.id"])
            .cloned()
    })
    .await;
    assert_eq!(post_path(&d, &ani_link, "").await.status(), 410);
    assert_eq!(subscriber_status(&api, "ani@redaksi.id").await, "pending");
    let new_link = link_path(&fresh.text(), "confirm");
    assert_eq!(post_path(&d, &new_link, "").await.status(), 200);
    assert_eq!(subscriber_status(&api, "ani@redaksi.id").await, "confirmed");

    // Rate limit per address: a fourth request within the hour is refused and mails nobody.
    for _ in 0..2 {
        assert_eq!(subscribe_form(&d, "dodi@redaksi.id").await.status(), 202);
    }
    assert_eq!(subscribe_form(&d, "dodi@redaksi.id").await.status(), 202);
    let r = subscribe_form(&d, "dodi@redaksi.id").await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_some());
}

#[tokio::test]
async fn relay_faults_are_retried_and_a_refused_mailbox_is_suppressed_alone() {
    relay_faults(false).await;
}

/// The same faults with PIPELINING: every reply of a pipelined MAIL, RCPT, DATA is read in
/// order, so a refusal leaves the session in step for the next mail.
#[tokio::test]
async fn relay_faults_are_handled_alike_when_commands_are_pipelined() {
    relay_faults(true).await;
}

async fn relay_faults(pipelining: bool) {
    let dir = tempfile::tempdir().unwrap();
    let smtp = if pipelining {
        SmtpRecorder::start_pipelining(dir.path(), "relay", 0)
    } else {
        SmtpRecorder::start(dir.path(), "relay")
    };
    let port = smtp.port;
    let cfg = mail_config(dir.path(), &smtp.url(), "");
    let d = start(dir.path(), &cfg);
    let api = d.client();
    // Imported as confirmed only with a stated source.
    let r = api
        .post("/api/v1/lists/jurnalis/subscribers")
        .json(&json!({"addresses": ["satu@redaksi.id", "hilang@redaksi.id", "dua@redaksi.id"], "confirmed": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = api
        .post("/api/v1/lists/jurnalis/subscribers")
        .json(&json!({"addresses": ["satu@redaksi.id", "hilang@redaksi.id", "dua@redaksi.id", "rusak"], "confirmed": true, "source": "daftar hadir konferensi pers"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let report: serde_json::Value = r.json().await.unwrap();
    assert_eq!(report["added"], 3, "{report}");
    assert_eq!(report["invalid"][0]["index"], 3);

    // 421 to the first two MAILs, 451 to the first two RCPTs, 550 for one mailbox.
    smtp.set_faults(
        json!({"mail_421_first": 2, "rcpt_451_first": 2, "rcpt_550": ["hilang@redaksi.id"]}),
    );
    let id = publish(&api, 1).await;
    let counts = mailing_done(&api, &id, 1).await;
    assert_eq!(
        (
            counts["sent"].as_u64(),
            counts["bounced"].as_u64(),
            counts["failed"].as_u64()
        ),
        (Some(2), Some(1), Some(0)),
        "{counts}"
    );
    assert_eq!(smtp.to("satu@redaksi.id").len(), 1);
    assert_eq!(smtp.to("dua@redaksi.id").len(), 1);
    assert!(smtp.to("hilang@redaksi.id").is_empty());
    assert_eq!(
        subscriber_status(&api, "hilang@redaksi.id").await,
        "bounced"
    );
    assert_eq!(
        subscriber_status(&api, "satu@redaksi.id").await,
        "confirmed"
    );
    let logs = d.logs();
    assert!(logs.contains("suppressed"), "{logs}");
    // The relay's answers, counted by class.
    let metrics = d.metrics().await;
    let replies = |class: &str| -> f64 {
        metric(
            &metrics,
            &format!("siar_smtp_replies_total{{class=\"{class}\"}}"),
        )
        .unwrap_or_else(|| panic!("no {class} line:\n{metrics}"))
    };
    assert_eq!(replies("2xx"), 2.0, "{metrics}");
    assert_eq!(replies("5xx"), 1.0, "{metrics}");
    assert!(replies("4xx") >= 2.0, "{metrics}");

    // The relay goes away; a release waits, then goes out when it is back on the same port.
    smtp.stop();
    let id2 = publish(&api, 2).await;
    let ld = eventually(10, "the list delivery", || async {
        list_delivery(&api, &id2).await.first().cloned()
    })
    .await;
    eventually(10, "attempts against the dead relay", || async {
        let (s, r) = api
            .get_json(&format!("/api/v1/deliveries/{ld}/recipients"))
            .await;
        (s == 200 && r["pending"].as_u64() == Some(2) && r["rows"] == 2).then_some(())
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let smtp = if pipelining {
        SmtpRecorder::start_pipelining(dir.path(), "relay-again", port)
    } else {
        SmtpRecorder::start_on(dir.path(), "relay-again", port)
    };
    let counts = mailing_done(&api, &id2, 1).await;
    assert_eq!(counts["sent"], 2, "{counts}");
    assert_eq!(smtp.to("satu@redaksi.id").len(), 1);
    assert_eq!(smtp.to("dua@redaksi.id").len(), 1);
    assert!(
        smtp.to("hilang@redaksi.id").is_empty(),
        "a suppressed address is not mailed again"
    );

    // A bounce reported by the relay through the API (VERP return path) suppresses too.
    let r = api
        .post("/api/v1/bounces")
        .json(&json!({"return_path": "bounces+dua=redaksi.id@kalselprov.go.id", "reason": "550 5.2.1 mailbox disabled"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(subscriber_status(&api, "dua@redaksi.id").await, "bounced");
    // …and the API refuses a bounce report without the token.
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/bounces", d.url))
        .json(&json!({"address": "satu@redaksi.id"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn a_digest_list_gets_one_mail_per_firing_and_none_when_nothing_came() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpRecorder::start(dir.path(), "relay");
    // Fires every 4 seconds.
    let cfg = mail_config(
        dir.path(),
        &smtp.url(),
        "[[lists]]\nid = \"harian\"\nname = \"Ringkasan Harian\"\nmode = \"*/4 * * * * *\"\n",
    );
    let d = start(dir.path(), &cfg);
    let api = d.client();
    import_confirmed(&api, "harian", &["redaksi@koran.id"]).await;
    let a = publish(&api, 1).await;
    let b = publish(&api, 2).await;
    let digest = eventually(20, "a digest", || async {
        smtp.to("redaksi@koran.id").first().cloned()
    })
    .await;
    let text = digest.text();
    for id in [&a, &b] {
        let (_, r) = api.get_json(&format!("/api/v1/releases/{id}")).await;
        let title = r["content"]["title"].as_str().unwrap();
        assert!(text.contains(title), "digest lacks {title}:\n{text}");
    }
    assert!(
        digest.subject().contains("2 siaran pers"),
        "{}",
        digest.subject()
    );
    assert!(digest.header("List-Unsubscribe").contains("/unsubscribe/"));
    // Two more firings with nothing new: no more mail.
    tokio::time::sleep(std::time::Duration::from_secs(9)).await;
    assert_eq!(smtp.to("redaksi@koran.id").len(), 1);
}

/// With a DKIM key configured, every list mail is signed over the headers the bulk-sender
/// rules need, and Python's dkimpy verifies the received message against the public key.
#[tokio::test]
async fn list_mail_is_dkim_signed_when_a_key_is_configured() {
    let dir = tempfile::tempdir().unwrap();
    let key = dkim_key(dir.path());
    let public = std::process::Command::new("openssl")
        .args(["rsa", "-pubout", "-outform", "DER", "-in"])
        .arg(&key)
        .output()
        .unwrap()
        .stdout;
    use base64::Engine as _;
    let txt = format!(
        "v=DKIM1; k=rsa; p={}",
        base64::engine::general_purpose::STANDARD.encode(public)
    );
    let smtp = SmtpRecorder::start(dir.path(), "relay");
    let cfg = mail_config(dir.path(), &smtp.url(), "");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text = text.replace(
        "[smtp]\n",
        &format!(
            "[smtp]\ndkim_selector = \"siar2026\"\ndkim_key_file = \"{}\"\n",
            key.display()
        ),
    );
    std::fs::write(&cfg, text).unwrap();
    let d = start(dir.path(), &cfg);
    let api = d.client();
    import_confirmed(&api, "jurnalis", &["ani@redaksi.id"]).await;
    let id = publish(&api, 1).await;
    mailing_done(&api, &id, 1).await;
    let mail = smtp.to("ani@redaksi.id").pop().unwrap();
    let eml = dir.path().join("signed.eml");
    std::fs::write(&eml, &mail.data).unwrap();
    let script = r#"
import sys, dkim
txt = sys.argv[1].encode()
def dns(name, timeout=5):
    assert name == b"siar2026._domainkey.kalselprov.go.id.", name
    return txt
msg = open(sys.argv[2], "rb").read()
print("verified", dkim.DKIM(msg).verify(dnsfunc=dns))
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script, &txt])
        .arg(&eml)
        .output()
        .expect("python3 with dkimpy (scripts/test installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("verified True"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sig = mail.header("DKIM-Signature").to_ascii_lowercase();
    let signed: Vec<String> = sig
        .split(';')
        .map(str::trim)
        .find_map(|t| t.strip_prefix("h="))
        .unwrap_or_default()
        .split(':')
        .map(|h| h.trim().to_owned())
        .collect();
    for h in [
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "list-id",
        "list-unsubscribe",
        "list-unsubscribe-post",
    ] {
        assert!(signed.iter().any(|s| s == h), "{h} not signed: {signed:?}");
    }
}

/// A correction while the first mailing is still going out: the rest of the list gets the
/// corrected text as the release itself, and only those who got the first text get a
/// "KOREKSI" — everyone ends with exactly one copy of the release.
#[tokio::test]
async fn a_correction_during_a_mailing_reaches_each_recipient_once_as_it_should() {
    const N: usize = 600;
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpRecorder::start(dir.path(), "relay");
    let cfg = mail_config(dir.path(), &smtp.url(), "");
    // Slow the relay side down: 100 mails a second.
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("rate_per_second = 1000", "rate_per_second = 100");
    std::fs::write(&cfg, text).unwrap();
    let d = start(dir.path(), &cfg);
    let api = d.client();
    let addresses: Vec<String> = (0..N).map(|i| format!("r{i:03}@redaksi.id")).collect();
    import_confirmed(&api, "jurnalis", &addresses).await;
    let id = publish(&api, 1).await;
    eventually(30, "the first hundred mails", || async {
        (smtp.messages().len() >= 100).then_some(())
    })
    .await;
    let r = api
        .post(&format!(
            "/api/v1/releases/{id}/corrections?note=Tanggal%20diperbaiki"
        ))
        .header("Content-Type", "text/plain")
        .body(release_text(1).replace("lancar", "sangat lancar"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    mailing_done(&api, &id, 2).await;
    let mut first_text = 0;
    for a in &addresses {
        let mails = smtp.to(a);
        let originals: Vec<&Received> = mails
            .iter()
            .filter(|m| !m.subject().starts_with("KOREKSI"))
            .collect();
        let corrections = mails.len() - originals.len();
        assert_eq!(
            originals.len(),
            1,
            "{a} got the release {} times",
            originals.len()
        );
        let id_header = originals[0].parsed().message_id().unwrap().to_owned();
        if id_header.contains(".v1.new.") {
            first_text += 1;
            assert_eq!(corrections, 1, "{a} got the first text but no correction");
        } else {
            assert!(id_header.contains(".v2.new."), "{id_header}");
            assert!(originals[0].text().contains("sangat lancar"));
            assert_eq!(
                corrections, 0,
                "{a} got the corrected text and a correction"
            );
        }
    }
    assert!(
        (100..N).contains(&first_text),
        "{first_text} got the first text"
    );
}

/// A message refused for its content (5xx after DATA) fails for that recipient without
/// suppressing the address; the list delivery is marked failed, and an operator's retry
/// re-sends to that recipient only.
#[tokio::test]
async fn a_refused_message_fails_and_an_operators_retry_resends_to_it_only() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpRecorder::start(dir.path(), "relay");
    let cfg = mail_config(dir.path(), &smtp.url(), "");
    let d = start(dir.path(), &cfg);
    let api = d.client();
    import_confirmed(
        &api,
        "jurnalis",
        &["a@redaksi.id", "b@redaksi.id", "c@redaksi.id"],
    )
    .await;
    smtp.set_faults(json!({"data_554": ["b@redaksi.id"]}));
    let id = publish(&api, 1).await;
    let counts = mailing_done(&api, &id, 1).await;
    assert_eq!(
        (counts["sent"].as_u64(), counts["failed"].as_u64()),
        (Some(2), Some(1)),
        "{counts}"
    );
    let ld = list_delivery(&api, &id).await.pop().unwrap();
    let (_, dl) = api
        .get_json(&format!("/api/v1/deliveries/{ld}/attempts"))
        .await;
    assert!(dl.to_string().contains("failed 1"), "{dl}");
    assert_eq!(
        subscriber_status(&api, "b@redaksi.id").await,
        "confirmed",
        "not the mailbox's fault"
    );
    // The relay accepts it now; the operator retries the list delivery.
    smtp.set_faults(json!({}));
    let r = api
        .post(&format!("/api/v1/deliveries/{ld}/retry"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    eventually(20, "the retry to finish", || async {
        let (_, r) = api
            .get_json(&format!("/api/v1/deliveries/{ld}/recipients"))
            .await;
        (r["sent"] == 3 && r["done"] == true).then_some(())
    })
    .await;
    assert_eq!(smtp.to("a@redaksi.id").len(), 1);
    assert_eq!(smtp.to("b@redaksi.id").len(), 1);
    assert_eq!(smtp.to("c@redaksi.id").len(), 1);
}
