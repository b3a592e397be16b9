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
use siar_model::{Attempt, Delivery, Event, Release};
use siar_store::{Claim, Settlement};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::app::App;
use crate::config::PartnerConfig;

/// How often due deliveries are looked for when nothing wakes the engine.
const TICK: Duration = Duration::from_millis(250);

/// A lease outlives the attempt's timeout by this much.
const LEASE_MARGIN: chrono::Duration = chrono::Duration::seconds(30);

/// How one partner stands.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct PartnerStatus {
    pub id: String,
    pub name: String,
    pub format: String,
    pub schedule: String,
    /// Set while disabled: when and why.
    pub disabled: Option<Disabled>,
    /// `closed`, `open` (attempts paused) or `half_open` (a probe may go).
    pub breaker: String,
    pub consecutive_failures: u32,
    pub failing_since: Option<DateTime<Utc>>,
    /// Deliveries waiting or in flight.
    pub queued: usize,
    /// When the next one is due.
    pub next_due: Option<DateTime<Utc>>,
}

/// The store record of a disabled partner (`partner-disabled:{id}`).
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Disabled {
    pub at: DateTime<Utc>,
    pub reason: String,
}

fn disabled_key(id: &str) -> String {
    format!("partner-disabled:{id}")
}

/// The schedule a partner's queued deliveries were timed by.
fn schedule_key(id: &str) -> String {
    format!("partner-schedule:{id}")
}

/// A partner whose schedule changed since the last start (a reload or restart with a new
/// configuration) gets its waiting deliveries re-timed by the new one: a partner moved to
/// `instant` receives its queue now, one moved to a cron schedule at its next firing.
fn reschedule_if_changed(app: &App, p: &PartnerConfig) -> siar_store::Result<()> {
    let before = app.store.meta_get::<String>(&schedule_key(&p.id))?;
    if before.as_deref() == Some(p.schedule.as_str()) {
        return Ok(());
    }
    if before.is_some() {
        let now = app.clock.now();
        let target = siar_model::Target::Partner(p.id.clone());
        let due = siar_model::Router::due_at(app.router.as_ref(), &target, now);
        let moved = app.store.reschedule_partner(&p.id, due, now)?;
        info!(partner = %p.id, schedule = %p.schedule, deliveries = moved, next = %due,
              "The partner's schedule changed; its waiting deliveries follow the new one.");
    }
    app.store.meta_put(&schedule_key(&p.id), &p.schedule)
}

