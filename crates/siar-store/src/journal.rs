//! The outbox journal: write-behind for the outbox tree.
//!
//! A sled write costs ~10 µs here whatever its size, and a delivery used to cost about a dozen
//! of them (its record and five index entries when owed, the same again when settled). The
//! busy paths — publishing a group of releases, settling a batch of attempts — now write one
//! journal record each: the list of outbox writes the step makes. The record is one sled
//! insert, so the step is atomic and durable with the next flush. The same writes go into an
//! ordered map in memory that every outbox read consults before the tree (a key's latest
//! value, or its removal). When the journal is idle for a moment, grows large or old, a
//! background thread drains it: the latest value of each key goes into the outbox tree, the
//! drained records are removed, and the map forgets what the tree now holds. A key written
//! many times between drains (a delivery owed, claimed and settled) reaches the tree once.
//!
//! Crash safety: a journal record is removed only after its writes are in the tree, and sled
//! recovers its log as a prefix, so whatever records survive a crash still hold writes the
//! tree may lack. Opening the store replays them in order ([`Journal::replay`]); the writes
//! are plain sets and removals, so replaying one already applied changes nothing.
//!
//! Steps that read and write outbox records inside a sled transaction (corrections,
//! retractions, an operator's retry, re-timing a partner's queue) drain the journal first,
//! under the locks that keep the deliveries they touch from being written meanwhile.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap as HashMap;
use std::ops::Bound;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard, RwLock};
use sled::IVec;

use crate::{Result, StoreError};

/// A key as the journal's map holds it: in place when short, as outbox keys are, so that the
/// comparisons of a search through a large map read the node they are in rather than chase a
/// pointer each (which made the map the largest part of a delivery's cost).
type Key = smallvec::SmallVec<[u8; 46]>;

/// A write of one key: its new value, or `None` to remove it.
pub(crate) type Write = (Vec<u8>, Option<Vec<u8>>);

/// Drain when nothing was written for this long…
const IDLE: Duration = Duration::from_millis(1000);
/// …or when this many keys wait…
const MAX_KEYS: usize = 200_000;
/// …or when the oldest waiting write is this old.
const MAX_AGE: Duration = Duration::from_secs(30);

#[derive(Default)]
pub(crate) struct State {
    /// The latest value of every key set since it was last drained, with the record that set
    /// it.
    live: BTreeMap<Key, (u64, IVec)>,
    /// Every key removed since it was last drained, with the record that removed it. Apart
    /// from `live`, so that a range over the journal never walks removals (a partner's queue
    /// settled a thousand times between drains would otherwise be a thousand steps long).
    dead: HashMap<Key, u64>,
    /// The newest record.
    last: u64,
    last_write: Option<Instant>,
    /// When the oldest write not yet drained was made.
    oldest: Option<Instant>,
    closed: bool,
}

impl State {
    /// How many keys wait to be drained.
    fn len(&self) -> usize {
        self.live.len() + self.dead.len()
    }

    fn is_empty(&self) -> bool {
        self.live.is_empty() && self.dead.is_empty()
    }
}

pub(crate) struct Journal {
    state: Mutex<State>,
    wake: Condvar,
    /// One drain at a time.
    draining: Mutex<()>,
    db: sled::Db,
    outbox: sled::Tree,
    /// Journal records by number: the encoded writes of one step.
    log: sled::Tree,
    gate: Arc<RwLock<()>>,
}

fn storage(op: &'static str) -> impl FnOnce(sled::Error) -> StoreError {
    StoreError::storage(op)
}

