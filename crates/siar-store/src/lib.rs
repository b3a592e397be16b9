//! siar's durable state on sled — the only crate that knows sled exists.
//!
//! - [`Store`] opens the database and is the one handle everything goes through.
//! - `releases` (methods on [`Store`]): ingest with idempotency, corrections, retractions,
//!   publishing what came due, and the reads (by id, slug, version, publish time, category).
//! - [`outbox`]: the durable queue of deliveries — enqueued in the same atomic step that
//!   publishes, corrects or retracts a release; claimed with leases; settled by the holder.
//! - the audit log: every change records who did it, in the same atomic step as the change.
//! - [`MediaStore`]: uploaded photos and audio, content-addressed files beside the database.
//!
//! Each domain step is atomic: a sled transaction, or for ingest (the busiest step) a staged
//! write with an undo record, which does not wait for disk syncs in progress (see `staged`).
//! Writes are not yet durable when a method returns: call [`Store::flush`] before acknowledging anything to the outside world. The API
//! speaks in releases, deliveries and leases, never in sled types, so the store can move to
//! another engine (DESIGN §7) without touching its callers.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use siar_store::{NewRelease, Store};
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(dir.path())?;
//! assert!(store.release_by_slug("tidak-ada")?.is_none());
//! # Ok(()) }
//! ```

mod backup;
mod codec;
mod flusher;
mod journal;
mod keys;
pub mod mail;
mod media;
pub mod outbox;
mod record;
mod releases;
mod staged;
mod tx;

use std::path::Path;

use serde::{de::DeserializeOwned, Serialize};
use siar_model::{AuditEntry, DeliveryId, ReleaseId};

pub use backup::BackupSummary;
pub use mail::{
    ConfirmOutcome, ImportReport, ImportRow, JobItem, JobSource, MailJob, MailRow, RowCounts,
    RowState, SubscribeOutcome, Suppression,
};
pub use media::{MediaStore, StoredMedia};
pub use outbox::{Claim, QueueStats, Settlement};
pub use releases::{Ingested, NewRelease, Page, PreparedRelease, ReleaseFilter};

/// Why a store operation failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage failed while {op}: {message}")]
    Storage { op: &'static str, message: String },
    #[error("a stored record is unreadable ({what}): {message}")]
    Corrupt { what: String, message: String },
    #[error("release {0} not found")]
    ReleaseNotFound(ReleaseId),
    #[error("delivery {0} not found")]
    DeliveryNotFound(DeliveryId),
    #[error("{0}")]
    Conflict(String),
    #[error("the lease on delivery {0} is no longer held (it expired and was claimed again, or was settled)")]
    LeaseLost(DeliveryId),
}

impl StoreError {
    fn storage(op: &'static str) -> impl FnOnce(sled::Error) -> StoreError {
        move |e| StoreError::Storage {
            op,
            message: e.to_string(),
        }
    }
}

/// sled's page cache.
const CACHE_BYTES: u64 = 128 * 1024 * 1024;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The handle to siar's database. Cheap to clone; all clones share one database.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    /// Release indexes, idempotency keys and metadata (see `keys`).
    releases: sled::Tree,
    /// Release and version records: the large values, apart from the small index keys so
    /// the index pages stay small and cheap to rewrite.
    docs: sled::Tree,
    /// Deliveries and their indexes (see [`outbox`]).
    outbox: sled::Tree,
    /// Audit entries keyed by time (ms) and a sequence number, so in order.
    audit: sled::Tree,
    /// Outbox writes not yet drained into `outbox` (see `journal`); every outbox read
    /// consults it first.
    journal: std::sync::Arc<journal::Journal>,
    /// The journal's records, by number.
    journal_log: sled::Tree,
    /// Drains the journal in the background; stopped with the last handle.
    _drainer: std::sync::Arc<journal::Drainer>,
    /// Undo records of staged writes in progress (see `staged`).
    intents: sled::Tree,
    /// Subscribers, suppressions and mail send jobs (see [`mail`]).
    mail: sled::Tree,
    /// Serialises read-modify-write steps on subscribers.
    subscribers_lock: std::sync::Arc<std::sync::Mutex<()>>,
    /// Serialises the steps that read a release's deliveries outside their transaction
    /// (publish, correct, retract), so two of them cannot plan from the same stale list.
    writer: std::sync::Arc<std::sync::Mutex<()>>,
    /// The leases on claimed deliveries, in memory only (see [`outbox`]): a lease dies with
    /// the process that holds it, and what it held is simply due again.
    leases: std::sync::Arc<parking_lot::Mutex<outbox::Leases>>,
    /// Write steps hold it shared, an export exclusively (see `backup`).
    gate: std::sync::Arc<parking_lot::RwLock<()>>,
    /// Group commit for [`Store::flush`]; shared by all clones, stopped with the last one.
    flusher: std::sync::Arc<flusher::Flusher>,
}