/// When a partner's current run of failures began; kept in the store so a restart does not
/// restart the count of days before it is disabled.
fn failing_key(id: &str) -> String {
    format!("partner-failing-since:{id}")
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
    /// `config.url`, parsed once; or why no attempt may go there (unparsable, which
    /// check-config refuses; or a private address literal without `allow_private`).
    url: Result<axum::http::Uri, (&'static str, String)>,
    /// Which rendering this partner takes (see [`PayloadKey`]).
    payload_format: usize,
    secrets: Vec<Secret>,
    client: webhook::Client,
    breaker: Mutex<Breaker>,
    /// Start times of recent attempts, for `rate_per_minute`.
    recent: Mutex<std::collections::VecDeque<DateTime<Utc>>>,
    disabled: Mutex<Option<Disabled>>,
    stats: PartnerStats,
}

/// Upper bounds (seconds) of the attempt latency histogram's buckets.
const LATENCY_BUCKETS: [f64; 9] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// The outcomes attempts are counted by.
const OUTCOMES: [&str; 4] = ["delivered", "retry", "failed", "gone"];

/// One partner's attempts by outcome and their latency histogram, for `/metrics`.
pub struct AttemptStats {
    pub partner: String,
    pub outcomes: [(&'static str, u64); 4],
    pub latency: siar_fanout::histogram::Snapshot,
}

/// Attempts by outcome and their latency, for `/metrics`.
struct PartnerStats {
    /// delivered, retry, failed, gone.
    outcomes: [std::sync::atomic::AtomicU64; 4],
    latency: siar_fanout::histogram::Histogram,
}

impl Default for PartnerStats {
    fn default() -> Self {
        Self {
            outcomes: Default::default(),
            latency: siar_fanout::histogram::Histogram::new(&LATENCY_BUCKETS),
        }
    }
}

impl PartnerStats {
    fn record(&self, outcome: &str, took: Duration) {
        let i = OUTCOMES.iter().position(|o| *o == outcome).unwrap_or(3);
        self.outcomes[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.latency.record(took);
    }
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

    /// How long to wait before the next attempt may start under `rate_per_minute`; records
    /// the attempt when it may start now.
    fn rate_wait(&self, now: DateTime<Utc>) -> Option<Duration> {
        if self.config.rate_per_minute == 0 {
            return None;
        }
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let minute = chrono::Duration::minutes(1);
        while recent.front().is_some_and(|t| now - *t >= minute) {
            recent.pop_front();
        }
        if recent.len() >= self.config.rate_per_minute as usize {
            let oldest = recent.front().copied().unwrap_or(now);
            return Some((oldest + minute - now).to_std().unwrap_or_default());
        }
        recent.push_back(now);
        None
    }
}

/// (release, version, event, format): what a payload is rendered from. The format is a
/// number the engine gives each distinct (format, word budget).
type PayloadKey = (siar_model::ReleaseId, u32, Event, usize);

/// How many payloads each generation of [`Payloads`] keeps.
const PAYLOAD_CACHE: usize = 1024;

/// Rendered payloads, the recently used kept: two generations of up to [`PAYLOAD_CACHE`]; a
/// payload found in the older one moves to the younger, and when the younger is full the
/// older is dropped. Partners working through a backlog at different paces keep finding
/// what the first of them rendered (a cache emptied when full made the stragglers render
/// everything again).
#[derive(Default)]
struct Payloads {
    young: HashMap<PayloadKey, Arc<Vec<u8>>>,
    old: HashMap<PayloadKey, Arc<Vec<u8>>>,
}

impl Payloads {
    fn get(&mut self, key: &PayloadKey) -> Option<Arc<Vec<u8>>> {
        if let Some(v) = self.young.get(key) {
            return Some(v.clone());
        }
        let v = self.old.remove(key)?;
        self.insert(*key, v.clone());
        Some(v)
    }

    fn insert(&mut self, key: PayloadKey, v: Arc<Vec<u8>>) {
        if self.young.len() >= PAYLOAD_CACHE {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(key, v);
    }
}

/// The engine's partners, by id.
pub struct Engine {
    partners: BTreeMap<String, Arc<Partner>>,
    worker: String,
    /// Rendered payloads by (release, version, event, format): twenty partners of one format
    /// share one rendering.
    payloads: Mutex<Payloads>,
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
        let mut formats: Vec<(String, usize)> = Vec::new();
        for p in app.config.partners.iter().filter(|p| p.enabled) {
            let format = (
                p.format.clone(),
                if p.format == "radio-script" {
                    p.words
                } else {
                    0
                },
            );
            let payload_format = match formats.iter().position(|f| *f == format) {
                Some(i) => i,
                None => {
                    formats.push(format);
                    formats.len() - 1
                }
            };
            let client = webhook::client(
                p.allow_private,
                concat!("siar/", env!("CARGO_PKG_VERSION"), " (webhooks)"),
            )
            .map_err(anyhow::Error::msg)?;
            reschedule_if_changed(app, p)?;
            let disabled = app.store.meta_get::<Disabled>(&disabled_key(&p.id))?;
            if let Some(d) = &disabled {
                warn!(partner = %p.id, since = %d.at, reason = %d.reason,
                      "Partner is disabled; its deliveries wait until an operator enables it.");
            }
            partners.insert(
                p.id.clone(),
                Arc::new(Partner {
                    config: p.clone(),
                    url: match webhook::check_literal(&p.url) {
                        Err(e) if !p.allow_private => Err(("refused_address", e)),
                        _ => webhook::target(&p.url).map_err(|e| ("invalid_url", e)),
                    },
                    payload_format,
                    secrets: secrets.get(&p.id).cloned().unwrap_or_default(),
                    client,
                    breaker: Mutex::new(Breaker {
                        failing_since: app.store.meta_get(&failing_key(&p.id))?,
                        ..Breaker::default()
                    }),
                    recent: Mutex::default(),
                    disabled: Mutex::new(disabled),
                    stats: PartnerStats::default(),
                }),
            );
        }
        // The schedules recorded (and any deliveries re-timed) are durable before work starts.
        app.store.flush_blocking()?;
        Ok(Self {
            partners,
            worker: format!("webhooks-{}", std::process::id()),
            payloads: Mutex::default(),
        })
    }

    /// Attempts by partner and outcome, and their latency, since start.
    pub fn attempt_stats(&self) -> Vec<AttemptStats> {
        use std::sync::atomic::Ordering::Relaxed;
        self.partners
            .values()
            .map(|p| {
                let st = &p.stats;
                AttemptStats {
                    partner: p.config.id.clone(),
                    outcomes: std::array::from_fn(|i| (OUTCOMES[i], st.outcomes[i].load(Relaxed))),
                    latency: st.latency.snapshot(),
                }
            })
            .collect()
    }

    /// How every partner stands, for operators.
    pub fn status(&self, app: &App) -> siar_store::Result<Vec<PartnerStatus>> {
        let now = app.clock.now();
        let mut out = Vec::new();
        for p in self.partners.values() {
            let b = p.lock_breaker();
            let breaker = match b.open_until {
                Some(until) if until > now => "open",
                Some(_) => "half_open",
                None => "closed",
            };
            let (failures, failing_since) = (b.consecutive_failures, b.failing_since);
            drop(b);
            out.push(PartnerStatus {
                id: p.config.id.clone(),
                name: p.config.name.clone(),
                format: p.config.format.clone(),
                schedule: p.config.schedule.clone(),
                disabled: p.disabled.lock().unwrap_or_else(|e| e.into_inner()).clone(),
                breaker: breaker.into(),
                consecutive_failures: failures,
                failing_since,
                queued: app.store.partner_queue_depth(&p.config.id)?,
                next_due: app.store.next_due_for_partner(&p.config.id)?,
            });
        }
        Ok(out)
    }

    /// Enables a partner disabled by a 410 or by days of failures.
    pub fn enable(&self, app: &App, id: &str) -> siar_store::Result<bool> {
        let Some(p) = self.partners.get(id) else {
            return Ok(false);
        };
        app.store.meta_remove(&disabled_key(id))?;
        app.store.meta_remove(&failing_key(id))?;
        *p.disabled.lock().unwrap_or_else(|e| e.into_inner()) = None;
        *p.lock_breaker() = Breaker::default();
        info!(partner = %id, "Partner enabled by an operator.");
        Ok(true)
    }
}

/// The most deliveries one partner's worker claims at once. In order, one after another
/// (or `concurrency` at a time); a transient failure hands the rest back.
pub const BATCH: usize = 32;

/// What a crash can repeat per partner: the batch being sent, and the batch before it, settled
/// but still being made durable while this one goes out (see `partner_worker`).
pub const IN_FLIGHT_BOUND: usize = 2 * BATCH;

/// Runs one worker per partner until `stop`; attempts in progress get a few seconds to
/// finish, and whatever is still running comes back through its lease after a restart.
///
/// The workers run on one single-threaded runtime per core (like the HTTP shards, see
/// `http`), each partner on one of them for good: its worker and its connections share a
/// thread, so a delivery wakes no other thread.
pub async fn run(app: Arc<App>, engine: Arc<Engine>, stop: CancellationToken) {
    let partners: Vec<Arc<Partner>> = engine.partners.values().cloned().collect();
    let shards = crate::http::shards(0).min(partners.len());
    let mut finished = Vec::new();
    for i in 0..shards {
        let mine: Vec<Arc<Partner>> = partners.iter().skip(i).step_by(shards).cloned().collect();
        let (app, engine, stop) = (app.clone(), engine.clone(), stop.clone());
        let (done, finished_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("siar-webhooks-{i}"))
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .enable_time()
                    .build()
                {
                    Ok(rt) => rt.block_on(async move {
                        let mut workers = tokio::task::JoinSet::new();
                        for p in mine {
                            workers.spawn(partner_worker(
                                app.clone(),
                                engine.clone(),
                                p,
                                stop.clone(),
                            ));
                        }
                        while workers.join_next().await.is_some() {}
                    }),
                    Err(e) => error!(error = %e, "Cannot start a webhook runtime; its partners get nothing until siar restarts."),
                }
                let _ = done.send(());
            });
        match thread {
            Ok(_) => finished.push(finished_rx),
            Err(e) => {
                error!(error = %e, "Cannot start a webhook thread; its partners get nothing until siar restarts.")
            }
        }
    }
    for f in finished {
        let _ = f.await;
    }
}

/// Sleeps until `until` or a wake-up from publishing, at most `TICK`; false once `stop`.
async fn pause(app: &App, stop: &CancellationToken, wait: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(wait.min(TICK)) => true,
        _ = app.deliveries_changed.notified() => true,
        _ = stop.cancelled() => false,
    }
}

async fn partner_worker(
    app: Arc<App>,
    engine: Arc<Engine>,
    p: Arc<Partner>,
    stop: CancellationToken,
) {
    let id = p.config.id.clone();
    let timeout = Duration::from_secs(p.config.timeout_secs);
    // The previous batch's settlements being made durable while the next batch goes out: a
    // batch is sent only once the one before the previous is on disk.
    let mut syncing: Option<tokio::task::JoinHandle<siar_store::Result<()>>> = None;
    loop {
        if stop.is_cancelled() {
            durable(&id, syncing.take()).await;
            return;
        }
        let now = app.clock.now();
        if p.is_disabled() {
            if !pause(&app, &stop, TICK).await {
                return;
            }
            continue;
        }
        // An open breaker: nothing until the cool-down ends, then a single probe.
        let open_until = p.lock_breaker().open_until;
        let probe = match open_until {
            Some(until) if now < until => {
                let wait = (until - now).to_std().unwrap_or_default();
                if !pause(&app, &stop, wait).await {
                    return;
                }
                continue;
            }
            Some(_) => true,
            None => false,
        };
        let max = if probe { 1 } else { BATCH };
        let lease_for =
            chrono::Duration::from_std(timeout * max as u32).unwrap_or_default() + LEASE_MARGIN;
        let claims = match app
            .store
            .claim_partner(&id, now, lease_for, max, &engine.worker)
        {
            Ok(c) => c,
            Err(e) => {
                error!(partner = %id, error = %e, "Could not claim deliveries; trying again.");
                if !pause(&app, &stop, Duration::from_secs(1)).await {
                    return;
                }
                continue;
            }
        };
        if claims.is_empty() {
            durable(&id, syncing.take()).await;
            // Nothing claimable: the next one is due later, or (due already) still leased.
            let wait = match app.store.next_due_for_partner(&id) {
                Ok(Some(at)) if at > app.clock.now() => {
                    (at - app.clock.now()).to_std().unwrap_or_default()
                }
                _ => TICK,
            };
            if !pause(&app, &stop, wait).await {
                return;
            }
            continue;
        }
        let mut pending = claims.into_iter();
        let mut running = tokio::task::JoinSet::new();
        let mut outcomes = Vec::new();
        let mut rate_pause = None;
        let mut stopped_early = false;
        let mut inline = None;
        loop {
            while running.len() < p.config.concurrency && !stopped_early {
                let Some(claim) = pending.next() else { break };
                // Over the rate: settle what went out, give the rest back, and wait for a
                // slot rather than hold sent deliveries unsettled.
                if let Some(wait) = p.rate_wait(app.clock.now()) {
                    outcomes.push((claim, Settlement::Release, None));
                    rate_pause = Some(wait);
                    stopped_early = true;
                    break;
                }
                if p.config.concurrency <= 1 {
                    // In order, one at a time: no task to spawn.
                    inline = Some(deliver(&app, &engine, &p, claim).await);
                    break;
                }
                let (app, engine, p) = (app.clone(), engine.clone(), p.clone());
                running.spawn(async move { deliver(&app, &engine, &p, claim).await });
            }
            let done = match inline.take() {
                Some(o) => Ok(o),
                None => match running.join_next().await {
                    Some(done) => done,
                    None => break,
                },
            };
            match done {
                Ok(o) => {
                    // A transient failure: the endpoint is struggling; give the rest back.
                    if o.transient || stop.is_cancelled() {
                        stopped_early = true;
                    }
                    outcomes.push((o.claim, o.settlement, o.attempt));
                }
                Err(e) => {
                    error!(partner = %id, error = %e, "A delivery task failed; its lease brings it back.");
                    stopped_early = true;
                }
            }
        }
        outcomes.extend(pending.map(|c| (c, Settlement::Release, None)));
        // One atomic step for the whole batch, then one sync: until then the deliveries are
        // in flight, and a crash sends them again.
        match app.store.settle_many(&outcomes, app.clock.now()) {
            Ok(results) => {
                for (r, (c, _, _)) in results.iter().zip(&outcomes) {
                    if let Err(e) = r {
                        warn!(delivery = %c.delivery.id, error = %e, "Could not settle a delivery (its lease may have ended); it will be attempted again.");
                    }
                }
            }
            Err(e) => {
                error!(partner = %id, error = %e, "Could not settle deliveries; their leases bring them back.")
            }
        }
        durable(&id, syncing.take()).await;
        let store = app.store.clone();
        syncing = Some(tokio::spawn(async move { store.flush().await }));
        if let Some(wait) = rate_pause {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.cancelled() => return,
            }
        }
    }
}

