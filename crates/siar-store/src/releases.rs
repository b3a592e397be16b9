//! Releases: ingest, publish, correct, retract, and the reads.
//!
//! Each domain step is one transaction that also writes the audit entry and every delivery the
//! step causes, so the outbox can never disagree with a release's state: a release is
//! published if and only if its deliveries are recorded.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use siar_model::{
    AuditEntry, Delivery, DeliveryStatus, Event, Provenance, Release, ReleaseContent, ReleaseId,
    Retraction, Router, Source, Status, Target, Version,
};

use crate::tx::{abort, Tx, TxResult};
use crate::{decode, keys, outbox, Result, Store, StoreError};

/// A release to ingest.
#[derive(Clone, Debug)]
pub struct NewRelease {
    pub content: ReleaseContent,
    /// When it becomes public; at or before `now` means at once.
    pub publish_at: DateTime<Utc>,
    pub provenance: Provenance,
}

/// What ingest did.
#[derive(Clone, Debug)]
pub struct Ingested {
    pub release: Release,
    /// False when the input was already known (same content hash, upstream guid or
    /// idempotency key): `release` is the existing one and nothing was written.
    pub created: bool,
    /// Deliveries recorded by this step (non-zero only if it published at once).
    pub deliveries: usize,
}

/// Which releases a listing returns.
#[derive(Clone, Debug, Default)]
pub struct ReleaseFilter {
    /// Only what the public may see at this instant: published or retracted, `publish_at`
    /// not after it.
    pub public_at: Option<DateTime<Utc>>,
    pub category: Option<siar_model::Category>,
}

/// One page of a listing, newest first.
#[derive(Clone, Debug)]
pub struct Page {
    pub items: Vec<Release>,
    /// Pass back to get the next page; `None` at the end.
    pub next_cursor: Option<String>,
}

const MAX_SLUG: usize = 80;

impl Store {
    /// Stores a new release — or returns the existing one if this input was seen before —
    /// and, if `publish_at` has come, publishes it in the same step.
    pub fn ingest(
        &self,
        new: NewRelease,
        now: DateTime<Utc>,
        router: &dyn Router,
    ) -> Result<Ingested> {
        let mut out = self.ingest_many(vec![new], now, router)?;
        out.pop()
            .ok_or_else(|| corrupt("an ingest batch lost its item"))
    }

    /// [`Store::ingest`] for several releases in one atomic step, in order. An input repeated
    /// within the batch maps to the release its first occurrence made. One step for many
    /// releases costs far less than one step each (sled serialises atomic steps against disk
    /// syncs), which is what lets the daemon group concurrent requests.
    pub fn ingest_many(
        &self,
        items: Vec<NewRelease>,
        now: DateTime<Utc>,
        router: &dyn Router,
    ) -> Result<Vec<Ingested>> {
        let prepared = items
            .into_iter()
            .map(|new| PreparedRelease::new(new, now, router))
            .collect();
        self.ingest_prepared(prepared, now, router)
    }

    /// [`Store::ingest_many`] for releases prepared beforehand (see [`PreparedRelease`]).
    pub fn ingest_prepared(
        &self,
        prepared: Vec<PreparedRelease>,
        now: DateTime<Utc>,
        router: &dyn Router,
    ) -> Result<Vec<Ingested>> {
        let _guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        self.staged("ingesting releases", |tx| {
            prepared
                .iter()
                .map(|p| ingest_in(tx, p, now, router))
                .collect()
        })
    }
    /// The earliest `publish_at` still waiting, if any.
    pub fn next_scheduled(&self) -> Result<Option<DateTime<Utc>>> {
        let first = self
            .releases
            .scan_prefix(b"S")
            .next()
            .transpose()
            .map_err(StoreError::storage("reading the schedule"))?;
        Ok(first
            .and_then(|(k, _)| keys::trailing_ms(&k))
            .and_then(|ms| DateTime::from_timestamp_millis(i64::try_from(ms).ok()?)))
    }

