//! The feeds for the sample releases and hostile ones, read back by independent parsers.

use chrono::{DateTime, Duration, Utc};
use siar_model::{
    Attachment, Category, Provenance, Release, ReleaseId, Retraction, Source, Status,
};

use super::*;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn sample(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../../tests/samples/releases/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn release(bytes: &[u8], format: siar_ingest::Format, slug: &str, at: DateTime<Utc>) -> Release {
    let ctx =
        siar_ingest::ParseContext::new(chrono::NaiveDate::from_ymd_opt(2026, 11, 29).unwrap());
    let p = siar_ingest::parse(bytes, format, &ctx).unwrap();
    Release {
        id: ReleaseId::at(at),
        slug: slug.into(),
        status: Status::Published,
        publish_at: at,
        published_at: Some(at),
        created_at: at,
        updated_at: at,
        version: 1,
        content: p.content,
        correction_notes: Vec::new(),
        retraction: None,
        provenance: Provenance {
            source: Source::Api,
            content_hash: p.content_hash,
            received_at: at,
            idempotency_key: None,
        },
    }
}

/// The three samples, a hostile one, a corrected one and a retracted one; newest first.
fn releases() -> Vec<Release> {
    use siar_ingest::Format::*;
    let mut kpu = release(
        &sample("kpu-kalsel-diskominfo.txt"),
        Kalsel,
        "kpu",
        t("2021-09-01T03:00:00Z"),
    );
    kpu.content.attachments.push(Attachment {
        url: "/media/ab12cd.jpg".into(),
        media_type: "image/jpeg".into(),
        caption: None,
        credit: Some("MC Kalsel".into()),
        length: Some(123_456),
    });
    kpu.content.categories = vec![Category::parse("pemilu").unwrap()];
    let geo = release(
        &sample("geopark-meratus.txt"),
        Kalsel,
        "geopark",
        t("2024-02-15T03:00:00Z"),
    );
    let voli = release(
        &sample("voli-polda.txt"),
        Kalsel,
        "voli",
        t("2021-12-01T03:00:00Z"),
    );
    let hostile_json = serde_json::json!({
        "title": "Uji <script>alert(1)</script> & \u{1b}Kontrol 🎉",
        "body": ["Paragraf dengan & dan < dan > serta emoji 🌧️ dan ]]> penutup CDATA.", "Baris <b>tebal</b>\u{7} lonceng."],
        "body_html": "<p>HTML <script>evil()</script><a href=\"/releases/lain\">tautan relatif</a> &amp; ]]&gt;</p>",
        "attachments": [{"url": "https://cdn.example.id/audio.mp3", "type": "audio/mpeg", "length": 5000}]
    });
    let hostile = release(
        hostile_json.to_string().as_bytes(),
        Json,
        "uji",
        t("2026-11-20T03:00:00Z"),
    );
    let mut corrected = release(
        &sample("voli-polda.txt"),
        Kalsel,
        "voli-koreksi",
        t("2026-11-21T03:00:00Z"),
    );
    corrected.version = 2;
    corrected.correction_notes = vec!["Nama Wakapolda diperbaiki".into()];
    corrected.updated_at = t("2026-11-22T03:00:00Z");
    let mut retracted = release(
        &sample("geopark-meratus.txt"),
        Kalsel,
        "geopark-ditarik",
        t("2026-11-23T03:00:00Z"),
    );
    retracted.status = Status::Retracted;
    retracted.retraction = Some(Retraction {
        at: t("2026-11-24T03:00:00Z"),
        reason: "Data keliru".into(),
    });
    retracted.updated_at = t("2026-11-24T03:00:00Z");
    let mut all = vec![kpu, geo, voli, hostile, corrected, retracted];
    all.sort_by_key(|r| std::cmp::Reverse(r.publish_at));
    all
}

fn doc<'a>(rs: &'a [&'a Release], format: &str) -> FeedDoc<'a> {
    FeedDoc {
        title: "Siaran Pers Diskominfo Kalsel".into(),
        description: "Siaran pers terbaru".into(),
        self_url: format!("https://siaran.kalselprov.go.id/feeds/{format}"),
        home_url: "https://siaran.kalselprov.go.id/".into(),
        releases: rs,
        prev_archive: Some(format!(
            "https://siaran.kalselprov.go.id/feeds/archive/1/{format}"
        )),
        next_archive: None,
        current: None,
        updated: t("2026-11-24T03:00:00Z"),
    }
}

fn ctx() -> FeedContext {
    FeedContext {
        websub_hub: Some("https://hub.example.id/".into()),
        ..FeedContext::example()
    }
}

fn assert_xml_clean(s: &str) {
    assert!(
        s.chars().all(siar_model::text::is_xml_char),
        "a character XML 1.0 forbids"
    );
    assert!(
        !s.contains("<script") && !s.contains("&lt;script"),
        "script survived"
    );
    assert!(
        !s.contains("evil()") && !s.contains("alert(1)"),
        "script body survived"
    );
}

#[test]
fn rss_reads_back_in_feed_rs_and_the_rss_crate() {
    let owned = releases();
    let rs: Vec<&Release> = owned.iter().collect();
    let xml = rss(&ctx(), &doc(&rs, "rss.xml"));
    assert_xml_clean(&xml);
    let ch = ::rss::Channel::read_from(xml.as_bytes()).unwrap();
    // The rss crate's check against the RSS 2.0 specification: RFC 822 dates, URLs, the
    // enclosure's length and MIME type, categories.
    ::rss::validation::Validate::validate(&ch).unwrap();
    assert_eq!(ch.items().len(), 6);
    assert_eq!(ch.language(), Some("id"));
    let kpu = ch
        .items()
        .iter()
        .find(|i| i.link() == Some("https://siaran.kalselprov.go.id/releases/kpu"))
        .unwrap();
    let guid = kpu.guid().unwrap();
    assert!(!guid.is_permalink());
    assert!(
        guid.value()
            .starts_with("tag:kalselprov.go.id,2021:release/"),
        "{}",
        guid.value()
    );
    assert!(kpu
        .description()
        .unwrap()
        .starts_with("BANJARBARU – Komisi Pemilihan Umum"));
    let content = kpu.content().unwrap();
    assert!(
        content.contains("<strong>BANJARBARU</strong> – Komisi"),
        "{content}"
    );
    assert!(content.contains("<img src=\"https://siaran.kalselprov.go.id/media/ab12cd.jpg\" alt=\"Suasana pertemuan KPU Kalsel dengan Diskominfo Kalsel\""), "{content}");
    assert!(content.contains("(ASC/RDM/RH)"));
    assert_eq!(
        kpu.dublin_core_ext().unwrap().creators(),
        ["Diskominfo Kalsel"]
    );
    assert_eq!(kpu.categories()[0].name(), "pemilu");
    let media = &kpu.extensions()["media"]["content"][0];
    assert_eq!(
        media.attrs()["url"],
        "https://siaran.kalselprov.go.id/media/ab12cd.jpg"
    );
    assert_eq!(
        media.children()["description"][0].value(),
        Some("Suasana pertemuan KPU Kalsel dengan Diskominfo Kalsel")
    );
    assert_eq!(media.children()["credit"][0].value(), Some("MC Kalsel"));
    let links = ch.atom_ext().unwrap().links();
    assert!(links
        .iter()
        .any(|l| l.rel() == "self" && l.href() == "https://siaran.kalselprov.go.id/feeds/rss.xml"));
    assert!(links.iter().any(|l| l.rel() == "hub"));
    assert!(links.iter().any(|l| l.rel() == "prev-archive"));

    let hostile = ch
        .items()
        .iter()
        .find(|i| i.link().unwrap().ends_with("/uji"))
        .unwrap();
    assert_eq!(hostile.title(), Some("Uji & Kontrol 🎉"));
    assert!(
        hostile
            .content()
            .unwrap()
            .contains("https://siaran.kalselprov.go.id/releases/lain"),
        "relative links become absolute"
    );
    assert_eq!(hostile.enclosure().unwrap().length(), "5000");
    let retracted = ch
        .items()
        .iter()
        .find(|i| i.link().unwrap().ends_with("/geopark-ditarik"))
        .unwrap();
    assert_eq!(
        retracted.title(),
        Some("DITARIK: Pemprov Kalsel Lakukan Koordinasi Sambut Penilaian Geopark Meratus")
    );
    assert!(retracted.content().unwrap().contains("telah ditarik"));
    assert!(
        !retracted.content().unwrap().contains("Lediya"),
        "the text of a retracted release is gone"
    );
    let corrected = ch
        .items()
        .iter()
        .find(|i| i.link().unwrap().ends_with("/voli-koreksi"))
        .unwrap();
    assert!(corrected
        .content()
        .unwrap()
        .contains("<strong>Koreksi</strong> (versi 2): Nama Wakapolda diperbaiki"));

    let parsed = feed_rs::parser::parse(xml.as_bytes()).unwrap();
    assert_eq!(parsed.entries.len(), 6);
    assert!(parsed
        .entries
        .iter()
        .all(|e| e.id.starts_with("tag:kalselprov.go.id,")));
}

#[test]
fn atom_reads_back_and_keeps_ids_across_a_correction() {
    let owned = releases();
    let rs: Vec<&Release> = owned.iter().collect();
    let xml = atom(&ctx(), &doc(&rs, "atom.xml"));
    assert_xml_clean(&xml);
    let feed = ::atom_syndication::Feed::read_from(xml.as_bytes()).unwrap();
    assert_eq!(feed.lang(), Some("id"));
    assert_eq!(feed.entries().len(), 6);
    let corrected = feed
        .entries()
        .iter()
        .find(|e| e.links()[0].href().ends_with("/voli-koreksi"))
        .unwrap();
    assert_eq!(
        corrected.updated().to_rfc3339(),
        "2026-11-22T03:00:00+00:00"
    );
    assert_eq!(
        corrected.published().unwrap().to_rfc3339(),
        "2026-11-21T03:00:00+00:00"
    );
    let rss_xml = rss(&ctx(), &doc(&rs, "rss.xml"));
    let ch = ::rss::Channel::read_from(rss_xml.as_bytes()).unwrap();
    for e in feed.entries() {
        assert!(
            ch.items()
                .iter()
                .any(|i| i.guid().unwrap().value() == e.id()),
            "same id in RSS and Atom: {}",
            e.id()
        );
    }
    let kpu = feed
        .entries()
        .iter()
        .find(|e| e.links()[0].href().ends_with("/kpu"))
        .unwrap();
    assert_eq!(kpu.content().unwrap().content_type(), Some("html"));
    assert!(kpu.summary().unwrap().as_str().starts_with("BANJARBARU – "));
    assert!(kpu
        .links()
        .iter()
        .any(|l| l.rel() == "enclosure" && l.length() == Some("123456")));
    let parsed = feed_rs::parser::parse(xml.as_bytes()).unwrap();
    assert_eq!(parsed.entries.len(), 6);
}

#[test]
fn json_feed_is_valid_json_feed_1_1() {
    let owned = releases();
    let rs: Vec<&Release> = owned.iter().collect();
    let json = json_feed(&ctx(), &doc(&rs, "feed.json"));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["version"], "https://jsonfeed.org/version/1.1");
    assert_eq!(
        v["next_url"],
        "https://siaran.kalselprov.go.id/feeds/archive/1/feed.json"
    );
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 6);
    for i in items {
        assert!(i["id"]
            .as_str()
            .unwrap()
            .starts_with("tag:kalselprov.go.id,"));
        assert!(i["url"].as_str().unwrap().starts_with("https://"));
        assert!(i["content_html"].is_string() && i["date_published"].is_string());
    }
    assert_xml_clean(&json);
    let parsed = feed_rs::parser::parse(json.as_bytes()).unwrap();
    assert_eq!(parsed.entries.len(), 6);
}

