//! Group commit for ingest: one thread takes every release waiting to be stored, writes them
//! in one atomic step, makes them durable with one disk sync, and answers each caller.
//!
//! The step is a staged write (see `siar_store`'s `staged` module), which does not wait for a
//! disk sync in progress: while one group syncs, the next is stored, and one sync covers every
//! group stored before it began. Under concurrent load a group forms by itself while the
//! previous one is stored. A caller's answer comes only after its release is on disk.

use std::sync::mpsc;
use std::sync::Arc;

use siar_store::{Ingested, NewRelease, PreparedRelease, Store, StoreError};
use tokio::sync::oneshot;

use crate::clock::Clock;
use crate::routing::ConfigRouter;

/// The most releases stored in one step.
const MAX_GROUP: usize = 64;

type Reply = oneshot::Sender<Result<Ingested, StoreError>>;

struct Job {
    new: PreparedRelease,
    reply: Reply,
}

/// A handle to the writer thread; the thread ends when the last handle is dropped.
pub struct IngestWriter {
    tx: mpsc::Sender<Job>,
    router: Arc<ConfigRouter>,
    clock: Arc<dyn Clock>,
}

impl IngestWriter {
    pub fn start(
        store: Store,
        router: Arc<ConfigRouter>,
        clock: Arc<dyn Clock>,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Job>();
        let (r, c) = (router.clone(), clock.clone());
        std::thread::Builder::new()
            .name("siar-ingest".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut jobs = vec![first];
                    while jobs.len() < MAX_GROUP {
                        match rx.try_recv() {
                            Ok(j) => jobs.push(j),
                            Err(_) => break,
                        }
                    }
                    let (items, replies): (Vec<_>, Vec<_>) =
                        jobs.into_iter().map(|j| (j.new, j.reply)).unzip();
                    let n = items.len();
                    let t0 = std::time::Instant::now();
                    let result = store.ingest_prepared(items, c.now(), r.as_ref());
                    let commit_us = t0.elapsed().as_micros();
                    let fail = |replies: Vec<Reply>, e: StoreError| {
                        for reply in replies {
                            let _ = reply.send(Err(e.clone()));
                        }
                    };
                    match result {
                        // Answered once on disk; meanwhile the next group is stored.
                        Ok(out) => store.after_flush(move |synced| {
                            tracing::debug!(
                                releases = n,
                                commit_us,
                                total_us = t0.elapsed().as_micros(),
                                "Stored a group of releases."
                            );
                            match synced {
                                Ok(()) => {
                                    for (reply, r) in replies.into_iter().zip(out) {
                                        let _ = reply.send(Ok(r));
                                    }
                                }
                                Err(e) => fail(replies, e),
                            }
                        }),
                        Err(e) => fail(replies, e),
                    }
                }
            })?;
        Ok(Self { tx, router, clock })
    }

    /// Stores `new` durably (with whatever else is waiting) and returns what ingest did.
    pub async fn ingest(&self, new: NewRelease) -> Result<Ingested, StoreError> {
        let (reply, rx) = oneshot::channel();
        let gone = || StoreError::Storage {
            op: "ingesting a release",
            message: "the ingest writer has stopped".into(),
        };
        // Prepared here, on the caller's thread, so the writer's critical section is only the
        // atomic step itself.
        let new = PreparedRelease::new(new, self.clock.now(), self.router.as_ref());
        self.tx.send(Job { new, reply }).map_err(|_| gone())?;
        rx.await.unwrap_or_else(|_| Err(gone()))
    }
}
