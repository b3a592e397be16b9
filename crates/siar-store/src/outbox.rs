//! The outbox: every delivery siar owes, durable from the moment it is owed.
//!
//! ## Design constraints
//!
//! - **Owed atomically.** Deliveries are recorded in the same transaction that publishes,
//!   corrects or retracts the release that causes them (see `releases`), so a crash can
//!   never leave a published release with no deliveries, or deliveries for an unpublished one.
//! - **Nothing lost.** A delivery leaves the due index only when it is settled: delivered,
//!   failed for good, or superseded. Claiming writes nothing: a claim is a lease held in
//!   memory, and claims skip a delivery while its lease lives. A worker that dies holding a
//!   lease therefore loses nothing: when the lease ends (or the process with it) the next
//!   claim takes the delivery, which is still pending on disk.
//! - **Few duplicates.** Only the holder of the current lease token may settle a delivery. A
//!   delivery is sent twice only if a lease ended before its holder settled it (a crash, a hung
//!   send): the in-flight bound. Every attempt carries the delivery's stable id so receivers can
//!   drop such repeats.
//! - **Never early.** `due_at` is never before the release's `publish_at`.
//! - **Settling is one record.** The lease holder is the only writer of a leased delivery (an
//!   operator's retry, a correction superseding what waits, a schedule change: each looks at
//!   the leases while it writes, and leaves leased deliveries alone), so a batch of
//!   settlements needs no transaction: it is one record of the outbox journal (see
//!   `journal`).
//!
//! The store only ever has one process (sled locks its directory), so leases in memory
//! are all the leases there are. A crash forgets them, which is what recovering them at
//! start-up used to do; stores written before leases moved to memory may still hold
//! `in_flight` records, which [`Store::recover_in_flight`] makes due again.
//!
//! ## Key layout (`outbox` tree)
//!
//! ```text
//! D delivery_id                          → Delivery (binary, see `codec`; JSON before)
//! Q queue:u8 at_ms:u64 delivery_id       → ()   pending or in flight, at due_at (lists
//!                                               and emails; webhooks are under P)
//! T status:u8 delivery_id                → ()   deliveries by status
//! U release_id version:u32 event:u8 target → delivery_id   one delivery per (version, event,
//!                                               target); by release, a release's deliveries
//! A delivery_id attempt:u32              → Attempt (JSON)   the attempt log
//! P partner 0 at_ms:u64 delivery_id      → ()   a partner's webhooks, pending or in flight,
//!                                               at due_at: one partner's worker claims
//!                                               without scanning the others
//! ```
//! `queue` is `w` (webhooks), `l` (list expansion) or `e` (one email); `status` is the first
//! letter of the status, `i` for in flight.

use chrono::{DateTime, Duration, Utc};
use siar_model::{
    Attempt, AuditEntry, Delivery, DeliveryId, DeliveryStatus, Event, Lease, Queue, ReleaseId,
    Target,
};

use crate::tx::{abort, due_key, Tx, TxResult};
use crate::{keys, Result, Store, StoreError};

/// A claimed delivery and the lease that lets its holder settle it.
#[derive(Clone, Debug)]
pub struct Claim {
    pub delivery: Delivery,
    pub lease: Lease,
}

/// How a claimed delivery ends, for [`Store::settle_many`].
#[derive(Clone, Debug)]
pub enum Settlement {
    Delivered,
    /// Try again at the time, noting the error.
    RetryAt(DateTime<Utc>, String),
    /// Failed for good (replayable by an operator).
    Failed(String),
    /// Handed back untried: due again at once, the attempt not counted.
    Release,
}

/// How a queue stands.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Pending or in flight.
    pub depth: usize,
    /// Of those, due now (in flight ones included).
    pub due_now: usize,
    pub oldest_due: Option<DateTime<Utc>>,
}

/// A lease on a claimed delivery, with the delivery as it was stored when claimed: its holder
/// is its only writer until it settles, so that is still the stored record when it does.
pub(crate) struct Leased {
    lease: Lease,
    stored: Delivery,
}

