//! The running daemon's shared state, and the ingest path every source goes through.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use siar_ingest::{Format, ParseContext, ParseError};
use siar_model::{Category, Provenance, Release, ReleaseId, Source, Status};
use siar_store::{Ingested, MediaStore, NewRelease, Store, StoreError, StoredMedia};
use tokio::sync::Notify;
use tracing::info;

use crate::clock::Clock;
use crate::config::Config;
use crate::routing::ConfigRouter;
use crate::writer::IngestWriter;

pub struct App {
    pub config: Config,
    pub store: Store,
    pub router: Arc<ConfigRouter>,
    /// Stores new releases in groups (see [`crate::writer`]).
    writer: IngestWriter,
    pub clock: Arc<dyn Clock>,
    /// Wakes the scheduler when a release is scheduled, so it can sleep until the earliest
    /// `publish_at` instead of polling.
    pub schedule_changed: Notify,
    /// The API bearer token; `None` disables the API.
    pub token: Option<String>,
    /// Set by the scheduler while its loop runs; `/readyz` reports it.
    pub scheduler_running: AtomicBool,
    /// The rendered feeds, served from memory.
    pub feeds: crate::web::feeds::FeedCache,
    /// Wakes the webhook engine when deliveries may have become due.
    pub deliveries_changed: Notify,
    /// The webhook engine, once started.
    pub webhooks: std::sync::OnceLock<Arc<crate::deliver::Engine>>,
    /// The mail engine, once started.
    pub mail: std::sync::OnceLock<Arc<crate::mail::Mailer>>,
    /// Releases stored, repeats recognised, and releases published (now or when their
    /// `publish_at` came), since start: for `/metrics`.
    pub ingested: std::sync::atomic::AtomicU64,
    pub repeats: std::sync::atomic::AtomicU64,
    pub published: std::sync::atomic::AtomicU64,
    media: MediaStore,
}

