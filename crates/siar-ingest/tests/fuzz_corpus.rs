//! Replays the fuzzing corpus (`fuzz/corpus/`, grown by `cargo +nightly fuzz run`) through the
//! same oracle the fuzz targets use, so every input fuzzing ever kept — including the ones that
//! once crashed a parser — is checked on each test run, on stable Rust.

#![allow(clippy::unwrap_used)] // Tests: a panic is a failed test.

use std::path::PathBuf;

use siar_ingest::Format;

fn replay(target: &str, format: Format) -> usize {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
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
        let n = replay(target, format);
        assert!(n >= 3, "the {target} corpus has its seeds ({n} inputs)");
    }
}
