//! Backups: the whole store as one JSON-lines file, and back.
//!
//! ```text
//! {"format":"siar-backup","version":1,"created_at":"…","trees":["releases",…]}
//! {"tree":"docs","key":"<base64>","value":"<base64>"}        one line per record
//! {"media":"<sha256>.<ext>","data":"<base64>"}               one line per stored file
//! {"end":{"records":N,"media":M,"sha256":"<hex>"}}           over every line before it
//! ```
//!
//! **Consistent while the daemon runs.** Every write step of the store holds the snapshot
//! gate for reading (recursively, so a step may call another); an export holds it for writing
//! while it copies the trees, so it sees the store between two steps, never in the middle of
//! one — the state a crash at that instant would have left, which start-up already recovers
//! from (leases come back, mailings resume from their cursor). Media files are immutable and
//! stored before the release that names them, so they are copied after the gate is released.
//!
//! **Import loses nothing it cannot check.** The file is read twice: first every line is
//! parsed and the trailer's count and checksum compared, and only a whole, unaltered backup is
//! then written — into an empty store only.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::Path;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{keys, MediaStore, Result, Store, StoreError};

const FORMAT: &str = "siar-backup";
const VERSION: u32 = 1;

/// What a backup holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BackupSummary {
    /// Records per tree.
    pub trees: BTreeMap<String, u64>,
    pub records: u64,
    pub media: u64,
}

#[derive(Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    created_at: chrono::DateTime<chrono::Utc>,
    trees: Vec<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Line {
    Record {
        tree: String,
        key: String,
        value: String,
    },
    Media {
        media: String,
        data: String,
    },
    End {
        end: Trailer,
    },
}

#[derive(Serialize, Deserialize)]
struct Trailer {
    records: u64,
    media: u64,
    sha256: String,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn io_error(op: &'static str) -> impl FnOnce(std::io::Error) -> StoreError {
    move |e| StoreError::Storage {
        op,
        message: e.to_string(),
    }
}

fn damaged(line: usize, message: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what: format!("backup, line {line}"),
        message: message.to_string(),
    }
}

/// Writes lines and hashes them.
struct Hashing<'a> {
    out: &'a mut dyn Write,
    hash: Sha256,
}

impl Hashing<'_> {
    fn line(&mut self, value: &impl Serialize) -> Result<()> {
        let mut bytes = serde_json::to_vec(value).map_err(|e| StoreError::Storage {
            op: "writing a backup",
            message: e.to_string(),
        })?;
        bytes.push(b'\n');
        self.hash.update(&bytes);
        self.out
            .write_all(&bytes)
            .map_err(io_error("writing a backup"))
    }
}

impl Store {
    /// The trees a backup holds, by name. The undo records of staged writes are left out: the
    /// gate guarantees no step is half-applied when they are copied.
    fn data_trees(&self) -> [(&'static str, &sled::Tree); 5] {
        [
            ("releases", &self.releases),
            ("docs", &self.docs),
            ("outbox", &self.outbox),
            ("audit", &self.audit),
            ("mail", &self.mail),
        ]
    }

    /// Holds off every write step while held (see the module documentation).
    pub(crate) fn write_gate(&self) -> parking_lot::RwLockReadGuard<'_, ()> {
        self.gate.read_recursive()
    }

