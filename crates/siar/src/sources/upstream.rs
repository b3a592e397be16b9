//! Upstream RSS/Atom feeds, polled on their cron schedules with conditional GET.
//!
//! A new item (by guid) becomes a release; an item whose content changed since the last
//! version siar took from it becomes a correction. Items are matched by `guid:{name}:{guid}`
//! in the store, so neither repeated polls nor restarts create duplicates.

use std::sync::Arc;

use reqwest::header::{ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use siar_ingest::feed::{item_to_release, read_feed};
use siar_model::{Category, Provenance, Source, Status};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::app::App;
use crate::config::UpstreamConfig;
use crate::schedule::When;

/// Feeds larger than this are refused.
const MAX_FEED_BYTES: usize = 16 * 1024 * 1024;

#[derive(Default, Serialize, Deserialize)]
struct State {
    etag: Option<String>,
    last_modified: Option<String>,
}

/// What one poll did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Polled {
    pub not_modified: bool,
    pub new: usize,
    pub corrected: usize,
    pub skipped: usize,
}

pub async fn run(
    app: Arc<App>,
    cfg: UpstreamConfig,
    client: reqwest::Client,
    shutdown: CancellationToken,
) {
    let Ok(when) = When::parse(&cfg.schedule) else {
        return;
    };
    let job = || async {
        match poll(&app, &cfg, &client).await {
            Ok(p) if p.not_modified => {
                tracing::debug!(upstream = %cfg.name, "Upstream feed not modified.")
            }
            Ok(p) => {
                info!(upstream = %cfg.name, new = p.new, corrected = p.corrected, skipped = p.skipped, "Polled upstream feed.")
            }
            Err(e) => {
                warn!(upstream = %cfg.name, url = %cfg.url, error = %e, "Could not poll upstream feed; will try at the next firing.")
            }
        }
    };
    tokio::select! {
        _ = job() => {}
        _ = shutdown.cancelled() => return,
    }
    crate::scheduler::run_cron(
        format!("upstream:{}", cfg.name),
        when,
        app.config.timezone(),
        app.clock.clone(),
        shutdown,
        job,
    )
    .await;
}

/// Polls one upstream feed once.
pub async fn poll(
    app: &App,
    cfg: &UpstreamConfig,
    client: &reqwest::Client,
) -> Result<Polled, String> {
    let key = format!("upstream:{}", cfg.name);
    let state: State = app
        .store
        .meta_get(&key)
        .map_err(|e| e.to_string())?
        .unwrap_or_default();
    let mut req = client.get(&cfg.url);
    if let Some(e) = &state.etag {
        req = req.header(IF_NONE_MATCH, e);
    }
    if let Some(lm) = &state.last_modified {
        req = req.header(IF_MODIFIED_SINCE, lm);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    if resp.status() == StatusCode::NOT_MODIFIED {
        return Ok(Polled {
            not_modified: true,
            ..Polled::default()
        });
    }
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status()));
    }
    let header = |h| {
        resp.headers()
            .get(h)
            .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
            .map(str::to_owned)
    };
    let new_state = State {
        etag: header(ETAG),
        last_modified: header(LAST_MODIFIED),
    };
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_FEED_BYTES as u64)
    {
        return Err(format!("the feed is over {MAX_FEED_BYTES} bytes"));
    }
    let body = resp
        .bytes()
        .await
        .map_err(|e| format!("reading the feed failed: {e}"))?;
    if body.len() > MAX_FEED_BYTES {
        return Err(format!("the feed is over {MAX_FEED_BYTES} bytes"));
    }
    let items = read_feed(&body).map_err(|e| e.to_string())?;
    let extra: Vec<Category> = cfg
        .categories
        .iter()
        .filter_map(|c| Category::parse(c).ok())
        .collect();
    let ctx = app.parse_context();
    let mut out = Polled::default();
    // Feeds list newest first; take the oldest first so ids follow the upstream's order.
    for item in items.iter().rev() {
        let mut parsed = match item_to_release(item, &ctx) {
            Ok(p) => p,
            Err(e) => {
                warn!(upstream = %cfg.name, guid = %item.guid, error = %e, "Skipped an upstream item that could not be read.");
                out.skipped += 1;
                continue;
            }
        };
        for c in &extra {
            if !parsed.content.categories.contains(c) {
                parsed.content.categories.push(c.clone());
            }
        }
        let provenance = Provenance {
            source: Source::Upstream {
                name: cfg.name.clone(),
                guid: item.guid.clone(),
            },
            content_hash: parsed.content_hash.clone(),
            received_at: app.clock.now(),
            idempotency_key: None,
        };
        let guid_key = format!("{}:{}", cfg.name, item.guid);
        let existing = app
            .store
            .release_by_key("guid", &guid_key)
            .map_err(|e| e.to_string())?;
        match existing {
            None => {
                app.store_new(parsed, provenance, None)
                    .await
                    .map_err(|e| e.to_string())?;
                out.new += 1;
            }
            Some(r) if r.status == Status::Retracted => {}
            Some(r) => {
                // Compare with the last version taken from upstream, so an editor's own
                // correction is not undone at every poll.
                let versions = app.store.versions(r.id).map_err(|e| e.to_string())?;
                let last_upstream = versions
                    .iter()
                    .rev()
                    .find(|v| matches!(v.provenance.source, Source::Upstream { .. }))
                    .map(|v| v.provenance.content_hash.clone());
                if last_upstream.as_deref() != Some(parsed.content_hash.as_str()) {
                    let note = format!("Diperbarui oleh sumber {}", cfg.name);
                    app.store_correction(r.id, parsed, provenance, &note)
                        .await
                        .map_err(|e| e.to_string())?;
                    out.corrected += 1;
                }
            }
        }
    }
    app.store
        .meta_put(&key, &new_state)
        .map_err(|e| e.to_string())?;
    app.store.flush().await.map_err(|e| e.to_string())?;
    Ok(out)
}
