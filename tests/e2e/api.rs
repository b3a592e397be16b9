//! The HTTP API against the real daemon.

use serde_json::Value;

use crate::utils::*;

#[tokio::test]
async fn kpu_sample_is_parsed_stored_and_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let api = d.client();
    let (status, r) = api.post_text(sample("kpu-kalsel-diskominfo.txt")).await;
    assert_eq!(status, 201, "{r}");
    let id = r["id"].as_str().unwrap().to_owned();

    let (status, r) = api.get_json(&format!("/api/v1/releases/{id}")).await;
    assert_eq!(status, 200);
    let c = &r["content"];
    assert_eq!(
        c["title"],
        "KPU Kalsel Sambangi Diskominfo Kalsel Terkait Penyebarluasan Informasi"
    );
    assert_eq!(
        c["captions"],
        serde_json::json!(["Suasana pertemuan KPU Kalsel dengan Diskominfo Kalsel"])
    );
    assert_eq!(c["dateline"], "BANJARBARU");
    assert_eq!(c["event_date"]["date"], "2021-09-01");
    assert_eq!(c["event_date"]["raw"], "Rabu (1/9)");
    assert_eq!(c["event_date"]["year_source"], "weekday");
    assert_eq!(c["closing_codes"], serde_json::json!(["ASC", "RDM", "RH"]));
    let body: Vec<&str> = c["body"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    let body = body.join("\n");
    assert!(body.contains("Komisi Pemilihan Umum (KPU) Kalimantan Selatan mendatangi"));
    assert!(
        !body.contains("Suasana pertemuan"),
        "caption leaked into the body"
    );
    assert!(
        !body.contains("(ASC/RDM/RH)") && !body.contains("ASC/RDM"),
        "codes leaked into the body"
    );
    assert_eq!(r["status"], "published");
    assert_eq!(r["provenance"]["source"]["kind"], "api");

    // Posting it again returns the same release.
    let (status, again) = api.post_text(sample("kpu-kalsel-diskominfo.txt")).await;
    assert_eq!(status, 200);
    assert_eq!(again["id"].as_str().unwrap(), id);
    let (_, page) = api.get_json("/api/v1/releases").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);

    // By slug too.
    let (status, by_slug) = api.get_json("/api/v1/releases/kpu-kalsel-sambangi-diskominfo-kalsel-terkait-penyebarluasan-informasi").await;
    assert_eq!(status, 200);
    assert_eq!(by_slug["id"].as_str().unwrap(), id);
}

#[tokio::test]
async fn markdown_json_and_idempotency_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let api = d.client();
    let md = "---\ntitle: Rakor Pengendalian Inflasi\ncategories: [ekonomi]\n---\nBANJARMASIN – Rakor digelar, Senin (23/11).\n\nSelesai. (MC/RH)\n";
    let r = api
        .post("/api/v1/releases")
        .header("Content-Type", "text/markdown")
        .body(md)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r: Value = r.json().await.unwrap();
    assert_eq!(r["content"]["categories"], serde_json::json!(["ekonomi"]));
    assert_eq!(r["content"]["dateline"], "BANJARMASIN");

    let body =
        serde_json::json!({"title": "Siaran JSON", "body": ["Paragraf satu.", "Paragraf dua."]});
    let send = |title: &str| {
        let mut b = body.clone();
        b["title"] = title.into();
        api.post("/api/v1/releases")
            .header("Idempotency-Key", "order-77")
            .json(&b)
            .send()
    };
    let a = send("Siaran JSON").await.unwrap();
    assert_eq!(a.status(), 201);
    let a: Value = a.json().await.unwrap();
    let b = send("Siaran JSON Lain").await.unwrap();
    assert_eq!(b.status(), 200, "same Idempotency-Key, same release");
    let b: Value = b.json().await.unwrap();
    assert_eq!(a["id"], b["id"]);
}