impl Store {
    /// Opens (or creates) the store in directory `path`. Only one process may have it open.
    pub fn open(path: &Path) -> Result<Self> {
        let db = sled::Config::new()
            .path(path)
            .mode(sled::Mode::HighThroughput)
            // sled caches up to 1 GiB by default; siar serves feeds from its own memory and
            // reads the store mostly by key. 128 MiB keeps ingest at full speed (16 MiB cost
            // it ~15 %) and a daemon mailing a list of 100,000 under 150 MB.
            .cache_capacity(CACHE_BYTES)
            .open()
            .map_err(|e| StoreError::Storage {
                op: "opening the store",
                message: format!("{}: {e}", path.display()),
            })?;
        let tree = |name: &str| {
            db.open_tree(name)
                .map_err(StoreError::storage("opening a tree"))
        };
        let outbox = tree("outbox")?;
        let journal_log = tree("journal")?;
        let gate: std::sync::Arc<parking_lot::RwLock<()>> = Default::default();
        let journal = std::sync::Arc::new(journal::Journal::new(&db, &outbox, &journal_log, &gate));
        let drainer =
            std::sync::Arc::new(journal::Drainer::start(journal.clone()).map_err(|e| {
                StoreError::Storage {
                    op: "starting the journal thread",
                    message: e.to_string(),
                }
            })?);
        let store = Self {
            releases: tree("releases")?,
            docs: tree("docs")?,
            outbox,
            journal,
            journal_log,
            _drainer: drainer,
            audit: tree("audit")?,
            intents: tree("intents")?,
            mail: tree("mail")?,
            subscribers_lock: Default::default(),
            writer: Default::default(),
            leases: Default::default(),
            gate,
            flusher: std::sync::Arc::new(flusher::Flusher::start(db.clone()).map_err(|e| {
                StoreError::Storage {
                    op: "starting the flusher thread",
                    message: e.to_string(),
                }
            })?),
            db,
        };
        let undone = store.roll_back_unfinished()?;
        if store.journal.replay()? > 0 {
            store.flush_blocking()?;
        }
        store.index_partners()?;
        store.drop_webhook_queue_index()?;
        if undone > 0 {
            tracing::warn!(
                steps = undone,
                "Rolled back writes a crash interrupted before they were flushed (none had been acknowledged)."
            );
        }
        Ok(store)
    }

    /// Makes every write so far durable: after this returns, they survive `kill -9` and power
    /// loss. Concurrent callers share the disk syncs.
    pub async fn flush(&self) -> Result<()> {
        self.flusher
            .flush()
            .await
            .map_err(|message| StoreError::Storage {
                op: "flushing to disk",
                message,
            })
    }

    /// Calls `done` (on the flusher thread; keep it short) once every write made before this
    /// call is durable, or with the error if the sync failed. Returns at once: a writer can
    /// go on to its next step while this one is being synced.
    pub fn after_flush(&self, done: impl FnOnce(Result<()>) + Send + 'static) {
        self.flusher.then(Box::new(move |r| {
            done(r.map_err(|message| StoreError::Storage {
                op: "flushing to disk",
                message,
            }))
        }));
    }

    /// [`Store::flush`] for synchronous callers.
    pub fn flush_blocking(&self) -> Result<()> {
        self.db
            .flush()
            .map(drop)
            .map_err(StoreError::storage("flushing to disk"))
    }

    /// Writes and syncs a small probe record: the readiness check.
    pub fn check_writable(&self) -> Result<()> {
        let _gate = self.write_gate();
        let now = chrono::Utc::now().timestamp_millis().to_be_bytes();
        self.releases
            .insert(keys::meta("readiness-probe"), &now)
            .map_err(StoreError::storage("writing the readiness probe"))?;
        self.flush_blocking()
    }

    /// The last `limit` audit entries, newest first, optionally for one release.
    pub fn audit_log(&self, limit: usize, release: Option<ReleaseId>) -> Result<Vec<AuditEntry>> {
        let mut out = Vec::new();
        for kv in self.audit.iter().rev() {
            let (_, v) = kv.map_err(StoreError::storage("reading the audit log"))?;
            let e: AuditEntry = decode(&v, "audit entry")?;
            if release.is_none() || e.release_id == release {
                out.push(e);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Reads a small named record that a component keeps for itself (e.g. an upstream feed's
    /// ETag). `None` if it was never written.
    pub fn meta_get<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        self.releases
            .get(keys::meta(name))
            .map_err(StoreError::storage("reading metadata"))?
            .map(|v| decode(&v, name))
            .transpose()
    }

    /// Writes a small named record (see [`Store::meta_get`]). Not flushed.
    pub fn meta_put<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        let _gate = self.write_gate();
        self.releases
            .insert(keys::meta(name), encode(value))
            .map_err(StoreError::storage("writing metadata"))?;
        Ok(())
    }

    /// Removes a named record (see [`Store::meta_get`]). Not flushed.
    pub fn meta_remove(&self, name: &str) -> Result<()> {
        let _gate = self.write_gate();
        self.releases
            .remove(keys::meta(name))
            .map_err(StoreError::storage("removing metadata"))?;
        Ok(())
    }

    /// Bytes the database takes on disk.
    pub fn size_on_disk(&self) -> Result<u64> {
        self.db
            .size_on_disk()
            .map_err(StoreError::storage("measuring the store"))
    }
}

pub(crate) fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Serialising our own plain data structs to JSON cannot fail (no maps with non-string keys).
    serde_json::to_vec(v).unwrap_or_default()
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        what: what.to_owned(),
        message: e.to_string(),
    })
}