    /// Publishes every scheduled release whose time has come, each in its own step with its
    /// deliveries. A release whose time passed while the daemon was down is published now,
    /// late, exactly once. Returns what was published.
    pub fn publish_due(&self, now: DateTime<Utc>, router: &dyn Router) -> Result<Vec<Release>> {
        self.publish_due_max(now, router, usize::MAX)
    }

    /// [`Store::publish_due`], at most `max` releases (the earliest due first): a caller that
    /// flushes and wakes the delivery workers after each group lets the first partners and
    /// lists get their releases while the rest are still being published.
    pub fn publish_due_max(
        &self,
        now: DateTime<Utc>,
        router: &dyn Router,
        max: usize,
    ) -> Result<Vec<Release>> {
        let mut end = b"S".to_vec();
        end.extend_from_slice(&keys::ms(now));
        end.extend_from_slice(&[0xFF; 16]);
        let due: Vec<ReleaseId> = self
            .releases
            .range(b"S".to_vec()..=end)
            .keys()
            .filter_map(|k| k.ok().and_then(|k| keys::trailing_release(&k)))
            .take(max)
            .collect();
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let _guard = self.writer.lock();
        let mut planned = Vec::with_capacity(due.len());
        for id in due {
            if let Some(current) = self.release(id)? {
                let targets = router.targets(&current.content);
                planned.push((id, targets));
            }
        }
        // One staged step for the group: its writes are the releases' heads and schedule
        // entries (written only under the writer lock, which this holds) and new deliveries
        // and audit entries, so the step needs no transaction (see `staged`).
        let published = self.staged("publishing releases", |tx| {
            let mut published = Vec::new();
            for (id, targets) in &planned {
                let Some(mut r) = tx.release(*id)? else {
                    continue;
                };
                if r.status != Status::Scheduled || r.publish_at > now {
                    continue;
                }
                tx.rel.remove(keys::scheduled(r.publish_at, *id))?;
                let n = publish_in(tx, &mut r, now, targets, router)?;
                let late = now - r.publish_at;
                tx.audit(AuditEntry {
                    at: now,
                    actor: "scheduler".into(),
                    action: "publish".into(),
                    release_id: Some(*id),
                    detail: if late > chrono::Duration::seconds(60) {
                        format!(
                            "published {} s after publish_at; {n} deliveries",
                            late.num_seconds()
                        )
                    } else {
                        format!("{n} deliveries")
                    },
                })?;
                tx.put_release(&r)?;
                published.push(r);
            }
            Ok(published)
        })?;
        Ok(published)
    }

