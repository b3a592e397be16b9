//! The mail engine: turns list deliveries into one mail per recipient and sends them through
//! the relay, so that a crash or a throttling relay never skips nor doubles a recipient.
//!
//! A list delivery (from the outbox) becomes a **job** (see `siar_store::mail`): an instant
//! list's job mails one release; a digest list's job, at its schedule's firing, mails every
//! release whose delivery came due since the last one (none: no mail). Recipients are
//! materialised in committed chunks, sent with up to twice `smtp.max_connections` in flight,
//! and settled in batches of [`SETTLE_BATCH`], each flushed while the next fills (never two
//! flushing at once) — so after a crash, only the mails in flight can go out again: at most
//! that concurrency plus two batches. A list runs one job at a time, oldest first (its
//! subscribers get releases in order), so that bound holds per list.
//!
//! Per recipient: sent; a 4xx or an unreachable relay → tried again on
//! `smtp.retry_schedule_secs`; 5xx to RCPT → bounced, the address suppressed on every list;
//! another 5xx → failed (the list delivery is then marked failed, and an operator's retry
//! re-sends only those). A correction goes to who got an earlier version, a retraction to
//! who got any; a job still sending when a correction lands renders the release as it now
//! stands, and one still sending when it is withdrawn stops.

pub mod tokens;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use siar_fanout::render::{
    confirmation_email, DigestEntry, ListMail, MailKind, MailList, Recipient,
};
use siar_fanout::smtp::{DkimConfig, Mailbox, Relay, RelayConfig, SendOutcome};
use siar_model::{Attempt, DeliveryId, Event, Queue, Release, Status, Subscriber, Target};
use siar_store::{Claim, JobItem, JobSource, MailJob, MailRow, RowCounts, RowState, Settlement};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::app::App;
use crate::config::ListConfig;
use tokens::TokenKey;

/// Recipients made per atomic step.
const CHUNK: usize = 512;
/// Sent mails settled (and flushed) together.
pub const SETTLE_BATCH: usize = 128;
/// How often due list deliveries are looked for when nothing wakes the engine.
const TICK: Duration = Duration::from_millis(500);

/// A configured list, ready to mail.
pub struct ListInfo {
    pub config: ListConfig,
    pub mail: MailList,
    pub digest: bool,
}

/// One list's mails by outcome, for `/metrics`.
#[derive(Default)]
pub struct ListCounters {
    pub sent: AtomicU64,
    pub retried: AtomicU64,
    pub bounced: AtomicU64,
    pub failed: AtomicU64,
    pub skipped: AtomicU64,
}

