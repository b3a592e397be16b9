//! Mailing lists: subscribers with their consent trail, suppressed addresses, and the send
//! jobs that turn one list delivery into one mail per recipient.
//!
//! ## Design constraints
//!
//! - **Recipients are materialised in committed chunks.** A job walks its source (the list's
//!   confirmed subscribers, or for a correction or retraction the recipients who got an
//!   earlier version) with a cursor; each chunk of rows is written together with the advanced
//!   cursor in one atomic batch. A crash therefore never skips a recipient (rows past the
//!   cursor are made again, rows before it exist) nor makes one twice.
//! - **A row leaves `pending` only when it is settled** (sent, bounced, failed, skipped), so a
//!   crash re-sends at most the rows that were in flight: the in-flight bound.
//! - **Nobody mailed who left.** Rows are made only for confirmed, unsuppressed subscribers;
//!   the sender checks again before each send (an unsubscribe may land mid-job).
//!
//! ## Key layout (`mail` tree)
//!
//! ```text
//! S list 0 address            → Subscriber (JSON)
//! X address                   → Suppression (JSON)      bounced: mailed by no list
//! J job_id                    → MailJob (JSON)
//! Y delivery_id               → job_id                  the job a list delivery belongs to
//! K release_id list 0 job_id  → ()                      the jobs that mailed a release on a list
//! R job_id seq:u32            → MailRow (JSON)          one recipient of a job
//! ```

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use siar_model::{ConsentEvent, DeliveryId, Event, ReleaseId, Subscriber, SubscriberStatus};

use crate::{decode, encode, Result, Store, StoreError};

/// What one job mails: the releases (one for an instant list, several for a digest).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobItem {
    pub delivery_id: DeliveryId,
    pub release_id: ReleaseId,
    pub version: u32,
    pub event: Event,
}

/// Whom a job mails.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobSource {
    /// Every confirmed subscriber of the list.
    Subscribers,
    /// The recipients a previous job sent to (a correction or a retraction).
    Received { job: DeliveryId },
}

/// One send job: a list delivery (or, for a digest, several) expanded to recipients.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailJob {
    /// The first list delivery's id.
    pub id: DeliveryId,
    pub list: String,
    pub items: Vec<JobItem>,
    pub digest: bool,
    pub source: JobSource,
    /// Where materialising stopped: the last subscriber address, or the last source row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Rows made so far.
    pub rows: u32,
    /// Every recipient has a row.
    pub materialised: bool,
    /// Every row is settled and the list deliveries are settled.
    pub done: bool,
    pub created_at: DateTime<Utc>,
}

/// Where a recipient's mail stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RowState {
    Pending,
    Sent,
    /// Permanently refused for this mailbox: the address is suppressed.
    Bounced,
    /// Failed for good for another reason (a 5xx that is not about the mailbox; retries spent).
    Failed,
    /// Not sent: the subscriber left, or the release was withdrawn, before it went out.
    Skipped,
}

/// One recipient of a job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailRow {
    pub address: String,
    pub state: RowState,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempts: u32,
    /// When a pending row may next be tried (ms since the epoch; 0: now).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub due_ms: i64,
    /// The release version that went out (for a later correction).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn is_zero<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

impl MailRow {
    pub fn pending(address: String) -> Self {
        Self {
            address,
            state: RowState::Pending,
            attempts: 0,
            due_ms: 0,
            version: 0,
            error: None,
        }
    }
}

/// An address no list mails any more (a hard bounce or a complaint).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suppression {
    pub at: DateTime<Utc>,
    pub reason: String,
}

/// How a job's rows stand.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowCounts {
    pub pending: u64,
    pub sent: u64,
    pub bounced: u64,
    pub failed: u64,
    pub skipped: u64,
}

impl RowCounts {
    fn add(&mut self, s: RowState) {
        match s {
            RowState::Pending => self.pending += 1,
            RowState::Sent => self.sent += 1,
            RowState::Bounced => self.bounced += 1,
            RowState::Failed => self.failed += 1,
            RowState::Skipped => self.skipped += 1,
        }
    }
}

/// What a subscribe request came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubscribeOutcome {
    /// Pending now (new, or again after leaving): send a confirmation mail.
    ConfirmationNeeded(Subscriber),
    /// Already confirmed: nothing to send.
    AlreadyConfirmed,
}

