//! The Kalsel parser on the real samples and on every variant DESIGN §5 lists.

use chrono::NaiveDate;
use siar_model::{ReleaseContent, YearSource};

use crate::{parse, Format, ParseContext, ParseError};

fn ctx() -> ParseContext {
    ParseContext::new(NaiveDate::from_ymd_opt(2026, 11, 29).unwrap())
}

fn sample(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../../tests/samples/releases/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn kalsel(text: &str) -> ReleaseContent {
    parse(text.as_bytes(), Format::Kalsel, &ctx())
        .unwrap()
        .content
}

fn codes(w: &[siar_model::Warning]) -> Vec<&str> {
    w.iter().map(|w| w.code.as_str()).collect()
}

#[test]
fn kpu_sample() {
    let c = parse(&sample("kpu-kalsel-diskominfo.txt"), Format::Kalsel, &ctx())
        .unwrap()
        .content;
    assert_eq!(
        c.title,
        "KPU Kalsel Sambangi Diskominfo Kalsel Terkait Penyebarluasan Informasi"
    );
    assert_eq!(
        c.captions,
        ["Suasana pertemuan KPU Kalsel dengan Diskominfo Kalsel"]
    );
    assert_eq!(c.dateline.as_deref(), Some("BANJARBARU"));
    let d = c.event_date.as_ref().unwrap();
    assert_eq!(d.date, NaiveDate::from_ymd_opt(2021, 9, 1).unwrap());
    assert_eq!(d.raw, "Rabu (1/9)");
    assert_eq!(d.year_source, YearSource::Weekday);
    assert_eq!(c.closing_codes, ["ASC", "RDM", "RH"]);
    assert_eq!(c.source_agency, None);
    assert_eq!(c.body.len(), 14);
    assert!(c.body[0].starts_with("Komisi Pemilihan Umum (KPU) Kalimantan Selatan mendatangi"));
    assert!(
        c.body[13].ends_with("jumlah personil pemberitaan di Diskominfo."),
        "{}",
        c.body[13]
    );
    let all = c.body.join("\n");
    assert!(!all.contains("Suasana pertemuan"));
    assert!(!all.contains("ASC") && !all.contains("RDM/RH"));
    assert_eq!(c.language, "id");
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn geopark_sample_caption_inside_body_and_wrapped_line() {
    let c = parse(&sample("geopark-meratus.txt"), Format::Kalsel, &ctx())
        .unwrap()
        .content;
    assert_eq!(
        c.title,
        "Pemprov Kalsel Lakukan Koordinasi Sambut Penilaian Geopark Meratus"
    );
    assert_eq!(c.dateline.as_deref(), Some("BANJARMASIN"));
    assert_eq!(
        c.captions,
        ["Kasi Pemberdayaan Masyarakat, Dispar Kalsel, Musrefinah Lediya, saat diwancara"]
    );
    let d = c.event_date.as_ref().unwrap();
    assert_eq!(d.date, NaiveDate::from_ymd_opt(2024, 2, 15).unwrap());
    assert_eq!(d.raw, "Kamis (15/2)");
    assert_eq!(c.closing_codes, ["NHF", "RDM", "APR"]);
    // "Dimana,\nmenfokuskan" is one wrapped paragraph, not two.
    assert!(
        c.body[1].contains("Dimana, menfokuskan 17 titik"),
        "{}",
        c.body[1]
    );
    assert_eq!(c.body.len(), 7);
    assert!(c.body[6].ends_with("tutupnya."), "{}", c.body[6]);
    assert!(!c.body.iter().any(|p| p.contains("saat diwancara")));
}

#[test]
fn voli_sample_without_weekday_date() {
    let c = parse(&sample("voli-polda.txt"), Format::Kalsel, &ctx())
        .unwrap()
        .content;
    assert_eq!(c.title, "Polda Kalsel Gelar Kejuaraan Bola Voli");
    assert_eq!(c.dateline.as_deref(), Some("BANJARBARU"));
    assert!(c.captions.is_empty());
    assert_eq!(c.closing_codes, ["MRF", "RDM", "RH"]);
    assert_eq!(c.body.len(), 6);
    assert!(c.body[0].starts_with("Polda Kalimantan Selatan, menggelar"));
    assert!(c.event_date.is_none());
    assert_eq!(codes(&c.warnings), ["no_event_date"]);
}

#[test]
fn agency_prefixed_codes() {
    let c = kalsel("Judul\n\nBANJARBARU – Perpustakaan dibuka, Senin (23/11).\n\nTerima kasih. (DISPERSIPKALSEL-NRH/RDM/RH)");
    assert_eq!(c.source_agency.as_deref(), Some("DISPERSIPKALSEL"));
    assert_eq!(c.closing_codes, ["NRH", "RDM", "RH"]);
    assert_eq!(c.body.last().unwrap(), "Terima kasih.");
}

#[test]
fn bare_codes_on_their_own_line_and_after_a_sentence() {
    let own = kalsel("Judul\n\nBANJARMASIN – Isi berita.\n\nPenutup berita.\n\nMC Kalsel/ARH");
    assert_eq!(own.source_agency.as_deref(), Some("MC Kalsel"));
    assert_eq!(own.closing_codes, ["ARH"]);
    assert_eq!(own.body, ["Isi berita.", "Penutup berita."]);

    let inline = kalsel("Judul\n\nBANJARMASIN – Isi berita.\n\nPenutup berita. MC Kalsel/ARH");
    assert_eq!(inline.source_agency.as_deref(), Some("MC Kalsel"));
    assert_eq!(inline.closing_codes, ["ARH"]);
    assert_eq!(inline.body.last().unwrap(), "Penutup berita.");
}

#[test]
fn republisher_footer() {
    let c = kalsel(
        "Judul\n\nBANJARBARU – Isi.\n\nAkhir. (ASC/RH)\n\nsumber : diskominfomc.kalselprov.go.id\n",
    );
    assert_eq!(
        c.footer.as_deref(),
        Some("sumber : diskominfomc.kalselprov.go.id")
    );
    assert_eq!(c.closing_codes, ["ASC", "RH"]);
    assert_eq!(c.body, ["Isi.", "Akhir."]);

    // Footer right under the codes, single newline.
    let c = kalsel("Judul\n\nBANJARBARU – Isi.\nAkhir. (ASC/RH)\nSumber: mc.kalselprov.go.id");
    assert_eq!(c.footer.as_deref(), Some("Sumber: mc.kalselprov.go.id"));
    assert_eq!(c.closing_codes, ["ASC", "RH"]);
}

#[test]
fn single_newline_paragraphs_and_caption_between_them() {
    let text = "Pemkab Banjar Bangun Irigasi\n\
        BANJAR – Pemkab Banjar membangun irigasi baru, Selasa (24/11).\n\
        Pembangunan ini menelan dana Rp7 miliar.\n\
        Kabid SDA Dinas PUPRP Banjar, Jimmy\n\
        “Kami targetkan selesai tahun depan,” ujar Jimmy.\n\
        Warga menyambut baik rencana tersebut. (ADV/RH)";
    let c = kalsel(text);
    assert_eq!(c.dateline.as_deref(), Some("BANJAR"));
    assert_eq!(c.captions, ["Kabid SDA Dinas PUPRP Banjar, Jimmy"]);
    assert_eq!(c.body.len(), 4);
    assert_eq!(c.body[1], "Pembangunan ini menelan dana Rp7 miliar.");
    assert_eq!(c.event_date.unwrap().date.to_string(), "2026-11-24");
    assert_eq!(c.closing_codes, ["ADV", "RH"]);
}

#[test]
fn date_with_year_and_time() {
    let c = kalsel("Judul\n\nBANJARBARU – Rapat digelar Selasa (7/9/2021) pukul 10.00 Wita di aula.\n\nSelesai.");
    let d = c.event_date.unwrap();
    assert_eq!(d.date.to_string(), "2021-09-07");
    assert_eq!(d.time.unwrap().to_string(), "10:00:00");
    assert_eq!(d.zone.as_deref(), Some("WITA"));
    assert_eq!(d.year_source, YearSource::Explicit);
}

#[test]
fn no_dateline_is_a_warning_not_an_error() {
    let c = kalsel("Judul\n\nPemerintah provinsi menggelar rapat, Rabu (1/9).\n\nSelesai. (ASC)");
    assert_eq!(c.dateline, None);
    assert_eq!(
        c.body[0],
        "Pemerintah provinsi menggelar rapat, Rabu (1/9)."
    );
    assert_eq!(codes(&c.warnings), ["no_dateline"]);
    assert_eq!(c.closing_codes, ["ASC"]);
}

#[test]
fn dateline_dash_variants_and_case() {
    for (text, place) in [
        ("Judul\n\nBANJARBARU - Isi.", "BANJARBARU"),
        ("Judul\n\nBanjarmasin — Isi.", "Banjarmasin"),
        ("Judul\n\nHULU SUNGAI SELATAN – Isi.", "HULU SUNGAI SELATAN"),
        ("Judul\n\nbanjarbaru – Isi.", ""),
    ] {
        let c = kalsel(text);
        assert_eq!(c.dateline.as_deref().unwrap_or(""), place, "{text}");
    }
}

#[test]
fn crlf_and_bom_give_the_same_release() {
    let plain = sample("kpu-kalsel-diskominfo.txt");
    let text = String::from_utf8(plain.clone()).unwrap();
    let mut dos = b"\xEF\xBB\xBF".to_vec();
    dos.extend_from_slice(text.replace('\n', "\r\n").as_bytes());
    let a = parse(&plain, Format::Kalsel, &ctx()).unwrap();
    let b = parse(&dos, Format::Kalsel, &ctx()).unwrap();
    assert_eq!(a.content, b.content);
    assert_eq!(
        a.content_hash, b.content_hash,
        "the hash is over the normalised text"
    );
}

#[test]
fn bad_inputs_get_clear_errors() {
    let e = |s: &[u8]| parse(s, Format::Kalsel, &ctx()).unwrap_err();
    assert_eq!(e(b""), ParseError::Empty);
    assert_eq!(e(b"\n\n  \n"), ParseError::Empty);
    let title_only = e(b"\n\nHanya Judul\n");
    assert_eq!(title_only.line(), Some(3));
    assert!(title_only.to_string().contains("no body"), "{title_only}");
    assert!(matches!(
        e(b"\x7fELF\x02\x01\x01\x00\x00"),
        ParseError::Binary { offset: 7, .. }
    ));
    let big = vec![b'a'; 5 * 1024 * 1024];
    assert!(matches!(
        e(&big),
        ParseError::TooLarge {
            size: 5_242_880,
            ..
        }
    ));
    let long_title = "x".repeat(400) + "\n\nIsi.";
    assert!(e(long_title.as_bytes()).to_string().starts_with("line 1: "));
}

#[test]
fn forbidden_characters_and_markup_are_cleaned() {
    let c = kalsel("Judul\u{1}\n\nBANJARBARU – Isi <script>alert(1)</script>dengan <b>tebal</b> & a < b.\u{0b}\n\nSelesai.");
    assert_eq!(c.title, "Judul");
    assert_eq!(c.body[0], "Isi dengan tebal & a < b.");
    let w = codes(&c.warnings);
    assert!(
        w.contains(&"forbidden_characters") && w.contains(&"markup_removed"),
        "{w:?}"
    );
}

#[test]
fn legacy_encoded_file_is_read() {
    let bytes = b"Judul Berita\r\n\r\nBANJARBARU \x96 Isi \x93kutipan\x94, Rabu (1/9).\r\n";
    let p = parse(bytes, Format::Kalsel, &ctx()).unwrap();
    assert_eq!(p.content.dateline.as_deref(), Some("BANJARBARU"));
    assert_eq!(p.content.body[0], "Isi “kutipan”, Rabu (1/9).");
    assert_eq!(p.content.warnings[0].code, "legacy_encoding");
}