impl ListCounters {
    pub fn by_outcome(&self) -> [(&'static str, u64); 5] {
        [
            ("sent", self.sent.load(Ordering::Relaxed)),
            ("retried", self.retried.load(Ordering::Relaxed)),
            ("bounced", self.bounced.load(Ordering::Relaxed)),
            ("failed", self.failed.load(Ordering::Relaxed)),
            ("skipped", self.skipped.load(Ordering::Relaxed)),
        ]
    }
}

/// Counters for the operator (and `/metrics`).
#[derive(Default)]
pub struct MailStats {
    /// Per configured list.
    pub lists: BTreeMap<String, ListCounters>,
    /// For a list no longer configured (a job left from before a reload).
    pub other: ListCounters,
    pub confirmations: AtomicU64,
}

impl MailStats {
    pub fn list(&self, id: &str) -> &ListCounters {
        self.lists.get(id).unwrap_or(&self.other)
    }
}

pub struct Mailer {
    pub relay: Relay,
    dkim: Option<DkimConfig>,
    pub key: TokenKey,
    pub lists: BTreeMap<String, ListInfo>,
    return_path: String,
    unsubscribe_mailto: Option<String>,
    retry: Vec<u64>,
    worker: String,
    /// List deliveries held by running jobs: never claimed twice.
    active: Mutex<HashSet<DeliveryId>>,
    /// Lists with a job running: one mailing per list at a time, in the order the releases
    /// came, so subscribers get them in order and a crash repeats at most one job's in-flight
    /// mails per list.
    busy_lists: Mutex<HashSet<String>>,
    pub stats: MailStats,
    /// Subscribe requests per address and per client IP.
    pub limits: crate::web::subscribe::Limiter,
}

impl Mailer {
    pub fn new(app: &App) -> anyhow::Result<Self> {
        let c = &app.config;
        let mut relay = RelayConfig::from_url(&c.smtp.url).map_err(anyhow::Error::msg)?;
        relay.max_connections = c.smtp.max_connections;
        relay.rate_per_second = c.smtp.rate_per_second;
        relay.timeout = Duration::from_secs(c.smtp.timeout_secs);
        relay.rotate_after = c.smtp.rotate_after;
        let from: Mailbox = c
            .smtp
            .from
            .parse()
            .map_err(|e| anyhow::anyhow!("smtp.from: {e}"))?;
        let public_host = url::Url::parse(&c.server.public_url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned));
        relay.hello = public_host
            .clone()
            .unwrap_or_else(|| from.email.domain().to_owned());
        let mut lists = BTreeMap::new();
        for l in &c.lists {
            let parse = |v: &str, key: &str| -> anyhow::Result<Option<Mailbox>> {
                if v.is_empty() {
                    Ok(None)
                } else {
                    v.parse()
                        .map(Some)
                        .map_err(|e| anyhow::anyhow!("lists.{key} of {}: {e}", l.id))
                }
            };
            let list_from = parse(&l.from, "from")?.unwrap_or_else(|| from.clone());
            let domain = list_from.email.domain().to_owned();
            lists.insert(
                l.id.clone(),
                ListInfo {
                    mail: MailList {
                        id: l.id.clone(),
                        name: l.name.clone(),
                        from: list_from,
                        reply_to: parse(&l.reply_to, "reply_to")?,
                        domain,
                    },
                    digest: l.mode != "instant",
                    config: l.clone(),
                },
            );
        }
        let return_path = if c.smtp.return_path.is_empty() {
            from.email.to_string()
        } else {
            c.smtp.return_path.clone()
        };
        Ok(Self {
            relay: Relay::new(relay),
            dkim: c.dkim().map_err(anyhow::Error::msg)?,
            key: TokenKey::load_or_create(&app.store)?,
            lists,
            return_path,
            unsubscribe_mailto: Some(c.smtp.unsubscribe_mailto.clone()).filter(|m| !m.is_empty()),
            retry: c.smtp.retry_schedule_secs.clone(),
            worker: format!("mail-{}", std::process::id()),
            active: Mutex::new(HashSet::new()),
            busy_lists: Mutex::new(HashSet::new()),
            stats: MailStats {
                lists: c
                    .lists
                    .iter()
                    .map(|l| (l.id.clone(), ListCounters::default()))
                    .collect(),
                ..MailStats::default()
            },
            limits: Default::default(),
        })
    }

    pub fn unsubscribe_url(&self, app: &App, list: &str, address: &str) -> String {
        format!(
            "{}/unsubscribe/{}",
            app.config.server.public_url.trim_end_matches('/'),
            self.key.unsubscribe(list, address)
        )
    }

    /// The envelope sender for a mail to `address`: with VERP, it names the recipient
    /// (`bounces+user=example.com@…`) so a bounce says whose mailbox failed.
    pub fn return_path(&self, address: &str) -> String {
        self.return_path
            .replace("{verp}", &address.replace('@', "="))
    }

    /// The recipient a VERP return path names, if it is one of ours.
    pub fn verp_recipient(&self, return_path: &str) -> Option<String> {
        let (before, after) = self.return_path.split_once("{verp}")?;
        let rp = return_path.trim().trim_matches(['<', '>']).to_lowercase();
        let middle = rp
            .strip_prefix(&before.to_lowercase())?
            .strip_suffix(&after.to_lowercase())?;
        let (local, domain) = middle.rsplit_once('=')?;
        siar_model::normalize_address(&format!("{local}@{domain}")).ok()
    }

    /// Signs (when DKIM is set) and sends one message.
    pub async fn send(&self, to: &str, message: lettre_message::Message) -> SendOutcome {
        let bytes = match &self.dkim {
            Some(dkim) => {
                let mut m = message;
                m.sign(dkim);
                m.formatted()
            }
            None => message.formatted(),
        };
        self.relay.send(&self.return_path(to), to, &bytes).await
    }