/// Waits until a batch's settlements are on disk.
async fn durable(partner: &str, syncing: Option<tokio::task::JoinHandle<siar_store::Result<()>>>) {
    let Some(flush) = syncing else { return };
    match flush.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            error!(partner = %partner, error = %e, "Could not flush settled deliveries.")
        }
        Err(_) => {
            error!(partner = %partner, "The flush of settled deliveries did not finish.")
        }
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

/// The payload in `p`'s format. A retraction carries its notice (see [`release_for`]), so
/// ninjs says `pubStatus: canceled` and the radio script says not to broadcast.
fn payload(app: &App, p: &Partner, r: &Release) -> serde_json::Value {
    let ctx = crate::web::feeds::feed_context(app);
    match p.config.format.as_str() {
        "radio-script" => {
            serde_json::to_value(siar_fanout::render::radio_script(&ctx, r, p.config.words))
                .unwrap_or_default()
        }
        _ => siar_fanout::render::ninjs(&ctx, r),
    }
}

/// The payload for `d` in `p`'s format, rendered once for all partners that share it.
fn cached_payload(
    app: &App,
    engine: &Engine,
    p: &Partner,
    d: &Delivery,
) -> siar_store::Result<Option<Arc<Vec<u8>>>> {
    let key = (d.release_id, d.version, d.event, p.payload_format);
    if let Some(v) = engine
        .payloads
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
    {
        return Ok(Some(v));
    }
    let Some(release) = release_for(app, d)? else {
        return Ok(None);
    };
    let v = Arc::new(serde_json::to_vec(&payload(app, p, &release)).unwrap_or_default());
    engine
        .payloads
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, v.clone());
    Ok(Some(v))
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

