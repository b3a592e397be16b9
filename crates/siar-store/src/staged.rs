//! Staged writes: an atomic step that does not hold sled's transaction lock.
//!
//! sled runs every transaction under a global lock that excludes disk syncs, so a transaction
//! waits for any sync in progress and the next sync waits for it. Ingest, the busiest writer,
//! instead plans a group of new releases against staged views of the trees (reads see the
//! writes staged before them), then applies the writes as plain sled writes, which run while
//! a sync is in progress: storing the next group overlaps making the previous one durable.
//!
//! Atomicity across a crash comes from an undo record. Before the first write, the previous
//! value of every key the step writes goes into the `intents` tree; after the last write, the
//! record is removed. sled recovers its log as a prefix, so if any write of the step survived a
//! crash, so did its undo record, and if the removal survived, so did every write. Opening the
//! store rolls back every step whose record is still there ([`Store::roll_back_unfinished`]):
//! none of its writes had been flushed, so nobody was told it was done.
//!
//! Staged steps are serialised by the store's writer lock. Other writers use transactions on
//! other keys: the keys a staged step writes are new (a new release's records, indexes,
//! deliveries and audit entries) or written only under the writer lock (a release's head and
//! schedule entry, when publishing what came due), so no transaction wrote them before the
//! step's record was removed.

use rustc_hash::FxHashMap as HashMap;
use std::cell::RefCell;

use sled::transaction::ConflictableTransactionError;
use sled::IVec;

use crate::journal::{put_entry, take_entry};
use crate::tx::{Tx, TxResult, View};

/// The journal's tree in undo records (the other trees: see `Store::tree_by_number`).
const JOURNAL: u8 = 4;
use crate::{Store, StoreError};

/// The staged writes to one tree.
pub(crate) struct Stage {
    tree: sled::Tree,
    /// The tree's number in undo records.
    which: u8,
    /// The latest staged value of each key written (`None`: removed).
    latest: RefCell<HashMap<Vec<u8>, Option<IVec>>>,
    /// Every write, in order.
    writes: RefCell<Vec<(IVec, Option<IVec>)>>,
    /// Each written key's value before the step.
    undo: RefCell<Vec<(IVec, Option<IVec>)>>,
    /// Set for the outbox: reads see the journal, and the writes become one journal record
    /// (so they need no undo entries of their own).
    journal: Option<std::sync::Arc<crate::journal::Journal>>,
}

impl Stage {
    fn new(tree: &sled::Tree, which: u8) -> Self {
        Self {
            tree: tree.clone(),
            which,
            latest: RefCell::default(),
            writes: RefCell::default(),
            undo: RefCell::default(),
            journal: None,
        }
    }

    fn journaled(
        tree: &sled::Tree,
        which: u8,
        journal: &std::sync::Arc<crate::journal::Journal>,
    ) -> Self {
        Self {
            journal: Some(journal.clone()),
            ..Self::new(tree, which)
        }
    }

    /// `key` as the step sees it: its own writes, then the journal (for the outbox), then
    /// the tree.
    fn current(&self, key: &[u8]) -> TxResult<Option<IVec>> {
        if let Some(v) = self.journal.as_ref().and_then(|j| j.get(key)) {
            return Ok(v);
        }
        self.tree
            .get(key)
            .map_err(ConflictableTransactionError::Storage)
    }

    pub(crate) fn get(&self, key: &[u8]) -> TxResult<Option<IVec>> {
        if let Some(v) = self.latest.borrow().get(key) {
            return Ok(v.clone());
        }
        self.current(key)
    }

    /// Stages `value` (`None`: removal) for `key`; returns the value it replaces (always
    /// `None` for the journaled outbox).
    pub(crate) fn put(&self, key: IVec, value: Option<IVec>) -> TxResult<Option<IVec>> {
        let staged = self.latest.borrow().get(key.as_ref()).cloned();
        let previous = match staged {
            Some(v) => v,
            // A journaled write needs no undo entry, and its callers ignore what it replaced:
            // no read.
            None if self.journal.is_some() => None,
            None => {
                let before = self.current(&key)?;
                self.undo.borrow_mut().push((key.clone(), before.clone()));
                before
            }
        };
        self.latest.borrow_mut().insert(key.to_vec(), value.clone());
        self.writes.borrow_mut().push((key, value));
        Ok(previous)
    }
}