    fn lock_active(&self) -> std::sync::MutexGuard<'_, HashSet<DeliveryId>> {
        self.active.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_busy_lists(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.busy_lists.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The wait before retry `n` (1-based), ±20 %; `None` when the schedule is spent.
    fn retry_delay(&self, n: u32) -> Option<chrono::Duration> {
        let secs = *self.retry.get(n.checked_sub(1)? as usize)?;
        let jitter = 0.8 + rand::random::<f64>() * 0.4;
        Some(chrono::Duration::milliseconds(
            (secs as f64 * 1000.0 * jitter) as i64,
        ))
    }

    /// Sends the confirmation mail for a pending subscriber, in the background, trying a few
    /// times if the relay is unavailable.
    pub fn send_confirmation(self: &Arc<Self>, app: &Arc<App>, s: &Subscriber) {
        let Some(info) = self.lists.get(&s.list) else {
            return;
        };
        let hours = app.config.smtp.confirm_hours;
        let expires =
            s.pending_since.max(app.clock.now()) + chrono::Duration::hours(i64::from(hours));
        let requested = app.clock.now();
        let token = self.key.confirm(&s.list, &s.address, requested, expires);
        let url = format!(
            "{}/confirm/{token}",
            app.config.server.public_url.trim_end_matches('/')
        );
        let ctx = crate::web::feeds::feed_context(app);
        let message = match confirmation_email(
            &ctx,
            &info.mail,
            &s.address,
            &url,
            hours,
            std::time::SystemTime::now(),
        ) {
            Ok(m) => m,
            Err(e) => {
                warn!(error = %e, "Could not build a confirmation mail.");
                return;
            }
        };
        let mailer = self.clone();
        let to = s.address.clone();
        tokio::spawn(async move {
            for wait in [0u64, 10, 60, 300, 900] {
                tokio::time::sleep(Duration::from_secs(wait)).await;
                match mailer.send(&to, message.clone()).await {
                    SendOutcome::Sent => {
                        mailer.stats.confirmations.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    SendOutcome::Retry { message, .. } => {
                        warn!(error = %message, "A confirmation mail was not accepted yet; trying again.");
                    }
                    other => {
                        warn!(outcome = ?other, "A confirmation mail was refused.");
                        return;
                    }
                }
            }
            error!("A confirmation mail could not be sent; the subscriber can ask again.");
        });
    }

    /// Mails the operator (`ops.email`), if set: in the background, a few tries.
    pub fn notify_ops(self: &Arc<Self>, app: &App, subject: &str, text: &str) {
        let to = app.config.ops.email.trim().to_owned();
        if to.is_empty() {
            return;
        }
        let from: Mailbox = match app.config.smtp.from.parse() {
            Ok(f) => f,
            Err(_) => return,
        };
        let message = lettre_message::Message::builder()
            .from(from)
            .to(match to.parse() {
                Ok(t) => t,
                Err(e) => {
                    warn!(error = %e, "ops.email is not an address.");
                    return;
                }
            })
            .subject(format!("[siar] {subject}"))
            .header(lettre_message::header::ContentType::TEXT_PLAIN)
            .body(text.to_owned());
        let message = match message {
            Ok(m) => m,
            Err(e) => {
                warn!(error = %e, "Could not build an operator notice.");
                return;
            }
        };
        let mailer = self.clone();
        tokio::spawn(async move {
            for wait in [0u64, 30, 300, 1800] {
                tokio::time::sleep(Duration::from_secs(wait)).await;
                if mailer.send(&to, message.clone()).await == SendOutcome::Sent {
                    return;
                }
            }
            error!("An operator notice could not be mailed.");
        });
    }
}

/// lettre's message types, through siar-fanout (the crate that owns mail).
mod lettre_message {
    pub use siar_fanout::smtp::message::*;
}

/// Runs the engine until `stop`: claims due list deliveries, starts or resumes their jobs,
/// and purges unconfirmed subscriptions now and then.
pub async fn run(app: Arc<App>, mailer: Arc<Mailer>, stop: CancellationToken) {
    let mut jobs = JoinSet::new();
    let mut last_purge: Option<std::time::Instant> = None;
    loop {
        if stop.is_cancelled() {
            break;
        }
        if last_purge.is_none_or(|t| t.elapsed() > Duration::from_secs(3600)) {
            last_purge = Some(std::time::Instant::now());
            let days = i64::from(app.config.smtp.purge_unconfirmed_days);
            match app
                .store
                .purge_unconfirmed(app.clock.now() - chrono::Duration::days(days))
            {
                Ok(0) => {}
                Ok(n) => info!(
                    subscribers = n,
                    days, "Deleted subscriptions never confirmed."
                ),
                Err(e) => error!(error = %e, "Could not purge unconfirmed subscriptions."),
            }
        }
        if let Err(e) = start_due(&app, &mailer, &mut jobs, &stop) {
            error!(error = %e, "Could not claim list deliveries; trying again shortly.");
        }
        while jobs.try_join_next().is_some() {}
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = app.deliveries_changed.notified() => {}
            // A job done frees its list for the next one.
            Some(_) = jobs.join_next(), if !jobs.is_empty() => {}
            _ = stop.cancelled() => {}
        }
    }
    while jobs.join_next().await.is_some() {}
    mailer.relay.close().await;
}

fn start_due(
    app: &Arc<App>,
    mailer: &Arc<Mailer>,
    jobs: &mut JoinSet<()>,
    stop: &CancellationToken,
) -> siar_store::Result<()> {
    let now = app.clock.now();
    let active = mailer.lock_active().clone();
    let busy = mailer.lock_busy_lists().clone();
    let mut taken: HashSet<String> = HashSet::new();
    let claims = app.store.claim(
        Queue::List,
        now,
        chrono::Duration::minutes(10),
        512,
        &mailer.worker,
        &mut |d| {
            if active.contains(&d.id) {
                return false;
            }
            let Target::List(list) = &d.target else {
                return true;
            };
            if busy.contains(list) {
                return false;
            }
            // A digest takes everything that came due; an instant list its oldest delivery
            // (the claim goes in due order), the next one when that job is done.
            mailer.lists.get(list).is_some_and(|l| l.digest) || taken.insert(list.clone())
        },
    )?;
    if claims.is_empty() {
        return Ok(());
    }
    let mut settle = Vec::new();
    let mut resume: BTreeMap<DeliveryId, (MailJob, Vec<Claim>)> = BTreeMap::new();
    let mut digests: BTreeMap<String, Vec<Claim>> = BTreeMap::new();
    let mut start: Vec<(MailJob, Vec<Claim>)> = Vec::new();
    for c in claims {
        let Target::List(list) = c.delivery.target.clone() else {
            settle.push((c, Settlement::Failed("not a list delivery".into()), None));
            continue;
        };
        let Some(info) = mailer.lists.get(&list) else {
            let why = format!("list `{list}` is no longer configured");
            settle.push((c, Settlement::Failed(why), None));
            continue;
        };
        if let Some(mut job) = app.store.job_of(c.delivery.id)? {
            if job.done {
                // An operator's replay: re-send what failed, nothing else.
                let failed = app
                    .store
                    .rows(job.id, 0, usize::MAX, Some(RowState::Failed))?;
                let reset: Vec<(u32, MailRow)> = failed
                    .into_iter()
                    .map(|(seq, mut r)| {
                        r.state = RowState::Pending;
                        r.attempts = 0;
                        r.due_ms = 0;
                        (seq, r)
                    })
                    .collect();
                app.store.put_rows(job.id, &reset)?;
                job.done = false;
                app.store.put_job(&job)?;
            }
            resume
                .entry(job.id)
                .or_insert_with(|| (job, Vec::new()))
                .1
                .push(c);
            continue;
        }
        if info.digest {
            digests.entry(list).or_default().push(c);
            continue;
        }
        let d = &c.delivery;
        let item = JobItem {
            delivery_id: d.id,
            release_id: d.release_id,
            version: d.version,
            event: d.event,
        };
        let source = if d.event == Event::Published {
            JobSource::Subscribers
        } else {
            let earlier = app.store.jobs_for_release(d.release_id, &list)?;
            if earlier.iter().any(|j| !j.done) {
                let at = now + chrono::Duration::seconds(2);
                let why = "waiting for the earlier mailing of this release to finish".to_owned();
                settle.push((c, Settlement::RetryAt(at, why), None));
                continue;
            }
            let Some(first) = earlier.iter().rev().find(|j| {
                j.items
                    .iter()
                    .any(|i| i.release_id == d.release_id && i.event == Event::Published)
            }) else {
                let a = summary_attempt(
                    &c,
                    now,
                    &RowCounts::default(),
                    "nobody on the list received an earlier version",
                );
                settle.push((c, Settlement::Delivered, Some(a)));
                continue;
            };
            JobSource::Received { job: first.id }
        };
        let job = MailJob {
            id: d.id,
            list: list.clone(),
            items: vec![item],
            digest: false,
            source,
            cursor: None,
            rows: 0,
            materialised: false,
            done: false,
            created_at: now,
        };
        app.store.create_job(&job)?;
        start.push((job, vec![c]));
    }
    for (list, claims) in digests {
        let mut items: Vec<JobItem> = claims
            .iter()
            .map(|c| JobItem {
                delivery_id: c.delivery.id,
                release_id: c.delivery.release_id,
                version: c.delivery.version,
                event: c.delivery.event,
            })
            .collect();
        items.sort_by_key(|i| i.delivery_id);
        let job = MailJob {
            id: items[0].delivery_id,
            list,
            items,
            digest: true,
            source: JobSource::Subscribers,
            cursor: None,
            rows: 0,
            materialised: false,
            done: false,
            created_at: now,
        };
        app.store.create_job(&job)?;
        start.push((job, claims));
    }
    start.extend(resume.into_values());
    if !settle.is_empty() {
        app.store.settle_many(&settle, now)?;
    }
    for (job, claims) in start {
        let ids: Vec<DeliveryId> = claims.iter().map(|c| c.delivery.id).collect();
        mailer.lock_active().extend(ids.iter().copied());
        mailer.lock_busy_lists().insert(job.list.clone());
        let (app, mailer, stop) = (app.clone(), mailer.clone(), stop.clone());
        jobs.spawn(async move {
            let _release = ActiveGuard {
                mailer: mailer.clone(),
                ids,
                list: job.list.clone(),
            };
            run_job(&app, &mailer, job, claims, &stop).await;
        });
    }
    Ok(())
}

struct ActiveGuard {
    mailer: Arc<Mailer>,
    ids: Vec<DeliveryId>,
    list: String,
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        let mut active = self.mailer.lock_active();
        for id in &self.ids {
            active.remove(id);
        }
        drop(active);
        self.mailer.lock_busy_lists().remove(&self.list);
    }
}

