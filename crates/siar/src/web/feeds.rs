//! Feeds served from memory.
//!
//! Every feed document (the main feed and one per category, in RSS, Atom and JSON Feed, plus
//! their RFC 5005 archives) is rendered once per change — a publication, correction,
//! retraction — hashed, and kept in memory; the current feeds when the change is taken in,
//! archive pages (which few readers fetch) on their first request. Each representation is
//! compressed (gzip, brotli) the first time a reader asks for it. A request then only picks
//! the bytes, so polling readers cost almost nothing: conditional requests get `304`.
//!
//! Archives: the public releases in order of publication; the current feed holds the newest
//! `feeds.items`; archive page k holds the k-th `feeds.items` oldest, so a page never changes
//! once full (unless one of its releases is corrected or retracted).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use siar_fanout::render::{self, FeedContext, FeedDoc};
use siar_model::{Category, Release, ReleaseId};
use siar_store::ReleaseFilter;

use crate::app::App;

/// The three formats, by file name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedFormat {
    Rss,
    Atom,
    Json,
}

impl FeedFormat {
    pub const ALL: [FeedFormat; 3] = [FeedFormat::Rss, FeedFormat::Atom, FeedFormat::Json];

    pub fn file(self) -> &'static str {
        match self {
            FeedFormat::Rss => "rss.xml",
            FeedFormat::Atom => "atom.xml",
            FeedFormat::Json => "feed.json",
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            FeedFormat::Rss => "application/rss+xml; charset=utf-8",
            FeedFormat::Atom => "application/atom+xml; charset=utf-8",
            FeedFormat::Json => "application/feed+json; charset=utf-8",
        }
    }
}

/// One rendered document with everything a response needs, headers included: a request
/// only compares validators and clones prepared values.
pub struct Rendered {
    pub identity: Bytes,
    /// Compressed on first request: most archive pages are never asked for compressed, and
    /// a burst of publications should not pay for compressing them.
    gzip: std::sync::OnceLock<Bytes>,
    brotli: std::sync::OnceLock<Bytes>,
    /// Hex of the SHA-256 of `identity`, shortened; the strong ETags are built from it.
    tag: String,
    last_modified: DateTime<Utc>,
    /// Strong ETags of the identity, gzip and brotli representations.
    etags: [HeaderValue; 3],
    last_modified_header: HeaderValue,
    content_type: HeaderValue,
    cache_control: HeaderValue,
    /// `Link: <self>; rel="self"` (and the hub).
    link: Option<HeaderValue>,
}

/// One feed document of a snapshot: the current feeds are rendered when the snapshot is
/// built; archive pages, which most readers never fetch, on their first request. Either way
/// a document is rendered once and then served from memory, and carried over to the next
/// snapshot while its inputs stay the same.
pub struct Doc {
    /// What the document is rendered from (its releases' ids and versions, its links): a
    /// document whose inputs did not change is reused, not rendered again.
    fingerprint: u64,
    recipe: Recipe,
    rendered: std::sync::OnceLock<Arc<Rendered>>,
}

/// Everything needed to render a [`Doc`].
struct Recipe {
    format: FeedFormat,
    ctx: Arc<FeedContext>,
    title: String,
    description: String,
    self_url: String,
    home_url: String,
    /// Newest first.
    releases: Vec<Arc<Release>>,
    prev_archive: Option<String>,
    next_archive: Option<String>,
    current: Option<String>,
    max_age: u64,
}