/// The leases on claimed deliveries, by delivery.
pub(crate) type Leases = rustc_hash::FxHashMap<DeliveryId, Leased>;

/// Whether a delivery as stored may be claimed at `now`: pending and due, or (a store
/// from before leases moved to memory) in flight under a lease that ended.
fn claimable(d: &Delivery, now: DateTime<Utc>) -> bool {
    match d.status {
        DeliveryStatus::Pending => d.due_at <= now,
        DeliveryStatus::InFlight => d.lease.as_ref().is_none_or(|l| l.until <= now),
        _ => false,
    }
}

/// `d` as stored, seen with the lease on it (if any): in flight, the attempt counted.
fn with_lease(mut d: Delivery, leases: &Leases) -> Delivery {
    if let Some(Leased { lease: l, .. }) = leases.get(&d.id) {
        if matches!(d.status, DeliveryStatus::Pending | DeliveryStatus::InFlight) {
            if d.status == DeliveryStatus::Pending {
                d.attempts = d.attempts.saturating_add(1);
            }
            d.status = DeliveryStatus::InFlight;
            d.lease = Some(l.clone());
        }
    }
    d
}

/// Records one delivery unless the same (release, version, event, target) is already owed.
pub(crate) fn enqueue_in(
    tx: &Tx<'_>,
    release_id: ReleaseId,
    version: u32,
    event: Event,
    target: Target,
    due_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> TxResult<bool> {
    let unique = keys::unique(release_id, version, event, &target);
    if tx.out.get(&unique)?.is_some() {
        return Ok(false);
    }
    let d = Delivery {
        id: DeliveryId::at(now),
        release_id,
        version,
        event,
        target,
        status: DeliveryStatus::Pending,
        due_at,
        attempts: 0,
        lease: None,
        last_error: None,
        created_at: now,
        updated_at: now,
        delivered_at: None,
    };
    tx.out.insert(unique, &d.id.to_bytes())?;
    tx.put_delivery(None, &d)?;
    Ok(true)
}

impl Store {
    /// Claims up to `max` deliveries of `queue` that are due at `now` (pending with `due_at`
    /// passed and no live lease), leasing each to `worker` for `lease_for`. `accept` may turn
    /// a delivery down (e.g. its partner already has one in flight); it stays due.
    pub fn claim(
        &self,
        queue: Queue,
        now: DateTime<Utc>,
        lease_for: Duration,
        max: usize,
        worker: &str,
        accept: &mut dyn FnMut(&Delivery) -> bool,
    ) -> Result<Vec<Claim>> {
        if queue != Queue::Webhook {
            return self.claim_from(keys::due_prefix(queue), now, lease_for, max, worker, accept);
        }
        // Webhooks are indexed by partner: every partner's due ones, oldest due first.
        let now_ms = u64::try_from(now.timestamp_millis()).unwrap_or(0);
        let mut due = Vec::new();
        for kv in self.journal.prefix(b"P") {
            let (k, _) = kv?;
            if let (Some(at), Some(id)) = (keys::trailing_ms(&k), keys::trailing_delivery(&k)) {
                if at <= now_ms {
                    due.push((at, id));
                }
            }
        }
        due.sort_unstable();
        self.claim_ids(
            due.into_iter().map(|(_, id)| id),
            now,
            lease_for,
            max,
            worker,
            accept,
        )
    }

    /// Claims up to `max` webhook deliveries of `partner` that are due at `now`, oldest due
    /// first, leasing each to `worker` for `lease_for`. A partner's worker reads only its own
    /// index entries, however long the other partners' queues are.
    pub fn claim_partner(
        &self,
        partner: &str,
        now: DateTime<Utc>,
        lease_for: Duration,
        max: usize,
        worker: &str,
    ) -> Result<Vec<Claim>> {
        self.claim_from(
            keys::partner_due_prefix(partner),
            now,
            lease_for,
            max,
            worker,
            &mut |_| true,
        )
    }

    /// Claims from the due index under `prefix` (keys end with the due time and the id).
    fn claim_from(
        &self,
        prefix: Vec<u8>,
        now: DateTime<Utc>,
        lease_for: Duration,
        max: usize,
        worker: &str,
        accept: &mut dyn FnMut(&Delivery) -> bool,
    ) -> Result<Vec<Claim>> {
        let mut end = prefix.clone();
        end.extend_from_slice(&keys::ms(now));
        end.extend_from_slice(&[0xFF; 16]);
        let mut failed = None;
        let ids = self
            .journal
            .range(prefix, std::ops::Bound::Included(end))
            .map_while(|kv| match kv {
                Ok((k, _)) => Some(keys::trailing_delivery(&k)),
                Err(e) => {
                    failed = Some(e);
                    None
                }
            })
            .flatten();
        let claims = self.claim_ids(ids, now, lease_for, max, worker, accept)?;
        match failed {
            Some(e) => Err(e),
            None => Ok(claims),
        }
    }

    /// Claims up to `max` of the deliveries `ids` (due ones, in the order to claim them).
    fn claim_ids(
        &self,
        ids: impl Iterator<Item = DeliveryId>,
        now: DateTime<Utc>,
        lease_for: Duration,
        max: usize,
        worker: &str,
        accept: &mut dyn FnMut(&Delivery) -> bool,
    ) -> Result<Vec<Claim>> {
        let token = ulid::Ulid::new().to_string();
        let mut leases = self.leases.lock();
        let mut claims = Vec::new();
        for id in ids {
            if claims.len() >= max {
                break;
            }
            if leases.get(&id).is_some_and(|l| l.lease.until > now) {
                continue;
            }
            let Some(d) = self.stored_delivery(id)? else {
                continue;
            };
            if !claimable(&d, now) || !accept(&d) {
                continue;
            }
            let lease = Lease {
                token: format!("{token}-{}", claims.len()),
                worker: worker.to_owned(),
                until: now + lease_for,
            };
            leases.insert(
                id,
                Leased {
                    lease: lease.clone(),
                    stored: d.clone(),
                },
            );
            let mut n = d;
            n.status = DeliveryStatus::InFlight;
            n.lease = Some(lease.clone());
            n.attempts += 1;
            n.updated_at = now;
            claims.push(Claim { delivery: n, lease });
        }
        Ok(claims)
    }

    /// When `partner`'s earliest delivery waiting or in flight was due, if it has any.
    pub fn next_due_for_partner(&self, partner: &str) -> Result<Option<DateTime<Utc>>> {
        let first = self
            .journal
            .prefix(&keys::partner_due_prefix(partner))
            .next()
            .transpose()?
            .map(|(k, _)| k);
        Ok(first.and_then(|k| {
            let p = keys::partner_due_prefix(partner).len();
            let ms = u64::from_be_bytes(k.get(p..p + 8)?.try_into().ok()?);
            DateTime::from_timestamp_millis(i64::try_from(ms).ok()?)
        }))
    }

    /// Gives every delivery `partner` has waiting (not in flight) the due time `due_at`
    /// (never before now): for a partner whose schedule changed. Returns how many moved.
    pub fn reschedule_partner(
        &self,
        partner: &str,
        due_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<usize> {
        // Leased deliveries are being attempted: their holders settle them. Held with the
        // writer lock, nothing else writes this partner's deliveries meanwhile, so the
        // transactions below see them all in the tree once the journal is drained.
        let _writer = self.writer.lock();
        let leases = self.leases.lock();
        self.journal.drain()?;
        let mut ids = Vec::new();
        for k in self
            .outbox
            .scan_prefix(keys::partner_due_prefix(partner))
            .keys()
        {
            let k = k.map_err(StoreError::storage("reading a partner's queue"))?;
            ids.extend(keys::trailing_delivery(&k));
        }
        let due_at = due_at.max(now);
        let mut moved = 0;
        for id in ids {
            if leases.contains_key(&id) {
                continue;
            }
            moved += usize::from(self.atomically("rescheduling a delivery", |tx| {
                let Some(d) = tx.delivery(id)? else {
                    return Ok(false);
                };
                if d.status != DeliveryStatus::Pending || d.due_at == due_at {
                    return Ok(false);
                }
                let mut n = d.clone();
                n.due_at = due_at;
                n.updated_at = now;
                tx.put_delivery(Some(&d), &n)?;
                Ok(true)
            })?);
        }
        Ok(moved)
    }

    /// How many deliveries `partner` has waiting or in flight.
    pub fn partner_queue_depth(&self, partner: &str) -> Result<usize> {
        let mut n = 0;
        for kv in self.journal.prefix(&keys::partner_due_prefix(partner)) {
            kv?;
            n += 1;
        }
        Ok(n)
    }

    /// Builds the per-partner due index from the delivery records, once, for a store made
    /// before it existed.
    pub(crate) fn index_partners(&self) -> Result<()> {
        if self.meta_get::<bool>("partner-due-index")?.unwrap_or(false) {
            return Ok(());
        }
        for v in self.outbox.scan_prefix(b"D").values() {
            let v = v.map_err(StoreError::storage("indexing partners"))?;
            let d = crate::codec::decode_delivery(&v)?;
            if let Some(k) = crate::tx::partner_due_key(&d) {
                self.outbox
                    .insert(k, &[])
                    .map_err(StoreError::storage("indexing partners"))?;
            }
        }
        self.meta_put("partner-due-index", &true)?;
        self.flush_blocking()
    }

    /// Settles many claims in one atomic step (one journal record), each with its attempt log
    /// entry. A claim whose lease was lost (it ended and someone else claimed the delivery,
    /// or the delivery was settled) is skipped: its result is `Err(LeaseLost)`.
    pub fn settle_many(
        &self,
        items: &[(Claim, Settlement, Option<Attempt>)],
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<Delivery>>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let mut leases = self.leases.lock();
        let mut writes = Vec::with_capacity(items.len() * 7);
        let mut settled = rustc_hash::FxHashSet::default();
        let mut out = Vec::with_capacity(items.len());
        for (claim, how, attempt) in items {
            let id = claim.delivery.id;
            let held = leases
                .get(&id)
                .filter(|l| l.lease.token == claim.lease.token);
            let Some(Leased { stored: d, .. }) = held.filter(|_| settled.insert(id)) else {
                out.push(Err(StoreError::LeaseLost(id)));
                continue;
            };
            let mut n = d.clone();
            n.lease = None;
            n.updated_at = now;
            n.attempts = claim.delivery.attempts;
            match how {
                Settlement::Delivered => {
                    n.status = DeliveryStatus::Delivered;
                    n.delivered_at = Some(now);
                    n.last_error = None;
                }
                Settlement::RetryAt(at, error) => {
                    n.status = DeliveryStatus::Pending;
                    n.due_at = (*at).max(now);
                    n.last_error = Some(error.clone());
                }
                Settlement::Failed(error) => {
                    n.status = DeliveryStatus::Failed;
                    n.last_error = Some(error.clone());
                }
                Settlement::Release => {
                    n.status = DeliveryStatus::Pending;
                    n.due_at = now;
                    n.attempts = claim.delivery.attempts.saturating_sub(1);
                }
            }
            writes.extend(crate::tx::delivery_writes(Some(d), &n));
            if let Some(a) = attempt {
                writes.push((
                    keys::attempt(id, a.number),
                    Some(crate::codec::encode_attempt(a)),
                ));
            }
            out.push(Ok(n));
        }
        self.journal.write(writes)?;
        for d in out.iter().flatten() {
            leases.remove(&d.id);
        }
        Ok(out)
    }

    /// Settles a claim as delivered.
    pub fn complete(&self, claim: &Claim, now: DateTime<Utc>) -> Result<Delivery> {
        self.settle(claim, Settlement::Delivered, now)
    }

    /// Gives a claim back to be tried again at `at`, noting why it failed this time.
    pub fn retry_at(
        &self,
        claim: &Claim,
        at: DateTime<Utc>,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<Delivery> {
        self.settle(claim, Settlement::RetryAt(at, error.to_owned()), now)
    }

    /// Settles a claim as failed for good; an operator can replay it with
    /// [`Store::retry_delivery`].
    pub fn fail(&self, claim: &Claim, error: &str, now: DateTime<Utc>) -> Result<Delivery> {
        self.settle(claim, Settlement::Failed(error.to_owned()), now)
    }

    /// Hands a claim back untried (shutdown): due again at once, the attempt not counted.
    pub fn release_claim(&self, claim: &Claim, now: DateTime<Utc>) -> Result<Delivery> {
        self.settle(claim, Settlement::Release, now)
    }

    fn settle(&self, claim: &Claim, how: Settlement, now: DateTime<Utc>) -> Result<Delivery> {
        self.settle_many(&[(claim.clone(), how, None)], now)?
            .pop()
            .unwrap_or(Err(StoreError::LeaseLost(claim.delivery.id)))
    }

    /// At start-up, when no worker of this store can still be running: every in-flight
    /// delivery is due again at once. Returns how many there were.
    pub fn recover_in_flight(&self, now: DateTime<Utc>) -> Result<usize> {
        self.journal.drain()?;
        let ids = self.ids_with_status(DeliveryStatus::InFlight, usize::MAX, None)?;
        let mut n = 0;
        for id in ids {
            n += usize::from(self.atomically("recovering a lease", |tx| {
                let Some(d) = tx.delivery(id)? else {
                    return Ok(false);
                };
                if d.status != DeliveryStatus::InFlight {
                    return Ok(false);
                }
                let mut r = d.clone();
                r.status = DeliveryStatus::Pending;
                r.lease = None;
                r.due_at = now;
                r.updated_at = now;
                tx.put_delivery(Some(&d), &r)?;
                Ok(true)
            })?);
        }
        Ok(n)
    }

    /// An operator's replay: a failed, delivered or superseded delivery becomes due at once
    /// (a pending one is brought forward). In-flight deliveries are left alone.
    pub fn retry_delivery(
        &self,
        id: DeliveryId,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Delivery> {
        let leases = self.leases.lock();
        // The transaction reads the tree: the journal goes there first. Under the lease lock
        // nothing else writes this delivery meanwhile.
        self.journal.drain()?;
        self.atomically("retrying a delivery", |tx| {
            let Some(d) = tx.delivery(id)? else {
                return abort(StoreError::DeliveryNotFound(id));
            };
            if d.status == DeliveryStatus::InFlight || leases.contains_key(&id) {
                return abort(StoreError::Conflict(format!(
                    "delivery {id} is being attempted right now"
                )));
            }
            let mut r = d.clone();
            r.status = DeliveryStatus::Pending;
            r.due_at = now;
            r.updated_at = now;
            tx.put_delivery(Some(&d), &r)?;
            tx.audit(AuditEntry {
                at: now,
                actor: actor.to_owned(),
                action: "retry_delivery".into(),
                release_id: Some(d.release_id),
                detail: format!("delivery {id} to {} (was {})", d.target, d.status.as_str()),
            })?;
            Ok(r)
        })
    }

    /// A delivery's attempts, first first.
    pub fn attempts(&self, id: DeliveryId) -> Result<Vec<Attempt>> {
        self.journal
            .prefix(&keys::attempts_prefix(id))
            .map(|kv| crate::codec::decode_attempt(&kv?.1))
            .collect()
    }

    /// A delivery as it stands: in flight while a worker holds a lease on it.
    pub fn delivery(&self, id: DeliveryId) -> Result<Option<Delivery>> {
        let d = self.stored_delivery(id)?;
        Ok(d.map(|d| with_lease(d, &self.leases.lock())))
    }

    /// A delivery as stored, leases aside.
    fn stored_delivery(&self, id: DeliveryId) -> Result<Option<Delivery>> {
        self.journal
            .read(&keys::delivery(id))?
            .map(|v| crate::codec::decode_delivery(&v))
            .transpose()
    }

    /// Ids of deliveries with `status` as they stand (a leased delivery is in flight, not
    /// pending), oldest first, up to `limit` after `after`.
    fn ids_with_status(
        &self,
        status: DeliveryStatus,
        limit: usize,
        after: Option<DeliveryId>,
    ) -> Result<Vec<DeliveryId>> {
        let leased: std::collections::BTreeSet<DeliveryId> =
            self.leases.lock().keys().copied().collect();
        let prefix = keys::status_prefix(status);
        let start = match after {
            Some(a) => {
                let mut k = keys::by_status(status, a);
                k.push(0);
                k
            }
            None => prefix.clone(),
        };
        let mut out = Vec::new();
        for kv in self.journal.range(start, std::ops::Bound::Unbounded) {
            let (k, _) = kv?;
            if !k.starts_with(&prefix) || out.len() >= limit {
                break;
            }
            out.extend(
                keys::trailing_delivery(&k)
                    .filter(|id| status != DeliveryStatus::Pending || !leased.contains(id)),
            );
        }
        if status == DeliveryStatus::InFlight {
            out.extend(
                leased
                    .into_iter()
                    .filter(|id| after.is_none_or(|a| *id > a)),
            );
            out.sort();
            out.dedup();
            out.truncate(limit);
        }
        Ok(out)
    }

    /// Deliveries with a status, oldest first, `limit` at a time after `after`.
    pub fn deliveries_with_status(
        &self,
        status: DeliveryStatus,
        limit: usize,
        after: Option<DeliveryId>,
    ) -> Result<Vec<Delivery>> {
        let mut out = Vec::new();
        for id in self.ids_with_status(status, limit, after)? {
            out.extend(self.delivery(id)?);
        }
        Ok(out)
    }

    /// Deliveries with `status`, oldest first, that pass `keep` (e.g. one partner's, changed
    /// since a time): up to `limit`, after `after`.
    pub fn deliveries_where(
        &self,
        status: DeliveryStatus,
        limit: usize,
        after: Option<DeliveryId>,
        keep: &dyn Fn(&Delivery) -> bool,
    ) -> Result<Vec<Delivery>> {
        let mut out = Vec::new();
        let mut cursor = after;
        loop {
            let ids = self.ids_with_status(status, 500, cursor)?;
            let Some(last) = ids.last().copied() else {
                return Ok(out);
            };
            for id in ids {
                if let Some(d) = self.delivery(id)? {
                    if keep(&d) {
                        out.push(d);
                        if out.len() >= limit {
                            return Ok(out);
                        }
                    }
                }
            }
            cursor = Some(last);
        }
    }

    /// How many deliveries have each status.
    pub fn delivery_counts(&self) -> Result<Vec<(DeliveryStatus, usize)>> {
        // Leased deliveries are pending on disk and in flight as they stand.
        let leased = self.leases.lock().len();
        DeliveryStatus::ALL
            .into_iter()
            .map(|s| {
                let stored = self.journal.prefix(&keys::status_prefix(s)).count();
                Ok((
                    s,
                    match s {
                        DeliveryStatus::Pending => stored.saturating_sub(leased),
                        DeliveryStatus::InFlight => stored + leased,
                        _ => stored,
                    },
                ))
            })
            .collect()
    }

    pub fn queue_stats(&self, queue: Queue, now: DateTime<Utc>) -> Result<QueueStats> {
        let mut s = QueueStats::default();
        let now_ms = u64::try_from(now.timestamp_millis()).unwrap_or(0);
        // Webhooks are indexed by partner, so not in due order: the oldest is the least.
        let prefix = match queue {
            Queue::Webhook => b"P".to_vec(),
            q => keys::due_prefix(q),
        };
        let mut oldest = None;
        for kv in self.journal.prefix(&prefix) {
            let (k, _) = kv?;
            let Some(at) = keys::trailing_ms(&k) else {
                continue;
            };
            s.depth += 1;
            if at <= now_ms {
                s.due_now += 1;
            }
            oldest = Some(oldest.map_or(at, |o: u64| o.min(at)));
        }
        s.oldest_due =
            oldest.and_then(|at| DateTime::from_timestamp_millis(i64::try_from(at).ok()?));
        Ok(s)
    }

    /// Removes the webhooks' entries from the queue due index, once: stores written before
    /// webhooks were indexed by partner alone have them.
    pub(crate) fn drop_webhook_queue_index(&self) -> Result<()> {
        if self
            .meta_get::<bool>("webhook-queue-index-dropped")?
            .unwrap_or(false)
        {
            return Ok(());
        }
        self.journal.drain()?;
        for k in self
            .outbox
            .scan_prefix(keys::due_prefix(Queue::Webhook))
            .keys()
        {
            let k = k.map_err(StoreError::storage("dropping the webhook queue index"))?;
            self.outbox
                .remove(k)
                .map_err(StoreError::storage("dropping the webhook queue index"))?;
        }
        self.meta_put("webhook-queue-index-dropped", &true)?;
        self.flush_blocking()
    }

    /// Checks that every delivery's index entries agree with its record, and that no index
    /// entry points at nothing. Returns the problems found (empty when consistent). Used by
    /// tests and by `siar store check`.
    pub fn check_outbox(&self) -> Result<Vec<String>> {
        self.journal.drain()?;
        let mut problems = Vec::new();
        let mut indexed = std::collections::BTreeSet::new();
        for kv in self.outbox.scan_prefix(b"D") {
            let (_, v) = kv.map_err(StoreError::storage("checking the outbox"))?;
            let d = crate::codec::decode_delivery(&v)?;
            let has = |k: Vec<u8>| self.outbox.contains_key(k).unwrap_or(false);
            if !has(keys::by_status(d.status, d.id)) {
                problems.push(format!("{}: no status index entry", d.id));
            }
            let unique = keys::unique(d.release_id, d.version, d.event, &d.target);
            if self.outbox.get(unique).ok().flatten().as_deref() != Some(&d.id.to_bytes()[..]) {
                problems.push(format!("{}: not in its release's index", d.id));
            }
            if let Some(k) = due_key(&d) {
                if !has(k.clone()) {
                    problems.push(format!(
                        "{}: {} but not in the due index",
                        d.id,
                        d.status.as_str()
                    ));
                }
                indexed.insert(k);
            }
            if let Some(k) = crate::tx::partner_due_key(&d) {
                if !has(k.clone()) {
                    problems.push(format!("{}: not in its partner's due index", d.id));
                }
                indexed.insert(k);
            }
        }
        for k in self.outbox.scan_prefix(b"P").keys() {
            let k = k.map_err(StoreError::storage("checking the outbox"))?;
            if !indexed.contains(k.as_ref()) {
                problems.push(format!(
                    "stale partner due index entry {:?}",
                    keys::trailing_delivery(&k)
                ));
            }
        }
        for q in Queue::ALL {
            for k in self.outbox.scan_prefix(keys::due_prefix(q)).keys() {
                let k = k.map_err(StoreError::storage("checking the outbox"))?;
                if !indexed.contains(k.as_ref()) {
                    problems.push(format!(
                        "stale due index entry {:?}",
                        keys::trailing_delivery(&k)
                    ));
                }
            }
        }
        let statuses: usize = DeliveryStatus::ALL
            .into_iter()
            .map(|s| self.outbox.scan_prefix(keys::status_prefix(s)).count())
            .sum();
        let records = self.outbox.scan_prefix(b"D").count();
        if statuses != records {
            problems.push(format!(
                "{statuses} status entries for {records} deliveries"
            ));
        }
        Ok(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store from before webhooks were indexed by partner alone has their entries in the
    /// queue due index: opening it removes them, once, and the outbox checks clean.
    #[test]
    fn old_webhook_queue_entries_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let id = DeliveryId::at(Utc::now());
        {
            let store = Store::open(dir.path()).unwrap();
            store
                .outbox
                .insert(keys::due(Queue::Webhook, Utc::now(), id), &[])
                .unwrap();
            store
                .meta_put("webhook-queue-index-dropped", &false)
                .unwrap();
            assert_eq!(store.check_outbox().unwrap().len(), 1, "stale entry seen");
            store.flush_blocking().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store
                .outbox
                .scan_prefix(keys::due_prefix(Queue::Webhook))
                .count(),
            0
        );
        assert_eq!(store.check_outbox().unwrap(), Vec::<String>::new());
    }
}