fn summary_attempt(c: &Claim, now: DateTime<Utc>, counts: &RowCounts, note: &str) -> Attempt {
    let mut response = format!(
        "sent {}, bounced {}, failed {}, skipped {}, pending {}",
        counts.sent, counts.bounced, counts.failed, counts.skipped, counts.pending
    );
    if !note.is_empty() {
        response = format!("{note}; {response}");
    }
    Attempt {
        number: c.delivery.attempts,
        at: now,
        status: None,
        duration_ms: u64::try_from((now - c.delivery.updated_at).num_milliseconds()).unwrap_or(0),
        outcome: if counts.failed > 0 {
            "failed"
        } else {
            "delivered"
        }
        .into(),
        error_class: if counts.failed > 0 {
            "recipients_failed".into()
        } else {
            String::new()
        },
        error: String::new(),
        response,
        next_at: None,
    }
}

/// What a job mails, rendered once, and the release version it carries (0 for a digest).
struct Content {
    mail: ListMail,
    version: u32,
}

/// The job's content as things stand; `None` when there is nothing (more) to mail: a digest
/// whose releases were all withdrawn, or a release withdrawn while its mailing ran.
fn render(app: &App, info: &ListInfo, job: &MailJob) -> siar_store::Result<Option<Content>> {
    let ctx = crate::web::feeds::feed_context(app);
    let kind = |e: Event| match e {
        Event::Published => MailKind::New,
        Event::Corrected => MailKind::Correction,
        Event::Retracted => MailKind::Retraction,
    };
    if !job.digest {
        let Some(item) = job.items.first() else {
            return Ok(None);
        };
        let Some(r) = app.store.release(item.release_id)? else {
            return Ok(None);
        };
        if r.status == Status::Retracted && item.event != Event::Retracted {
            return Ok(None);
        }
        return Ok(Some(Content {
            mail: ListMail::release(&ctx, &info.mail, &r, kind(item.event)),
            version: r.version,
        }));
    }
    let mut releases: Vec<(Release, MailKind)> = Vec::new();
    for item in &job.items {
        let Some(r) = app.store.release(item.release_id)? else {
            continue;
        };
        if r.status == Status::Retracted && item.event != Event::Retracted {
            continue;
        }
        if let Some(existing) = releases.iter_mut().find(|(x, _)| x.id == r.id) {
            existing.1 = stronger(existing.1, kind(item.event));
            continue;
        }
        releases.push((r, kind(item.event)));
    }
    releases.sort_by_key(|(r, _)| (r.published_at.unwrap_or(r.publish_at), r.id));
    let entries: Vec<DigestEntry<'_>> = releases
        .iter()
        .map(|(release, kind)| DigestEntry {
            release,
            kind: *kind,
        })
        .collect();
    Ok(ListMail::digest(
        &ctx,
        &info.mail,
        &entries,
        &job.id.to_string(),
        app.clock.now(),
    )
    .map(|mail| Content { mail, version: 0 }))
}