impl Recipe {
    /// The inputs, hashed.
    fn fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (
            &self.title,
            &self.description,
            &self.self_url,
            &self.home_url,
        )
            .hash(&mut h);
        (&self.prev_archive, &self.next_archive, &self.current).hash(&mut h);
        (self.max_age, self.format as u8).hash(&mut h);
        for r in &self.releases {
            (r.id, r.version, r.updated_at, r.status as u8).hash(&mut h);
        }
        h.finish()
    }

    fn render(&self) -> Rendered {
        let releases: Vec<&Release> = self.releases.iter().map(AsRef::as_ref).collect();
        let updated = releases
            .iter()
            .map(|r| r.updated_at)
            .max()
            .unwrap_or_default();
        let doc = FeedDoc {
            title: self.title.clone(),
            description: self.description.clone(),
            self_url: self.self_url.clone(),
            home_url: self.home_url.clone(),
            releases: &releases,
            prev_archive: self.prev_archive.clone(),
            next_archive: self.next_archive.clone(),
            current: self.current.clone(),
            updated,
        };
        let links = self_and_hub(&self.ctx, &self.self_url);
        rendered(
            render_as(self.format, &self.ctx, &doc),
            self.format,
            updated,
            self.max_age,
            &links,
        )
    }
}

impl Doc {
    /// The rendered document, rendering it now if this is the first time it is asked for.
    pub fn rendered(&self) -> &Arc<Rendered> {
        self.rendered.get_or_init(|| Arc::new(self.recipe.render()))
    }

    /// The rendered document if it has been rendered.
    fn if_rendered(&self) -> Option<&Arc<Rendered>> {
        self.rendered.get()
    }
}

/// What the public sees at one moment: every feed document by path (`/feeds/rss.xml`,
/// `/feeds/pemilu/atom.xml`, `/feeds/archive/1/feed.json`…) and the public releases the pages
/// are drawn from. Feeds and pages come from the same snapshot, so they always agree.
#[derive(Default)]
pub struct Snapshot {
    pub docs: HashMap<String, Arc<Doc>>,
    /// Public releases, oldest published first.
    pub releases: Vec<Arc<Release>>,
    /// Index into `releases` by slug.
    pub by_slug: HashMap<String, usize>,
    /// Each category with its number of public releases.
    pub categories: BTreeMap<Category, usize>,
}

/// The current [`Snapshot`], replaced whole on every rebuild. Readers never wait: a feed
/// request loads the snapshot without a lock.
#[derive(Default)]
pub struct FeedCache {
    current: arc_swap::ArcSwap<Snapshot>,
    /// Releases changed since the last rebuild (published, corrected, retracted), as stored.
    pending: std::sync::Mutex<Vec<Arc<Release>>>,
    /// Wakes the renderer when `pending` gains an id.
    changed: tokio::sync::Notify,
    /// Feed requests answered, and how many of them with 304 (for `/metrics`).
    pub requests: Counter,
    pub not_modified: Counter,
}

/// A counter each HTTP thread bumps in its own cache line, so that counting costs the
/// busiest path (a 304 from memory) no contention; read by summing.
#[derive(Default)]
pub struct Counter {
    slots: [Slot; 8],
}

#[derive(Default)]
#[repr(align(128))]
struct Slot(std::sync::atomic::AtomicU64);

thread_local! {
    static SLOT: usize = {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 8
    };
}

impl Counter {
    pub fn add(&self, n: u64) {
        let i = SLOT.with(|s| *s);
        self.slots[i]
            .0
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.slots
            .iter()
            .map(|s| s.0.load(std::sync::atomic::Ordering::Relaxed))
            .sum()
    }
}

impl FeedCache {
    fn count(&self, status: StatusCode) {
        self.requests.add(1);
        if status == StatusCode::NOT_MODIFIED {
            self.not_modified.add(1);
        }
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    pub fn get(&self, path: &str) -> Option<Arc<Rendered>> {
        self.snapshot().docs.get(path).map(|d| d.rendered().clone())
    }

    /// Every feed path currently served, sorted.
    pub fn paths(&self) -> Vec<String> {
        let mut v: Vec<String> = self.snapshot().docs.keys().cloned().collect();
        v.sort();
        v
    }

    /// Tells the renderer that what the public sees of `release` may have changed; `release`
    /// is the state just stored, so the renderer need not read it back.
    pub fn release_changed(&self, release: &Release) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::new(release.clone()));
        self.changed.notify_one();
    }

    fn take_pending(&self) -> Vec<Arc<Release>> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn replace(&self, s: Snapshot) {
        self.current.store(Arc::new(s));
    }
}