    /// Writes a consistent backup of the store, and of the files in `media`, to `out`. Writes
    /// wait while the trees are copied, so `out` should be fast (a local file), not a slow
    /// network peer.
    pub fn export(&self, media: Option<&MediaStore>, out: &mut dyn Write) -> Result<BackupSummary> {
        let mut w = Hashing {
            out,
            hash: Sha256::new(),
        };
        let mut summary = BackupSummary::default();
        w.line(&Header {
            format: FORMAT.into(),
            version: VERSION,
            created_at: chrono::Utc::now(),
            trees: self
                .data_trees()
                .iter()
                .map(|(n, _)| (*n).to_owned())
                .collect(),
        })?;
        {
            let _all_writes_wait = self.gate.write();
            for (name, tree) in self.data_trees() {
                let mut n = 0;
                // The outbox as it stands: the tree with the journal's writes over it (the
                // gate keeps both still).
                let entries: Box<dyn Iterator<Item = Result<(sled::IVec, sled::IVec)>>> =
                    if name == "outbox" {
                        Box::new(self.journal.prefix(b""))
                    } else {
                        Box::new(tree.iter().map(|kv| {
                            kv.map_err(StoreError::storage("reading the store for a backup"))
                        }))
                    };
                for kv in entries {
                    let (k, v) = kv?;
                    w.line(&Line::Record {
                        tree: name.into(),
                        key: b64().encode(&k),
                        value: b64().encode(&v),
                    })?;
                    n += 1;
                }
                summary.records += n;
                summary.trees.insert(name.into(), n);
            }
        }
        if let Some(m) = media {
            for name in m.names().map_err(io_error("listing media files"))? {
                let Some(path) = m.path(&name) else { continue };
                let data = std::fs::read(&path).map_err(io_error("reading a media file"))?;
                w.line(&Line::Media {
                    media: name,
                    data: b64().encode(&data),
                })?;
                summary.media += 1;
            }
        }
        let sha256 = hex::encode(w.hash.clone().finalize());
        w.line(&Line::End {
            end: Trailer {
                records: summary.records,
                media: summary.media,
                sha256,
            },
        })?;
        w.out.flush().map_err(io_error("writing a backup"))?;
        Ok(summary)
    }