/// Of two entries for one release in a digest: a retraction outranks a correction, which
/// outranks the first mail.
fn stronger(a: MailKind, b: MailKind) -> MailKind {
    let rank = |k: MailKind| match k {
        MailKind::New => 0,
        MailKind::Correction => 1,
        MailKind::Retraction => 2,
    };
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

enum JobEnd {
    Finished,
    Stopped,
}

async fn run_job(
    app: &Arc<App>,
    mailer: &Arc<Mailer>,
    mut job: MailJob,
    claims: Vec<Claim>,
    stop: &CancellationToken,
) {
    let started = std::time::Instant::now();
    match drive(app, mailer, &mut job, stop).await {
        Ok(JobEnd::Stopped) => {
            // The claims stay in flight; the next start resumes the job.
        }
        Ok(JobEnd::Finished) => {
            let now = app.clock.now();
            let counts = match app.store.row_counts(job.id) {
                Ok(c) => c,
                Err(e) => {
                    error!(job = %job.id, error = %e, "Could not count a finished job's rows.");
                    return;
                }
            };
            job.done = true;
            if let Err(e) = app.store.put_job(&job) {
                error!(job = %job.id, error = %e, "Could not record a finished job.");
                return;
            }
            let settle: Vec<_> = claims
                .into_iter()
                .map(|c| {
                    let a = summary_attempt(&c, now, &counts, "");
                    let how = if counts.failed > 0 {
                        Settlement::Failed(format!(
                            "{} of {} recipients failed (retry to re-send to them only)",
                            counts.failed, job.rows
                        ))
                    } else {
                        Settlement::Delivered
                    };
                    (c, how, Some(a))
                })
                .collect();
            if let Err(e) = app.store.settle_many(&settle, now) {
                error!(job = %job.id, error = %e, "Could not settle a finished job's list deliveries.");
            }
            if let Err(e) = app.store.flush().await {
                error!(error = %e, "Could not flush after a mailing.");
            }
            info!(
                list = %job.list,
                job = %job.id,
                digest = job.digest,
                sent = counts.sent,
                bounced = counts.bounced,
                failed = counts.failed,
                skipped = counts.skipped,
                seconds = started.elapsed().as_secs_f64(),
                "Mailing finished."
            );
        }
        Err(e) => {
            error!(list = %job.list, job = %job.id, error = %e, "A mailing stopped on a store error; it resumes shortly.");
            let now = app.clock.now();
            let at = now + chrono::Duration::seconds(30);
            let settle: Vec<_> = claims
                .into_iter()
                .map(|c| (c, Settlement::RetryAt(at, e.to_string()), None))
                .collect();
            let _ = app.store.settle_many(&settle, now);
        }
    }
}

/// Sends the job's rows: those pending from an earlier run, then new chunks, then retries
/// until none is left waiting.
async fn drive(
    app: &Arc<App>,
    mailer: &Arc<Mailer>,
    job: &mut MailJob,
    stop: &CancellationToken,
) -> siar_store::Result<JobEnd> {
    let Some(info) = mailer.lists.get(&job.list) else {
        return Ok(JobEnd::Finished);
    };
    let halted = Arc::new(AtomicBool::new(false));
    let Some(content) = render(app, info, job)? else {
        // Nothing to mail: the rows that exist are moot.
        skip_pending(app, job)?;
        return Ok(JobEnd::Finished);
    };
    let mut content = Arc::new(content);
    let mut sender = Sender {
        app: app.clone(),
        mailer: mailer.clone(),
        list: job.list.clone(),
        job: job.id,
        halted: halted.clone(),
        flushing: None,
    };
    // Rows left pending by an earlier run (a crash, a shutdown, an operator's retry).
    let mut waiting = sender.resend_due(&content, stop).await?;
    if stop.is_cancelled() {
        return Ok(JobEnd::Stopped);
    }
    // New recipients, chunk by chunk.
    while !job.materialised {
        if stop.is_cancelled() {
            return Ok(JobEnd::Stopped);
        }
        // The release may have changed since the last chunk.
        match render(app, info, job)? {
            Some(c) => {
                if c.version != content.version {
                    content = Arc::new(c);
                }
            }
            None => {
                halted.store(true, Ordering::Relaxed);
                break;
            }
        }
        let rows = app.store.materialise(job.id, CHUNK)?;
        if let Some(j) = app.store.job(job.id)? {
            *job = j;
        }
        waiting += sender.send_rows(rows, &content, stop).await?;
    }
    if halted.load(Ordering::Relaxed) {
        skip_pending(app, job)?;
        return Ok(JobEnd::Finished);
    }
    // Retries, until every row is settled.
    while waiting > 0 {
        let next = next_due(app, job.id)?;
        let Some(next) = next else { break };
        let wait = (next - app.clock.now()).to_std().unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => return Ok(JobEnd::Stopped),
        }
        if let Some(c) = render(app, info, job)? {
            content = Arc::new(c);
        } else {
            skip_pending(app, job)?;
            return Ok(JobEnd::Finished);
        }
        waiting = sender.resend_due(&content, stop).await?;
        if stop.is_cancelled() {
            return Ok(JobEnd::Stopped);
        }
    }
    sender.wait_flushed().await?;
    Ok(JobEnd::Finished)
}

