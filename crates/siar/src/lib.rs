//! The siar daemon and its command line.
//!
//! - [`config`]: layered configuration (built-in defaults, file, `SIAR_*` env) and validation.
//! - [`app`]: the running daemon's shared state and the ingest path every source shares.
//! - [`http`]: HTTP serving, one single-threaded runtime per core on shared sockets.
//! - [`api`]: the HTTP API, its OpenAPI document, health endpoints.
//! - [`web`]: the public side: feeds rendered once per change and served from memory.
//! - [`scheduler`]: publishing at `publish_at`, and cron jobs in the publisher's time zone.
//! - [`sources`]: the drop folder and upstream feed polling.
//! - [`routing`]: who is owed a release, from the configured partners and lists.
//! - [`cli`]: the commands that talk to a running daemon over its API.
//! - [`writer`]: group commit for ingest.
//! - [`clock`], [`schedule`]: time, behind a trait so it can be controlled in tests.
//!
//! [`serve`] runs everything until its `shutdown` future completes, so tests start a real
//! daemon on `127.0.0.1:0` and stop it at will.

pub mod api;
pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod deliver;
pub mod http;
pub mod mail;
pub mod routing;
pub mod schedule;
pub mod scheduler;
pub mod sources;
pub mod watchdog;
pub mod web;
pub mod writer;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use siar_store::Store;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::app::App;
use crate::clock::Clock;
use crate::config::Config;

/// How long in-flight work gets to finish after shutdown is asked for.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Runs the daemon on `listener` (bound with [`http::bind`]) until
/// `shutdown` completes, then stops taking work, lets running work finish (up to a
/// deadline), flushes the store and returns.
pub async fn serve(
    config: Config,
    store: Store,
    listener: std::net::TcpListener,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = Arc::new(App::new(config, store, clock).context("starting the ingest writer")?);
    if app.token.is_none() {
        warn!(env = %app.config.api.token_env, "No API token is set: the API answers 503 until one is configured.");
    }
    let recovered = app
        .store
        .recover_in_flight(app.clock.now())
        .context("recovering leases at start-up")?;
    if recovered > 0 {
        info!(
            deliveries = recovered,
            "Deliveries that were in flight when siar stopped are due again."
        );
    }

    let stop = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(scheduler::run_publisher(app.clone(), stop.clone()));
    tasks.spawn(web::feeds::run(app.clone(), stop.clone()));
    tasks.spawn(sources::inbox::run(app.clone(), stop.clone()));
    let engine = Arc::new(deliver::Engine::new(&app).context("starting the webhook engine")?);
    let _ = app.webhooks.set(engine.clone());
    tasks.spawn(deliver::run(app.clone(), engine, stop.clone()));
    let mailer = Arc::new(mail::Mailer::new(&app).context("starting the mail engine")?);
    let _ = app.mail.set(mailer.clone());
    tasks.spawn(mail::run(app.clone(), mailer, stop.clone()));
    let client = reqwest::Client::builder()
        .user_agent(concat!("siar/", env!("CARGO_PKG_VERSION")))
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::limited(5))
        .build()
        .context("building the HTTP client")?;
    for u in app.config.ingest.upstream.clone() {
        tasks.spawn(sources::upstream::run(
            app.clone(),
            u,
            client.clone(),
            stop.clone(),
        ));
    }

    let router = api::router(app.clone());
    let shards = http::shards(app.config.server.threads);
    let servers = http::serve(app.clone(), router, listener, shards, stop.clone())
        .context("starting the HTTP threads")?;
    tracing::debug!(threads = servers.len(), "Serving HTTP.");
    // Under systemd (Type=notify): ready once the listener and every worker run.
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        warn!(error = %e, "Could not tell the service manager siar is ready.");
    }
    let watchdog = tokio::spawn(watchdog::run(app.clone(), stop.clone()));
    let mut fatal = None;
    tokio::pin!(shutdown);
    tokio::select! {
        _ = &mut shutdown => {}
        reason = watchdog => {
            if let Ok(Some(reason)) = reason {
                fatal = Some(reason);
            }
        }
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    info!("Shutting down: no new work is taken.");
    stop.cancel();
    let joined = tokio::task::spawn_blocking(move || {
        for s in servers {
            let _ = s.join();
        }
    });
    if tokio::time::timeout(SHUTDOWN_GRACE, joined).await.is_err() {
        warn!("Some HTTP requests did not finish within the grace period.");
    }
    stop.cancel();
    if tokio::time::timeout(SHUTDOWN_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        warn!("Some work did not finish within the grace period; it will be resumed at the next start.");
    }
    if let Some(reason) = fatal {
        anyhow::bail!("{reason}");
    }
    app.store
        .flush()
        .await
        .context("flushing the store at shutdown")?;
    info!("Stopped.");
    Ok(())
}