/// One input on its way in.
pub struct Input {
    pub bytes: Vec<u8>,
    /// Files uploaded with the release, by the file name the request gave them. The release
    /// refers to them as `upload:NAME`; files it does not mention are attached as they are.
    pub media: Vec<(String, StoredMedia)>,
    pub format: Format,
    pub source: Source,
    pub idempotency_key: Option<String>,
    /// Overrides what the input itself says.
    pub publish_at: Option<DateTime<Utc>>,
    /// Added to the categories the input names.
    pub categories: Vec<Category>,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error("{0}")]
    Media(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl App {
    pub fn new(config: Config, store: Store, clock: Arc<dyn Clock>) -> std::io::Result<Self> {
        let token = config.api_token();
        let router = Arc::new(ConfigRouter::new(&config));
        let media = MediaStore::open(&config.store.path.join("media"))?;
        Ok(Self {
            media,
            writer: IngestWriter::start(store.clone(), router.clone(), clock.clone())?,
            router,
            config,
            store,
            clock,
            schedule_changed: Notify::new(),
            token,
            scheduler_running: AtomicBool::new(false),
            feeds: Default::default(),
            deliveries_changed: Notify::new(),
            webhooks: std::sync::OnceLock::new(),
            mail: std::sync::OnceLock::new(),
            ingested: Default::default(),
            repeats: Default::default(),
            published: Default::default(),
        })
    }

    pub fn parse_context(&self) -> ParseContext {
        let tz = self.config.timezone();
        ParseContext {
            today: self.clock.now().with_timezone(&tz).date_naive(),
            timezone: tz,
            max_bytes: self.config.ingest.max_bytes,
            language: self.config.publisher.language.clone(),
        }
    }

    fn prepare(&self, input: &Input) -> Result<(siar_ingest::Parsed, Provenance), IngestError> {
        let mut parsed = siar_ingest::parse(&input.bytes, input.format, &self.parse_context())?;
        attach_uploads(&mut parsed, &input.media)?;
        for c in &input.categories {
            if !parsed.content.categories.contains(c) {
                parsed.content.categories.push(c.clone());
            }
        }
        let provenance = Provenance {
            source: input.source.clone(),
            content_hash: parsed.content_hash.clone(),
            received_at: self.clock.now(),
            idempotency_key: input.idempotency_key.clone(),
        };
        Ok((parsed, provenance))
    }

    /// Parses, stores durably, and publishes (now or on schedule). Returns only once the
    /// release is flushed to disk.
    pub async fn ingest(&self, input: Input) -> Result<Ingested, IngestError> {
        let (parsed, provenance) = self.prepare(&input)?;
        let publish_at = input.publish_at.or(parsed.publish_at);
        Ok(self.store_new(parsed, provenance, publish_at).await?)
    }

    /// Stores an already parsed release durably; `publish_at` `None` means now.
    pub async fn store_new(
        &self,
        parsed: siar_ingest::Parsed,
        provenance: Provenance,
        publish_at: Option<DateTime<Utc>>,
    ) -> Result<Ingested, StoreError> {
        let publish_at = publish_at.unwrap_or_else(|| self.clock.now());
        let actor = provenance.source.actor();
        let out = self
            .writer
            .ingest(NewRelease {
                content: parsed.content,
                publish_at,
                provenance,
            })
            .await?;
        let r = &out.release;
        if out.created {
            info!(release = %r.id, slug = %r.slug, source = %actor, status = ?r.status,
                  publish_at = %r.publish_at, deliveries = out.deliveries, "Ingested.");
            self.ingested.fetch_add(1, Ordering::Relaxed);
            if r.status == Status::Scheduled {
                self.schedule_changed.notify_one();
            } else {
                self.published.fetch_add(1, Ordering::Relaxed);
                self.feeds.release_changed(r);
                self.deliveries_changed.notify_waiters();
            }
        } else {
            self.repeats.fetch_add(1, Ordering::Relaxed);
            info!(release = %r.id, source = %actor, "Already known; returned the existing release.");
        }
        Ok(out)
    }

    /// Adds a corrected version, durably.
    pub async fn correct(
        &self,
        id: ReleaseId,
        input: Input,
        note: &str,
    ) -> Result<Ingested, IngestError> {
        let (parsed, provenance) = self.prepare(&input)?;
        Ok(self.store_correction(id, parsed, provenance, note).await?)
    }

    /// Stores an already parsed correction durably.
    pub async fn store_correction(
        &self,
        id: ReleaseId,
        parsed: siar_ingest::Parsed,
        provenance: Provenance,
        note: &str,
    ) -> Result<Ingested, StoreError> {
        let actor = provenance.source.actor();
        let out = self.store.correct(
            id,
            parsed.content,
            note,
            provenance,
            self.clock.now(),
            self.router.as_ref(),
        )?;
        self.store.flush().await?;
        if out.created {
            info!(release = %id, version = out.release.version, deliveries = out.deliveries,
                  source = %actor, "Corrected.");
            self.feeds.release_changed(&out.release);
            self.deliveries_changed.notify_waiters();
        }
        Ok(out)
    }

    /// Withdraws a release, durably.
    pub async fn retract(
        &self,
        id: ReleaseId,
        reason: &str,
        actor: &str,
    ) -> Result<Release, StoreError> {
        let r = self
            .store
            .retract(id, reason, actor, self.clock.now(), self.router.as_ref())?;
        self.store.flush().await?;
        info!(release = %id, actor, "Retracted.");
        self.feeds.release_changed(&r);
        self.deliveries_changed.notify_waiters();
        Ok(r)
    }

    /// Where uploaded photos and audio live.
    /// An operator's replay of a delivery (API, CLI or /admin): queued again, durable, and
    /// the workers woken.
    pub async fn retry_delivery(
        &self,
        id: siar_model::DeliveryId,
        actor: &str,
    ) -> Result<siar_model::Delivery, StoreError> {
        let d = self.store.retry_delivery(id, actor, self.clock.now())?;
        self.store.flush().await?;
        info!(delivery = %id, release = %d.release_id, target = %d.target, actor, "Delivery queued again.");
        self.deliveries_changed.notify_waiters();
        Ok(d)
    }

    /// An operator enables a partner disabled by a 410 or by days of failures. False if no
    /// enabled partner in the configuration has that id.
    pub async fn enable_partner(&self, id: &str) -> Result<bool, StoreError> {
        let enabled = match self.webhooks.get() {
            Some(engine) => engine.enable(self, id)?,
            None => false,
        };
        if enabled {
            self.store.flush().await?;
            self.deliveries_changed.notify_waiters();
        }
        Ok(enabled)
    }

    pub fn media(&self) -> &MediaStore {
        &self.media
    }

    pub fn is_scheduler_running(&self) -> bool {
        self.scheduler_running.load(Ordering::Relaxed)
    }
}

/// Points `upload:NAME` attachments at the stored files, attaches uploads the release does
/// not mention, and folds the files into the content hash (the same text with other photos is
/// another input).
fn attach_uploads(
    parsed: &mut siar_ingest::Parsed,
    media: &[(String, StoredMedia)],
) -> Result<(), IngestError> {
    let mut used = vec![false; media.len()];
    for (i, a) in parsed.content.attachments.iter_mut().enumerate() {
        let Some(name) = a.url.strip_prefix("upload:") else {
            continue;
        };
        let Some(k) = media.iter().position(|(n, _)| n == name) else {
            return Err(IngestError::Media(format!(
                "attachments[{i}]: `upload:{name}` names no file sent with this release"
            )));
        };
        let m = &media[k].1;
        used[k] = true;
        a.url = format!("/media/{}", m.name);
        a.media_type = m.media_type.clone();
        a.length = Some(m.length);
    }
    for ((_, m), used) in media.iter().zip(used) {
        if !used {
            parsed.content.attachments.push(siar_model::Attachment {
                url: format!("/media/{}", m.name),
                media_type: m.media_type.clone(),
                caption: None,
                credit: None,
                length: Some(m.length),
            });
        }
    }
    if !media.is_empty() {
        let names: Vec<&str> = media.iter().map(|(_, m)| m.name.as_str()).collect();
        parsed.content_hash = siar_ingest::content_hash(
            siar_ingest::Format::Json,
            &format!("{}\n{}", parsed.content_hash, names.join("\n")),
        );
    }
    Ok(())
}
