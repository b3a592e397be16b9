//! End-to-end tests: the real `siar` binary on a temporary directory and port 0, real sled on
//! disk, real HTTP peers. One test binary (like svix-server's `tests/it`), one module per
//! capability, shared helpers in `utils`.

#![allow(clippy::unwrap_used)] // Test helpers: a panic is a failed test.

mod utils;

mod api;
mod backup;
mod browser;
mod cli;
mod crash;
mod deploy;
mod feeds;
mod inbox;
mod lifecycle;
mod mail;
mod media;
mod pages;
mod reliability;
mod schedule;
mod schemathesis;
mod security;
mod upstream;
mod webhooks;
mod websub;
