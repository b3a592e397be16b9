//! What siar sends out, and how.
//!
//! - [`render`]: pure functions from releases to bytes — the release's HTML body, RSS 2.0,
//!   Atom and JSON Feed documents. No I/O; tested on the sample releases.
//! - [`websub`]: pings to a WebSub hub when a feed changes, with retries.
//! - [`webhook`]: partner webhooks on the wire — Standard Webhooks signing, the envelope, one
//!   attempt and its verdict, and the guard that keeps partner URLs off private networks.
//!
//! ```
//! use siar_fanout::render::{FeedContext, tag_id};
//! let ctx = FeedContext::example();
//! let made = chrono::DateTime::parse_from_rfc3339("2021-09-01T03:00:00Z").unwrap().to_utc();
//! let id = siar_model::ReleaseId::at(made);
//! assert_eq!(tag_id(&ctx, id), format!("tag:kalselprov.go.id,2021:release/{id}"));
//! ```

pub mod histogram;
pub mod render;
pub mod smtp;
pub mod webhook;
pub mod websub;