impl Journal {
    pub(crate) fn new(
        db: &sled::Db,
        outbox: &sled::Tree,
        log: &sled::Tree,
        gate: &Arc<RwLock<()>>,
    ) -> Self {
        Self {
            state: Mutex::default(),
            wake: Condvar::new(),
            draining: Mutex::new(()),
            db: db.clone(),
            outbox: outbox.clone(),
            log: log.clone(),
            gate: gate.clone(),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    /// The number the next record gets (increasing; held with [`Journal::lock`] until the
    /// record is in the map, so records reach the map in number order).
    pub(crate) fn next_number(&self) -> Result<u64> {
        self.db
            .generate_id()
            .map_err(storage("numbering a journal record"))
    }

    pub(crate) fn record_key(n: u64) -> [u8; 8] {
        n.to_be_bytes()
    }

    /// Writes `writes` as one journal record and makes them visible.
    pub(crate) fn write(&self, writes: Vec<Write>) -> Result<()> {
        if writes.is_empty() {
            return Ok(());
        }
        // The gate before the map's lock, as everywhere: an export holds the gate and reads
        // the map.
        let _gate = self.gate.read_recursive();
        let mut state = self.lock();
        let n = self.next_number()?;
        self.log
            .insert(Self::record_key(n), encode(&writes))
            .map_err(storage("writing the outbox journal"))?;
        self.publish(&mut state, n, writes);
        Ok(())
    }

    /// Makes the writes of record `n`, already in the log, visible.
    pub(crate) fn publish<K: AsRef<[u8]>, V: Into<IVec>>(
        &self,
        state: &mut State,
        n: u64,
        writes: impl IntoIterator<Item = (K, Option<V>)>,
    ) {
        for (k, v) in writes {
            let k = k.as_ref();
            match v {
                Some(v) => {
                    if !state.dead.is_empty() {
                        state.dead.remove(k);
                    }
                    state.live.insert(Key::from_slice(k), (n, v.into()));
                }
                None => {
                    state.live.remove(k);
                    state.dead.insert(Key::from_slice(k), n);
                }
            }
        }
        state.last = n;
        let now = Instant::now();
        state.last_write = Some(now);
        state.oldest.get_or_insert(now);
        if state.len() >= MAX_KEYS {
            self.wake.notify_one();
        }
    }

    /// The value of `key` as the journal has it: `Some(None)` if it was removed, `None` if the
    /// journal holds nothing for it (the tree has the answer).
    pub(crate) fn get(&self, key: &[u8]) -> Option<Option<IVec>> {
        let state = self.lock();
        match state.live.get(key) {
            Some((_, v)) => Some(Some(v.clone())),
            None => state.dead.contains_key(key).then_some(None),
        }
    }

    /// Whether the journal removed `key` (the tree may still hold it).
    fn removed(&self, key: &[u8]) -> bool {
        let state = self.lock();
        !state.dead.is_empty() && state.dead.contains_key(key)
    }

    /// `key` as the outbox stands: the journal's value, else the tree's.
    pub(crate) fn read(&self, key: &[u8]) -> Result<Option<IVec>> {
        match self.get(key) {
            Some(v) => Ok(v),
            None => self.outbox.get(key).map_err(storage("reading the outbox")),
        }
    }

    /// The outbox's entries from `start` (included) to `end`, journal and tree merged, in
    /// key order. The journal's side is read a chunk at a time, so a reader that stops early
    /// (a claim of 32) copies little of it.
    pub(crate) fn range(&self, start: Vec<u8>, end: Bound<Vec<u8>>) -> Merged<'_> {
        let disk = match &end {
            Bound::Included(e) => self.outbox.range(start.clone()..=e.clone()),
            Bound::Excluded(e) => self.outbox.range(start.clone()..e.clone()),
            Bound::Unbounded => self.outbox.range(start.clone()..),
        };
        Merged {
            journal: self,
            from: Bound::Included(start),
            end,
            mem: std::collections::VecDeque::new(),
            mem_done: false,
            disk: disk.peekable(),
        }
    }

    /// Every outbox entry whose key starts with `prefix`, journal and tree merged.
    pub(crate) fn prefix(&self, prefix: &[u8]) -> Merged<'_> {
        match prefix_end(prefix) {
            Some(end) => self.range(prefix.to_vec(), Bound::Excluded(end)),
            None => self.range(prefix.to_vec(), Bound::Unbounded),
        }
    }

