//! Text rules shared by every input path.

/// True for characters XML 1.0 allows in a document (§2.2 `Char`), which is what every feed,
/// email and page siar writes needs. Rust strings cannot hold surrogates, so those need no check.
pub fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Removes characters XML 1.0 forbids. Returns the cleaned text and how many were removed.
pub fn strip_forbidden(s: &str) -> (String, usize) {
    if s.chars().all(is_xml_char) {
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

/// Collapses every run of whitespace (newlines included) into one space and trims the ends.
pub fn collapse_whitespace(s: &str) -> String {
    let mut prev_space = true;
    let already = s.chars().all(|c| {
        let ok = if c.is_whitespace() {
            c == ' ' && !prev_space
        } else {
            true
        };
        prev_space = c.is_whitespace();
        ok
    }) && !s.ends_with(' ');
    if already {
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