#[tokio::test]
async fn bad_input_gets_clear_errors_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let api = d.client();
    let (s, good) = api.post_text(sample("voli-polda.txt")).await;
    assert_eq!(s, 201);

    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("empty", Vec::new(), 422, "empty_input"),
        (
            "title only",
            b"Hanya Judul Saja\n".to_vec(),
            422,
            "invalid_release",
        ),
        (
            "binary junk",
            b"\x7fELF\x02\x01\x01\x00\x00\x00\x00junk".to_vec(),
            422,
            "not_text",
        ),
        ("5 MiB", vec![b'a'; 5 * 1024 * 1024], 413, "body_too_large"),
    ];
    for (name, body, status, code) in cases {
        let (s, e) = api.post_text(body).await;
        assert_eq!(s, status, "{name}: {e}");
        assert_eq!(e["error"]["code"], code, "{name}: {e}");
        assert!(
            e["error"]["message"].as_str().unwrap().len() > 10,
            "{name}: {e}"
        );
    }
    let (_, e) = api.post_text("\n\nHanya Judul\n").await;
    assert_eq!(e["error"]["line"], 3, "{e}");

    // Legacy encoding: accepted with a warning.
    let (s, r) = api
        .post_text(&b"Judul Lama\r\n\r\nBANJARBARU \x96 Isi \x93kutip\x94.\r\n"[..])
        .await;
    assert_eq!(s, 201, "{r}");
    assert_eq!(r["content"]["warnings"][0]["code"], "legacy_encoding");

    // Forbidden characters and script: a clean release.
    let (s, r) = api
        .post_text("Judul\u{7}\n\nBANJARBARU – Isi <script>alert(1)</script>aman\u{1b}.\n")
        .await;
    assert_eq!(s, 201, "{r}");
    assert_eq!(r["content"]["title"], "Judul");
    assert_eq!(r["content"]["body"][0], "Isi aman.");

    // JSON title with newlines.
    let r = api
        .post("/api/v1/releases")
        .json(&serde_json::json!({"title": "Baris\nDua", "body": "Isi."}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r: Value = r.json().await.unwrap();
    assert_eq!(r["content"]["title"], "Baris Dua");

    // Wrong content type, bad JSON, bad publish_at.
    let r = api
        .post("/api/v1/releases")
        .header("Content-Type", "application/pdf")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let r = api
        .post("/api/v1/releases")
        .header("Content-Type", "application/json")
        .body("{\"title\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "invalid_release");
    let r = api
        .post("/api/v1/releases?publish_at=besok")
        .header("Content-Type", "text/plain")
        .body(release_text(1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);

    // The daemon is fine and lost nothing.
    let (s, r) = api
        .get_json(&format!(
            "/api/v1/releases/{}",
            good["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        r["content"]["title"],
        "Polda Kalsel Gelar Kejuaraan Bola Voli"
    );
    let h = reqwest::get(format!("{}/readyz", d.url)).await.unwrap();
    assert_eq!(h.status(), 200);
}

#[tokio::test]
async fn every_api_route_needs_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let http = reqwest::Client::new();
    let routes = [
        ("POST", "/api/v1/releases"),
        ("GET", "/api/v1/releases"),
        ("GET", "/api/v1/releases/01J8ZQ4G5N6W4P8Y2D9T3K7M1C"),
        ("GET", "/api/v1/releases/x/versions"),
        ("GET", "/api/v1/releases/x/versions/1"),
        ("POST", "/api/v1/releases/x/corrections"),
        ("POST", "/api/v1/releases/x/retraction"),
        ("GET", "/api/v1/releases/x/deliveries"),
        ("GET", "/api/v1/deliveries"),
        ("POST", "/api/v1/deliveries/x/retry"),
        ("GET", "/api/v1/audit"),
    ];
    for (method, path) in routes {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let none = http
            .request(m.clone(), format!("{}{path}", d.url))
            .send()
            .await
            .unwrap();
        assert_eq!(none.status(), 401, "{method} {path} without a token");
        assert!(none.headers().contains_key("www-authenticate"));
        let wrong = http
            .request(m, format!("{}{path}", d.url))
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401, "{method} {path} with a wrong token");
        let e: Value = wrong.json().await.unwrap();
        assert_eq!(e["error"]["code"], "unauthorized");
    }
    // Public: health and the OpenAPI document.
    assert_eq!(
        http.get(format!("{}/healthz", d.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let doc: Value = http
        .get(format!("{}/api/openapi.json", d.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    for p in [
        "/api/v1/releases",
        "/api/v1/releases/{id}/corrections",
        "/api/v1/deliveries/{id}/retry",
    ] {
        assert!(
            doc["paths"][p].is_object(),
            "{p} missing from the OpenAPI document"
        );
    }
    let create = &doc["paths"]["/api/v1/releases"]["post"]["requestBody"]["content"];
    for ct in ["text/plain", "text/markdown", "application/json"] {
        assert!(create[ct].is_object(), "{ct} missing");
    }
}

#[tokio::test]
async fn api_without_a_configured_token_is_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_with(dir.path(), None, &[("SIAR_API_TOKEN", "")]);
    let r = d.client().get("/api/v1/releases").send().await.unwrap();
    assert_eq!(r.status(), 503);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "api_disabled");
}

#[tokio::test]
async fn corrections_versions_and_retraction() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let api = d.client();
    let (_, r) = api.post_text(release_text(1)).await;
    let id = r["id"].as_str().unwrap().to_owned();
    let corrected = release_text(1).replace("lancar", "sangat lancar");
    let r = api
        .post(&format!(
            "/api/v1/releases/{id}/corrections?note=Kata%20lancar%20diperbaiki"
        ))
        .header("Content-Type", "text/plain")
        .body(corrected.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r: Value = r.json().await.unwrap();
    assert_eq!(r["version"], 2);
    assert_eq!(
        r["correction_notes"],
        serde_json::json!(["Kata lancar diperbaiki"])
    );
    assert_eq!(r["id"].as_str().unwrap(), id, "a correction keeps the id");

    let (_, versions) = api
        .get_json(&format!("/api/v1/releases/{id}/versions"))
        .await;
    assert_eq!(versions["items"].as_array().unwrap().len(), 2);
    let (s, v1) = api
        .get_json(&format!("/api/v1/releases/{id}/versions/1"))
        .await;
    assert_eq!(s, 200);
    assert!(v1["content"]["body"][2]
        .as_str()
        .unwrap()
        .ends_with("berlangsung lancar."));
    let (s, _) = api
        .get_json(&format!("/api/v1/releases/{id}/versions/9"))
        .await;
    assert_eq!(s, 404);

    // The same correction again changes nothing; a correction needs a note.
    let again = api
        .post(&format!("/api/v1/releases/{id}/corrections?note=lagi"))
        .header("Content-Type", "text/plain")
        .body(corrected)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    let no_note = api
        .post(&format!("/api/v1/releases/{id}/corrections"))
        .header("Content-Type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(no_note.status(), 400);
    let e: Value = no_note.json().await.unwrap();
    assert_eq!(e["error"]["code"], "bad_request");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("note"),
        "{e}"
    );
    let wrong_method = api
        .http
        .delete(format!("{}/api/v1/releases", api.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status(), 405);
    let e: Value = wrong_method.json().await.unwrap();
    assert_eq!(e["error"]["code"], "method_not_allowed");

    let r = api
        .post(&format!("/api/v1/releases/{id}/retraction"))
        .json(&serde_json::json!({"reason": "Data keliru"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r: Value = r.json().await.unwrap();
    assert_eq!(r["status"], "retracted");
    assert_eq!(r["retraction"]["reason"], "Data keliru");
    let after = api
        .post(&format!("/api/v1/releases/{id}/corrections?note=x"))
        .header("Content-Type", "text/plain")
        .body(release_text(2))
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 409);
    let (_, audit) = api.get_json(&format!("/api/v1/audit?release={id}")).await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["retract", "correct", "ingest"]);
    assert!(
        audit["items"][2]["detail"]
            .as_str()
            .unwrap()
            .contains("published at once"),
        "{audit}"
    );
    let (s, _) = api
        .get_json("/api/v1/releases/01J8ZQ4G5N6W4P8Y2D9T3K7M1C")
        .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn sigterm_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let (s, _) = d.client().post_text(release_text(3)).await;
    assert_eq!(s, 201);
    let status = d.terminate();
    assert!(status.success(), "exit status {status:?}");

    // Ctrl-C (SIGINT) too, and what was stored is there after the restart.
    let d = Daemon::start(dir.path());
    let (s, _) = d.client().get_json("/api/v1/releases").await;
    assert_eq!(s, 200);
    let logs_before = d.logs();
    let status = d.signal("-INT");
    assert!(status.success(), "exit status {status:?}");
    assert!(!logs_before.contains("ERROR"), "{logs_before}");
}
