//! The store watchdog. sled keeps an I/O error it hit (a full disk, a filesystem remounted
//! read-only) and refuses every later write, even once the disk is fine again; only reopening
//! the store clears it. So every few seconds the watchdog asks the store for a synced write.
//! While that fails `/readyz` says why (it runs the same check). When the store still fails
//! but the filesystem under it takes a synced write again, siar cannot recover in place: the
//! watchdog asks it to stop (in-flight work is handed back as on SIGTERM) and exit non-zero,
//! and the service manager's restart (`Restart=on-failure`) reopens the store. Nothing
//! acknowledged is lost: every acknowledgement waited for a successful sync.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::app::App;

/// How often the store is checked.
pub const EVERY: Duration = Duration::from_secs(5);

/// Whether the filesystem at `dir` takes a small synced write (and removal) right now.
fn filesystem_writable(dir: &Path) -> bool {
    use std::io::Write;
    let probe = dir.join(".siar-watchdog-probe");
    let ok = std::fs::File::create(&probe)
        .and_then(|mut f| {
            f.write_all(b"probe")?;
            f.sync_all()
        })
        .is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
}

/// Runs until `stop`; returns `Some(reason)` when siar must restart to recover its store.
pub async fn run(app: Arc<App>, stop: CancellationToken) -> Option<String> {
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = stop.cancelled() => return None,
        }
        let store = app.store.clone();
        let checked = tokio::task::spawn_blocking(move || store.check_writable()).await;
        let err = match checked {
            Ok(Ok(())) => {
                if failing {
                    info!("The store takes writes again.");
                }
                failing = false;
                continue;
            }
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        if !failing {
            error!(error = %err, "The store cannot write: releases are refused (503) and /readyz fails until it can.");
            failing = true;
        }
        let dir = app.config.store.path.clone();
        let fs_ok = tokio::task::spawn_blocking(move || filesystem_writable(&dir))
            .await
            .unwrap_or(false);
        if fs_ok {
            let reason = format!(
                "the store hit an I/O error it keeps ({err}) while its filesystem takes writes again: restarting to reopen it"
            );
            warn!("{reason}");
            return Some(reason);
        }
    }
}