    /// Adds a corrected version. It goes, marked as a correction, to every target that
    /// received an earlier version; targets still waiting for an earlier version get this one
    /// instead, as a first publication; newly matching targets get it too. Sending the current
    /// content again changes nothing (`created == false`).
    pub fn correct(
        &self,
        id: ReleaseId,
        content: ReleaseContent,
        note: &str,
        provenance: Provenance,
        now: DateTime<Utc>,
        router: &dyn Router,
    ) -> Result<Ingested> {
        let _guard = self.writer.lock();
        let existing = self.deliveries_for_release(id)?;
        let targets = router.targets(&content);
        // Held through the step: no delivery of this release is claimed or settled meanwhile,
        // so once the journal is drained the transaction sees them all in the tree.
        let leases = self.leases.lock();
        self.journal.drain()?;
        self.atomically("correcting a release", |tx| {
            let Some(mut r) = tx.release(id)? else {
                return abort(StoreError::ReleaseNotFound(id));
            };
            if r.status == Status::Retracted {
                return abort(StoreError::Conflict(format!(
                    "release {id} was retracted; a retracted release cannot be corrected"
                )));
            }
            let current: Option<Version> = read_version(tx, id, r.version)?;
            if current.as_ref().map(|v| &v.provenance.content_hash)
                == Some(&provenance.content_hash)
            {
                return Ok(Ingested {
                    release: r,
                    created: false,
                    deliveries: 0,
                });
            }
            let number = r.version + 1;
            tx.put_version(&Version {
                release_id: id,
                number,
                content: content.clone(),
                created_at: now,
                correction_note: Some(note.to_owned()),
                provenance: provenance.clone(),
            })?;
            for c in &r.content.categories {
                tx.rel.remove(keys::by_category(c, r.publish_at, id))?;
            }
            for c in &content.categories {
                tx.rel.insert(keys::by_category(c, r.publish_at, id), &[])?;
            }
            tx.rel
                .insert(keys::idem("hash", &provenance.content_hash), &id.to_bytes())?;
            if let Some(k) = &provenance.idempotency_key {
                tx.rel.insert(keys::idem("key", k), &id.to_bytes())?;
            }
            r.version = number;
            r.content = content.clone();
            r.correction_notes.push(note.to_owned());
            r.updated_at = now;
            let mut deliveries = 0;
            if r.status == Status::Published {
                let plan = plan_followup(tx, &existing, &leases, now)?;
                let mut seen = BTreeSet::new();
                for t in &plan.received {
                    seen.insert(t.clone());
                    deliveries += enqueue(tx, &r, Event::Corrected, t, now, router)?;
                }
                for t in plan.waiting.iter().chain(&targets) {
                    if seen.insert(t.clone()) {
                        deliveries += enqueue(tx, &r, Event::Published, t, now, router)?;
                    }
                }
            }
            tx.put_release(&r)?;
            tx.audit(AuditEntry {
                at: now,
                actor: provenance.source.actor(),
                action: "correct".into(),
                release_id: Some(id),
                detail: format!("version {number}: {note}"),
            })?;
            Ok(Ingested {
                release: r,
                created: true,
                deliveries,
            })
        })
    }

    /// Withdraws a release. Only targets that received it are told; anything still waiting
    /// to go out is superseded. A scheduled release is withdrawn before anyone saw it.
    pub fn retract(
        &self,
        id: ReleaseId,
        reason: &str,
        actor: &str,
        now: DateTime<Utc>,
        router: &dyn Router,
    ) -> Result<Release> {
        let _guard = self.writer.lock();
        let existing = self.deliveries_for_release(id)?;
        let leases = self.leases.lock();
        self.journal.drain()?;
        self.atomically("retracting a release", |tx| {
            let Some(mut r) = tx.release(id)? else {
                return abort(StoreError::ReleaseNotFound(id));
            };
            if r.status == Status::Retracted {
                return Ok(r);
            }
            if r.status == Status::Scheduled {
                tx.rel.remove(keys::scheduled(r.publish_at, id))?;
            }
            let plan = plan_followup(tx, &existing, &leases, now)?;
            for t in &plan.received {
                enqueue(tx, &r, Event::Retracted, t, now, router)?;
            }
            r.status = Status::Retracted;
            r.retraction = Some(Retraction {
                at: now,
                reason: reason.to_owned(),
            });
            r.updated_at = now;
            tx.put_release(&r)?;
            tx.audit(AuditEntry {
                at: now,
                actor: actor.to_owned(),
                action: "retract".into(),
                release_id: Some(id),
                detail: reason.to_owned(),
            })?;
            Ok(r)
        })
    }

    pub fn release(&self, id: ReleaseId) -> Result<Option<Release>> {
        let Some(head) = self
            .docs
            .get(keys::release(id))
            .map_err(StoreError::storage("reading a release"))?
            .map(|v| decode::<crate::record::Head>(&v, "release"))
            .transpose()?
        else {
            return Ok(None);
        };
        let n = head.version;
        let v = self
            .version(id, n)?
            .ok_or_else(|| crate::record::missing_version(id, n))?;
        Ok(Some(head.with(v.content)))
    }

    pub fn release_by_slug(&self, slug: &str) -> Result<Option<Release>> {
        let Some(v) = self
            .releases
            .get(keys::slug(slug))
            .map_err(StoreError::storage("reading a slug"))?
        else {
            return Ok(None);
        };
        let bytes: [u8; 16] = v.as_ref().try_into().map_err(|_| corrupt("slug index"))?;
        self.release(ReleaseId::from_bytes(bytes))
    }

