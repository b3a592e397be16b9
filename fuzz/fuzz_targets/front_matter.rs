//! Fuzz target: arbitrary bytes through siar's front_matter ingest (`cargo +nightly fuzz run front_matter`).
//! The checks are siar_ingest::fuzz_check's: no panic, and an accepted release is well formed.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    siar_ingest::fuzz_check(data, siar_ingest::Format::Markdown);
});
