//! The API against its own OpenAPI document, with schemathesis (PyPI; scripts/test installs
//! it): generated requests (valid and invalid) with the token, through every operation.
//! Nothing may answer 5xx, and every answer must match the document: its status, content type,
//! headers and body schema.

use std::process::Command;

use crate::utils::*;

#[tokio::test]
async fn the_api_holds_to_its_openapi_document_under_generated_requests() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("siar.toml");
    std::fs::write(
        &cfg,
        "[[lists]]\nid = \"jurnalis\"\nname = \"Jurnalis\"\n\n[[partners]]\nid = \"media-center\"\n\
         url = \"http://127.0.0.1:9/hook\"\nformat = \"ninjs\"\nsecret_env = \"ST_TEST_SECRET\"\n\
         allow_private = true\n",
    )
    .unwrap();
    let d = Daemon::start_with(
        dir.path(),
        Some(&cfg),
        &[("ST_TEST_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")],
    );
    // Something to find: a release with its deliveries.
    let (s, _) = d.client().post_text(release_text(1)).await;
    assert_eq!(s, 201);
    let doc: serde_json::Value = reqwest::get(format!("{}/api/openapi.json", d.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let operations: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|ops| ops.as_object().unwrap().len())
        .sum();
    let url = d.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("schemathesis")
            .arg("run")
            .arg(format!("{url}/api/openapi.json"))
            .args(["-H", &format!("Authorization: Bearer {TOKEN}")])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance",
            ])
            // One worker: CPython's ast module is not thread-safe ("AST constructor recursion
            // depth mismatch" under two workers on a loaded machine).
            .args(["--max-examples", "12", "--seed", "20261129", "--workers", "1"])
            .env("NO_COLOR", "1")
            .output()
            .expect("schemathesis (pip install schemathesis; scripts/test does)")
    })
    .await
    .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    let summary = report
        .split("SUMMARY")
        .last()
        .unwrap_or_default()
        .to_owned();
    println!("schemathesis:{summary}");
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        report.contains(&format!("Tested: {operations}\n")),
        "all {operations} operations were tested:\n{summary}"
    );
    assert!(!d.logs().contains("panicked"), "{}", d.logs());
}
