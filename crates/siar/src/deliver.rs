//! The partner webhook engine: claims due webhook deliveries from the outbox, sends each in
//! its partner's format, and settles it: delivered, retried later, or failed for good.
//!
//! Each partner is isolated: it has its own HTTP client, at most `concurrency` attempts in
//! flight (1 by default, so its releases arrive in order), an optional rate, and a circuit
//! breaker — after `breaker_failures` consecutive failures it gets no attempts until
//! `breaker_cooldown_secs` have passed, then one probe; a success closes the breaker. A dead
//! or black-holed partner therefore costs the others nothing: its deliveries stay due while
//! theirs go out. A partner that answers 410, or has known nothing but failures for
//! `disable_after_days`, is disabled (remembered in the store) and the operator is told.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use siar_fanout::webhook::{self, Secret, Verdict};
use siar_model::{Attempt, Delivery, Event, Queue, Release, Target};
use siar_store::Claim;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::app::App;
use crate::config::PartnerConfig;

/// How often due deliveries are looked for when nothing wakes the engine.
const TICK: Duration = Duration::from_millis(250);

/// A lease outlives the attempt's timeout by this much.
const LEASE_MARGIN: chrono::Duration = chrono::Duration::seconds(30);

/// The store record of a disabled partner (`partner-disabled:{id}`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Disabled {
    pub at: DateTime<Utc>,
    pub reason: String,
}

fn disabled_key(id: &str) -> String {
    format!("partner-disabled:{id}")
}

#[derive(Default)]
struct Breaker {
    consecutive_failures: u32,
    /// Set while open: no attempt before this.
    open_until: Option<DateTime<Utc>>,
    /// A probe is in flight (half-open).
    probing: bool,
    /// When the current run of failures began (cleared by a success).
    failing_since: Option<DateTime<Utc>>,
}

struct Partner {
    config: PartnerConfig,
    secrets: Vec<Secret>,
    client: reqwest::Client,
    in_flight: AtomicUsize,
    breaker: Mutex<Breaker>,
    /// Start times of recent attempts, for `rate_per_minute`.
    recent: Mutex<std::collections::VecDeque<DateTime<Utc>>>,
    disabled: Mutex<Option<Disabled>>,
}

