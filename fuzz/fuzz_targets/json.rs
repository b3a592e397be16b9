//! Fuzz target: arbitrary bytes through siar's json ingest (`cargo +nightly fuzz run json`).
//! The checks are siar_ingest::fuzz_check's: no panic, and an accepted release is well formed.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    siar_ingest::fuzz_check(data, siar_ingest::Format::Json);
});
