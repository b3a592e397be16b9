//! Typed access to the trees inside one atomic step: a sled transaction, or a staged write
//! (see [`crate::staged`]).

use siar_model::{AuditEntry, Delivery, DeliveryStatus, Release, Version};
use sled::transaction::{
    ConflictableTransactionError, ConflictableTransactionResult, TransactionError,
    TransactionalTree,
};
use sled::{IVec, Transactional};

use crate::record::{missing_version, Head, HeadRef};
use crate::{decode, encode, keys, Store, StoreError};

pub(crate) type TxResult<T> = ConflictableTransactionResult<T, StoreError>;

pub(crate) fn abort<T>(e: StoreError) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(e))
}

pub(crate) struct Tx<'a> {
    pub rel: View<'a>,
    pub docs: View<'a>,
    pub out: View<'a>,
    pub audit: View<'a>,
}

/// One tree as an atomic step sees it.
pub(crate) enum View<'a> {
    /// Inside a sled transaction.
    Tx(&'a TransactionalTree),
    /// Writes gathered in memory, to be applied together (reads see them).
    Staged(&'a crate::staged::Stage),
}

impl View<'_> {
    pub fn get<K: AsRef<[u8]>>(&self, key: K) -> TxResult<Option<IVec>> {
        match self {
            View::Tx(t) => Ok(t.get(key)?),
            View::Staged(s) => s.get(key.as_ref()),
        }
    }

    pub fn insert<K, V>(&self, key: K, value: V) -> TxResult<Option<IVec>>
    where
        K: AsRef<[u8]> + Into<IVec>,
        V: Into<IVec>,
    {
        match self {
            View::Tx(t) => Ok(t.insert(key, value)?),
            View::Staged(s) => s.put(key.into(), Some(value.into())),
        }
    }

    pub fn remove<K>(&self, key: K) -> TxResult<Option<IVec>>
    where
        K: AsRef<[u8]> + Into<IVec>,
    {
        match self {
            View::Tx(t) => Ok(t.remove(key)?),
            View::Staged(s) => s.put(key.into(), None),
        }
    }
}

impl Store {
    /// Runs `f` as one atomic step over all trees. sled may run `f` more than once when
    /// transactions conflict, so `f` must have no side effects outside the transaction.
    pub(crate) fn atomically<T>(
        &self,
        op: &'static str,
        f: impl Fn(&Tx<'_>) -> TxResult<T>,
    ) -> Result<T, StoreError> {
        let _gate = self.write_gate();
        (&self.releases, &self.docs, &self.outbox, &self.audit)
            .transaction(|(rel, docs, out, audit)| {
                f(&Tx {
                    rel: View::Tx(rel),
                    docs: View::Tx(docs),
                    out: View::Tx(out),
                    audit: View::Tx(audit),
                })
            })
            .map_err(|e| match e {
                TransactionError::Abort(e) => e,
                TransactionError::Storage(e) => StoreError::Storage {
                    op,
                    message: e.to_string(),
                },
            })
    }
}

fn read<T: serde::de::DeserializeOwned>(v: Option<sled::IVec>, what: &str) -> TxResult<Option<T>> {
    match v.map(|v| decode(&v, what)).transpose() {
        Ok(x) => Ok(x),
        Err(e) => abort(e),
    }
}

impl Tx<'_> {
    pub fn release(&self, id: siar_model::ReleaseId) -> TxResult<Option<Release>> {
        let Some(head) = read::<Head>(self.docs.get(keys::release(id))?, "release")? else {
            return Ok(None);
        };
        let Some(v) = read::<Version>(self.docs.get(keys::version(id, head.version))?, "version")?
        else {
            return abort(missing_version(id, head.version));
        };
        Ok(Some(head.with(v.content)))
    }

    /// Writes the release's state; its content is the current version's, written by
    /// [`Tx::put_version`].
    pub fn put_release(&self, r: &Release) -> TxResult<()> {
        self.docs
            .insert(keys::release(r.id), encode(&HeadRef::of(r)))?;
        Ok(())
    }

