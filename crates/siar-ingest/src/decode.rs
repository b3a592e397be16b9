//! Bytes to text.
//!
//! Policy (documented in the README): UTF-8 is expected; a UTF-8 BOM is dropped; UTF-16 with a
//! BOM is decoded. Anything else that is not valid UTF-8 is read as Windows-1252 — the legacy
//! encoding that Indonesian office software writes — with a warning naming the byte offset of
//! the first invalid sequence, so an editor can check the result. Input that is not text at
//! all (NUL bytes, many control characters) is refused with the offset of the first sign.
//! Line endings become `\n`, and Unicode space characters (no-break space and friends) become
//! plain spaces.

use encoding_rs::{UTF_16BE, UTF_16LE, WINDOWS_1252};

use crate::{ParseError, Warning};

pub(crate) struct Decoded {
    pub text: String,
    pub warnings: Vec<Warning>,
}

pub(crate) fn decode(bytes: &[u8], max_bytes: usize) -> Result<Decoded, ParseError> {
    if bytes.len() > max_bytes {
        return Err(ParseError::TooLarge {
            size: bytes.len(),
            limit: max_bytes,
        });
    }
    let mut warnings = Vec::new();
    let text = if let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
        utf8(rest, &mut warnings)?
    } else if bytes.starts_with(b"\xFF\xFE") || bytes.starts_with(b"\xFE\xFF") {
        let enc = if bytes[0] == 0xFF { UTF_16LE } else { UTF_16BE };
        let (text, had_errors) = enc.decode_without_bom_handling(&bytes[2..]);
        if had_errors {
            return Err(ParseError::Binary {
                offset: 2,
                reason: format!("invalid {} data", enc.name()),
            });
        }
        warnings.push(Warning::new(
            "utf16",
            format!("the file is {}; it was converted to UTF-8", enc.name()),
            None,
        ));
        text.into_owned()
    } else {
        utf8(bytes, &mut warnings)?
    };
    check_text_like(&text)?;
    let text = normalise(&text);
    if text.trim().is_empty() {
        return Err(ParseError::Empty);
    }
    Ok(Decoded { text, warnings })
}

fn utf8(bytes: &[u8], warnings: &mut Vec<Warning>) -> Result<String, ParseError> {
    if let Some(offset) = bytes.iter().position(|&b| b == 0) {
        return Err(ParseError::Binary {
            offset,
            reason: "a NUL byte".into(),
        });
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(s.to_owned()),
        Err(e) => {
            let offset = e.valid_up_to();
            let (text, _, _) = WINDOWS_1252.decode(bytes);
            warnings.push(Warning::new(
                "legacy_encoding",
                format!(
                    "not valid UTF-8 (first invalid byte 0x{:02X} at offset {offset}); \
                     read as Windows-1252 — check accented letters and quotes",
                    bytes[offset]
                ),
                Some(1 + bytes[..offset].iter().filter(|&&b| b == b'\n').count()),
            ));
            Ok(text.into_owned())
        }
    }
}

/// Refuses text that is mostly not writing: control characters beyond a stray few, or
/// hardly any letters.
fn check_text_like(text: &str) -> Result<(), ParseError> {
    let mut controls = 0usize;
    let mut first_control = None;
    let mut letters = 0usize;
    let mut visible = 0usize;
    let mut chars = 0usize;
    for (offset, c) in text.char_indices() {
        chars += 1;
        // ASCII first: nearly every character of a release, and cheap to classify.
        let (control, space, letter) = if c.is_ascii() {
            (
                c.is_ascii_control(),
                c.is_ascii_whitespace() || c == '\u{b}',
                c.is_ascii_alphabetic(),
            )
        } else {
            (c.is_control(), c.is_whitespace(), c.is_alphabetic())
        };
        if control && !matches!(c, '\n' | '\r' | '\t' | '\u{c}') {
            controls += 1;
            first_control.get_or_insert(offset);
        }
        if !space {
            visible += 1;
            letters += usize::from(letter);
        }
    }
    let chars = chars.max(1);
    if controls > 64 || (controls > 2 && controls * 50 > chars) {
        return Err(ParseError::Binary {
            offset: first_control.unwrap_or(0),
            reason: format!("{controls} control characters"),
        });
    }
    if visible >= 16 && letters * 3 < visible {
        return Err(ParseError::Binary {
            offset: 0,
            reason: format!("only {letters} of {visible} visible characters are letters"),
        });
    }
    Ok(())
}

