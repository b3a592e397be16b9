//! Security: every API operation (and every other mutating route but the signed public ones)
//! refuses a request without the token, and no secret or token reaches the logs of a full run
//! at debug level.

use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::mail::{
    import_confirmed, link_path, mail_config, mailing_done, post_path, publish, subscribe_form,
};
use crate::utils::*;

/// A path of the OpenAPI document with its parameters filled in.
fn concrete(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').map_or(rest.len(), |c| open + c + 1);
        let name = &rest[open + 1..close - 1];
        out.push_str(match name {
            "n" => "1",
            "id" if path.starts_with("/api/v1/lists") => "jurnalis",
            _ => "01J8ZQ4G5N6W4P8Y2D9T3K7M1C",
        });
        rest = &rest[close..];
    }
    out.push_str(rest);
    out
}

#[tokio::test]
async fn every_api_operation_and_mutating_route_needs_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("siar.toml");
    std::fs::write(&cfg, "[[lists]]\nid = \"jurnalis\"\nname = \"Jurnalis\"\n").unwrap();
    let d = Daemon::start_with(dir.path(), Some(&cfg), &[]);
    let http = reqwest::Client::new();
    let doc: Value = http
        .get(format!("{}/api/openapi.json", d.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let public = ["/healthz", "/readyz"];
    let mut checked = Vec::new();
    let mut mutating = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            if public.contains(&path.as_str()) {
                assert!(op.get("security").is_none(), "{path} is public");
                continue;
            }
            assert!(
                op["security"].to_string().contains("bearer"),
                "{method} {path} does not declare the bearer token"
            );
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            mutating += usize::from(m != reqwest::Method::GET);
            let url = format!("{}{}", d.url, concrete(path));
            for token in [None, Some("wrong"), Some("")] {
                let mut req = http.request(m.clone(), &url).json(&serde_json::json!({}));
                if let Some(t) = token {
                    req = req.bearer_auth(t);
                }
                let r = req.send().await.unwrap();
                assert_eq!(r.status(), 401, "{method} {path} with token {token:?}");
                assert!(r.headers().contains_key("www-authenticate"));
                let e: Value = r.json().await.unwrap();
                assert_eq!(e["error"]["code"], "unauthorized");
            }
            checked.push(format!("{method} {path}"));
        }
    }
    assert!(
        mutating >= 8 && checked.len() >= 20,
        "the document lists the API ({checked:?})"
    );
    // Routes outside the document: the API's fallback needs the token too; /subscribe, /confirm and /unsubscribe are public by design and act only on a
    // signed token, so a forged one changes nothing.
    for (method, path) in [
        ("POST", "/api/v1/nothing-here"),
        ("DELETE", "/api/v1/releases"),
    ] {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = http
            .request(m, format!("{}{path}", d.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{method} {path}");
    }
    // The operator page: a sign-in form (401) without the token; its actions refuse anyone
    // without a session or the token, and a session without the form's CSRF field.
    let r = http.get(format!("{}/admin", d.url)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("Token API"));
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for path in [
        "/admin/deliveries/01J8ZQ4G5N6W4P8Y2D9T3K7M1C/retry",
        "/admin/partners/media-center/enable",
    ] {
        let r = no_redirects
            .post(format!("{}{path}", d.url))
            .form(&[("csrf", "x")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    let login = no_redirects
        .post(format!("{}/admin/login", d.url))
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 303);
    let cookie = login.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains(TOKEN), "the session is not the token");
    let session = cookie.split(';').next().unwrap().to_owned();
    let r = no_redirects
        .post(format!(
            "{}/admin/deliveries/01J8ZQ4G5N6W4P8Y2D9T3K7M1C/retry",
            d.url
        ))
        .header("cookie", &session)
        .form(&[("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/admin?pesan=csrf");
    let page = no_redirects
        .get(format!("{}/admin", d.url))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    assert_eq!(page.headers()["cache-control"], "no-store");
    for path in ["/confirm/AAAA.BBBB", "/unsubscribe/AAAA.BBBB"] {
        let r = post_path(&d, path, "").await;
        assert!(
            r.status().is_client_error(),
            "{path}: a forged token is refused ({})",
            r.status()
        );
    }
}

/// A partner that records what it was sent.
async fn partner(received: Arc<Mutex<Vec<String>>>) -> String {
    serve_local(axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let received = received.clone();
            async move {
                received.lock().unwrap().push(body);
                "diterima"
            }
        }),
    ))
    .await
}

#[tokio::test]
async fn no_secret_or_token_reaches_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpRecorder::start(dir.path(), "relay");
    let received = Arc::new(Mutex::new(Vec::new()));
    let base = partner(received.clone()).await;
    let key = dkim_key(dir.path());
    let pem = std::fs::read_to_string(&key).unwrap();
    let whsec = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let partner_token = "mitra-rahasia-8c1f2e";
    let cfg = mail_config(
        dir.path(),
        &smtp.url(),
        &format!(
            "\n[[partners]]\nid = \"media-center\"\nurl = \"{base}/hook\"\nformat = \"ninjs\"\n\
             secret_env = \"SECURITY_TEST_SECRET\"\nallow_private = true\n\
             headers = {{ Authorization = \"Bearer {partner_token}\" }}\n"
        ),
    );
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "[smtp]\n",
        "[smtp]\ndkim_selector = \"siar2026\"\ndkim_key_env = \"SECURITY_TEST_DKIM\"\n",
    );
    std::fs::write(&cfg, text).unwrap();
    let d = Daemon::start_with(
        dir.path(),
        Some(&cfg),
        &[
            ("SIAR_SERVER_PUBLIC_URL", crate::mail::PUBLIC),
            ("SIAR_LOG", "debug,sled=info"),
            ("SECURITY_TEST_SECRET", whsec),
            ("SECURITY_TEST_DKIM", &pem),
        ],
    );
    let api = d.client();

    // A full run: a subscriber confirms, a release goes to the partner and the list, the
    // subscriber leaves in one click, a backup is taken.
    assert_eq!(subscribe_form(&d, "ani@redaksi.id").await.status(), 202);
    let confirmation = eventually(20, "the confirmation mail", || async {
        smtp.to("ani@redaksi.id").pop()
    })
    .await;
    let confirm = link_path(&confirmation.text(), "confirm");
    assert_eq!(post_path(&d, &confirm, "").await.status(), 200);
    import_confirmed(&api, "jurnalis", &["budi@redaksi.id"]).await;
    let id = publish(&api, 1).await;
    mailing_done(&api, &id, 1).await;
    eventually(20, "the partner's delivery", || async {
        (!received.lock().unwrap().is_empty()).then_some(())
    })
    .await;
    let mail = smtp
        .to("ani@redaksi.id")
        .into_iter()
        .find(|m| m.subject().contains("Rilis Uji"))
        .unwrap();
    let unsubscribe = link_path(&mail.text(), "unsubscribe");
    assert_eq!(
        post_path(&d, &unsubscribe, "List-Unsubscribe=One-Click")
            .await
            .status(),
        200
    );
    let backup = api.get("/api/v1/store/export").send().await.unwrap();
    assert_eq!(backup.status(), 200);
    let _ = backup.bytes().await.unwrap();
    // Some failures too: they log the most.
    let _ = api.post("/api/v1/releases/x/corrections").send().await;
    let _ = reqwest::Client::new()
        .get(format!("{}/api/v1/releases", d.url))
        .bearer_auth("salah-token-123")
        .send()
        .await;

    let logs = d.logs();
    assert!(logs.len() > 2_000, "a debug run logs plenty:\n{logs}");
    let token = |path: &str| path.rsplit('/').next().unwrap().to_owned();
    let pem_line = pem.lines().nth(3).unwrap().to_owned();
    for (what, secret) in [
        ("the API token", TOKEN.to_owned()),
        ("a wrong token", "salah-token-123".to_owned()),
        ("the webhook secret", whsec.to_owned()),
        (
            "the webhook secret's key",
            whsec["whsec_".len()..].to_owned(),
        ),
        ("the partner's bearer token", partner_token.to_owned()),
        ("the DKIM key", pem_line),
        ("the confirmation token", token(&confirm)),
        ("the unsubscribe token", token(&unsubscribe)),
    ] {
        assert!(
            !logs.contains(&secret),
            "{what} appears in the logs:\n{}",
            logs.lines()
                .filter(|l| l.contains(&secret))
                .take(3)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}