    pub fn put_version(&self, v: &Version) -> TxResult<()> {
        self.put_encoded_version(v.release_id, v.number, &encode(v))
    }

    /// [`Tx::put_version`] with the JSON made beforehand, outside the transaction.
    pub fn put_encoded_version(
        &self,
        id: siar_model::ReleaseId,
        n: u32,
        json: &[u8],
    ) -> TxResult<()> {
        self.docs.insert(keys::version(id, n), json)?;
        Ok(())
    }

    pub fn delivery(&self, id: siar_model::DeliveryId) -> TxResult<Option<Delivery>> {
        match self
            .out
            .get(keys::delivery(id))?
            .map(|v| crate::codec::decode_delivery(&v))
        {
            Some(Ok(d)) => Ok(Some(d)),
            Some(Err(e)) => abort(e),
            None => Ok(None),
        }
    }

    /// Writes a delivery and keeps its index entries in step with its status (see
    /// [`delivery_writes`]).
    pub fn put_delivery(&self, old: Option<&Delivery>, new: &Delivery) -> TxResult<()> {
        for (k, v) in delivery_writes(old, new) {
            match v {
                Some(v) => self.out.insert(k, v)?,
                None => self.out.remove(k)?,
            };
        }
        Ok(())
    }

    pub fn audit(&self, e: AuditEntry) -> TxResult<()> {
        // Milliseconds then a process-wide sequence: entries written in the same millisecond
        // keep their order.
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut key = keys::ms(e.at).to_vec();
        key.extend_from_slice(&seq.to_be_bytes());
        self.audit.insert(key, encode(&e))?;
        Ok(())
    }
}

/// The outbox writes that store `new` over `old` (`None`: a new delivery) and keep its index
/// entries in step with its status: a pending delivery is in the due index at `due_at`, a
/// settled one not at all. Index entries that stay the same are neither removed nor written
/// again. `None` as a value removes the key.
pub(crate) fn delivery_writes(
    old: Option<&Delivery>,
    new: &Delivery,
) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    let mut w = Vec::with_capacity(6);
    let (old_due, new_due) = (old.and_then(due_key), due_key(new));
    let (old_partner, new_partner) = (old.and_then(partner_due_key), partner_due_key(new));
    if let Some(old) = old {
        if old_due != new_due {
            w.extend(old_due.clone().map(|k| (k, None)));
        }
        if old_partner != new_partner {
            w.extend(old_partner.clone().map(|k| (k, None)));
        }
        if old.status != new.status {
            w.push((keys::by_status(old.status, old.id), None));
        }
    }
    if old.is_none() || old_due != new_due {
        w.extend(new_due.map(|k| (k, Some(Vec::new()))));
    }
    if old.is_none() || old_partner != new_partner {
        w.extend(new_partner.map(|k| (k, Some(Vec::new()))));
    }
    if old.is_none_or(|o| o.status != new.status) {
        w.push((keys::by_status(new.status, new.id), Some(Vec::new())));
    }
    w.push((
        keys::delivery(new.id),
        Some(crate::codec::encode_delivery(new)),
    ));
    w
}

/// The per-partner due index entry of a webhook delivery (at the same time as [`due_key`]).
pub(crate) fn partner_due_key(d: &Delivery) -> Option<Vec<u8>> {
    let siar_model::Target::Partner(p) = &d.target else {
        return None;
    };
    match d.status {
        DeliveryStatus::Pending | DeliveryStatus::InFlight => {
            Some(keys::partner_due(p, d.due_at, d.id))
        }
        _ => None,
    }
}

pub(crate) fn due_key(d: &Delivery) -> Option<Vec<u8>> {
    let q = d.target.queue();
    if q == siar_model::Queue::Webhook {
        // Webhooks are indexed by partner alone (see `partner_due_key`).
        return None;
    }
    match d.status {
        // In flight: still at its due time; a claim skips it while its lease lives.
        DeliveryStatus::Pending | DeliveryStatus::InFlight => Some(keys::due(q, d.due_at, d.id)),
        _ => None,
    }
}