    /// The release an idempotency key (`hash:…`, `guid:…`, `key:…`) points at.
    pub fn release_by_key(&self, kind: &str, value: &str) -> Result<Option<Release>> {
        let Some(v) = self
            .releases
            .get(keys::idem(kind, value))
            .map_err(StoreError::storage("reading an idempotency key"))?
        else {
            return Ok(None);
        };
        let bytes: [u8; 16] = v
            .as_ref()
            .try_into()
            .map_err(|_| corrupt("idempotency key"))?;
        self.release(ReleaseId::from_bytes(bytes))
    }

    pub fn version(&self, id: ReleaseId, n: u32) -> Result<Option<Version>> {
        self.docs
            .get(keys::version(id, n))
            .map_err(StoreError::storage("reading a version"))?
            .map(|v| decode(&v, "version"))
            .transpose()
    }

    /// Every version of a release, oldest first.
    pub fn versions(&self, id: ReleaseId) -> Result<Vec<Version>> {
        let mut prefix = b"V".to_vec();
        prefix.extend_from_slice(&id.to_bytes());
        self.docs
            .scan_prefix(prefix)
            .values()
            .map(|v| {
                decode(
                    &v.map_err(StoreError::storage("reading versions"))?,
                    "version",
                )
            })
            .collect()
    }