    /// Whether anything waits to be drained.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Moves every write made so far into the outbox tree and drops the records that held
    /// them. Readers meanwhile see the same values through the map.
    pub(crate) fn drain(&self) -> Result<usize> {
        let _one = self.draining.lock();
        // Each key with the record that last wrote it and its value.
        type Snapshot = Vec<(Key, u64, Option<IVec>)>;
        let (upto, items): (u64, Snapshot) = {
            let state = self.lock();
            let live = state
                .live
                .iter()
                .map(|(k, (n, v))| (k.clone(), *n, Some(v.clone())));
            let dead = state.dead.iter().map(|(k, n)| (k.clone(), *n, None));
            (state.last, live.chain(dead).collect())
        };
        if items.is_empty() {
            return Ok(0);
        }
        {
            let _gate = self.gate.read_recursive();
            for (k, _, v) in &items {
                match v {
                    Some(v) => self.outbox.insert(k.as_slice(), v.clone()).map(drop),
                    None => self.outbox.remove(k.as_slice()).map(drop),
                }
                .map_err(storage("draining the outbox journal"))?;
            }
            // Their writes are in the tree before the records go (sled keeps its log in
            // order): a crash in between replays records already applied, harmlessly.
            let done: Vec<IVec> = self
                .log
                .range(..=Self::record_key(upto))
                .keys()
                .collect::<std::result::Result<_, _>>()
                .map_err(storage("draining the outbox journal"))?;
            for k in done {
                self.log
                    .remove(k)
                    .map_err(storage("draining the outbox journal"))?;
            }
        }
        let mut state = self.lock();
        for (k, n, v) in &items {
            if v.is_some() {
                if state.live.get(k).is_some_and(|(m, _)| m == n) {
                    state.live.remove(k);
                }
            } else if state.dead.get(k) == Some(n) {
                state.dead.remove(k);
            }
        }
        if state.is_empty() {
            state.oldest = None;
        }
        Ok(items.len())
    }

    /// Applies every record a crash left (in order) and removes them: at open, before the
    /// outbox is read. Returns how many there were.
    pub(crate) fn replay(&self) -> Result<usize> {
        let mut n = 0;
        for kv in self.log.iter() {
            let (k, v) = kv.map_err(storage("reading the outbox journal"))?;
            let writes = decode(&v).ok_or_else(|| StoreError::Corrupt {
                what: "outbox journal record".into(),
                message: "truncated or unknown entry".into(),
            })?;
            for (key, value) in writes {
                match value {
                    Some(v) => self.outbox.insert(key, v).map(drop),
                    None => self.outbox.remove(key).map(drop),
                }
                .map_err(storage("replaying the outbox journal"))?;
            }
            self.log
                .remove(k)
                .map_err(storage("replaying the outbox journal"))?;
            n += 1;
        }
        Ok(n)
    }

    /// Whether the background drainer should drain now.
    fn due(state: &State) -> bool {
        if state.is_empty() {
            return false;
        }
        state.len() >= MAX_KEYS
            || state.last_write.is_some_and(|t| t.elapsed() >= IDLE)
            || state.oldest.is_some_and(|t| t.elapsed() >= MAX_AGE)
    }
}