/// One attempt of one claimed delivery: how to settle it, and the attempt's log entry.
struct Outcome {
    claim: Claim,
    settlement: Settlement,
    attempt: Option<Attempt>,
    /// The attempt failed transiently: the endpoint is struggling.
    transient: bool,
}

async fn deliver(app: &App, engine: &Engine, p: &Partner, claim: Claim) -> Outcome {
    let d = &claim.delivery;
    let now = app.clock.now();
    let data = match cached_payload(app, engine, p, d) {
        Ok(Some(v)) => v,
        Ok(None) => {
            // Not visible yet (or gone): try again shortly.
            let at = now + chrono::Duration::seconds(5);
            return Outcome {
                claim,
                settlement: Settlement::RetryAt(at, "release not found".into()),
                attempt: None,
                transient: false,
            };
        }
        Err(e) => {
            error!(delivery = %d.id, error = %e, "Cannot read the release to deliver.");
            return Outcome {
                claim,
                settlement: Settlement::Release,
                attempt: None,
                transient: true,
            };
        }
    };
    let body = webhook::envelope_raw(d.event.webhook_type(), now, &data);
    let headers: Vec<(String, String)> = p
        .config
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let result = match &p.url {
        Err((class, e)) => webhook::AttemptResult {
            verdict: Verdict::Fail,
            status: None,
            duration: Duration::ZERO,
            response: String::new(),
            error_class: (*class).into(),
            error: e.clone(),
        },
        Ok(url) => {
            webhook::attempt(
                &p.client,
                url,
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
    p.stats.record(outcome, result.duration);
    let settlement = match (outcome, next_at) {
        ("delivered", _) => Settlement::Delivered,
        ("retry", Some(at)) => Settlement::RetryAt(at, result.error.clone()),
        _ => Settlement::Failed(result.error.clone()),
    };
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
    let transient = matches!(result.verdict, Verdict::Retry { .. });
    Outcome {
        claim,
        settlement,
        attempt: Some(attempt),
        transient,
    }
}

fn breaker_after(app: &App, p: &Partner, ok: bool, now: DateTime<Utc>) {
    let mut b = p.lock_breaker();
    b.probing = false;
    if ok {
        if b.open_until.is_some() {
            info!(partner = %p.config.id, "Partner answers again; breaker closed.");
        }
        let was_failing = b.failing_since.is_some();
        *b = Breaker::default();
        drop(b);
        if was_failing {
            if let Err(e) = app.store.meta_remove(&failing_key(&p.config.id)) {
                warn!(partner = %p.config.id, error = %e, "Could not clear a partner's failure record.");
            }
        }
        return;
    }
    b.consecutive_failures += 1;
    let since = match b.failing_since {
        Some(t) => t,
        None => {
            b.failing_since = Some(now);
            if let Err(e) = app.store.meta_put(&failing_key(&p.config.id), &now) {
                warn!(partner = %p.config.id, error = %e, "Could not record when a partner began failing.");
            }
            now
        }
    };
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
    if let Some(mailer) = app.mail.get() {
        let name = if p.config.name.is_empty() {
            &p.config.id
        } else {
            &p.config.name
        };
        mailer.notify_ops(
            app,
            &format!("partner {} disabled", p.config.id),
            &format!(
                "siar disabled the partner {name} ({id}, {url}) at {now}.\n\nReason: {reason}\n\nIts deliveries are kept and wait. When the partner is fixed, enable it:\n\n    siar deliveries enable {id}\n\nor POST /api/v1/partners/{id}/enable.\n",
                id = p.config.id,
                url = p.config.url,
                now = now.to_rfc3339(),
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_cache_keeps_what_was_used_recently() {
        let id = siar_model::ReleaseId::new();
        let key = |n: usize| (id, n as u32, Event::Published, 0);
        let v = Arc::new(b"{}".to_vec());
        let mut c = Payloads::default();
        for n in 0..PAYLOAD_CACHE {
            c.insert(key(n), v.clone());
        }
        // The first generation fills and ages; what is asked for again moves along.
        for n in PAYLOAD_CACHE..2 * PAYLOAD_CACHE {
            c.insert(key(n), v.clone());
        }
        assert!(c.get(&key(5)).is_some());
        for n in 2 * PAYLOAD_CACHE..3 * PAYLOAD_CACHE {
            c.insert(key(n), v.clone());
        }
        assert!(c.get(&key(5)).is_some(), "used recently: kept");
        assert!(
            c.get(&key(6)).is_none(),
            "not used for two generations: dropped"
        );
        assert!(c.get(&key(3 * PAYLOAD_CACHE - 1)).is_some());
        assert!(c.young.len() + c.old.len() <= 2 * PAYLOAD_CACHE);
    }

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