fn next_due(app: &App, job: DeliveryId) -> siar_store::Result<Option<DateTime<Utc>>> {
    let rows = app
        .store
        .rows(job, 0, usize::MAX, Some(RowState::Pending))?;
    Ok(rows
        .iter()
        .map(|(_, r)| r.due_ms)
        .min()
        .and_then(DateTime::from_timestamp_millis))
}

fn skip_pending(app: &App, job: &MailJob) -> siar_store::Result<()> {
    let rows = app
        .store
        .rows(job.id, 0, usize::MAX, Some(RowState::Pending))?;
    let skipped: Vec<(u32, MailRow)> = rows
        .into_iter()
        .map(|(seq, mut r)| {
            r.state = RowState::Skipped;
            r.error = Some("the release was withdrawn before this mail went out".into());
            (seq, r)
        })
        .collect();
    app.store.put_rows(job.id, &skipped)
}

struct Sender {
    app: Arc<App>,
    mailer: Arc<Mailer>,
    list: String,
    job: DeliveryId,
    halted: Arc<AtomicBool>,
    flushing: Option<tokio::task::JoinHandle<siar_store::Result<()>>>,
}

impl Sender {
    /// Sends the pending rows that are due; returns how many are left waiting for later.
    async fn resend_due(
        &mut self,
        content: &Arc<Content>,
        stop: &CancellationToken,
    ) -> siar_store::Result<usize> {
        let now_ms = self.app.clock.now().timestamp_millis();
        let mut from = 0;
        let mut waiting = 0;
        loop {
            let page = self
                .app
                .store
                .rows(self.job, from, CHUNK * 8, Some(RowState::Pending))?;
            let Some((last, _)) = page.last() else {
                return Ok(waiting);
            };
            from = last + 1;
            let (due, later): (Vec<_>, Vec<_>) =
                page.into_iter().partition(|(_, r)| r.due_ms <= now_ms);
            waiting += later.len();
            for chunk in due.chunks(CHUNK) {
                waiting += self.send_rows(chunk.to_vec(), content, stop).await?;
                if stop.is_cancelled() {
                    return Ok(waiting);
                }
            }
        }
    }