/// The background drainer; stopped (after a last drain) when the last store handle goes.
pub(crate) struct Drainer {
    journal: Arc<Journal>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drainer {
    pub(crate) fn start(journal: Arc<Journal>) -> std::io::Result<Self> {
        let j = journal.clone();
        let thread = std::thread::Builder::new()
            .name("siar-journal".into())
            .spawn(move || loop {
                {
                    let mut state = j.lock();
                    if state.closed {
                        return;
                    }
                    if !Journal::due(&state) {
                        j.wake.wait_for(&mut state, Duration::from_millis(250));
                        continue;
                    }
                }
                if let Err(e) = j.drain() {
                    tracing::error!(error = %e, "Could not drain the outbox journal; it stays readable and is replayed at the next start.");
                    std::thread::sleep(Duration::from_secs(1));
                }
            })?;
        Ok(Self {
            journal,
            thread: Some(thread),
        })
    }
}

impl Drop for Drainer {
    fn drop(&mut self) {
        self.journal.lock().closed = true;
        self.journal.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How many journal entries a merged read copies at a time.
const CHUNK: usize = 64;

/// The outbox's entries in key order, the journal's over the tree's; removed keys skipped.
/// The journal's side holds only keys set (removals are kept apart), so a range walks what it
/// yields, plus tree entries the journal removed.
pub(crate) struct Merged<'a> {
    journal: &'a Journal,
    /// Where the journal's next chunk starts.
    from: Bound<Vec<u8>>,
    end: Bound<Vec<u8>>,
    mem: std::collections::VecDeque<(Key, IVec)>,
    mem_done: bool,
    disk: std::iter::Peekable<sled::Iter>,
}

impl Merged<'_> {
    /// The journal's next entry, copying the next chunk when needed.
    fn peek_mem(&mut self) -> Option<&(Key, IVec)> {
        if self.mem.is_empty() && !self.mem_done {
            let state = self.journal.lock();
            self.mem.extend(
                state
                    .live
                    .range::<[u8], _>((bound(&self.from), bound(&self.end)))
                    .take(CHUNK)
                    .map(|(k, (_, v))| (k.clone(), v.clone())),
            );
            drop(state);
            match self.mem.back() {
                Some((k, _)) if self.mem.len() == CHUNK => self.from = Bound::Excluded(k.to_vec()),
                _ => self.mem_done = true,
            }
        }
        self.mem.front()
    }
}

impl Iterator for Merged<'_> {
    type Item = Result<(IVec, IVec)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let disk_key = match self.disk.peek() {
                Some(Ok((k, _))) => Some(k.clone()),
                Some(Err(_)) => {
                    let Some(Err(e)) = self.disk.next() else {
                        return None;
                    };
                    return Some(Err(StoreError::storage("reading the outbox")(e)));
                }
                None => None,
            };
            let order = match (self.peek_mem(), &disk_key) {
                (None, None) => return None,
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some((m, _)), Some(d)) => m.as_slice().cmp(d.as_ref()),
            };
            if order != std::cmp::Ordering::Less {
                // The tree's entry: shadowed by the journal's when the keys are equal, gone
                // if the journal removed it.
                let (k, v) = self.disk.next()?.ok()?;
                if order == std::cmp::Ordering::Greater {
                    if self.journal.removed(&k) {
                        continue;
                    }
                    return Some(Ok((k, v)));
                }
            }
            let (k, v) = self.mem.pop_front()?;
            return Some(Ok((IVec::from(k.as_slice()), v)));
        }
    }
}

fn bound(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(k.as_slice()),
        Bound::Excluded(k) => Bound::Excluded(k.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// The smallest key after every key that starts with `prefix` (`None`: no such key).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Appends one write to `out`: the key's length and the key, then 1, the value's length and
/// the value, or 0 for a removal. Journal records and staged steps' undo records use it.
pub(crate) fn put_entry(out: &mut Vec<u8>, key: &[u8], value: Option<&[u8]>) {
    out.extend_from_slice(&(key.len() as u32).to_be_bytes());
    out.extend_from_slice(key);
    match value {
        Some(v) => {
            out.push(1);
            out.extend_from_slice(&(v.len() as u32).to_be_bytes());
            out.extend_from_slice(v);
        }
        None => out.push(0),
    }
}

/// Takes one write written by [`put_entry`] off the front of `b` (`None`: cut short or junk).
pub(crate) fn take_entry(b: &mut &[u8]) -> Option<Write> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (b.get(..n)?, b.get(n..)?);
        *b = rest;
        Some(head)
    }
    fn len(b: &mut &[u8]) -> Option<usize> {
        usize::try_from(u32::from_be_bytes(take(b, 4)?.try_into().ok()?)).ok()
    }
    let n = len(b)?;
    let key = take(b, n)?.to_vec();
    let value = match take(b, 1)?[0] {
        0 => None,
        1 => {
            let n = len(b)?;
            Some(take(b, n)?.to_vec())
        }
        _ => return None,
    };
    Some((key, value))
}

