//! Replays the fuzzing corpus (`fuzz/corpus/`, grown by `cargo +nightly fuzz run` and minimised
//! with `cargo fuzz cmin`) and the inputs that once failed (`fuzz/regressions/`) through the same
//! oracle the fuzz targets use, on every test run, on stable Rust.

#![allow(clippy::unwrap_used)] // Tests: a panic is a failed test.

use std::path::PathBuf;

use siar_ingest::Format;

/// Replays `fuzz/{kind}/{target}` (kind: `corpus`, or `regressions` — inputs that once
/// failed, kept apart so minimising the corpus never drops them).
fn replay(kind: &str, target: &str, format: Format) -> usize {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz")
        .join(kind)
        .join(target);
    if kind == "regressions" && !dir.exists() {
        return 0;
    }
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| siar_ingest::fuzz_check(&data, format));
        assert!(outcome.is_ok(), "{} fails the fuzz oracle", path.display());
        n += 1;
    }
    n
}

#[test]
fn the_fuzzing_corpus_passes_the_oracle() {
    for (target, format) in [
        ("kalsel", Format::Kalsel),
        ("front_matter", Format::Markdown),
        ("json", Format::Json),
    ] {
        let n = replay("corpus", target, format);
        assert!(n >= 3, "the {target} corpus has its seeds ({n} inputs)");
        replay("regressions", target, format);
    }
}

#[test]
fn the_inputs_fuzzing_found_are_refused_cleanly() {
    // Markdown whose body is only an empty code block: once accepted with no body text.
    let n = replay("regressions", "front_matter", Format::Markdown);
    assert!(n >= 1);
    let input = std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/regressions/front_matter/empty-code-block-body"),
    )
    .unwrap();
    let ctx =
        siar_ingest::ParseContext::new(chrono::NaiveDate::from_ymd_opt(2026, 11, 29).unwrap());
    let err = siar_ingest::parse(&input, Format::Markdown, &ctx).unwrap_err();
    assert!(err.to_string().contains("no body text"), "{err}");
}