    /// Releases newest first (by `publish_at`), `limit` at a time.
    pub fn list(&self, filter: &ReleaseFilter, limit: usize, cursor: Option<&str>) -> Result<Page> {
        let prefix = match &filter.category {
            Some(c) => keys::category_prefix(c),
            None => b"P".to_vec(),
        };
        let mut end = prefix.clone();
        match cursor {
            Some(c) => end.extend_from_slice(&decode_cursor(c)?),
            None => {
                let upper = filter.public_at.map(keys::ms).unwrap_or([0xFF; 8]);
                end.extend_from_slice(&upper);
                end.extend_from_slice(&[0xFF; 16]);
            }
        }
        let mut items = Vec::new();
        let mut last_key = None;
        for k in self.releases.range(prefix.clone()..end).keys().rev() {
            let k = k.map_err(StoreError::storage("listing releases"))?;
            let Some(id) = keys::trailing_release(&k) else {
                continue;
            };
            last_key = Some(k.clone());
            let Some(r) = self.release(id)? else { continue };
            if let Some(at) = filter.public_at {
                if !r.is_public() || r.publish_at > at {
                    continue;
                }
            }
            items.push(r);
            if items.len() >= limit {
                break;
            }
        }
        let next_cursor = if items.len() >= limit {
            last_key.map(|k| encode_cursor(&k[prefix.len()..]))
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    /// Every delivery ever recorded for a release, oldest first.
    pub fn deliveries_for_release(&self, id: ReleaseId) -> Result<Vec<Delivery>> {
        let mut out = Vec::new();
        for kv in self.journal.prefix(&keys::by_release_prefix(id)) {
            let (_, v) = kv?;
            let Ok(bytes) = <[u8; 16]>::try_from(v.as_ref()) else {
                return Err(corrupt("delivery index entry"));
            };
            out.extend(self.delivery(siar_model::DeliveryId::from_bytes(bytes))?);
        }
        // Ids grow with time: oldest first.
        out.sort_by_key(|d| d.id);
        Ok(out)
    }
}

/// A new release with everything that needs no transaction done: its id, slug base, targets
/// and encoded first version. Preparing on the caller's thread keeps that work out of the
/// single atomic step that stores a group of releases.
pub struct PreparedRelease {
    new: NewRelease,
    id: ReleaseId,
    idem: Vec<Vec<u8>>,
    base_slug: String,
    targets: Vec<Target>,
    /// Version 1's JSON.
    v1: Vec<u8>,
}

impl PreparedRelease {
    pub fn new(new: NewRelease, now: DateTime<Utc>, router: &dyn Router) -> Self {
        let id = ReleaseId::at(now);
        let base_slug = Some(siar_model::text::slugify(&new.content.title, MAX_SLUG))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "siaran".to_owned());
        let v1 = crate::encode(&Version {
            release_id: id,
            number: 1,
            content: new.content.clone(),
            created_at: now,
            correction_note: None,
            provenance: new.provenance.clone(),
        });
        Self {
            idem: idem_keys(&new.provenance),
            targets: router.targets(&new.content),
            new,
            id,
            base_slug,
            v1,
        }
    }
}

pub(crate) fn ingest_in(
    tx: &Tx<'_>,
    p: &PreparedRelease,
    now: DateTime<Utc>,
    router: &dyn Router,
) -> TxResult<Ingested> {
    let (new, id) = (&p.new, p.id);
    for k in &p.idem {
        if let Some(existing) = tx.rel.get(k)? {
            let Ok(bytes) = <[u8; 16]>::try_from(existing.as_ref()) else {
                return abort(corrupt("idempotency key"));
            };
            let Some(release) = tx.release(ReleaseId::from_bytes(bytes))? else {
                // Left by a write that failed part-way (it is undone when the store is next
                // opened): the input is not known after all.
                continue;
            };
            return Ok(Ingested {
                release,
                created: false,
                deliveries: 0,
            });
        }
    }
    let slug = free_slug(tx, &p.base_slug, id)?;
    let mut release = Release {
        id,
        slug: slug.clone(),
        status: Status::Scheduled,
        publish_at: new.publish_at,
        published_at: None,
        created_at: now,
        updated_at: now,
        version: 1,
        content: new.content.clone(),
        correction_notes: Vec::new(),
        retraction: None,
        provenance: new.provenance.clone(),
    };
    tx.put_encoded_version(id, 1, &p.v1)?;
    tx.rel.insert(keys::slug(&slug), &id.to_bytes())?;
    tx.rel.insert(keys::by_publish(new.publish_at, id), &[])?;
    for c in &new.content.categories {
        tx.rel
            .insert(keys::by_category(c, new.publish_at, id), &[])?;
    }
    for k in &p.idem {
        tx.rel.insert(k.as_slice(), &id.to_bytes())?;
    }
    let mut deliveries = 0;
    let detail = if new.publish_at <= now {
        deliveries = publish_in(tx, &mut release, now, &p.targets, router)?;
        format!("version 1, published at once; {deliveries} deliveries")
    } else {
        tx.rel.insert(keys::scheduled(new.publish_at, id), &[])?;
        format!("version 1, scheduled for {}", new.publish_at.to_rfc3339())
    };
    // One entry for ingest and an immediate publication: half the audit writes on the
    // busiest path.
    tx.audit(AuditEntry {
        at: now,
        actor: new.provenance.source.actor(),
        action: "ingest".into(),
        release_id: Some(id),
        detail,
    })?;
    tx.put_release(&release)?;
    Ok(Ingested {
        release,
        created: true,
        deliveries,
    })
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt {
        what: what.to_owned(),
        message: "unexpected key or value length".into(),
    }
}

fn encode_cursor(k: &[u8]) -> String {
    k.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_cursor(c: &str) -> Result<Vec<u8>> {
    let bad = || {
        StoreError::Conflict(format!(
            "`{}` is not a valid cursor",
            c.chars().take(60).collect::<String>()
        ))
    };
    if c.len() != 48 || !c.is_ascii() {
        return Err(bad());
    }
    (0..c.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&c[i..i + 2], 16).map_err(|_| bad()))
        .collect()
}

fn idem_keys(p: &Provenance) -> Vec<Vec<u8>> {
    let mut ks = vec![keys::idem("hash", &p.content_hash)];
    if let Source::Upstream { name, guid } = &p.source {
        ks.push(keys::idem("guid", &format!("{name}:{guid}")));
    }
    if let Some(k) = &p.idempotency_key {
        ks.push(keys::idem("key", k));
    }
    ks
}

/// `base`, else `base-2` … `base-9`, else `base-` and the id's last characters: readable for
/// the usual few repeats, and bounded however often a title recurs.
fn free_slug(tx: &Tx<'_>, base: &str, id: ReleaseId) -> TxResult<String> {
    if tx.rel.get(keys::slug(base))?.is_none() {
        return Ok(base.to_owned());
    }
    for n in 2..10 {
        let s = format!("{base}-{n}");
        if tx.rel.get(keys::slug(&s))?.is_none() {
            return Ok(s);
        }
    }
    let id = id.to_string().to_lowercase();
    Ok(format!("{base}-{}", &id[id.len() - 10..]))
}

fn read_version(tx: &Tx<'_>, id: ReleaseId, n: u32) -> TxResult<Option<Version>> {
    match tx
        .docs
        .get(keys::version(id, n))?
        .map(|v| decode(&v, "version"))
        .transpose()
    {
        Ok(v) => Ok(v),
        Err(e) => abort(e),
    }
}

/// Marks the release published and records a delivery for each target.
/// Marks the release published and records a delivery for each target. The caller writes
/// the audit entry.
fn publish_in(
    tx: &Tx<'_>,
    r: &mut Release,
    now: DateTime<Utc>,
    targets: &[Target],
    router: &dyn Router,
) -> TxResult<usize> {
    r.status = Status::Published;
    r.published_at = Some(now);
    r.updated_at = now;
    let mut n = 0;
    for t in targets {
        n += enqueue(tx, r, Event::Published, t, now, router)?;
    }
    Ok(n)
}

fn enqueue(
    tx: &Tx<'_>,
    r: &Release,
    event: Event,
    target: &Target,
    now: DateTime<Utc>,
    router: &dyn Router,
) -> TxResult<usize> {
    // Never early: nothing is due before the release's own publish time.
    let due = router.due_at(target, now).max(r.publish_at).max(now);
    Ok(usize::from(outbox::enqueue_in(
        tx,
        r.id,
        r.version,
        event,
        target.clone(),
        due,
        now,
    )?))
}

/// Who got what so far, for a correction or retraction.
struct Followup {
    /// Targets that received (or may have received: in flight) an earlier version.
    received: Vec<Target>,
    /// Targets that were owed an earlier version that has not gone out; those deliveries are
    /// now superseded.
    waiting: Vec<Target>,
}

fn plan_followup(
    tx: &Tx<'_>,
    existing: &[Delivery],
    leases: &crate::outbox::Leases,
    now: DateTime<Utc>,
) -> TxResult<Followup> {
    let mut state: BTreeMap<Target, (bool, bool)> = BTreeMap::new();
    for d in existing {
        // Re-read inside the transaction: the scan happened outside it.
        let Some(d) = tx.delivery(d.id)? else {
            continue;
        };
        let entry = state.entry(d.target.clone()).or_default();
        // A leased delivery is being attempted: it may have arrived.
        let status = if leases.contains_key(&d.id) {
            DeliveryStatus::InFlight
        } else {
            d.status
        };
        match status {
            DeliveryStatus::Delivered | DeliveryStatus::InFlight => {
                if d.event != Event::Retracted {
                    entry.0 = true;
                }
            }
            DeliveryStatus::Pending => {
                let mut s = d.clone();
                s.status = DeliveryStatus::Superseded;
                s.updated_at = now;
                tx.put_delivery(Some(&d), &s)?;
                if d.event != Event::Retracted {
                    entry.1 = true;
                }
            }
            DeliveryStatus::Failed | DeliveryStatus::Superseded => {}
        }
    }
    let received = state
        .iter()
        .filter(|(_, s)| s.0)
        .map(|(t, _)| t.clone())
        .collect();
    let waiting = state
        .iter()
        .filter(|(_, s)| !s.0 && s.1)
        .map(|(t, _)| t.clone())
        .collect();
    Ok(Followup { received, waiting })
}