/// What [`normalise`] does to one character: `None` keeps it.
fn replacement(c: char) -> Option<&'static str> {
    match c {
        '\u{A0}'
        | '\u{2007}'
        | '\u{202F}'
        | '\u{2000}'..='\u{200A}'
        | '\u{3000}'
        | '\u{c}'
        | '\t' => Some(" "),
        '\u{2028}' | '\u{2029}' | '\r' => Some("\n"),
        '\u{200B}' | '\u{FEFF}' | '\u{AD}' => Some(""),
        _ => None,
    }
}

/// Line ends to `\n`, Unicode spaces to plain spaces, invisible characters out. Copies runs
/// of ordinary text whole.
fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let Some(with) = replacement(c) else { continue };
        out.push_str(&text[run..i]);
        out.push_str(with);
        run = i + c.len_utf8();
        if c == '\r' && chars.peek().map(|&(_, n)| n) == Some('\n') {
            // CRLF: the \r already became the newline.
            chars.next();
            run += 1;
        }
    }
    out.push_str(&text[run..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalising_copies_runs_and_replaces_only_specials() {
        assert_eq!(
            normalise("a\r\nb\rc\u{a0}d\u{200b}e\u{2028}f\tg"),
            "a\nb\nc de\nf g"
        );
        assert_eq!(normalise("tanpa apa-apa “kutip”"), "tanpa apa-apa “kutip”");
        assert_eq!(normalise("\r\n\r\n"), "\n\n");
        assert_eq!(normalise(""), "");
    }

    #[test]
    fn bom_crlf_and_nbsp_are_normalised() {
        let d = decode(
            b"\xEF\xBB\xBFJudul\r\n\r\nA\xC2\xA0\xE2\x80\x93 b\r\n",
            1000,
        )
        .unwrap();
        assert_eq!(d.text, "Judul\n\nA \u{2013} b\n");
        assert!(d.warnings.is_empty());
    }

    #[test]
    fn legacy_encoding_is_read_with_a_warning_naming_the_offset() {
        // "Kabupaten Banjar – “Wali”" in Windows-1252: 0x96 en dash, 0x93/0x94 quotes.
        let bytes = b"Judul\n\nBANJAR \x96 \x93Wali\x94 kota.";
        let d = decode(bytes, 1000).unwrap();
        assert_eq!(
            d.text,
            "Judul\n\nBANJAR \u{2013} \u{201c}Wali\u{201d} kota."
        );
        assert_eq!(d.warnings.len(), 1);
        assert_eq!(d.warnings[0].code, "legacy_encoding");
        assert!(
            d.warnings[0].message.contains("offset 14"),
            "{}",
            d.warnings[0].message
        );
        assert_eq!(d.warnings[0].line, Some(3));
    }

    #[test]
    fn utf16_with_bom_is_decoded() {
        let mut bytes = vec![0xFF, 0xFE];
        for u in "Judul\n\nIsi.".encode_utf16() {
            bytes.extend_from_slice(&u.to_le_bytes());
        }
        let d = decode(&bytes, 1000).unwrap();
        assert_eq!(d.text, "Judul\n\nIsi.");
        assert_eq!(d.warnings[0].code, "utf16");
    }

    #[test]
    fn binary_and_empty_and_huge_inputs_are_refused() {
        assert!(matches!(
            decode(b"PK\x03\x04\x00\x00junk", 1000),
            Err(ParseError::Binary { offset: 4, .. })
        ));
        let junk: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8 + 1).collect();
        assert!(matches!(
            decode(&junk, 10_000),
            Err(ParseError::Binary { .. })
        ));
        assert_eq!(decode(b" \n\r\n\t ", 1000).err(), Some(ParseError::Empty));
        assert_eq!(
            decode(&[b'a'; 2000], 1000).err(),
            Some(ParseError::TooLarge {
                size: 2000,
                limit: 1000
            })
        );
    }
}
