//! WebSub publisher pings: telling the hub that a topic (a feed URL) changed.
//!
//! Each topic is pinged with `hub.mode=publish` and `hub.url={topic}` (the form every common
//! hub accepts). A hub that is down or answers an error is tried again after each of
//! [`RETRY_DELAYS`]; a ping that never gets through costs readers only freshness — they still
//! poll the feed — so the retries live in memory, not in the outbox.

use std::time::Duration;

/// Waits between attempts: six retries over about three quarters of an hour.
pub const RETRY_DELAYS: [Duration; 6] = [
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(120),
    Duration::from_secs(600),
    Duration::from_secs(1800),
];

/// One ping. Any 2xx is success.
pub async fn ping(client: &reqwest::Client, hub: &str, topic: &str) -> Result<(), String> {
    let resp = client
        .post(hub)
        .form(&[("hub.mode", "publish"), ("hub.url", topic)])
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!("hub answered HTTP {}", resp.status()))
    }
}

/// Pings until the hub accepts or the retries run out. Returns the attempts made and the
/// last error, if it never got through.
pub async fn ping_with_retries(
    client: &reqwest::Client,
    hub: &str,
    topic: &str,
) -> (usize, Option<String>) {
    let mut last = None;
    for (attempt, delay) in std::iter::once(Duration::ZERO)
        .chain(RETRY_DELAYS)
        .enumerate()
    {
        tokio::time::sleep(delay).await;
        match ping(client, hub, topic).await {
            Ok(()) => return (attempt + 1, None),
            Err(e) => last = Some(e),
        }
    }
    (RETRY_DELAYS.len() + 1, last)
}