    /// Sends rows with up to twice the relay's sessions in flight, settling them in batches
    /// (each flushed). Returns how many were rescheduled.
    async fn send_rows(
        &mut self,
        rows: Vec<(u32, MailRow)>,
        content: &Arc<Content>,
        stop: &CancellationToken,
    ) -> siar_store::Result<usize> {
        let concurrency = self.mailer.relay.config().max_connections * 2;
        let mut running = JoinSet::new();
        let mut done: Vec<(u32, MailRow)> = Vec::new();
        let mut rescheduled = 0;
        let mut rows = rows.into_iter();
        loop {
            while running.len() < concurrency && !stop.is_cancelled() {
                let Some((seq, row)) = rows.next() else { break };
                let (app, mailer, content, list, halted) = (
                    self.app.clone(),
                    self.mailer.clone(),
                    content.clone(),
                    self.list.clone(),
                    self.halted.clone(),
                );
                running.spawn(async move {
                    let row = send_one(&app, &mailer, &content, &list, &halted, row).await;
                    (seq, row)
                });
            }
            let Some(res) = running.join_next().await else {
                break;
            };
            match res {
                Ok((seq, row)) => {
                    if row.state == RowState::Pending {
                        rescheduled += 1;
                    }
                    done.push((seq, row));
                }
                Err(e) => {
                    error!(error = %e, "A send task failed; its recipient is tried again on resume.")
                }
            }
            if done.len() >= SETTLE_BATCH {
                self.settle(&mut done).await?;
            }
        }
        self.settle(&mut done).await?;
        Ok(rescheduled)
    }