    /// How many records the store holds, apart from the bookkeeping any freshly opened store
    /// writes for itself.
    fn user_records(&self) -> Result<u64> {
        let mut n = 0;
        for (name, tree) in self.data_trees() {
            for k in tree.iter().keys() {
                let k = k.map_err(StoreError::storage("reading the store"))?;
                if !(name == "releases" && k.starts_with(&keys::meta(""))) {
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    /// Restores a backup made by [`Store::export`] into this store, which must be empty, and
    /// its files into `media`. A backup that is truncated, altered or not a siar backup is
    /// refused before anything is written. Flushed before it returns.
    pub fn import(&self, backup: &Path, media: &MediaStore) -> Result<BackupSummary> {
        self.journal.drain()?;
        let existing = self.user_records()?;
        if existing > 0 {
            return Err(StoreError::Conflict(format!(
                "the store already holds {existing} records; a backup is imported only into an empty store (point store.path at a new directory)"
            )));
        }
        // First pass: check everything, write nothing.
        let expected = self.read_backup(backup, &mut |_| Ok(()))?;
        // Second pass: write.
        let mut batches: BTreeMap<String, sled::Batch> = BTreeMap::new();
        let mut pending = 0usize;
        let summary = self.read_backup(backup, &mut |item| {
            match item {
                Item::Record(tree, k, v) => {
                    batches.entry(tree).or_default().insert(k, v);
                    pending += 1;
                }
                Item::Media(name, data) => {
                    let (_, ext) = name.split_once('.').unwrap_or((&name, "bin"));
                    let stored = media
                        .put(&data, ext, "")
                        .map_err(io_error("restoring a media file"))?;
                    debug_assert_eq!(stored.name, name);
                }
            }
            if pending >= 10_000 {
                self.apply_batches(&mut batches)?;
                pending = 0;
            }
            Ok(())
        })?;
        self.apply_batches(&mut batches)?;
        self.flush_blocking()?;
        // A backup of an older store may bring index entries this one no longer keeps.
        self.meta_put("webhook-queue-index-dropped", &false)?;
        self.drop_webhook_queue_index()?;
        debug_assert_eq!(summary, expected);
        Ok(summary)
    }

    fn apply_batches(&self, batches: &mut BTreeMap<String, sled::Batch>) -> Result<()> {
        for (name, batch) in std::mem::take(batches) {
            let tree = self
                .data_trees()
                .into_iter()
                .find(|(n, _)| *n == name)
                .map(|(_, t)| t)
                .ok_or_else(|| StoreError::Corrupt {
                    what: "backup".into(),
                    message: format!("unknown tree {name}"),
                })?;
            tree.apply_batch(batch)
                .map_err(StoreError::storage("writing restored records"))?;
        }
        Ok(())
    }

    /// Reads and checks a backup, handing each item to `each`.
    fn read_backup(
        &self,
        backup: &Path,
        each: &mut dyn FnMut(Item) -> Result<()>,
    ) -> Result<BackupSummary> {
        let file = std::fs::File::open(backup).map_err(|e| StoreError::Storage {
            op: "opening the backup",
            message: format!("{}: {e}", backup.display()),
        })?;
        let known: Vec<&str> = self.data_trees().iter().map(|(n, _)| *n).collect();
        let mut reader = std::io::BufReader::new(file);
        let mut hash = Sha256::new();
        let mut summary = BackupSummary::default();
        let mut buf = Vec::new();
        let mut number = 0usize;
        let mut trailer = None;
        loop {
            buf.clear();
            let n = reader
                .read_until(b'\n', &mut buf)
                .map_err(io_error("reading the backup"))?;
            if n == 0 {
                break;
            }
            number += 1;
            if trailer.is_some() {
                return Err(damaged(number, "lines follow the end marker"));
            }
            if number == 1 {
                let h: Header = serde_json::from_slice(&buf)
                    .map_err(|_| damaged(1, "not a siar backup (no siar-backup header)"))?;
                if h.format != FORMAT || h.version != VERSION {
                    return Err(damaged(
                        1,
                        format!(
                            "format {} version {} is not one this siar reads ({FORMAT} {VERSION})",
                            h.format, h.version
                        ),
                    ));
                }
                hash.update(&buf);
                continue;
            }
            let line: Line = serde_json::from_slice(&buf).map_err(|e| damaged(number, e))?;
            match line {
                Line::End { end } => {
                    trailer = Some(end);
                    continue;
                }
                Line::Record { tree, key, value } => {
                    if !known.contains(&tree.as_str()) {
                        return Err(damaged(number, format!("unknown tree `{tree}`")));
                    }
                    let k = b64().decode(key).map_err(|e| damaged(number, e))?;
                    let v = b64().decode(value).map_err(|e| damaged(number, e))?;
                    *summary.trees.entry(tree.clone()).or_default() += 1;
                    summary.records += 1;
                    each(Item::Record(tree, k, v))?;
                }
                Line::Media { media, data } => {
                    let data = b64().decode(data).map_err(|e| damaged(number, e))?;
                    if !crate::media::is_content_name(&media) {
                        return Err(damaged(
                            number,
                            format!("`{media}` is not a media file name"),
                        ));
                    }
                    let hash = media.split_once('.').map_or(media.as_str(), |(h, _)| h);
                    if hash != hex::encode(Sha256::digest(&data)) {
                        return Err(damaged(
                            number,
                            format!("media file {media}: its content does not match its name"),
                        ));
                    }
                    summary.media += 1;
                    each(Item::Media(media, data))?;
                }
            }
            hash.update(&buf);
        }
        let Some(end) = trailer else {
            return Err(damaged(
                number,
                "no end marker: the backup is truncated (was the export interrupted?)",
            ));
        };
        let actual = hex::encode(hash.finalize());
        if end.sha256 != actual || end.records != summary.records || end.media != summary.media {
            return Err(damaged(
                number,
                format!(
                    "the backup does not match its end marker ({} records and {} files read, {} and {} expected; checksum {}): it was altered or damaged",
                    summary.records,
                    summary.media,
                    end.records,
                    end.media,
                    if end.sha256 == actual { "matches" } else { "differs" }
                ),
            ));
        }
        Ok(summary)
    }
}

enum Item {
    Record(String, Vec<u8>, Vec<u8>),
    Media(String, Vec<u8>),
}
