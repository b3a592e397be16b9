//! Group commit: one thread makes writes durable for every caller waiting at the time.
//!
//! Each `flush()` caller registers and waits; the flusher thread takes every waiter that
//! registered before it started a disk sync, syncs once, and answers them all. A caller that
//! arrives during a sync waits for the next one, because its writes may have missed the one in
//! progress. One sync thread also keeps sled's own I/O pool free: many concurrent
//! `flush_async` calls can fill that pool with flushes waiting for writes the pool no longer
//! has a thread to perform.

use std::sync::{Arc, Condvar, Mutex};

use tokio::sync::oneshot;

/// Told the outcome of the first sync that started after it registered.
type Waiter = Box<dyn FnOnce(Result<(), String>) + Send>;

#[derive(Default)]
struct Queue {
    waiters: Vec<Waiter>,
    closed: bool,
}

pub(crate) struct Flusher {
    queue: Arc<(Mutex<Queue>, Condvar)>,
    /// Joined on drop, so the database is closed when the last store handle is.
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Flusher {
    pub(crate) fn start(db: sled::Db) -> std::io::Result<Self> {
        let queue: Arc<(Mutex<Queue>, Condvar)> = Arc::default();
        let q = queue.clone();
        let thread = std::thread::Builder::new()
            .name("siar-flusher".into())
            .spawn(move || loop {
                let batch = {
                    let (lock, cv) = &*q;
                    let mut guard = lock.lock().unwrap_or_else(|p| p.into_inner());
                    while guard.waiters.is_empty() && !guard.closed {
                        guard = cv.wait(guard).unwrap_or_else(|p| p.into_inner());
                    }
                    if guard.waiters.is_empty() && guard.closed {
                        return;
                    }
                    std::mem::take(&mut guard.waiters)
                };
                let result = db.flush().map(drop).map_err(|e| e.to_string());
                for w in batch {
                    w(result.clone());
                }
            })?;
        Ok(Self {
            queue,
            thread: Some(thread),
        })
    }

    /// Resolves once every write made before the call is on disk.
    pub(crate) async fn flush(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.then(Box::new(move |r| {
            let _ = tx.send(r);
        }));
        rx.await
            .unwrap_or_else(|_| Err("the flusher thread stopped".into()))
    }

    /// Calls `done`, on the flusher thread, once every write made before this call is on
    /// disk (or the sync failed). Returns at once.
    pub(crate) fn then(&self, done: Waiter) {
        let (lock, cv) = &*self.queue;
        let mut guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        if guard.closed {
            drop(guard);
            done(Err("the flusher thread stopped".into()));
            return;
        }
        guard.waiters.push(done);
        cv.notify_one();
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        let (lock, cv) = &*self.queue;
        lock.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
        cv.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