/// A record: its writes, one [`put_entry`] each.
pub(crate) fn encode<K: AsRef<[u8]>, V: AsRef<[u8]>>(writes: &[(K, Option<V>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in writes {
        put_entry(&mut out, k.as_ref(), v.as_ref().map(|v| v.as_ref()));
    }
    out
}

fn decode(mut b: &[u8]) -> Option<Vec<Write>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        out.push(take_entry(&mut b)?);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_junk_is_refused() {
        let w: Vec<Write> = vec![(b"a".to_vec(), Some(b"1".to_vec())), (b"b".to_vec(), None)];
        assert_eq!(decode(&encode(&w)), Some(w));
        assert_eq!(decode(&[0, 0, 0, 9, 1]), None);
        assert_eq!(decode(&[0, 0, 0, 1, b'k', 7]), None);
    }

    #[test]
    fn prefix_end_is_the_next_key_after_the_prefix() {
        assert_eq!(prefix_end(b"P"), Some(b"Q".to_vec()));
        assert_eq!(prefix_end(&[b'A', 0xFF]), Some(b"B".to_vec()));
        assert_eq!(prefix_end(&[0xFF, 0xFF]), None);
    }

    /// Reads merge the journal over the tree; a drain moves the journal into the tree and
    /// reads stay the same; records a crash left are replayed at open.
    #[test]
    fn reads_merge_drains_keep_them_and_replay_restores() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let outbox = db.open_tree("outbox").unwrap();
        let log = db.open_tree("journal").unwrap();
        let gate = Arc::default();
        outbox.insert(b"k1", b"tree").unwrap();
        outbox.insert(b"k2", b"tree").unwrap();
        outbox.insert(b"k4", b"tree").unwrap();
        let j = Journal::new(&db, &outbox, &log, &gate);
        j.write(vec![
            (b"k2".to_vec(), None),
            (b"k3".to_vec(), Some(b"journal".to_vec())),
            (b"k4".to_vec(), Some(b"journal".to_vec())),
        ])
        .unwrap();
        let seen = |j: &Journal| -> Vec<(Vec<u8>, Vec<u8>)> {
            j.prefix(b"k")
                .map(|kv| {
                    let (k, v) = kv.unwrap();
                    (k.to_vec(), v.to_vec())
                })
                .collect()
        };
        let want = vec![
            (b"k1".to_vec(), b"tree".to_vec()),
            (b"k3".to_vec(), b"journal".to_vec()),
            (b"k4".to_vec(), b"journal".to_vec()),
        ];
        assert_eq!(seen(&j), want);
        assert_eq!(j.read(b"k2").unwrap(), None);
        // Set then removed in the journal alone, removed then set again: the last write wins.
        j.write(vec![(b"k5".to_vec(), Some(b"journal".to_vec()))])
            .unwrap();
        j.write(vec![
            (b"k5".to_vec(), None),
            (b"k2".to_vec(), Some(b"again".to_vec())),
        ])
        .unwrap();
        let mut again = want.clone();
        again.insert(1, (b"k2".to_vec(), b"again".to_vec()));
        assert_eq!(seen(&j), again);
        assert_eq!(j.read(b"k5").unwrap(), None);
        j.write(vec![(b"k2".to_vec(), None)]).unwrap();
        assert_eq!(seen(&j), want);
        // Past one chunk of the journal: every entry once, in order, tree ones between.
        let many: Vec<Write> = (0..(3 * CHUNK as u32))
            .map(|i| (format!("m{:04}", 2 * i).into_bytes(), Some(b"j".to_vec())))
            .collect();
        for i in 0..(3 * CHUNK as u32) {
            outbox
                .insert(format!("m{:04}", 2 * i + 1), b"t".as_slice())
                .unwrap();
        }
        j.write(many).unwrap();
        let keys: Vec<Vec<u8>> = j.prefix(b"m").map(|kv| kv.unwrap().0.to_vec()).collect();
        let want_keys: Vec<Vec<u8>> = (0..(6 * CHUNK as u32))
            .map(|i| format!("m{i:04}").into_bytes())
            .collect();
        assert_eq!(keys, want_keys);
        assert_eq!(log.len(), 5);
        assert!(!j.is_empty());
        assert_eq!(j.drain().unwrap(), 4 + 3 * CHUNK);
        assert!(j.is_empty());
        assert_eq!(log.len(), 0);
        // The same reads, now from the tree alone.
        assert_eq!(seen(&j), want);
        let keys: Vec<Vec<u8>> = j.prefix(b"m").map(|kv| kv.unwrap().0.to_vec()).collect();
        assert_eq!(keys, want_keys);
        assert_eq!(outbox.get(b"k2").unwrap(), None);

        // A record left by a crash (written, never drained) is applied at the next open.
        j.write(vec![(b"k1".to_vec(), None)]).unwrap();
        let fresh = Journal::new(&db, &outbox, &log, &gate);
        assert_eq!(fresh.replay().unwrap(), 1);
        assert_eq!(outbox.get(b"k1").unwrap(), None);
        assert_eq!(log.len(), 0);
    }
}
