//! The public newsroom pages, in Bahasa Indonesia.

use crate::utils::*;

async fn page(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.unwrap();
    let s = r.status().as_u16();
    if s == 200 {
        assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    }
    (s, r.text().await.unwrap())
}

#[tokio::test]
async fn index_release_and_category_pages() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_with(
        dir.path(),
        None,
        &[("SIAR_SERVER_PUBLIC_URL", "https://siaran.example.go.id")],
    );
    let api = d.client();
    let md = "---\ntitle: Rakor Pengendalian Inflasi\ncategories: [ekonomi]\nattachments:\n  - url: https://cdn.example.go.id/rakor.jpg\n    type: image/jpeg\n    caption: Suasana rakor di Banjarbaru\n    credit: MC Kalsel\n---\nBANJARBARU – Rakor digelar, Senin (23/11).\n\nHarga stabil menjelang akhir tahun. (MC/RH)\n";
    let r = api
        .post("/api/v1/releases")
        .header("Content-Type", "text/markdown")
        .body(md)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let (_, kpu) = api.post_text(sample("kpu-kalsel-diskominfo.txt")).await;
    let hostile = serde_json::json!({"title": "Judul <img src=x onerror=alert(1)> & \"kutip\"", "body": ["Isi <b>tebal</b>."]});
    let r = api
        .post("/api/v1/releases")
        .json(&hostile)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    let (s, index) = eventually(15, "three releases on the index", || async {
        let (s, body) = page(&format!("{}/", d.url)).await;
        (body.matches("<article class=\"ringkas\">").count() == 3).then_some((s, body))
    })
    .await;
    assert_eq!(s, 200);
    assert!(
        index.starts_with("<!DOCTYPE html><html lang=\"id\">"),
        "{}",
        &index[..80]
    );
    assert!(index.contains("<meta name=\"viewport\""));
    assert!(index.contains("<link rel=\"alternate\" type=\"application/rss+xml\""));
    assert!(index.contains("href=\"https://siaran.example.go.id/feeds/rss.xml\""));
    assert!(index.contains("Siaran Pers Diskominfo Kalsel"));
    assert!(index.contains("href=\"https://siaran.example.go.id/categories/ekonomi\""));
    assert!(index.contains("Berlangganan"));
    assert!(!index.contains("<script"), "no script on public pages");
    assert!(
        !index.contains("onerror=alert"),
        "a hostile title is escaped"
    );

    let (s, p) = page(&format!("{}/releases/rakor-pengendalian-inflasi", d.url)).await;
    assert_eq!(s, 200);
    assert!(p.contains("<h1>Rakor Pengendalian Inflasi</h1>"));
    assert!(p.contains("BANJARBARU, terbit <time"), "{p}");
    assert!(p.contains("WITA</time>"));
    assert!(p.contains(
        "<img src=\"https://cdn.example.go.id/rakor.jpg\" alt=\"Suasana rakor di Banjarbaru\"/>"
    ));
    assert!(p.contains("<figcaption>Suasana rakor di Banjarbaru (Foto: MC Kalsel)</figcaption>"));
    assert!(p.contains("(MC/RH)"));
    assert!(p.contains("<meta property=\"og:type\" content=\"article\">"));
    assert!(
        p.contains("<meta property=\"og:image\" content=\"https://cdn.example.go.id/rakor.jpg\">")
    );
    assert!(
        p.contains("href=\"https://siaran.example.go.id/feeds/ekonomi/rss.xml\""),
        "the category's feeds"
    );

    let (s, cat) = page(&format!("{}/categories/ekonomi", d.url)).await;
    assert_eq!(s, 200);
    assert!(cat.contains("Kategori: ekonomi") && cat.contains("Rakor Pengendalian Inflasi"));
    assert!(!cat.contains("KPU Kalsel Sambangi"));
    let (s, _) = page(&format!("{}/categories/tidak-ada", d.url)).await;
    assert_eq!(s, 404);

    // Correction and retraction show on the page.
    let id = kpu["id"].as_str().unwrap();
    let slug = kpu["slug"].as_str().unwrap();
    let fixed = String::from_utf8(sample("kpu-kalsel-diskominfo.txt"))
        .unwrap()
        .replace("Jajang Markoni", "Jajang Markoni, S.Sos");
    let r = api
        .post(&format!(
            "/api/v1/releases/{id}/corrections?note=Gelar%20ditambahkan"
        ))
        .header("Content-Type", "text/plain")
        .body(fixed)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    eventually(15, "the correction on the page", || async {
        let (_, p) = page(&format!("{}/releases/{slug}", d.url)).await;
        p.contains("<strong>Koreksi</strong> (versi 2): Gelar ditambahkan")
            .then_some(())
    })
    .await;
    let r = api
        .post(&format!("/api/v1/releases/{id}/retraction"))
        .json(&serde_json::json!({"reason": "Salah kirim"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    eventually(15, "the withdrawal on the page", || async {
        let (_, p) = page(&format!("{}/releases/{slug}", d.url)).await;
        (p.contains("DITARIK: KPU Kalsel")
            && p.contains("Salah kirim")
            && !p.contains("Edy Ariansyah"))
        .then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_scheduled_release_has_no_page_before_publish_at() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let api = d.client();
    let r = api
        .post("/api/v1/releases?publish_at=2099-01-01%2006:00")
        .header("Content-Type", "text/plain")
        .body(release_text(9))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let slug = r.json::<serde_json::Value>().await.unwrap()["slug"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, body) = page(&format!("{}/releases/{slug}", d.url)).await;
    assert_eq!(s, 404);
    assert!(body.contains("belum diterbitkan"));
    let (_, index) = page(&format!("{}/", d.url)).await;
    assert!(!index.contains("Rilis Uji Nomor 9"));
}