#[test]
fn archives_are_marked_as_such() {
    let owned = releases();
    let rs: Vec<&Release> = owned.iter().collect();
    let mut d = doc(&rs, "rss.xml");
    d.current = Some("https://siaran.kalselprov.go.id/feeds/rss.xml".into());
    let xml = rss(&ctx(), &d);
    assert!(
        xml.contains("xmlns:fh=\"http://purl.org/syndication/history/1.0\""),
        "{}",
        &xml[..400]
    );
    assert!(xml.contains("<fh:archive"));
    let a = atom(
        &ctx(),
        &FeedDoc {
            self_url: "https://siaran.kalselprov.go.id/feeds/archive/1/atom.xml".into(),
            ..d
        },
    );
    assert!(a.contains("<fh:archive"));
    assert!(a.contains("rel=\"current\""));
}

#[test]
fn dates_read_the_indonesian_way() {
    assert_eq!(
        format_date(t("2026-11-29T22:00:00Z"), chrono_tz::Asia::Makassar),
        "Senin, 30 November 2026 06.00 WITA"
    );
    let _ = Duration::zero();
}

#[test]
fn tag_ids_take_the_year_the_id_was_made() {
    let id = ReleaseId::at(t("2021-09-01T03:00:00Z"));
    assert!(tag_id(&FeedContext::example(), id).starts_with("tag:kalselprov.go.id,2021:release/"));
}