pub fn feed_context(app: &App) -> FeedContext {
    let c = &app.config;
    FeedContext {
        public_url: c.server.public_url.trim_end_matches('/').to_owned(),
        publisher_name: c.publisher.name.clone(),
        publisher_short: c.publisher.short_name.clone(),
        tag_authority: c.publisher.tag_authority.clone(),
        language: c.publisher.language.clone(),
        timezone: c.timezone(),
        websub_hub: Some(c.feeds.websub_hub.clone()).filter(|h| !h.is_empty()),
    }
}

fn publication_order(r: &Release) -> (DateTime<Utc>, ReleaseId) {
    (r.published_at.unwrap_or(r.publish_at), r.id)
}

/// Every release the public may see now, in order of publication (oldest first).
pub fn public_releases(app: &App) -> siar_store::Result<Vec<Arc<Release>>> {
    let filter = ReleaseFilter {
        public_at: Some(app.clock.now()),
        category: None,
    };
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let page = app.store.list(&filter, 500, cursor.as_deref())?;
        all.extend(page.items.into_iter().map(Arc::new));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    all.sort_by_key(|r| publication_order(r));
    Ok(all)
}

/// `previous` with the releases in `changed` in their new state. Of two states of one
/// release (two writers can notify out of order), the later one wins.
fn merge(app: &App, previous: &[Arc<Release>], changed: &[Arc<Release>]) -> Vec<Arc<Release>> {
    let mut latest: HashMap<ReleaseId, &Arc<Release>> = HashMap::with_capacity(changed.len());
    for r in changed {
        let newer = latest
            .get(&r.id)
            .is_none_or(|old| (r.version, r.updated_at) >= (old.version, old.updated_at));
        if newer {
            latest.insert(r.id, r);
        }
    }
    let mut list: Vec<Arc<Release>> = previous
        .iter()
        .filter(|r| !latest.contains_key(&r.id))
        .cloned()
        .collect();
    let now = app.clock.now();
    list.extend(
        latest
            .into_values()
            .filter(|r| r.is_public() && r.publish_at <= now)
            .cloned(),
    );
    list.sort_by_key(|r| publication_order(r));
    list
}

// Compression runs on the first request that wants it, on the thread answering: settings that
// cost a few milliseconds for a large feed (brotli 11 would cost a hundred times more).
fn gzip(body: &[u8]) -> Bytes {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    Bytes::from(
        gz.write_all(body)
            .and_then(|()| gz.finish())
            .unwrap_or_default(),
    )
}

/// Brotli of `body`; empty only if the encoder failed, and then the answer goes out as gzip.
fn brotli(body: &[u8]) -> Bytes {
    let mut br = Vec::new();
    let params = brotli::enc::BrotliEncoderParams {
        quality: 6,
        ..Default::default()
    };
    match brotli::BrotliCompress(&mut &body[..], &mut br, &params) {
        Ok(_) => Bytes::from(br),
        Err(_) => Bytes::new(),
    }
}

