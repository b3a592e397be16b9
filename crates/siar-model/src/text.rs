//! Text rules shared by every input path.

/// True for characters XML 1.0 allows in a document (§2.2 `Char`), which is what every feed,
/// email and page siar writes needs. Rust strings cannot hold surrogates, so those need no check.
pub fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Removes characters XML 1.0 forbids. Returns the cleaned text and how many were removed.
pub fn strip_forbidden(s: &str) -> (String, usize) {
    if !has_forbidden(s) {
        return (s.to_owned(), 0);
    }
    let mut removed = 0;
    let out = s
        .chars()
        .filter(|&c| {
            let ok = is_xml_char(c);
            if !ok {
                removed += 1;
            }
            ok
        })
        .collect();
    (out, removed)
}

/// True if `s` holds a character XML 1.0 forbids. Works on bytes: the forbidden characters
/// are the C0 controls but tab, newline and return (single bytes below 0x20) and U+FFFE and
/// U+FFFF (`EF BF BE`, `EF BF BF`).
fn has_forbidden(s: &str) -> bool {
    s.bytes()
        .any(|c| c < 0x20 && c != b'\t' && c != b'\n' && c != b'\r')
        || s.contains(['\u{FFFE}', '\u{FFFF}'])
}

/// True if collapsing whitespace would change `s`: a leading, trailing or doubled space, or
/// any whitespace other than a plain space. Works on the UTF-8 bytes of every character Rust
/// counts as whitespace (U+0009–000D, 0085, 00A0, 1680, 2000–200A, 2028, 2029, 202F, 205F,
/// 3000).
fn needs_collapse(s: &str) -> bool {
    let b = s.as_bytes();
    if b.first() == Some(&b' ') || b.last() == Some(&b' ') {
        return true;
    }
    b.iter().enumerate().any(|(i, &c)| {
        let next = |k: usize| b.get(i + k).copied().unwrap_or(0);
        match c {
            b'\t' | b'\n' | 0x0B | 0x0C | b'\r' => true,
            b' ' => next(1) == b' ',
            0xC2 => matches!(next(1), 0x85 | 0xA0),
            0xE1 => next(1) == 0x9A && next(2) == 0x80,
            0xE2 => match next(1) {
                0x80 => matches!(next(2), 0x80..=0x8A | 0xA8 | 0xA9 | 0xAF),
                0x81 => next(2) == 0x9F,
                _ => false,
            },
            0xE3 => next(1) == 0x80 && next(2) == 0x80,
            _ => false,
        }
    })
}

/// Collapses every run of whitespace (newlines included) into one space and trims the ends.
pub fn collapse_whitespace(s: &str) -> String {
    if !needs_collapse(s) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    for word in s.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// A URL-safe slug: ASCII lowercase letters, digits and single hyphens, at most `max` bytes,
/// cut at a word boundary. Non-Latin text is transliterated first.
pub fn slugify(s: &str, max: usize) -> String {
    let ascii = deunicode::deunicode(s);
    let mut slug = String::with_capacity(ascii.len());
    let mut pending_hyphen = false;
    for c in ascii.chars() {
        if c.is_ascii_alphanumeric() {
            if pending_hyphen && !slug.is_empty() {
                slug.push('-');
            }
            pending_hyphen = false;
            slug.push(c.to_ascii_lowercase());
        } else {
            pending_hyphen = true;
        }
    }
    if slug.len() > max {
        let cut = slug[..max].rfind('-').unwrap_or(max);
        slug.truncate(cut);
    }
    slug
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_characters_go_and_are_counted() {
        let (clean, n) = strip_forbidden("a\u{0}b\u{1b}c\u{FFFE}d\te\n");
        assert_eq!(clean, "abcd\te\n");
        assert_eq!(n, 3);
    }

    #[test]
    fn byte_checks_agree_with_the_char_rules() {
        let samples = [
            "biasa saja",
            " awal",
            "akhir ",
            "dua  spasi",
            "tab\tdi",
            "baris\nbaru",
            "nbsp\u{a0}x",
            "nel\u{85}x",
            "ogham\u{1680}x",
            "em\u{2003}x",
            "hair\u{200a}x",
            "zwsp\u{200b}x",
            "ls\u{2028}x",
            "nnbsp\u{202f}x",
            "mmsp\u{205f}x",
            "ideo\u{3000}x",
            "“kutip” — é ü 日本",
            "ctl\u{1}x",
            "ff\u{fffe}x",
            "ff\u{ffff}x",
            "fd\u{fffd}x",
            "",
        ];
        for s in samples {
            let char_collapse = s.split_whitespace().collect::<Vec<_>>().join(" ") != s;
            assert_eq!(needs_collapse(s), char_collapse, "{s:?}");
            assert_eq!(has_forbidden(s), !s.chars().all(is_xml_char), "{s:?}");
        }
        for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
            let s = format!("a{c}b");
            assert_eq!(
                needs_collapse(&s),
                c.is_whitespace() && c != ' ',
                "U+{:04X}",
                c as u32
            );
            assert_eq!(has_forbidden(&s), !is_xml_char(c), "U+{:04X}", c as u32);
        }
    }

    #[test]
    fn whitespace_collapses() {
        assert_eq!(collapse_whitespace("  a \n\t b  c "), "a b c");
        assert_eq!(collapse_whitespace("a b c"), "a b c");
        assert_eq!(collapse_whitespace("a\u{a0}b"), "a b");
        assert_eq!(collapse_whitespace(""), "");
        assert_eq!(collapse_whitespace(" "), "");
    }

    #[test]
    fn slugs_are_ascii_and_bounded() {
        assert_eq!(
            slugify("KPU Kalsel Sambangi Diskominfo Kalsel", 80),
            "kpu-kalsel-sambangi-diskominfo-kalsel"
        );
        assert_eq!(
            slugify("  Rp7 Miliar — “Dana” Desa!  ", 80),
            "rp7-miliar-dana-desa"
        );
        assert_eq!(slugify("abc def ghi", 6), "abc");
        assert_eq!(slugify("Café", 80), "cafe");
        assert_eq!(slugify("<script>", 80), "script");
    }
}