/// What a confirmation came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfirmOutcome {
    Confirmed(Subscriber),
    AlreadyConfirmed,
    /// The link predates the current request (e.g. from before an unsubscribe), or the
    /// subscriber is unknown.
    Stale,
}

/// A subscriber to import.
#[derive(Clone, Debug)]
pub struct ImportRow {
    pub address: String,
}

/// How an import went.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportReport {
    pub added: u64,
    /// Already on the list in that state (or a better one).
    pub unchanged: u64,
    /// Suppressed (bounced) addresses, not imported.
    pub suppressed: u64,
}

/// A subscriber as stored: the list and address are in the key, not repeated in the value
/// (a list of 100,000 is kept smaller, on disk and in sled's memory).
#[derive(Serialize, Deserialize)]
struct SubscriberRecord {
    status: SubscriberStatus,
    created_at: DateTime<Utc>,
    pending_since: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    confirmed_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    left_at: Option<DateTime<Utc>>,
    history: Vec<ConsentEvent>,
}

fn encode_subscriber(s: &Subscriber) -> Vec<u8> {
    encode(&SubscriberRecord {
        status: s.status,
        created_at: s.created_at,
        pending_since: s.pending_since,
        confirmed_at: s.confirmed_at,
        left_at: s.left_at,
        history: s.history.clone(),
    })
}

/// A subscriber from its key (`S list 0 address`) and stored value.
fn decode_subscriber(key: &[u8], value: &[u8]) -> Result<Subscriber> {
    let r: SubscriberRecord = decode(value, "subscriber")?;
    let body = key.get(1..).unwrap_or_default();
    let split = body.iter().position(|b| *b == 0).unwrap_or(body.len());
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Ok(Subscriber {
        list: text(&body[..split]),
        address: text(body.get(split + 1..).unwrap_or_default()),
        status: r.status,
        created_at: r.created_at,
        pending_since: r.pending_since,
        confirmed_at: r.confirmed_at,
        left_at: r.left_at,
        history: r.history,
    })
}

/// Consent times to the millisecond: precise enough, and shorter to keep.
fn ms_precision(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

fn subscriber_prefix(list: &str) -> Vec<u8> {
    cat(&[b"S", list.as_bytes(), &[0]])
}
fn subscriber_key(list: &str, address: &str) -> Vec<u8> {
    cat(&[&subscriber_prefix(list), address.as_bytes()])
}
fn suppression_key(address: &str) -> Vec<u8> {
    cat(&[b"X", address.as_bytes()])
}
fn job_key(id: DeliveryId) -> Vec<u8> {
    cat(&[b"J", &id.to_bytes()])
}
fn job_of_key(d: DeliveryId) -> Vec<u8> {
    cat(&[b"Y", &d.to_bytes()])
}
fn release_jobs_prefix(r: ReleaseId, list: &str) -> Vec<u8> {
    cat(&[b"K", &r.to_bytes(), list.as_bytes(), &[0]])
}
fn rows_prefix(job: DeliveryId) -> Vec<u8> {
    cat(&[b"R", &job.to_bytes()])
}
fn row_key(job: DeliveryId, seq: u32) -> Vec<u8> {
    cat(&[&rows_prefix(job), &seq.to_be_bytes()])
}
fn trailing_seq(k: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(
        k.get(k.len().checked_sub(4)?..)?.try_into().ok()?,
    ))
}
fn trailing_id(k: &[u8]) -> Option<DeliveryId> {
    let tail: [u8; 16] = k.get(k.len().checked_sub(16)?..)?.try_into().ok()?;
    Some(DeliveryId::from_bytes(tail))
}

fn st(op: &'static str) -> impl FnOnce(sled::Error) -> StoreError {
    StoreError::storage(op)
}

impl Store {
    // ---- subscribers ----

    /// A subscriber of `list`, if the address was ever on it.
    pub fn subscriber(&self, list: &str, address: &str) -> Result<Option<Subscriber>> {
        let key = subscriber_key(list, address);
        self.mail
            .get(&key)
            .map_err(st("reading a subscriber"))?
            .map(|v| decode_subscriber(&key, &v))
            .transpose()
    }

    fn put_subscriber(&self, s: &Subscriber) -> Result<()> {
        self.mail
            .insert(subscriber_key(&s.list, &s.address), encode_subscriber(s))
            .map_err(st("writing a subscriber"))?;
        Ok(())
    }