fn header_value(s: &str) -> HeaderValue {
    // Everything passed here is ASCII we built ourselves; an odd configured URL degrades to
    // an empty header rather than a failed render.
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn rendered(
    body: String,
    format: FeedFormat,
    updated: DateTime<Utc>,
    max_age: u64,
    links: &[(String, &str)],
) -> Rendered {
    let identity = Bytes::from(body);
    let digest = Sha256::digest(&identity);
    let tag = hex::encode(&digest[..16]);
    let link: Vec<String> = links
        .iter()
        .map(|(href, rel)| format!("<{href}>; rel=\"{rel}\""))
        .collect();
    Rendered {
        identity,
        gzip: std::sync::OnceLock::new(),
        brotli: std::sync::OnceLock::new(),
        etags: [
            header_value(&format!("\"{tag}\"")),
            header_value(&format!("\"{tag}-gz\"")),
            header_value(&format!("\"{tag}-br\"")),
        ],
        tag,
        last_modified: updated,
        last_modified_header: header_value(&http_date(updated)),
        content_type: HeaderValue::from_static(format.content_type()),
        cache_control: header_value(&format!("public, max-age={max_age}")),
        link: (!link.is_empty()).then(|| header_value(&link.join(", "))),
    }
}

/// How long complete archive pages may be cached.
const ARCHIVE_MAX_AGE: u64 = 7 * 24 * 3600;

/// Every feed document of `releases`, reusing the documents of `previous` whose inputs did
/// not change. The current feeds are rendered here; archive pages when first asked for.
pub fn build(
    app: &App,
    releases: &[Arc<Release>],
    previous: &Snapshot,
) -> HashMap<String, Arc<Doc>> {
    let ctx = Arc::new(feed_context(app));
    let n = app.config.feeds.items.max(1);
    let max_age = app.config.feeds.max_age_secs;
    let mut docs = HashMap::new();
    let mut by_category: BTreeMap<&Category, Vec<Arc<Release>>> = BTreeMap::new();
    for r in releases {
        for c in &r.content.categories {
            by_category.entry(c).or_default().push(r.clone());
        }
    }
    let name = &app.config.publisher.short_name;
    let mut sets: Vec<(String, String, String, &[Arc<Release>])> = vec![(
        "/feeds".to_owned(),
        format!("Siaran Pers {name}"),
        format!("Siaran pers terbaru dari {}", app.config.publisher.name),
        releases,
    )];
    for (c, rs) in &by_category {
        sets.push((
            format!("/feeds/{c}"),
            format!("Siaran Pers {name}: {c}"),
            format!(
                "Siaran pers {} dalam kategori {c}",
                app.config.publisher.name
            ),
            rs.as_slice(),
        ));
    }
    let mut put = |path: String, recipe: Recipe, eager: bool| {
        let fingerprint = recipe.fingerprint();
        let doc = match previous.docs.get(&path) {
            Some(d) if d.fingerprint == fingerprint => d.clone(),
            _ => Arc::new(Doc {
                fingerprint,
                recipe,
                rendered: std::sync::OnceLock::new(),
            }),
        };
        if eager {
            doc.rendered();
        }
        docs.insert(path, doc);
    };
    for (base, title, description, rs) in sets {
        let total = rs.len();
        let archived = total - total.min(n);
        let pages = archived.div_ceil(n);
        let home = if base == "/feeds" {
            format!("{}/", ctx.public_url)
        } else {
            format!(
                "{}/categories/{}",
                ctx.public_url,
                base.trim_start_matches("/feeds/")
            )
        };
        for format in FeedFormat::ALL {
            let file = format.file();
            let url = |path: &str| format!("{}{path}", ctx.public_url);
            let archive_path = |k: usize| format!("{base}/archive/{k}/{file}");
            // The current document: the newest `n`, newest first.
            let recipe = Recipe {
                format,
                ctx: ctx.clone(),
                title: title.clone(),
                description: description.clone(),
                self_url: url(&format!("{base}/{file}")),
                home_url: home.clone(),
                releases: rs[archived..].iter().rev().cloned().collect(),
                prev_archive: (pages > 0).then(|| url(&archive_path(pages))),
                next_archive: None,
                current: None,
                max_age,
            };
            put(format!("{base}/{file}"), recipe, true);
            for k in 1..=pages {
                let (start, end) = ((k - 1) * n, (k * n).min(archived));
                let recipe = Recipe {
                    format,
                    ctx: ctx.clone(),
                    title: format!("{title} (arsip {k})"),
                    description: description.clone(),
                    self_url: url(&archive_path(k)),
                    home_url: home.clone(),
                    releases: rs[start..end].iter().rev().cloned().collect(),
                    prev_archive: (k > 1).then(|| url(&archive_path(k - 1))),
                    next_archive: (k < pages).then(|| url(&archive_path(k + 1))),
                    current: Some(url(&format!("{base}/{file}"))),
                    max_age: if end - start == n {
                        ARCHIVE_MAX_AGE
                    } else {
                        max_age
                    },
                };
                put(archive_path(k), recipe, false);
            }
        }
    }
    docs
}

fn self_and_hub(ctx: &FeedContext, self_url: &str) -> Vec<(String, &'static str)> {
    let mut links = vec![(self_url.to_owned(), "self")];
    if let Some(hub) = &ctx.websub_hub {
        links.push((hub.clone(), "hub"));
    }
    links
}

fn render_as(format: FeedFormat, ctx: &FeedContext, doc: &FeedDoc<'_>) -> String {
    match format {
        FeedFormat::Rss => render::rss(ctx, doc),
        FeedFormat::Atom => render::atom(ctx, doc),
        FeedFormat::Json => render::json_feed(ctx, doc),
    }
}

/// Brings the snapshot up to date — from scratch (`changed` is `None`), or by taking in the
/// releases that changed — and swaps it in. Returns the paths of the subscription
/// feeds (not archives) whose bytes changed: the WebSub topics to ping.
pub fn rebuild(app: &App, changed: Option<&[Arc<Release>]>) -> siar_store::Result<Vec<String>> {
    let before = app.feeds.snapshot();
    let releases = match changed {
        None => public_releases(app)?,
        Some(changed) => merge(app, &before.releases, changed),
    };
    let docs = build(app, &releases, &before);
    let mut topics: Vec<String> = docs
        .iter()
        .filter(|(path, _)| !path.contains("/archive/"))
        .filter(|(path, doc)| {
            before
                .docs
                .get(*path)
                .and_then(|old| old.if_rendered())
                .is_none_or(|old| old.tag != doc.rendered().tag)
        })
        .map(|(path, _)| path.clone())
        .collect();
    topics.sort();
    let by_slug = releases
        .iter()
        .enumerate()
        .map(|(i, r)| (r.slug.clone(), i))
        .collect();
    let mut categories = BTreeMap::new();
    for r in &releases {
        for c in &r.content.categories {
            *categories.entry(c.clone()).or_insert(0) += 1;
        }
    }
    app.feeds.replace(Snapshot {
        docs,
        releases,
        by_slug,
        categories,
    });
    Ok(topics)
}

/// Changes are gathered this long before a rebuild, so a burst of publications costs one.
const DEBOUNCE: std::time::Duration = std::time::Duration::from_millis(100);

/// Under a steady stream of publications, rebuilds start at most this often: a single
/// publication shows within [`DEBOUNCE`]; a flood of them costs one rebuild every two seconds.
const MIN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// Everything is read again from the store this often, whatever the notifications said.
const FULL_REBUILD: std::time::Duration = std::time::Duration::from_secs(600);

/// Keeps the snapshot up to date until `shutdown`: rendered in full at start-up, then again
/// for every batch of changed releases (and in full every ten minutes, to heal anything a
/// notification missed, such as a release whose `publish_at` the clock passed).
pub async fn run(app: Arc<App>, shutdown: tokio_util::sync::CancellationToken) {
    let hub = Some(app.config.feeds.websub_hub.clone()).filter(|h| !h.is_empty());
    let client = reqwest::Client::builder()
        .user_agent(concat!(
            "siar/",
            env!("CARGO_PKG_VERSION"),
            " (WebSub publisher)"
        ))
        .timeout(std::time::Duration::from_secs(15))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_default();
    let mut full = true;
    let mut last_full = tokio::time::Instant::now();
    loop {
        let started = tokio::time::Instant::now();
        let changed = app.feeds.take_pending();
        let a = app.clone();
        let job = move || rebuild(&a, (!full).then_some(changed.as_slice()));
        match tokio::task::spawn_blocking(job).await {
            Ok(Ok(topics)) => {
                tracing::debug!(
                    changed = topics.len(),
                    full,
                    ms = started.elapsed().as_millis(),
                    "Feeds rendered."
                );
                // At start-up every feed counts as changed: something may have been published
                // while siar was down, and an extra ping costs the hub one fetch.
                if let Some(hub) = &hub {
                    for path in topics {
                        let topic = format!(
                            "{}{path}",
                            app.config.server.public_url.trim_end_matches('/')
                        );
                        let (client, hub) = (client.clone(), hub.clone());
                        tokio::spawn(async move {
                            match siar_fanout::websub::ping_with_retries(&client, &hub, &topic)
                                .await
                            {
                                (n, None) => {
                                    tracing::info!(%topic, attempts = n, "WebSub hub notified.")
                                }
                                (n, Some(e)) => tracing::warn!(%topic, attempts = n, error = %e,
                                    "WebSub hub never accepted the ping; readers will still see the change when they poll."),
                            }
                        });
                    }
                }
                if full {
                    last_full = tokio::time::Instant::now();
                }
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "Could not render the feeds; serving the previous ones.")
            }
            Err(e) => {
                tracing::error!(error = %e, "The feed renderer failed; serving the previous feeds.")
            }
        }
        let next_full = last_full + FULL_REBUILD;
        tokio::select! {
            _ = app.feeds.changed.notified() => {
                full = false;
                let wake = (tokio::time::Instant::now() + DEBOUNCE).max(started + MIN_INTERVAL);
                tokio::select! {
                    _ = tokio::time::sleep_until(wake) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
            _ = tokio::time::sleep_until(next_full) => full = true,
            _ = shutdown.cancelled() => return,
        }
    }
}

/// An HTTP date (IMF-fixdate).
pub(crate) fn http_date(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// What a feed request asks for, as read by either HTTP path (hyper's, or the wire path in
/// [`crate::http`]): everything [`answer_with`] looks at, borrowed from the request.
#[derive(Default)]
pub struct Ask<'a> {
    /// `HEAD`: the headers `GET` would get, without the bytes.
    pub head: bool,
    /// `Accept-Encoding` allows brotli.
    pub br: bool,
    /// `Accept-Encoding` allows gzip.
    pub gzip: bool,
    pub if_none_match: Option<&'a [u8]>,
    pub if_modified_since: Option<&'a [u8]>,
}

impl<'a> Ask<'a> {
    pub fn from_headers(headers: &'a HeaderMap, head: bool) -> Self {
        let mut ask = Ask {
            head,
            if_none_match: headers.get(header::IF_NONE_MATCH).map(|v| v.as_bytes()),
            if_modified_since: headers.get(header::IF_MODIFIED_SINCE).map(|v| v.as_bytes()),
            ..Ask::default()
        };
        for v in headers.get_all(header::ACCEPT_ENCODING) {
            ask.accept_encoding(v.as_bytes());
        }
        ask
    }

    /// Takes in one `Accept-Encoding` header line (there may be several): a coding counts
    /// if it is named without `q=0`.
    pub fn accept_encoding(&mut self, value: &[u8]) {
        for part in value.split(|&b| b == b',') {
            let mut it = part.split(|&b| b == b';');
            let name = it.next().unwrap_or_default().trim_ascii();
            if it.any(is_q_zero) {
                continue;
            }
            if name.eq_ignore_ascii_case(b"br") {
                self.br = true;
            } else if name.eq_ignore_ascii_case(b"gzip") {
                self.gzip = true;
            }
        }
    }
}

/// A parameter `q=0` (or `q=0.`, `q=0.0` … `q=0.000`, spaces allowed): "not acceptable".
fn is_q_zero(param: &[u8]) -> bool {
    let mut s = param.iter().copied().filter(|b| !b.is_ascii_whitespace());
    if !(matches!(s.next(), Some(b'q' | b'Q')) && s.next() == Some(b'=') && s.next() == Some(b'0'))
    {
        return false;
    }
    match s.next() {
        None => true,
        Some(b'.') => {
            let rest: Vec<u8> = s.collect();
            rest.len() <= 3 && rest.iter().all(|&b| b == b'0')
        }
        Some(_) => false,
    }
}

/// True if `If-None-Match` names this version: any of its representations (they differ only
/// in encoding), or `*`.
fn matches_etag(doc: &Rendered, inm: &[u8]) -> bool {
    // Fast path: the client repeats exactly the ETag it was given.
    if doc.etags.iter().any(|e| e.as_bytes() == inm) {
        return true;
    }
    inm.split(|&b| b == b',').any(|t| {
        let t = t.trim_ascii();
        let t = t.strip_prefix(b"W/").unwrap_or(t);
        let t = t.strip_prefix(b"\"").unwrap_or(t);
        let t = t.strip_suffix(b"\"").unwrap_or(t);
        t == b"*" || t.split(|&b| b == b'-').next() == Some(doc.tag.as_bytes())
    })
}

/// True if `If-Modified-Since` is at or after the document's last change.
fn unmodified_since(doc: &Rendered, ims: &[u8]) -> bool {
    std::str::from_utf8(ims)
        .ok()
        .and_then(|v| DateTime::parse_from_rfc2822(&v.replace("GMT", "+0000")).ok())
        .is_some_and(|since| doc.last_modified.timestamp() <= since.timestamp())
}

/// The body of a feed answer: the bytes, with no boxing.
pub type FeedBody = http_body_util::Full<Bytes>;

const NOT_FOUND_TEXT: &str = "Feed tidak ditemukan.\n";

/// The answer to one feed request, borrowed from the document it serves. Both HTTP paths
/// write it through [`Answer::each_header`], so they send the same headers.
pub struct Answer<'a> {
    pub status: StatusCode,
    /// The document and the ETag of the representation chosen; `None` for no such feed.
    doc: Option<(&'a Rendered, &'a HeaderValue)>,
    coding: Option<&'static str>,
    /// What `GET` sends (`HEAD` sends its length only); empty for `304`.
    pub body: Bytes,
}

impl<'a> Answer<'a> {
    /// Serves one rendered document with validators, compression and `304`s.
    pub fn new(doc: &'a Rendered, ask: &Ask) -> Self {
        let (coding, etag) = if ask.br {
            (Some("br"), &doc.etags[2])
        } else if ask.gzip {
            (Some("gzip"), &doc.etags[1])
        } else {
            (None, &doc.etags[0])
        };
        let not_modified = match (ask.if_none_match, ask.if_modified_since) {
            (Some(inm), _) => matches_etag(doc, inm),
            (None, Some(ims)) => unmodified_since(doc, ims),
            (None, None) => false,
        };
        if not_modified {
            return Answer {
                status: StatusCode::NOT_MODIFIED,
                doc: Some((doc, etag)),
                coding: None,
                body: Bytes::new(),
            };
        }
        let body = match coding {
            Some("br") => doc.brotli.get_or_init(|| brotli(&doc.identity)).clone(),
            Some(_) => doc.gzip.get_or_init(|| gzip(&doc.identity)).clone(),
            None => doc.identity.clone(),
        };
        if body.is_empty() && !doc.identity.is_empty() {
            // The compressor failed: gzip, which is always there to fall back to.
            return Answer {
                status: StatusCode::OK,
                doc: Some((doc, &doc.etags[1])),
                coding: Some("gzip"),
                body: doc.gzip.get_or_init(|| gzip(&doc.identity)).clone(),
            };
        }
        Answer {
            status: StatusCode::OK,
            doc: Some((doc, etag)),
            coding,
            body,
        }
    }

    fn not_found() -> Self {
        Answer {
            status: StatusCode::NOT_FOUND,
            doc: None,
            coding: None,
            body: Bytes::from_static(NOT_FOUND_TEXT.as_bytes()),
        }
    }

    /// Every header of the answer in order, except `Content-Length` and `Date`, which each
    /// HTTP path writes itself. A `304` repeats the validators and caching headers only.
    pub fn each_header(&self, mut f: impl FnMut(&header::HeaderName, &HeaderValue)) {
        let Some((doc, etag)) = self.doc else {
            f(
                &header::CONTENT_TYPE,
                &HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            return;
        };
        f(&header::ETAG, etag);
        f(&header::LAST_MODIFIED, &doc.last_modified_header);
        f(&header::CACHE_CONTROL, &doc.cache_control);
        f(&header::VARY, &HeaderValue::from_static("Accept-Encoding"));
        if let Some(link) = &doc.link {
            f(&header::LINK, link);
        }
        if self.status == StatusCode::NOT_MODIFIED {
            return;
        }
        f(&header::CONTENT_TYPE, &doc.content_type);
        if let Some(c) = self.coding {
            f(&header::CONTENT_ENCODING, &HeaderValue::from_static(c));
        }
    }

    /// As a response for hyper; for `HEAD`, the length `GET` would send and no bytes.
    pub fn to_response(&self, head: bool) -> axum::http::Response<FeedBody> {
        let mut resp = axum::http::Response::new(FeedBody::default());
        *resp.status_mut() = self.status;
        let mut h = HeaderMap::with_capacity(8);
        self.each_header(|name, value| {
            h.insert(name, value.clone());
        });
        if head {
            if self.status != StatusCode::NOT_MODIFIED {
                h.insert(header::CONTENT_LENGTH, HeaderValue::from(self.body.len()));
            }
        } else {
            *resp.body_mut() = FeedBody::new(self.body.clone());
        }
        *resp.headers_mut() = h;
        resp
    }
}

/// Looks `path` up among the current feeds, answers `ask`, counts the answer, and gives it
/// to `f` (it borrows from the current snapshot, which is let go when `f` returns).
pub fn answer_with<R>(app: &App, path: &str, ask: &Ask, f: impl FnOnce(&Answer) -> R) -> R {
    let snap = app.feeds.current.load();
    let answer = match snap.docs.get(path) {
        Some(doc) => Answer::new(doc.rendered(), ask),
        None => Answer::not_found(),
    };
    app.feeds.count(answer.status);
    f(&answer)
}

/// The short path for feed requests that hyper read (see [`crate::http`]): `Some` answer for
/// a `GET` or `HEAD` of a feed path, `None` to let the router handle the request.
pub fn answer<B>(
    app: &App,
    req: &axum::http::Request<B>,
) -> Option<axum::http::Response<FeedBody>> {
    let path = req.uri().path();
    if !path.starts_with("/feeds/") {
        return None;
    }
    let method = req.method();
    let head = method == axum::http::Method::HEAD;
    if method != axum::http::Method::GET && !head {
        return None;
    }
    Some(reply(app, path, req.headers(), head))
}

/// The answer to a `GET` (or, with `head`, a `HEAD`) of `path` as a response for hyper.
fn reply(app: &App, path: &str, headers: &HeaderMap, head: bool) -> axum::http::Response<FeedBody> {
    answer_with(app, path, &Ask::from_headers(headers, head), |a| {
        a.to_response(head)
    })
}

/// Every `/feeds/…` request that reaches the router: the path is the key.
pub async fn serve(State(app): State<Arc<App>>, req: Request) -> Response {
    let head = req.method() == axum::http::Method::HEAD;
    reply(&app, req.uri().path(), req.headers(), head).map(Body::new)
}