#[test]
#[ignore = "prints a feed for eyeballing: cargo test -p siar-fanout -- --ignored --nocapture print"]
fn print_feeds() {
    let owned = releases();
    let rs: Vec<&Release> = owned.iter().collect();
    println!("{}", rss(&ctx(), &doc(&rs[..2], "rss.xml")));
    println!("{}", atom(&ctx(), &doc(&rs[..1], "atom.xml")));
}

/// Validates `items` against the IPTC ninjs 3.1 schema with Python's `jsonschema` (an
/// implementation we did not write; scripts/test installs it): the errors, one string each.
fn ninjs_schema_errors(items: &[serde_json::Value]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("items.json");
    std::fs::write(&path, serde_json::to_vec(items).unwrap()).unwrap();
    let schema = format!(
        "{}/../../tests/schemas/ninjs-schema_3.1.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let script = r#"
import json, sys
from jsonschema import Draft202012Validator
schema = json.load(open(sys.argv[1]))
v = Draft202012Validator(schema)
for i, item in enumerate(json.load(open(sys.argv[2]))):
    for e in v.iter_errors(item):
        print(f"item {i}: {'/'.join(map(str, e.absolute_path))}: {e.message}")
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script, &schema])
        .arg(&path)
        .output()
        .expect("python3 with jsonschema (scripts/test installs it)");
    assert!(
        out.status.success(),
        "the validator failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn ninjs_items_validate_against_the_iptc_schema() {
    // The schema's own example passes and a broken item fails: the validator works.
    let example: serde_json::Value = serde_json::from_slice(
        &std::fs::read(format!(
            "{}/../../tests/schemas/ninjs-3.1-example-text-article.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
    )
    .unwrap();
    let broken = serde_json::json!({"uri": "x", "pubStatus": "gone", "extra": 1});
    let errors = ninjs_schema_errors(&[example, broken]);
    assert!(
        !errors.is_empty() && errors.iter().all(|e| e.starts_with("item 1:")),
        "{errors:?}"
    );

    let ctx = ctx();
    let mut items: Vec<serde_json::Value> = releases().iter().map(|r| ninjs(&ctx, r)).collect();
    let mut held = releases().into_iter().find(|r| r.slug == "kpu").unwrap();
    held.publish_at = held.created_at + Duration::hours(3);
    items.push(ninjs(&ctx, &held));
    let errors = ninjs_schema_errors(&items);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        items.last().unwrap()["embargoedUntil"],
        "2021-09-01T06:00:00Z"
    );
    for r in releases() {
        let item = ninjs(&ctx, &r);
        assert_eq!(item["uri"], tag_id(&ctx, r.id));
        assert_eq!(item["version"], r.version.to_string());
        let status = if r.retraction.is_some() {
            "canceled"
        } else {
            "usable"
        };
        assert_eq!(item["pubStatus"], status);
    }
    let kpu = releases().into_iter().find(|r| r.slug == "kpu").unwrap();
    let item = ninjs(&ctx, &kpu);
    assert_eq!(item["located"], "BANJARBARU");
    assert_eq!(item["language"], "id");
    assert_eq!(item["subjects"][0]["name"], "pemilu");
    let bodies = item["bodies"].as_array().unwrap();
    assert_eq!(bodies[0]["contentType"], "text/html");
    assert_eq!(bodies[1]["contentType"], "text/plain");
    let text = bodies[1]["value"].as_str().unwrap();
    assert!(
        text.starts_with("BANJARBARU – Komisi Pemilihan Umum"),
        "{text}"
    );
    assert!(!text.contains("ASC/RDM/RH") && !text.contains("Suasana pertemuan"));
    let photo = &item["associations"][0];
    assert_eq!(photo["type"], "picture");
    assert_eq!(
        photo["uri"],
        "https://siaran.kalselprov.go.id/media/ab12cd.jpg"
    );
    assert_eq!(photo["by"], "MC Kalsel");
    assert_eq!(photo["renditions"][0]["sizeInBytes"], 123_456);
    let corrected = releases()
        .into_iter()
        .find(|r| r.slug == "voli-koreksi")
        .unwrap();
    let item = ninjs(&ctx, &corrected);
    assert_eq!(item["version"], "2");
    assert!(item["edNote"]
        .as_str()
        .unwrap()
        .contains("Koreksi: Nama Wakapolda diperbaiki"));
}

#[test]
fn radio_script_of_a_real_release() {
    let ctx = ctx();
    let kpu = releases().into_iter().find(|r| r.slug == "kpu").unwrap();
    let s = radio_script(&ctx, &kpu, 150);
    assert!(
        s.script.starts_with(
            "KPU Kalsel Sambangi Diskominfo Kalsel Terkait Penyebarluasan Informasi.\n\nBanjarbaru, Rabu 1 September.\n\nKomisi Pemilihan Umum Kalimantan Selatan mendatangi"
        ),
        "{}",
        s.script
    );
    for banned in [
        "(",
        ")",
        "ASC",
        "RDM",
        "Suasana pertemuan",
        "http",
        "“",
        "”",
    ] {
        assert!(!s.script.contains(banned), "{banned} in {}", s.script);
    }
    assert!(s.words <= 150 && s.words > 100, "{} words", s.words);
    assert_eq!(s.words, s.script.split_whitespace().count());
    assert_eq!(s.seconds, (s.words * 60).div_ceil(150));
    assert!(s.trimmed);
    assert!(s.script.ends_with('.'), "ends at a sentence: {}", s.script);
    assert!(s
        .script
        .contains("Pelaksana Tugas Sekretaris Diskominfo Kalsel"));
    // A larger budget reads the whole release; a retraction says not to broadcast.
    let full = radio_script(&ctx, &kpu, 10_000);
    assert!(!full.trimmed && full.words > s.words);
    assert!(
        full.script.ends_with("personil pemberitaan di Diskominfo."),
        "{}",
        full.script
    );
    let retracted = releases()
        .into_iter()
        .find(|r| r.retraction.is_some())
        .unwrap();
    let r = radio_script(&ctx, &retracted, 150);
    assert!(r.withdrawn);
    assert!(r.script.contains("telah ditarik dan tidak boleh disiarkan"));
}

fn mail_list() -> MailList {
    MailList {
        id: "jurnalis".into(),
        name: "Jurnalis \"Kalsel\"".into(),
        from: "Diskominfo Kalsel <siaran@kalselprov.go.id>"
            .parse()
            .unwrap(),
        reply_to: Some("humas@kalselprov.go.id".parse().unwrap()),
        domain: "siaran.kalselprov.go.id".into(),
    }
}

fn mail(r: &Release, kind: MailKind, to: &str) -> Vec<u8> {
    let rc = Recipient {
        address: to,
        unsubscribe_url: "https://siaran.kalselprov.go.id/unsubscribe/tok.sig",
        unsubscribe_mailto: Some("mailto:unsubscribe@kalselprov.go.id?subject=tok"),
    };
    release_email(
        &ctx(),
        &mail_list(),
        r,
        kind,
        &rc,
        std::time::SystemTime::now(),
    )
    .unwrap()
    .formatted()
}

#[test]
fn release_mail_read_back_by_mail_parser() {
    let kpu = releases().into_iter().find(|r| r.slug == "kpu").unwrap();
    let raw = mail(&kpu, MailKind::New, "wartawan@contoh.id");
    let m = mail_parser::MessageParser::default().parse(&raw).unwrap();
    assert_eq!(
        m.subject(),
        Some("KPU Kalsel Sambangi Diskominfo Kalsel Terkait Penyebarluasan Informasi")
    );
    let h = |name: &str| {
        // Unfolded: long header lines may be folded on the wire.
        m.header_raw(name)
            .unwrap_or_else(|| panic!("no {name}"))
            .replace("\r\n ", " ")
            .trim()
            .to_owned()
    };
    assert_eq!(h("List-Unsubscribe-Post"), "List-Unsubscribe=One-Click");
    assert_eq!(
        h("List-Unsubscribe"),
        "<https://siaran.kalselprov.go.id/unsubscribe/tok.sig>, <mailto:unsubscribe@kalselprov.go.id?subject=tok>"
    );
    assert_eq!(
        h("List-Id"),
        "\"Jurnalis 'Kalsel'\" <jurnalis.siaran.kalselprov.go.id>"
    );
    assert_eq!(h("Auto-Submitted"), "auto-generated");
    assert_eq!(h("Precedence"), "bulk");
    assert!(m.date().is_some());
    let id = m.message_id().unwrap().to_owned();
    assert!(id.starts_with(&format!("{}.v1.new.", kpu.id)), "{id}");
    // Stable per (version, recipient); different per recipient.
    let again = mail_parser::MessageParser::default()
        .parse(&mail(&kpu, MailKind::New, "Wartawan@Contoh.id"))
        .unwrap()
        .message_id()
        .unwrap()
        .to_owned();
    assert_eq!(again, id);
    let other = mail_parser::MessageParser::default()
        .parse(&mail(&kpu, MailKind::New, "redaksi@contoh.id"))
        .unwrap()
        .message_id()
        .unwrap()
        .to_owned();
    assert_ne!(other, id);
    // multipart/alternative: text then HTML, no attachments.
    assert_eq!(m.text_body_count(), 1);
    assert_eq!(m.html_body_count(), 1);
    assert_eq!(m.attachment_count(), 0);
    let text = m.body_text(0).unwrap();
    assert!(
        text.contains("BANJARBARU – Komisi Pemilihan Umum"),
        "{text}"
    );
    assert!(text.contains("Foto: https://siaran.kalselprov.go.id/media/ab12cd.jpg"));
    assert!(
        text.contains("Berhenti berlangganan: https://siaran.kalselprov.go.id/unsubscribe/tok.sig")
    );
    let html = m.body_html(0).unwrap();
    assert!(html.contains("<img"), "the photo by link");
    assert!(html.contains("Berhenti berlangganan</a>"));
}

#[test]
fn corrections_and_retractions_are_marked_and_titles_cannot_inject_headers() {
    let corrected = releases()
        .into_iter()
        .find(|r| r.slug == "voli-koreksi")
        .unwrap();
    let m = mail(&corrected, MailKind::Correction, "a@contoh.id");
    let m = mail_parser::MessageParser::default().parse(&m).unwrap();
    assert!(m.subject().unwrap().starts_with("KOREKSI: "));
    assert!(m
        .body_text(0)
        .unwrap()
        .contains("Nama Wakapolda diperbaiki"));
    assert!(m.message_id().unwrap().contains(".v2.correction."));
    let retracted = releases()
        .into_iter()
        .find(|r| r.retraction.is_some())
        .unwrap();
    let m = mail(&retracted, MailKind::Retraction, "a@contoh.id");
    let m = mail_parser::MessageParser::default().parse(&m).unwrap();
    assert!(m.subject().unwrap().starts_with("DITARIK: "));
    let text = m.body_text(0).unwrap();
    assert!(text.contains("telah ditarik") && text.contains("Data keliru"));
    assert!(
        !text.contains("UNESCO"),
        "a withdrawn text is not sent again"
    );

    let mut evil = corrected.clone();
    evil.content.title = "Judul\r\nBcc: semua@contoh.id\r\nX-Evil: 1 ✓ ümlaut".into();
    let raw = mail(&evil, MailKind::New, "a@contoh.id");
    let m = mail_parser::MessageParser::default().parse(&raw).unwrap();
    assert_eq!(
        m.subject(),
        Some("Judul Bcc: semua@contoh.id X-Evil: 1 ✓ ümlaut")
    );
    assert!(m.header_raw("Bcc").is_none() && m.header_raw("X-Evil").is_none());
    // Non-ASCII subjects travel RFC 2047-encoded.
    let head = String::from_utf8_lossy(&raw);
    let subject_line = head.lines().find(|l| l.starts_with("Subject:")).unwrap();
    assert!(subject_line.contains("=?utf-8?"), "{subject_line}");
    assert!(release_email(
        &ctx(),
        &mail_list(),
        &evil,
        MailKind::New,
        &Recipient {
            address: "bukan alamat",
            unsubscribe_url: "https://x/u",
            unsubscribe_mailto: None
        },
        std::time::SystemTime::now()
    )
    .is_err());
}

/// DKIM: signed with lettre, verified by Python's `dkimpy` (scripts/test installs it) against
/// the public key, with the headers the bulk-sender rules need covered; a changed subject fails.
#[test]
fn dkim_signatures_verify_with_dkimpy() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    let ok = std::process::Command::new("openssl")
        .args(["genrsa", "-traditional", "-out"])
        .arg(&key)
        .arg("2048")
        .output()
        .unwrap()
        .status
        .success();
    assert!(ok, "openssl genrsa");
    let public = std::process::Command::new("openssl")
        .args(["rsa", "-pubout", "-outform", "DER", "-in"])
        .arg(&key)
        .output()
        .unwrap()
        .stdout;
    use base64::Engine;
    let txt = format!(
        "v=DKIM1; k=rsa; p={}",
        base64::engine::general_purpose::STANDARD.encode(public)
    );
    let pem = std::fs::read_to_string(&key).unwrap();
    let config = dkim_config("siar2026", "kalselprov.go.id", &pem).unwrap();
    let kpu = releases().into_iter().find(|r| r.slug == "kpu").unwrap();
    let rc = Recipient {
        address: "wartawan@contoh.id",
        unsubscribe_url: "https://siaran.kalselprov.go.id/unsubscribe/tok.sig",
        unsubscribe_mailto: None,
    };
    let mut m = release_email(
        &ctx(),
        &mail_list(),
        &kpu,
        MailKind::New,
        &rc,
        std::time::SystemTime::now(),
    )
    .unwrap();
    m.sign(&config);
    let signed = m.formatted();
    let tampered = String::from_utf8_lossy(&signed).replacen("Subject: KPU", "Subject: XPU", 1);
    let msgs = dir.path().join("msgs");
    std::fs::create_dir(&msgs).unwrap();
    std::fs::write(msgs.join("good.eml"), &signed).unwrap();
    std::fs::write(msgs.join("bad.eml"), tampered).unwrap();
    let script = r#"
import sys, dkim
txt = sys.argv[1].encode()
def dns(name, timeout=5):
    assert name == b"siar2026._domainkey.kalselprov.go.id.", name
    return txt
for f in ("good.eml", "bad.eml"):
    msg = open(sys.argv[2] + "/" + f, "rb").read()
    sig = dkim.DKIM(msg)
    print(f, sig.verify(dnsfunc=dns))
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script, &txt])
        .arg(&msgs)
        .output()
        .expect("python3 with dkimpy (scripts/test installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "dkimpy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("good.eml True"), "{stdout}");
    assert!(stdout.contains("bad.eml False"), "{stdout}");
    // The signature names every header the rules need.
    let head = String::from_utf8_lossy(&signed)
        .replace("\r\n ", " ")
        .replace("\r\n\t", " ");
    let sig = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("dkim-signature:"))
        .unwrap()
        .to_ascii_lowercase();
    for h in DKIM_SIGNED_HEADERS {
        assert!(
            sig.contains(&h.to_ascii_lowercase()),
            "{h} not signed: {sig}"
        );
    }
    assert!(dkim_config("s", "d", "-----BEGIN PRIVATE KEY-----\nabc").is_err());
}
