//! The drop folder.
//!
//! A file placed in `inbox/` is ingested once it has stopped changing (same size and
//! modification time on two scans, and untouched for `settle_ms`), so a file still being
//! written is never read. Names starting with `.` or ending in `.tmp`, `.part`, `.partial`,
//! `.crdownload` or `~` are never read: write under such a name and rename when done.
//!
//! After the release is durably stored the file moves to `inbox/done/`. A file siar cannot
//! read moves to `inbox/rejected/` with `NAME.error.txt` beside it. If the store itself fails
//! (disk full), the file stays where it is and is tried again on the next scan. A crash
//! between storing and moving is harmless: the next scan ingests the file again, ingest is
//! idempotent by content hash, and the same release comes back.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use siar_ingest::{Format, ParseError};
use siar_model::Source;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::app::{App, IngestError, Input};

const IGNORED_SUFFIXES: &[&str] = &[".tmp", ".part", ".partial", ".crdownload", "~", ".swp"];

pub async fn run(app: Arc<App>, shutdown: CancellationToken) {
    let inbox = app.config.ingest.inbox.clone();
    for dir in [inbox.clone(), inbox.join("done"), inbox.join("rejected")] {
        if let Err(e) = std::fs::create_dir_all(&dir) {
            error!(dir = %dir.display(), error = %e, "Cannot create the drop folder; files dropped there will not be ingested.");
            return;
        }
    }
    info!(inbox = %inbox.display(), "Watching the drop folder.");
    let interval = Duration::from_millis(app.config.ingest.scan_interval_ms);
    let settle = Duration::from_millis(app.config.ingest.settle_ms);
    let mut seen = HashMap::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.cancelled() => return,
        }
        seen = scan(&app, &inbox, settle, seen, &shutdown).await;
    }
}

type Seen = HashMap<PathBuf, (u64, SystemTime)>;

async fn scan(
    app: &App,
    inbox: &Path,
    settle: Duration,
    seen: Seen,
    shutdown: &CancellationToken,
) -> Seen {
    let mut next = Seen::new();
    let entries = match std::fs::read_dir(inbox) {
        Ok(e) => e,
        Err(e) => {
            warn!(inbox = %inbox.display(), error = %e, "Cannot read the drop folder.");
            return next;
        }
    };
    let mut ready = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        if name.starts_with('.') || IGNORED_SUFFIXES.iter().any(|s| name.ends_with(s)) {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let stamp = (
            meta.len(),
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        );
        let settled = stamp.1.elapsed().map(|e| e >= settle).unwrap_or(true);
        if seen.get(&path) == Some(&stamp) && settled {
            ready.push((path, name, stamp.0));
        } else {
            next.insert(path, stamp);
        }
    }
    ready.sort();
    for (path, name, len) in ready {
        if shutdown.is_cancelled() {
            break;
        }
        if !process(app, inbox, &path, &name, len).await {
            // Not moved (the store failed): look at it again next scan.
            next.insert(path, (len, SystemTime::UNIX_EPOCH));
        }
    }
    next
}

/// Ingests one file. Returns false when the file stays in the inbox to be retried.
async fn process(app: &App, inbox: &Path, path: &Path, name: &str, len: u64) -> bool {
    let Some(format) = Format::from_file_name(name) else {
        reject(
            inbox,
            path,
            name,
            "unsupported file type: use .txt (Kalsel text), .md (Markdown) or .json",
        );
        return true;
    };
    let limit = app.config.ingest.max_bytes;
    if len > limit as u64 {
        let e = ParseError::TooLarge {
            size: usize::try_from(len).unwrap_or(usize::MAX),
            limit,
        };
        reject(inbox, path, name, &e.to_string());
        return true;
    }
    let bytes = match tokio::fs::read(path).await {
        Ok(b) => b,
        Err(e) => {
            warn!(file = %name, error = %e, "Cannot read a dropped file; will try again.");
            return false;
        }
    };
    let input = Input {
        bytes,
        media: Vec::new(),
        format,
        source: Source::File {
            name: name.to_owned(),
        },
        idempotency_key: None,
        publish_at: None,
        categories: Vec::new(),
    };
    match app.ingest(input).await {
        Ok(out) => {
            let to = move_into(&inbox.join("done"), path, name);
            info!(file = %name, release = %out.release.id, created = out.created,
                  moved_to = %to.as_ref().map(|p| p.display().to_string()).unwrap_or_default(), "Ingested a dropped file.");
            if let Err(e) = to {
                error!(file = %name, error = %e, "Ingested, but could not move the file to done/; it will be seen again and matched to the same release.");
            }
            true
        }
        Err(IngestError::Parse(e)) => {
            reject(inbox, path, name, &e.to_string());
            true
        }
        Err(IngestError::Media(m)) => {
            reject(inbox, path, name, &m);
            true
        }
        Err(IngestError::Store(e)) => {
            error!(file = %name, error = %e, "Could not store a dropped file; it stays in the inbox and will be retried.");
            false
        }
    }
}

fn reject(inbox: &Path, path: &Path, name: &str, reason: &str) {
    let dir = inbox.join("rejected");
    match move_into(&dir, path, name) {
        Ok(moved) => {
            let moved_name = moved
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or(name)
                .to_owned();
            let note = format!(
                "siar could not ingest {name}\n\n{reason}\n\nFix the file and put it back into the inbox folder.\n"
            );
            if let Err(e) = std::fs::write(dir.join(format!("{moved_name}.error.txt")), note) {
                error!(file = %name, error = %e, "Could not write the .error.txt file.");
            }
            warn!(file = %name, reason, "Rejected a dropped file.");
        }
        Err(e) => {
            error!(file = %name, error = %e, reason, "Could not move a rejected file out of the inbox.")
        }
    }
}

/// Moves `path` into `dir`, keeping its name unless that name is taken.
fn move_into(dir: &Path, path: &Path, name: &str) -> std::io::Result<PathBuf> {
    let mut to = dir.join(name);
    if to.exists() {
        let (stem, ext) = match name.rsplit_once('.') {
            Some((s, e)) if !s.is_empty() => (s.to_owned(), format!(".{e}")),
            _ => (name.to_owned(), String::new()),
        };
        to = dir.join(format!(
            "{stem}-{}{ext}",
            ulid::Ulid::new().to_string().to_lowercase()
        ));
    }
    std::fs::rename(path, &to)?;
    Ok(to)
}