impl Partner {
    fn lock_breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_disabled(&self) -> bool {
        self.disabled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Whether one more attempt may start now; takes the slot if so.
    fn admit(&self, now: DateTime<Utc>) -> bool {
        if self.is_disabled() {
            return false;
        }
        if self.in_flight.load(Ordering::Relaxed) >= self.config.concurrency {
            return false;
        }
        {
            let mut b = self.lock_breaker();
            if let Some(until) = b.open_until {
                if now < until || b.probing {
                    return false;
                }
                // Half-open: this attempt is the probe.
                b.probing = true;
            }
        }
        if self.config.rate_per_minute > 0 {
            let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            while recent
                .front()
                .is_some_and(|t| now - *t >= chrono::Duration::minutes(1))
            {
                recent.pop_front();
            }
            if recent.len() >= self.config.rate_per_minute as usize {
                let mut b = self.lock_breaker();
                if b.probing && b.open_until.is_some() {
                    b.probing = false;
                }
                return false;
            }
            recent.push_back(now);
        }
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        true
    }
}

/// The engine's partners, by id.
pub struct Engine {
    partners: BTreeMap<String, Arc<Partner>>,
    worker: String,
}

impl Engine {
    pub fn new(app: &App) -> anyhow::Result<Self> {
        let secrets = app.config.partner_secrets().map_err(|errs| {
            anyhow::anyhow!(
                "partner secrets: {}",
                errs.iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        })?;
        let mut partners = BTreeMap::new();
        for p in app.config.partners.iter().filter(|p| p.enabled) {
            let client = webhook::client(
                p.allow_private,
                concat!("siar/", env!("CARGO_PKG_VERSION"), " (webhooks)"),
            )?;
            let disabled = app.store.meta_get::<Disabled>(&disabled_key(&p.id))?;
            if let Some(d) = &disabled {
                warn!(partner = %p.id, since = %d.at, reason = %d.reason,
                      "Partner is disabled; its deliveries wait until an operator enables it.");
            }
            partners.insert(
                p.id.clone(),
                Arc::new(Partner {
                    config: p.clone(),
                    secrets: secrets.get(&p.id).cloned().unwrap_or_default(),
                    client,
                    in_flight: AtomicUsize::new(0),
                    breaker: Mutex::default(),
                    recent: Mutex::default(),
                    disabled: Mutex::new(disabled),
                }),
            );
        }
        Ok(Self {
            partners,
            worker: format!("webhooks-{}", std::process::id()),
        })
    }

    /// Enables a partner disabled by a 410 or by days of failures.
    pub fn enable(&self, app: &App, id: &str) -> siar_store::Result<bool> {
        let Some(p) = self.partners.get(id) else {
            return Ok(false);
        };
        app.store.meta_remove(&disabled_key(id))?;
        *p.disabled.lock().unwrap_or_else(|e| e.into_inner()) = None;
        *p.lock_breaker() = Breaker::default();
        info!(partner = %id, "Partner enabled by an operator.");
        Ok(true)
    }
}

/// Runs the engine until `stop`: then in-flight attempts get `grace` to finish; whatever is
/// still running is abandoned and its lease brings it back after a restart.
pub async fn run(app: Arc<App>, engine: Arc<Engine>, stop: CancellationToken) {
    if engine.partners.is_empty() {
        return;
    }
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let now = app.clock.now();
        // The longest timeout bounds every lease.
        let lease_for = chrono::Duration::seconds(
            engine
                .partners
                .values()
                .map(|p| p.config.timeout_secs)
                .max()
                .unwrap_or(15) as i64,
        ) + LEASE_MARGIN;
        let mut taken: HashMap<String, usize> = HashMap::new();
        let claims = app.store.claim(
            Queue::Webhook,
            now,
            lease_for,
            256,
            &engine.worker,
            &mut |d: &Delivery| {
                let Target::Partner(id) = &d.target else {
                    return false;
                };
                let Some(p) = engine.partners.get(id) else {
                    return false;
                };
                // Admission is checked here and the slot taken; a claim that then loses its
                // race gives the slot back below.
                if p.admit(now) {
                    *taken.entry(id.clone()).or_default() += 1;
                    true
                } else {
                    false
                }
            },
        );
        match claims {
            Ok(claims) => {
                for claim in &claims {
                    if let Target::Partner(id) = &claim.delivery.target {
                        if let Some(n) = taken.get_mut(id) {
                            *n -= 1;
                        }
                    }
                }
                // Slots taken for deliveries another worker claimed first.
                for (id, n) in taken {
                    if let Some(p) = engine.partners.get(&id) {
                        for _ in 0..n {
                            p.in_flight.fetch_sub(1, Ordering::Relaxed);
                            let mut b = p.lock_breaker();
                            if b.open_until.is_some() {
                                b.probing = false;
                            }
                        }
                    }
                }
                for claim in claims {
                    let Target::Partner(id) = &claim.delivery.target else {
                        continue;
                    };
                    let Some(p) = engine.partners.get(id).cloned() else {
                        continue;
                    };
                    let app = app.clone();
                    tasks.spawn(async move {
                        deliver(&app, &p, claim).await;
                        p.in_flight.fetch_sub(1, Ordering::Relaxed);
                    });
                }
            }
            Err(e) => error!(error = %e, "Could not claim webhook deliveries; trying again."),
        }
        while tasks.try_join_next().is_some() {}
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = app.deliveries_changed.notified() => {}
            _ = tasks.join_next(), if !tasks.is_empty() => {}
            _ = stop.cancelled() => break,
        }
    }
    if tokio::time::timeout(Duration::from_secs(10), async {
        while tasks.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        warn!("Some webhook attempts were still running at shutdown; they will be retried after the restart.");
    }
}

/// The release as the delivery's version: that version's content, with the notes and the
/// retraction as they stand.
fn release_for(app: &App, d: &Delivery) -> siar_store::Result<Option<Release>> {
    let Some(mut r) = app.store.release(d.release_id)? else {
        return Ok(None);
    };
    if r.version != d.version {
        if let Some(v) = app.store.version(d.release_id, d.version)? {
            r.content = v.content;
            r.version = d.version;
            r.updated_at = v.created_at;
            r.correction_notes
                .truncate(d.version.saturating_sub(1) as usize);
        }
    }
    if d.event != Event::Retracted {
        r.retraction = None;
    }
    Ok(Some(r))
}

fn payload(app: &App, p: &Partner, r: &Release, event: Event) -> serde_json::Value {
    let ctx = crate::web::feeds::feed_context(app);
    match p.config.format.as_str() {
        "radio-script" => {
            serde_json::to_value(siar_fanout::render::radio_script(&ctx, r, p.config.words))
                .unwrap_or_default()
        }
        _ => {
            let mut item = siar_fanout::render::ninjs(&ctx, r);
            if event == Event::Retracted {
                item["pubStatus"] = "canceled".into();
            }
            item
        }
    }
}

/// The wait before attempt `attempts + 1` (`attempts` made so far), with ±20 % jitter; `None`
/// when the schedule is used up.
fn backoff(schedule: &[u64], attempts: u32) -> Option<Duration> {
    let base = *schedule.get(attempts as usize)?;
    let jitter = 0.8 + 0.4 * fastrand_unit();
    Some(Duration::from_secs_f64(base as f64 * jitter))
}

/// A number in [0, 1) from the clock's nanoseconds and a counter: jitter needs spread, not
/// secrecy.
fn fastrand_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    static N: AtomicUsize = AtomicUsize::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_usize(N.fetch_add(1, Ordering::Relaxed));
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

async fn deliver(app: &App, p: &Partner, claim: Claim) {
    let d = &claim.delivery;
    let now = app.clock.now();
    let release = match release_for(app, d) {
        Ok(Some(r)) => r,
        Ok(None) => {
            // Not visible yet (or gone): try again shortly.
            let _ = app.store.retry_at(
                &claim,
                now + chrono::Duration::seconds(5),
                "release not found",
                now,
            );
            return;
        }
        Err(e) => {
            error!(delivery = %d.id, error = %e, "Cannot read the release to deliver.");
            let _ = app.store.release_claim(&claim, now);
            return;
        }
    };
    let body = webhook::envelope(
        d.event.webhook_type(),
        now,
        payload(app, p, &release, d.event),
    );
    let headers: Vec<(String, String)> = p
        .config
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let result = match webhook::check_literal(&p.config.url) {
        Err(e) if !p.config.allow_private => webhook::AttemptResult {
            verdict: Verdict::Fail,
            status: None,
            duration: Duration::ZERO,
            response: String::new(),
            error_class: "refused_address".into(),
            error: e,
        },
        _ => {
            webhook::attempt(
                &p.client,
                &p.config.url,
                &d.stable_id(),
                &p.secrets,
                body,
                &headers,
                Duration::from_secs(p.config.timeout_secs),
                now,
            )
            .await
        }
    };
    let done = app.clock.now();
    let (outcome, next_at) = match &result.verdict {
        Verdict::Delivered => ("delivered", None),
        Verdict::Retry { min_wait } => match backoff(&p.config.retry_schedule_secs, d.attempts) {
            Some(wait) => {
                let wait = min_wait.map_or(wait, |m| wait.max(m));
                let at = done + chrono::Duration::from_std(wait).unwrap_or_default();
                ("retry", Some(at))
            }
            None => ("failed", None),
        },
        Verdict::Gone => ("gone", None),
        Verdict::Fail => ("failed", None),
    };
    let attempt = Attempt {
        number: d.attempts,
        at: now,
        status: result.status,
        duration_ms: u64::try_from(result.duration.as_millis()).unwrap_or(u64::MAX),
        outcome: outcome.into(),
        error_class: result.error_class.clone(),
        error: result.error.clone(),
        response: result.response.clone(),
        next_at,
    };
    if let Err(e) = app.store.record_attempt(d.id, &attempt) {
        warn!(delivery = %d.id, error = %e, "Could not record an attempt.");
    }
    let settled = match (outcome, next_at) {
        ("delivered", _) => app.store.complete(&claim, done),
        ("retry", Some(at)) => app.store.retry_at(&claim, at, &result.error, done),
        _ => app.store.fail(&claim, &result.error, done),
    };
    match settled {
        // Durable before the partner's slot is given back: after a crash, only what was in
        // flight (at most `concurrency` per partner) can be sent again.
        Ok(_) => {
            if let Err(e) = app.store.flush().await {
                error!(delivery = %d.id, error = %e, "Could not flush a settled delivery.");
            }
        }
        Err(e) => {
            warn!(delivery = %d.id, error = %e, "Could not settle a delivery (its lease may have ended); it will be attempted again.")
        }
    }
    info!(partner = %p.config.id, delivery = %d.id, release = %d.release_id, event = d.event.as_str(),
          attempt = d.attempts, status = ?result.status, ms = attempt.duration_ms, outcome,
          error_class = %result.error_class, "Webhook attempt.");
    // The breaker watches the endpoint's health: an answer that is not a transient failure
    // (delivered, or refused for good with a 4xx) shows it up and working.
    breaker_after(
        app,
        p,
        !matches!(result.verdict, Verdict::Retry { .. }),
        done,
    );
    if outcome == "gone" {
        disable(
            app,
            p,
            done,
            "the partner answered 410 Gone: it asks not to be called again",
        );
    }
}

fn breaker_after(app: &App, p: &Partner, ok: bool, now: DateTime<Utc>) {
    let mut b = p.lock_breaker();
    b.probing = false;
    if ok {
        if b.open_until.is_some() {
            info!(partner = %p.config.id, "Partner answers again; breaker closed.");
        }
        *b = Breaker::default();
        return;
    }
    b.consecutive_failures += 1;
    let since = *b.failing_since.get_or_insert(now);
    if b.consecutive_failures >= p.config.breaker_failures {
        let cool = chrono::Duration::seconds(p.config.breaker_cooldown_secs as i64);
        if b.open_until.is_none() {
            warn!(partner = %p.config.id, failures = b.consecutive_failures,
                  "Partner keeps failing; breaker open: attempts paused, then one probe.");
        }
        b.open_until = Some(now + cool);
    }
    let limit = chrono::Duration::days(i64::from(p.config.disable_after_days));
    if now - since >= limit {
        drop(b);
        disable(
            app,
            p,
            now,
            &format!(
                "nothing but failures for {} days",
                p.config.disable_after_days
            ),
        );
    }
}

fn disable(app: &App, p: &Partner, now: DateTime<Utc>, reason: &str) {
    let record = Disabled {
        at: now,
        reason: reason.to_owned(),
    };
    if let Err(e) = app.store.meta_put(&disabled_key(&p.config.id), &record) {
        error!(partner = %p.config.id, error = %e, "Could not record that a partner is disabled.");
    }
    *p.disabled.lock().unwrap_or_else(|e| e.into_inner()) = Some(record);
    error!(partner = %p.config.id, reason, "Partner disabled: its deliveries wait until an operator enables it (POST /api/v1/partners/{{id}}/enable).");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_follows_the_schedule_with_jitter() {
        let s = crate::config::default_retry_schedule();
        assert_eq!(backoff(&s, 0), Some(Duration::ZERO));
        for _ in 0..100 {
            let w = backoff(&s, 2).unwrap().as_secs_f64();
            assert!((240.0..=360.0).contains(&w), "{w}");
        }
        let waits: Vec<f64> = (0..50)
            .map(|_| backoff(&s, 9).unwrap().as_secs_f64())
            .collect();
        assert!(waits.iter().any(|w| (*w - 86400.0).abs() > 60.0), "jitter");
        assert_eq!(backoff(&s, 10), None, "schedule used up");
    }
}