    /// Starts (or restarts) a subscription: pending until confirmed. Already confirmed: no
    /// change. `address` must be normalised.
    pub fn request_subscription(
        &self,
        list: &str,
        address: &str,
        source: &str,
        ip: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<SubscribeOutcome> {
        let _gate = self.write_gate();
        let now = ms_precision(now);
        let _guard = self.subscribers_lock.lock();
        let event = ConsentEvent {
            at: now,
            action: "requested".into(),
            source: source.to_owned(),
            ip: ip.map(str::to_owned),
        };
        let s = match self.subscriber(list, address)? {
            Some(s) if s.status == SubscriberStatus::Confirmed => {
                return Ok(SubscribeOutcome::AlreadyConfirmed)
            }
            Some(mut s) => {
                if s.status != SubscriberStatus::Pending {
                    s.pending_since = now;
                }
                s.status = SubscriberStatus::Pending;
                s.history.push(event);
                s
            }
            None => Subscriber {
                list: list.to_owned(),
                address: address.to_owned(),
                status: SubscriberStatus::Pending,
                created_at: now,
                pending_since: now,
                confirmed_at: None,
                left_at: None,
                history: vec![event],
            },
        };
        self.put_subscriber(&s)?;
        Ok(SubscribeOutcome::ConfirmationNeeded(s))
    }

    /// Confirms a subscription whose confirmation link was made at `requested_at`. Lifts a
    /// suppression of the address: the owner has just shown the mailbox works.
    pub fn confirm_subscription(
        &self,
        list: &str,
        address: &str,
        requested_at: DateTime<Utc>,
        ip: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<ConfirmOutcome> {
        let _gate = self.write_gate();
        let now = ms_precision(now);
        let _guard = self.subscribers_lock.lock();
        let Some(mut s) = self.subscriber(list, address)? else {
            return Ok(ConfirmOutcome::Stale);
        };
        match s.status {
            SubscriberStatus::Confirmed => return Ok(ConfirmOutcome::AlreadyConfirmed),
            SubscriberStatus::Pending
                if requested_at.timestamp_millis() >= s.pending_since.timestamp_millis() => {}
            _ => return Ok(ConfirmOutcome::Stale),
        }
        s.status = SubscriberStatus::Confirmed;
        s.confirmed_at = Some(now);
        s.history.push(ConsentEvent {
            at: now,
            action: "confirmed".into(),
            source: "confirmation link".into(),
            ip: ip.map(str::to_owned),
        });
        self.put_subscriber(&s)?;
        self.mail
            .remove(suppression_key(address))
            .map_err(st("lifting a suppression"))?;
        Ok(ConfirmOutcome::Confirmed(s))
    }

    /// Takes the address off the list at once. Idempotent; `None` if it was never on it.
    pub fn unsubscribe(
        &self,
        list: &str,
        address: &str,
        source: &str,
        ip: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Option<Subscriber>> {
        let _gate = self.write_gate();
        let now = ms_precision(now);
        let _guard = self.subscribers_lock.lock();
        let Some(mut s) = self.subscriber(list, address)? else {
            return Ok(None);
        };
        if s.status == SubscriberStatus::Unsubscribed {
            return Ok(Some(s));
        }
        s.status = SubscriberStatus::Unsubscribed;
        s.left_at = Some(now);
        s.history.push(ConsentEvent {
            at: now,
            action: "unsubscribed".into(),
            source: source.to_owned(),
            ip: ip.map(str::to_owned),
        });
        self.put_subscriber(&s)?;
        Ok(Some(s))
    }

    /// Suppresses an address on every list (a hard bounce): no list mails it until its owner
    /// confirms a subscription again. Returns how many subscriptions it ended.
    pub fn suppress(&self, address: &str, reason: &str, now: DateTime<Utc>) -> Result<usize> {
        let _gate = self.write_gate();
        let now = ms_precision(now);
        let _guard = self.subscribers_lock.lock();
        self.mail
            .insert(
                suppression_key(address),
                encode(&Suppression {
                    at: now,
                    reason: reason.to_owned(),
                }),
            )
            .map_err(st("suppressing an address"))?;
        let mut ended = 0;
        // Each list once: seek from one list's keys to the next, not through its subscribers.
        let mut lists = Vec::new();
        let mut from = b"S".to_vec();
        while let Some(kv) = self.mail.range(from.clone()..).next() {
            let (k, _) = kv.map_err(st("reading subscribers"))?;
            if !k.starts_with(b"S") {
                break;
            }
            let Some(end) = k.iter().position(|b| *b == 0) else {
                break;
            };
            let list = String::from_utf8_lossy(&k[1..end]).into_owned();
            from = cat(&[b"S", list.as_bytes(), &[1]]);
            lists.push(list);
        }
        for list in lists {
            if let Some(mut s) = self.subscriber(&list, address)? {
                if s.status == SubscriberStatus::Confirmed || s.status == SubscriberStatus::Pending
                {
                    s.status = SubscriberStatus::Bounced;
                    s.left_at = Some(now);
                    s.history.push(ConsentEvent {
                        at: now,
                        action: "bounced".into(),
                        source: reason.to_owned(),
                        ip: None,
                    });
                    self.put_subscriber(&s)?;
                    ended += 1;
                }
            }
        }
        Ok(ended)
    }

    /// Why an address is suppressed, if it is.
    pub fn suppression(&self, address: &str) -> Result<Option<Suppression>> {
        self.mail
            .get(suppression_key(address))
            .map_err(st("reading a suppression"))?
            .map(|v| decode(&v, "suppression"))
            .transpose()
    }

    /// Whether `address` should get `list`'s mail right now.
    pub fn is_receiving(&self, list: &str, address: &str) -> Result<bool> {
        Ok(self
            .subscriber(list, address)?
            .is_some_and(|s| s.status == SubscriberStatus::Confirmed)
            && self.suppression(address)?.is_none())
    }

    /// Subscribers of `list` after `after` (by address), up to `limit`.
    pub fn subscribers(
        &self,
        list: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Subscriber>> {
        let prefix = subscriber_prefix(list);
        let start = match after {
            Some(a) => {
                let mut k = subscriber_key(list, a);
                k.push(0);
                k
            }
            None => prefix.clone(),
        };
        let mut out = Vec::new();
        for kv in self.mail.range(start..) {
            let (k, v) = kv.map_err(st("reading subscribers"))?;
            if !k.starts_with(&prefix) || out.len() >= limit {
                break;
            }
            out.push(decode_subscriber(&k, &v)?);
        }
        Ok(out)
    }

    /// How many subscribers `list` has in each status.
    pub fn subscriber_counts(&self, list: &str) -> Result<std::collections::BTreeMap<String, u64>> {
        let mut counts = std::collections::BTreeMap::new();
        for kv in self.mail.scan_prefix(subscriber_prefix(list)) {
            let (k, v) = kv.map_err(st("reading subscribers"))?;
            let s = decode_subscriber(&k, &v)?;
            *counts.entry(s.status.as_str().to_owned()).or_insert(0) += 1;
        }
        Ok(counts)
    }

    /// Removes subscribers of any list still pending since before `before`. Returns how many.
    pub fn purge_unconfirmed(&self, before: DateTime<Utc>) -> Result<usize> {
        let _gate = self.write_gate();
        let _guard = self.subscribers_lock.lock();
        let mut doomed = Vec::new();
        for kv in self.mail.scan_prefix(b"S") {
            let (k, v) = kv.map_err(st("reading subscribers"))?;
            let s = decode_subscriber(&k, &v)?;
            if s.status == SubscriberStatus::Pending && s.pending_since < before {
                doomed.push(k);
            }
        }
        let mut batch = sled::Batch::default();
        for k in &doomed {
            batch.remove(k.clone());
        }
        self.mail
            .apply_batch(batch)
            .map_err(st("purging unconfirmed subscribers"))?;
        Ok(doomed.len())
    }

    /// Adds addresses (normalised) to `list` in one atomic batch: as pending, or as confirmed
    /// when `confirmed_source` says on what grounds. Confirmed or unsubscribed subscribers
    /// are left as they are (an import never overrides someone's leaving); suppressed
    /// addresses are skipped.
    pub fn import_subscribers(
        &self,
        list: &str,
        rows: &[ImportRow],
        confirmed_source: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<ImportReport> {
        let _gate = self.write_gate();
        let now = ms_precision(now);
        let _guard = self.subscribers_lock.lock();
        let mut report = ImportReport::default();
        let mut batch = sled::Batch::default();
        let mut seen = std::collections::HashSet::new();
        for row in rows {
            if !seen.insert(row.address.as_str()) {
                report.unchanged += 1;
                continue;
            }
            if self.suppression(&row.address)?.is_some() {
                report.suppressed += 1;
                continue;
            }
            let existing = self.subscriber(list, &row.address)?;
            let status = if confirmed_source.is_some() {
                SubscriberStatus::Confirmed
            } else {
                SubscriberStatus::Pending
            };
            match &existing {
                Some(s)
                    if s.status == SubscriberStatus::Confirmed
                        || s.status == SubscriberStatus::Unsubscribed
                        || s.status == status =>
                {
                    report.unchanged += 1;
                    continue;
                }
                _ => {}
            }
            let event = ConsentEvent {
                at: now,
                action: "imported".into(),
                source: match confirmed_source {
                    Some(src) => format!("import (confirmed): {src}"),
                    None => "import".into(),
                },
                ip: None,
            };
            let s = match existing {
                Some(mut s) => {
                    s.status = status;
                    s.pending_since = now;
                    if status == SubscriberStatus::Confirmed {
                        s.confirmed_at = Some(now);
                    }
                    s.history.push(event);
                    s
                }
                None => Subscriber {
                    list: list.to_owned(),
                    address: row.address.clone(),
                    status,
                    created_at: now,
                    pending_since: now,
                    confirmed_at: (status == SubscriberStatus::Confirmed).then_some(now),
                    left_at: None,
                    history: vec![event],
                },
            };
            batch.insert(subscriber_key(list, &s.address), encode_subscriber(&s));
            report.added += 1;
        }
        self.mail
            .apply_batch(batch)
            .map_err(st("importing subscribers"))?;
        Ok(report)
    }

    // ---- jobs ----

    /// Records a new job (its rows come with [`Store::materialise`]).
    pub fn create_job(&self, job: &MailJob) -> Result<()> {
        let _gate = self.write_gate();
        let mut batch = sled::Batch::default();
        batch.insert(job_key(job.id), encode(job));
        for item in &job.items {
            batch.insert(job_of_key(item.delivery_id), &job.id.to_bytes());
            let mut k = release_jobs_prefix(item.release_id, &job.list);
            k.extend_from_slice(&job.id.to_bytes());
            batch.insert(k, &[]);
        }
        self.mail.apply_batch(batch).map_err(st("recording a job"))
    }

    pub fn job(&self, id: DeliveryId) -> Result<Option<MailJob>> {
        self.mail
            .get(job_key(id))
            .map_err(st("reading a job"))?
            .map(|v| decode(&v, "mail job"))
            .transpose()
    }

    /// Saves a job's state (not its cursor: that moves only with [`Store::materialise`]).
    pub fn put_job(&self, job: &MailJob) -> Result<()> {
        let _gate = self.write_gate();
        self.mail
            .insert(job_key(job.id), encode(job))
            .map_err(st("writing a job"))?;
        Ok(())
    }

    /// The job a list delivery belongs to, if one was made for it.
    pub fn job_of(&self, delivery: DeliveryId) -> Result<Option<MailJob>> {
        let Some(id) = self
            .mail
            .get(job_of_key(delivery))
            .map_err(st("reading a job"))?
        else {
            return Ok(None);
        };
        let Ok(b) = <[u8; 16]>::try_from(id.as_ref()) else {
            return Err(StoreError::Corrupt {
                what: "job index".into(),
                message: "not a job id".into(),
            });
        };
        self.job(DeliveryId::from_bytes(b))
    }

    /// The jobs that mailed `release` on `list`, oldest first.
    pub fn jobs_for_release(&self, release: ReleaseId, list: &str) -> Result<Vec<MailJob>> {
        let mut out = Vec::new();
        for k in self
            .mail
            .scan_prefix(release_jobs_prefix(release, list))
            .keys()
        {
            let k = k.map_err(st("reading jobs"))?;
            if let Some(id) = trailing_id(&k) {
                out.extend(self.job(id)?);
            }
        }
        Ok(out)
    }

    /// Makes the next rows of a job (up to `chunk`) and advances its cursor, in one atomic
    /// batch. Returns the new rows with their sequence numbers; none once every recipient
    /// has a row (then the job is marked materialised).
    pub fn materialise(&self, id: DeliveryId, chunk: usize) -> Result<Vec<(u32, MailRow)>> {
        let _gate = self.write_gate();
        let Some(mut job) = self.job(id)? else {
            return Err(StoreError::Conflict(format!("mail job {id} not found")));
        };
        if job.materialised {
            return Ok(Vec::new());
        }
        let mut addresses = Vec::with_capacity(chunk);
        let cursor;
        let exhausted;
        match &job.source {
            JobSource::Subscribers => {
                let page = self.subscribers(&job.list, job.cursor.as_deref(), chunk)?;
                exhausted = page.len() < chunk;
                cursor = page
                    .last()
                    .map(|s| s.address.clone())
                    .or(job.cursor.clone());
                for s in page {
                    if s.status == SubscriberStatus::Confirmed
                        && self.suppression(&s.address)?.is_none()
                    {
                        addresses.push(s.address);
                    }
                }
            }
            JobSource::Received { job: source } => {
                // A correction goes to who got an older text (a mailing still running when
                // the correction came sent the new text to the rest); a retraction to who
                // got any.
                let below = match job.items.first() {
                    Some(i) if i.event == Event::Corrected => i.version,
                    _ => u32::MAX,
                };
                let from = match job.cursor.as_deref().and_then(|c| c.parse::<u32>().ok()) {
                    Some(seq) => seq.saturating_add(1),
                    None => 0,
                };
                let page = self.rows(*source, from, chunk, None)?;
                exhausted = page.len() < chunk;
                cursor = page
                    .last()
                    .map(|(seq, _)| seq.to_string())
                    .or(job.cursor.clone());
                for (_, row) in page {
                    if row.state == RowState::Sent
                        && row.version < below
                        && self.is_receiving(&job.list, &row.address)?
                    {
                        addresses.push(row.address);
                    }
                }
            }
        }
        let first = job.rows;
        let rows: Vec<(u32, MailRow)> = addresses
            .into_iter()
            .enumerate()
            .map(|(i, a)| (first + i as u32, MailRow::pending(a)))
            .collect();
        job.rows += rows.len() as u32;
        job.cursor = cursor;
        job.materialised = exhausted;
        let mut batch = sled::Batch::default();
        for (seq, row) in &rows {
            batch.insert(row_key(id, *seq), encode(row));
        }
        batch.insert(job_key(id), encode(&job));
        self.mail
            .apply_batch(batch)
            .map_err(st("materialising recipients"))?;
        Ok(rows)
    }

    /// Writes settled (or rescheduled) rows in one atomic batch.
    pub fn put_rows(&self, job: DeliveryId, rows: &[(u32, MailRow)]) -> Result<()> {
        let _gate = self.write_gate();
        let mut batch = sled::Batch::default();
        for (seq, row) in rows {
            batch.insert(row_key(job, *seq), encode(row));
        }
        self.mail
            .apply_batch(batch)
            .map_err(st("settling mail rows"))
    }

    /// A job's rows from `from` on, up to `limit`, optionally only those in `state`.
    pub fn rows(
        &self,
        job: DeliveryId,
        from: u32,
        limit: usize,
        state: Option<RowState>,
    ) -> Result<Vec<(u32, MailRow)>> {
        let prefix = rows_prefix(job);
        let mut out = Vec::new();
        for kv in self.mail.range(row_key(job, from)..) {
            let (k, v) = kv.map_err(st("reading a job's rows"))?;
            if !k.starts_with(&prefix) || out.len() >= limit {
                break;
            }
            let row: MailRow = decode(&v, "mail row")?;
            if state.is_none_or(|s| s == row.state) {
                out.push((trailing_seq(&k).unwrap_or(0), row));
            }
        }
        Ok(out)
    }

    /// How a job's rows stand.
    pub fn row_counts(&self, job: DeliveryId) -> Result<RowCounts> {
        let mut c = RowCounts::default();
        for v in self.mail.scan_prefix(rows_prefix(job)).values() {
            let v = v.map_err(st("reading a job's rows"))?;
            let row: MailRow = decode(&v, "mail row")?;
            c.add(row.state);
        }
        Ok(c)
    }

    /// Jobs not yet done (to resume after a restart).
    pub fn unfinished_jobs(&self) -> Result<Vec<MailJob>> {
        let mut out = Vec::new();
        for v in self.mail.scan_prefix(b"J").values() {
            let v = v.map_err(st("reading jobs"))?;
            let job: MailJob = decode(&v, "mail job")?;
            if !job.done {
                out.push(job);
            }
        }
        Ok(out)
    }
}