    /// Writes a batch of settled rows and starts flushing it; sending goes on meanwhile. At
    /// most one batch is being flushed at a time: the next waits for it.
    async fn settle(&mut self, done: &mut Vec<(u32, MailRow)>) -> siar_store::Result<()> {
        if done.is_empty() {
            return Ok(());
        }
        self.app.store.put_rows(self.job, done)?;
        done.clear();
        self.wait_flushed().await?;
        let store = self.app.store.clone();
        self.flushing = Some(tokio::spawn(async move { store.flush().await }));
        Ok(())
    }

    /// Waits for the batch being flushed, if any.
    async fn wait_flushed(&mut self) -> siar_store::Result<()> {
        if let Some(f) = self.flushing.take() {
            match f.await {
                Ok(r) => r?,
                Err(e) => {
                    return Err(siar_store::StoreError::Storage {
                        op: "flushing mail results",
                        message: e.to_string(),
                    })
                }
            }
        }
        Ok(())
    }
}

async fn send_one(
    app: &App,
    mailer: &Mailer,
    content: &Content,
    list: &str,
    halted: &AtomicBool,
    mut row: MailRow,
) -> MailRow {
    let now = app.clock.now();
    let stats = mailer.stats.list(list);
    let skip = |mut row: MailRow, why: &str| {
        stats.skipped.fetch_add(1, Ordering::Relaxed);
        row.state = RowState::Skipped;
        row.error = Some(why.to_owned());
        row
    };
    if halted.load(Ordering::Relaxed) {
        return skip(row, "the release was withdrawn before this mail went out");
    }
    match app.store.is_receiving(list, &row.address) {
        Ok(true) => {}
        Ok(false) => return skip(row, "unsubscribed or suppressed before this mail went out"),
        Err(e) => {
            row.due_ms = (now + chrono::Duration::seconds(30)).timestamp_millis();
            row.error = Some(e.to_string());
            return row;
        }
    }
    let url = mailer.unsubscribe_url(app, list, &row.address);
    let to = Recipient {
        address: &row.address,
        unsubscribe_url: &url,
        unsubscribe_mailto: mailer.unsubscribe_mailto.as_deref(),
    };
    let message = match content.mail.message(&to, std::time::SystemTime::now()) {
        Ok(m) => m,
        Err(e) => {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            row.state = RowState::Failed;
            row.error = Some(e);
            return row;
        }
    };
    row.attempts += 1;
    match mailer.send(&row.address.clone(), message).await {
        SendOutcome::Sent => {
            stats.sent.fetch_add(1, Ordering::Relaxed);
            row.state = RowState::Sent;
            row.version = content.version;
            row.error = None;
        }
        SendOutcome::Retry {
            class,
            code,
            message,
        } => {
            let error = match code {
                Some(c) => format!("{class} {c}: {message}"),
                None => format!("{class}: {message}"),
            };
            match mailer.retry_delay(row.attempts) {
                Some(wait) => {
                    stats.retried.fetch_add(1, Ordering::Relaxed);
                    row.due_ms = (now + wait).timestamp_millis();
                }
                None => {
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                    row.state = RowState::Failed;
                }
            }
            row.error = Some(error);
        }
        SendOutcome::Bounced { code, message } => {
            stats.bounced.fetch_add(1, Ordering::Relaxed);
            let reason = format!("smtp {code}: {message}");
            if let Err(e) = app.store.suppress(&row.address, &reason, now) {
                error!(error = %e, "Could not suppress a bounced address.");
            }
            warn!(
                list,
                code, "A recipient's mailbox was refused; the address is suppressed."
            );
            row.state = RowState::Bounced;
            row.error = Some(reason);
        }
        SendOutcome::Failed { code, message } => {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            row.state = RowState::Failed;
            row.error = Some(match code {
                Some(c) => format!("smtp {c}: {message}"),
                None => message,
            });
        }
    }
    row
}
