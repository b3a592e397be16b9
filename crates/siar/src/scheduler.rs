//! Time-driven work: publishing releases at their `publish_at`, and running recurring jobs on
//! their cron schedules in the publisher's time zone.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use chrono::Duration;
use chrono_tz::Tz;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::app::App;
use crate::clock::{sleep_until, Clock};
use crate::schedule::When;

/// Releases published per step when many come due at once (each step is flushed, and the
/// delivery workers woken, before the next).
const PUBLISH_GROUP: usize = 25;

/// Publishes every scheduled release when its time comes — at once for those whose time
/// passed while the daemon was down — until `shutdown`.
pub async fn run_publisher(app: Arc<App>, shutdown: CancellationToken) {
    app.scheduler_running.store(true, Ordering::Relaxed);
    loop {
        let now = app.clock.now();
        let mut wait = Duration::seconds(60);
        let mut more = false;
        match app
            .store
            .publish_due_max(now, app.router.as_ref(), PUBLISH_GROUP)
        {
            Ok(published) => {
                app.published
                    .fetch_add(published.len() as u64, std::sync::atomic::Ordering::Relaxed);
                for r in &published {
                    let late = now - r.publish_at;
                    if late > Duration::seconds(60) {
                        info!(release = %r.id, publish_at = %r.publish_at, late_secs = late.num_seconds(),
                              "Published late: siar was not running at publish_at.");
                    } else {
                        info!(release = %r.id, publish_at = %r.publish_at, "Published.");
                    }
                }
                more = published.len() == PUBLISH_GROUP;
                if !published.is_empty() {
                    if let Err(e) = app.store.flush().await {
                        error!(error = %e, "Could not flush after publishing.");
                    }
                    for r in &published {
                        app.feeds.release_changed(r);
                        app.deliveries_changed.notify_waiters();
                    }
                }
            }
            Err(e) => {
                error!(error = %e, "Could not publish due releases; retrying in 5 s.");
                wait = Duration::seconds(5);
            }
        }
        if more && !shutdown.is_cancelled() {
            // Many came due at once: the next group now, after letting others run.
            tokio::task::yield_now().await;
            continue;
        }
        let mut until = now + wait;
        match app.store.next_scheduled() {
            Ok(Some(next)) => until = until.min(next),
            Ok(None) => {}
            Err(e) => warn!(error = %e, "Could not read the schedule."),
        }
        tokio::select! {
            _ = sleep_until(app.clock.as_ref(), until) => {}
            _ = app.schedule_changed.notified() => {}
            _ = shutdown.cancelled() => break,
        }
    }
    app.scheduler_running.store(false, Ordering::Relaxed);
}

/// Runs `job` at every firing of `when` until `shutdown`. A job that is still running when
/// the next firing comes delays that firing; firings missed while the daemon was down are not
/// replayed (the next one catches up).
pub async fn run_cron<F, Fut>(
    name: String,
    when: When,
    tz: Tz,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
    mut job: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        let next = when.next_after(clock.now(), tz);
        while clock.now() < next {
            tokio::select! {
                _ = sleep_until(clock.as_ref(), next) => {}
                _ = shutdown.cancelled() => return,
            }
        }
        tracing::debug!(job = %name, "Cron job firing.");
        tokio::select! {
            _ = job() => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use chrono::{DateTime, Utc};
    use siar_model::{Provenance, Source, Status};
    use siar_store::{NewRelease, Store};

    use super::*;
    use crate::clock::TokioClock;
    use crate::config::Config;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[tokio::test(start_paused = true)]
    async fn publishes_at_publish_at_and_not_before() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let base = t("2026-11-29T00:00:00Z");
        let clock = Arc::new(TokioClock::new(base));
        let (config, _) = Config::load(None, Vec::new()).unwrap();
        let app = Arc::new(App::new(config, store.clone(), clock).unwrap());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run_publisher(app.clone(), shutdown.clone()));

        let publish_at = base + Duration::hours(6);
        let content = siar_model::ReleaseContent {
            title: "Embargo".into(),
            body: vec!["Isi.".into()],
            language: "id".into(),
            ..Default::default()
        };
        let new = NewRelease {
            content,
            publish_at,
            provenance: Provenance {
                source: Source::Api,
                content_hash: "h".into(),
                received_at: base,
                idempotency_key: None,
            },
        };
        let id = store.ingest(new, base, &()).unwrap().release.id;
        app.schedule_changed.notify_one();

        tokio::time::sleep(std::time::Duration::from_secs(6 * 3600 - 1)).await;
        assert_eq!(
            store.release(id).unwrap().unwrap().status,
            Status::Scheduled
        );
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let r = store.release(id).unwrap().unwrap();
        assert_eq!(r.status, Status::Published);
        let at = r.published_at.unwrap();
        assert!(
            at >= publish_at && at <= publish_at + Duration::seconds(1),
            "published at {at}"
        );
        shutdown.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn cron_jobs_fire_at_their_wita_times() {
        let base = t("2026-11-29T12:00:00Z"); // 20:00 WITA
        let clock: Arc<dyn Clock> = Arc::new(TokioClock::new(base));
        let fired = Arc::new(Mutex::new(Vec::new()));
        let shutdown = CancellationToken::new();
        let (f, c) = (fired.clone(), clock.clone());
        let task = tokio::spawn(run_cron(
            "radio".into(),
            When::parse("0 30 5,11,17 * * *").unwrap(),
            chrono_tz::Asia::Makassar,
            clock.clone(),
            shutdown.clone(),
            move || {
                f.lock().unwrap().push(c.now());
                async {}
            },
        ));
        tokio::time::sleep(std::time::Duration::from_secs(24 * 3600)).await;
        shutdown.cancel();
        task.await.unwrap();
        let fired = fired.lock().unwrap().clone();
        assert_eq!(
            fired,
            [
                t("2026-11-29T21:30:00Z"),
                t("2026-11-30T03:30:00Z"),
                t("2026-11-30T09:30:00Z")
            ]
        );
    }
}