/// An undo record: for each key, its tree and its value before the step.
fn encode_undo(stages: &[Stage]) -> Vec<u8> {
    let mut out = Vec::new();
    for s in stages {
        for (k, v) in s.undo.borrow().iter() {
            out.push(s.which);
            put_entry(&mut out, k, v.as_deref());
        }
    }
    out
}

type Undo = Vec<(u8, Vec<u8>, Option<Vec<u8>>)>;

fn decode_undo(mut b: &[u8]) -> Option<Undo> {
    let mut out = Vec::new();
    while let Some((&which, rest)) = b.split_first() {
        b = rest;
        let (key, value) = take_entry(&mut b)?;
        out.push((which, key, value));
    }
    Some(out)
}

impl Store {
    fn tree_by_number(&self, which: u8) -> Option<&sled::Tree> {
        match which {
            0 => Some(&self.releases),
            1 => Some(&self.docs),
            2 => Some(&self.outbox),
            3 => Some(&self.audit),
            JOURNAL => Some(&self.journal_log),
            _ => None,
        }
    }

    /// Runs `f` on staged views of the trees, then applies what it wrote as one step that
    /// is atomic across crashes (see the module documentation). The caller holds the writer
    /// lock. Like a transaction, nothing is durable until [`Store::flush`].
    pub(crate) fn staged<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&Tx<'_>) -> TxResult<T>,
    ) -> Result<T, StoreError> {
        let (out, stages) = self.plan(op, f)?;
        self.apply(op, &stages, usize::MAX)?;
        Ok(out)
    }

    /// Runs `f` on staged views of the trees: its result and its writes, not yet applied.
    fn plan<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&Tx<'_>) -> TxResult<T>,
    ) -> Result<(T, [Stage; 4]), StoreError> {
        // Applied in this order: a release's records before its indexes, its deliveries last,
        // so a reader that finds an index entry or a delivery finds the release too.
        let stages = [
            Stage::new(&self.docs, 1),
            Stage::new(&self.releases, 0),
            Stage::new(&self.audit, 3),
            Stage::journaled(&self.outbox, 2, &self.journal),
        ];
        let out = {
            let tx = Tx {
                docs: View::Staged(&stages[0]),
                rel: View::Staged(&stages[1]),
                audit: View::Staged(&stages[2]),
                out: View::Staged(&stages[3]),
            };
            f(&tx).map_err(|e| match e {
                ConflictableTransactionError::Abort(e) => e,
                ConflictableTransactionError::Storage(e) => StoreError::Storage {
                    op,
                    message: e.to_string(),
                },
                other => StoreError::Storage {
                    op,
                    message: format!("{other:?}"),
                },
            })?
        };
        Ok((out, stages))
    }

    /// Applies the staged writes under an undo record. Only the first `limit` writes when a
    /// test simulates a crash part-way (and then the record stays).
    fn apply(&self, op: &'static str, stages: &[Stage], limit: usize) -> Result<(), StoreError> {
        if stages.iter().all(|s| s.writes.borrow().is_empty()) {
            return Ok(());
        }
        // The outbox's writes, as one journal record: held numbered and unseen by drains
        // until the step is done (see `journal`).
        let journaled: Vec<(IVec, Option<IVec>)> = stages
            .iter()
            .filter(|s| s.journal.is_some())
            .flat_map(|s| s.writes.borrow().clone())
            .collect();
        let _gate = self.write_gate();
        let mut journal = (!journaled.is_empty()).then(|| self.journal.lock());
        let number = match journal {
            Some(_) => Some(self.journal.next_number()?),
            None => None,
        };
        let storage = StoreError::storage(op);
        let record = self
            .db
            .generate_id()
            .map_err(StoreError::storage(op))?
            .to_be_bytes();
        let mut undo = encode_undo(stages);
        if let Some(n) = number {
            // Undone, the journal record is removed: it did not exist before the step.
            undo.push(JOURNAL);
            put_entry(&mut undo, &crate::journal::Journal::record_key(n), None);
        }
        self.intents
            .insert(record, undo)
            .map_err(StoreError::storage(op))?;
        let mut budget = limit;
        let applied = stages
            .iter()
            .filter(|s| s.journal.is_none())
            .try_for_each(|s| {
                s.writes.borrow().iter().try_for_each(|(k, v)| {
                    if budget == 0 {
                        return Ok(());
                    }
                    budget -= 1;
                    match v {
                        Some(v) => s.tree.insert(k, v.clone()).map(drop),
                        None => s.tree.remove(k).map(drop),
                    }
                })
            })
            .and_then(|()| match number {
                Some(n) if budget > 0 => {
                    budget -= 1;
                    self.journal_log
                        .insert(
                            crate::journal::Journal::record_key(n),
                            crate::journal::encode(&journaled),
                        )
                        .map(drop)
                }
                _ => Ok(()),
            });
        if let Err(e) = applied {
            // Undo what was applied, now if possible, else when the store is next opened.
            if let Err(undo) = self.roll_back(&record) {
                tracing::error!(error = %undo, "A failed write could not be undone now; it will be when the store is next opened.");
            }
            return Err(storage(e));
        }
        if budget == 0 && limit != usize::MAX {
            return Ok(());
        }
        self.intents.remove(record).map_err(storage)?;
        if let (Some(state), Some(n)) = (journal.as_mut(), number) {
            self.journal.publish(state, n, journaled);
        }
        Ok(())
    }

    /// Restores the values the step with undo record `record` replaced, and drops the record.
    fn roll_back(&self, record: &[u8]) -> Result<(), StoreError> {
        let Some(bytes) = self
            .intents
            .get(record)
            .map_err(StoreError::storage("reading an undo record"))?
        else {
            return Ok(());
        };
        let undo = decode_undo(&bytes).ok_or_else(|| StoreError::Corrupt {
            what: "undo record".into(),
            message: "truncated or unknown entry".into(),
        })?;
        for (which, key, value) in undo.into_iter().rev() {
            let tree = self
                .tree_by_number(which)
                .ok_or_else(|| StoreError::Corrupt {
                    what: "undo record".into(),
                    message: format!("unknown tree {which}"),
                })?;
            match value {
                Some(v) => tree.insert(key, v).map(drop),
                None => tree.remove(key).map(drop),
            }
            .map_err(StoreError::storage("undoing an unfinished write"))?;
        }
        self.intents
            .remove(record)
            .map_err(StoreError::storage("dropping an undo record"))?;
        Ok(())
    }

    /// Rolls back every staged step a crash interrupted; run when the store is opened.
    /// Returns how many there were.
    pub(crate) fn roll_back_unfinished(&self) -> Result<usize, StoreError> {
        let records: Vec<IVec> = self
            .intents
            .iter()
            .keys()
            .collect::<Result<_, _>>()
            .map_err(StoreError::storage("reading undo records"))?;
        for r in records.iter().rev() {
            self.roll_back(r)?;
        }
        if !records.is_empty() {
            self.flush_blocking()?;
        }
        Ok(records.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undo_records_round_trip_and_reject_junk() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let tree = db.open_tree("t").unwrap();
        tree.insert(b"old", b"before".as_slice()).unwrap();
        let s = Stage::new(&tree, 2);
        s.put(
            IVec::from(b"new".as_slice()),
            Some(IVec::from(b"v".as_slice())),
        )
        .unwrap();
        s.put(IVec::from(b"old".as_slice()), None).unwrap();
        s.put(
            IVec::from(b"old".as_slice()),
            Some(IVec::from(b"x".as_slice())),
        )
        .unwrap();
        // Reads see the staged writes; the tree does not, yet.
        assert_eq!(s.get(b"old").unwrap().as_deref(), Some(b"x".as_slice()));
        assert_eq!(tree.get(b"new").unwrap(), None);
        let undo = decode_undo(&encode_undo(std::slice::from_ref(&s))).unwrap();
        assert_eq!(
            undo,
            vec![
                (2, b"new".to_vec(), None),
                (2, b"old".to_vec(), Some(b"before".to_vec())),
            ]
        );
        assert_eq!(decode_undo(&[2, 0, 0, 0, 9, 1]), None);
        assert_eq!(decode_undo(&[2, 0, 0, 0, 1, b'k', 7]), None);
    }

    struct OnePartner;

    impl siar_model::Router for OnePartner {
        fn targets(&self, _: &siar_model::ReleaseContent) -> Vec<siar_model::Target> {
            vec![siar_model::Target::Partner("mitra".into())]
        }
        fn due_at(
            &self,
            _: &siar_model::Target,
            now: chrono::DateTime<chrono::Utc>,
        ) -> chrono::DateTime<chrono::Utc> {
            now
        }
    }

    fn new(title: &str, hash: &str, now: chrono::DateTime<chrono::Utc>) -> crate::NewRelease {
        crate::NewRelease {
            content: siar_model::ReleaseContent {
                title: title.into(),
                body: vec![format!("Isi {title}.")],
                categories: vec![siar_model::Category::parse("ekonomi").unwrap()],
                language: "id".into(),
                ..Default::default()
            },
            publish_at: now,
            provenance: siar_model::Provenance {
                source: siar_model::Source::Api,
                content_hash: hash.into(),
                received_at: now,
                idempotency_key: Some(format!("key-{hash}")),
            },
        }
    }

    /// A crash part-way through applying a group: at every cut point, reopening the store
    /// leaves exactly what was there before the group, and the group can be stored again.
    #[test]
    fn a_step_interrupted_part_way_is_rolled_back_when_the_store_is_opened() {
        let now = chrono::Utc::now();
        let mut cut = 0;
        loop {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path()).unwrap();
            let a = store
                .ingest_many(vec![new("Sama", "a", now)], now, &OnePartner)
                .unwrap()
                .remove(0);
            let prepared: Vec<_> = [new("Sama", "b", now), new("Lain", "c", now)]
                .into_iter()
                .map(|n| crate::PreparedRelease::new(n, now, &OnePartner))
                .collect();
            let (_, stages) = store
                .plan("test", |tx| {
                    prepared
                        .iter()
                        .map(|p| crate::releases::ingest_in(tx, p, now, &OnePartner))
                        .collect::<TxResult<Vec<_>>>()
                })
                .unwrap();
            // The outbox's writes go as one journal record.
            let total: usize = stages
                .iter()
                .map(|s| match s.journal {
                    Some(_) => usize::from(!s.writes.borrow().is_empty()),
                    None => s.writes.borrow().len(),
                })
                .sum();
            store.apply("test", &stages, cut).unwrap();
            store.flush_blocking().unwrap();
            drop(stages);
            drop(store);

            let store = Store::open(dir.path()).unwrap();
            assert!(store.intents.is_empty(), "cut {cut}: undo record left");
            let all = store
                .list(&crate::ReleaseFilter::default(), 10, None)
                .unwrap()
                .items;
            assert_eq!(all.len(), 1, "cut {cut}: only the first release");
            assert_eq!(all[0].id, a.release.id);
            assert!(store.release_by_slug("sama-2").unwrap().is_none());
            assert!(store.release_by_slug("lain").unwrap().is_none());
            assert_eq!(store.deliveries_for_release(a.release.id).unwrap().len(), 1);
            assert!(store.check_outbox().unwrap().is_empty(), "cut {cut}");
            let audit = store.audit_log(100, None).unwrap();
            assert_eq!(audit.len(), 1, "cut {cut}: {audit:?}");
            // The rolled-back inputs are new again, slugs and idempotency keys included.
            let again = store
                .ingest_many(
                    vec![new("Sama", "b", now), new("Lain", "c", now)],
                    now,
                    &OnePartner,
                )
                .unwrap();
            assert!(again.iter().all(|i| i.created), "cut {cut}");
            assert_eq!(again[0].release.slug, "sama-2");
            assert!(store.check_outbox().unwrap().is_empty());
            if cut >= total {
                break;
            }
            cut += 1;
        }
    }
}
