//! Commands that talk to a running daemon over its HTTP API (sled allows one process, so the
//! command line never opens the store itself), and `siar parse`, which needs no daemon.

use std::path::Path;

use anyhow::{anyhow, bail, Context};
use clap::Subcommand;
use serde_json::Value;
use siar_ingest::Format;

use crate::config::Config;

#[derive(Subcommand)]
pub enum ReleaseCommand {
    /// Ingest files (.txt Kalsel text, .md Markdown, .json).
    Add {
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
        /// RFC 3339, or local `YYYY-MM-DD HH:MM` in the publisher's time zone.
        #[arg(long)]
        publish_at: Option<String>,
        /// Categories to add (repeat or comma-separate).
        #[arg(long = "category")]
        categories: Vec<String>,
    },
    /// List releases, newest first.
    List {
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        category: Option<String>,
    },
    /// Show one release (by id or slug) as JSON.
    Show { id: String },
    /// Add a corrected version of a release.
    Correct {
        id: String,
        file: std::path::PathBuf,
        /// What the correction changes; shown to readers.
        #[arg(long)]
        note: String,
    },
    /// Withdraw a release.
    Retract {
        id: String,
        /// Why; shown to readers.
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
pub enum DeliveriesCommand {
    /// List deliveries of a release, or with a status.
    List {
        #[arg(long)]
        release: Option<String>,
        /// pending, in_flight, delivered, failed or superseded.
        #[arg(long, default_value = "failed")]
        status: String,
        /// Only this partner's deliveries.
        #[arg(long)]
        partner: Option<String>,
        /// Only deliveries changed since then (RFC 3339, or local `YYYY-MM-DD HH:MM`).
        #[arg(long)]
        since: Option<String>,
    },
    /// Queue a delivery again now.
    Retry { id: String },
    /// How every partner stands: disabled, breaker, queue.
    Partners,
    /// Enable a partner that was disabled (by a 410 or by days of failures).
    Enable { partner: String },
    /// Queue again every delivery to a partner that failed since a time (after an outage).
    Recover {
        #[arg(long)]
        partner: String,
        /// RFC 3339, or local `YYYY-MM-DD HH:MM` in the publisher's time zone.
        #[arg(long)]
        since: String,
    },
}

pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    pub fn new(config: &Config, url: Option<&str>) -> anyhow::Result<Self> {
        let base = url
            .map(|u| u.trim_end_matches('/').to_owned())
            .unwrap_or_else(|| config.api_base_url());
        let http = reqwest::Client::builder()
            .user_agent(concat!("siar-cli/", env!("CARGO_PKG_VERSION")))
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            http,
            base,
            token: config.api_token(),
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("Siar-Source", "cli");
        if let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        r
    }

    /// Sends, and turns an error body into a readable error.
    async fn send(
        &self,
        req: reqwest::RequestBuilder,
    ) -> anyhow::Result<(reqwest::StatusCode, Value)> {
        let resp = req.send().await.with_context(|| {
            format!(
                "cannot reach siar at {} (is `siar serve` running?)",
                self.base
            )
        })?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let msg = body["error"]["message"].as_str().unwrap_or("no details");
            let code = body["error"]["code"].as_str().unwrap_or("error");
            bail!("{} {code}: {msg}", status.as_u16());
        }
        Ok((status, body))
    }
}

fn content_type(path: &Path) -> anyhow::Result<&'static str> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    match Format::from_file_name(name) {
        Some(Format::Kalsel) => Ok("text/plain; charset=utf-8"),
        Some(Format::Markdown) => Ok("text/markdown; charset=utf-8"),
        Some(Format::Json) => Ok("application/json"),
        None => bail!(
            "{}: unsupported file type (use .txt, .md or .json)",
            path.display()
        ),
    }
}

fn print_warnings(release: &Value) {
    for w in release["content"]["warnings"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let line = w["line"]
            .as_u64()
            .map(|l| format!(" (line {l})"))
            .unwrap_or_default();
        println!("  warning{line}: {}", w["message"].as_str().unwrap_or(""));
    }
}

pub async fn release(client: &Client, config: &Config, cmd: ReleaseCommand) -> anyhow::Result<()> {
    use reqwest::Method;
    match cmd {
        ReleaseCommand::Add {
            files,
            publish_at,
            categories,
        } => {
            let mut failed = 0;
            for file in &files {
                let result: anyhow::Result<()> = async {
                    let bytes = std::fs::read(file)
                        .with_context(|| format!("reading {}", file.display()))?;
                    let mut query = Vec::new();
                    if let Some(w) = &publish_at {
                        query.push(("publish_at", w.clone()));
                    }
                    if !categories.is_empty() {
                        query.push(("categories", categories.join(",")));
                    }
                    let req = client
                        .request(Method::POST, "/api/v1/releases")
                        .query(&query)
                        .header("Content-Type", content_type(file)?)
                        .body(bytes);
                    let (status, r) = client.send(req).await?;
                    let what = if status == reqwest::StatusCode::CREATED {
                        "created"
                    } else {
                        "already known"
                    };
                    println!(
                        "{}: {} {what} ({}, publish_at {}) {}",
                        file.display(),
                        r["id"].as_str().unwrap_or("?"),
                        r["status"].as_str().unwrap_or("?"),
                        local(config, r["publish_at"].as_str()),
                        r["content"]["title"].as_str().unwrap_or("")
                    );
                    print_warnings(&r);
                    Ok(())
                }
                .await;
                if let Err(e) = result {
                    eprintln!("{}: {e:#}", file.display());
                    failed += 1;
                }
            }
            if failed > 0 {
                bail!("{failed} of {} file(s) were not ingested", files.len());
            }
            Ok(())
        }
        ReleaseCommand::List { limit, category } => {
            let mut query = vec![("limit", limit.to_string())];
            if let Some(c) = category {
                query.push(("category", c));
            }
            let (_, page) = client
                .send(
                    client
                        .request(Method::GET, "/api/v1/releases")
                        .query(&query),
                )
                .await?;
            println!(
                "{:<26}  {:<9}  {:<16}  {:>3}  TITLE",
                "ID", "STATUS", "PUBLISH (local)", "VER"
            );
            for r in page["items"].as_array().into_iter().flatten() {
                println!(
                    "{:<26}  {:<9}  {:<16}  {:>3}  {}",
                    r["id"].as_str().unwrap_or(""),
                    r["status"].as_str().unwrap_or(""),
                    local(config, r["publish_at"].as_str()),
                    r["version"].as_u64().unwrap_or(0),
                    r["content"]["title"].as_str().unwrap_or("")
                );
            }
            Ok(())
        }
        ReleaseCommand::Show { id } => {
            let (_, r) = client
                .send(client.request(Method::GET, &format!("/api/v1/releases/{}", enc(&id))))
                .await?;
            println!("{}", serde_json::to_string_pretty(&r)?);
            Ok(())
        }
        ReleaseCommand::Correct { id, file, note } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let req = client
                .request(
                    Method::POST,
                    &format!("/api/v1/releases/{}/corrections", enc(&id)),
                )
                .query(&[("note", note)])
                .header("Content-Type", content_type(&file)?)
                .body(bytes);
            let (status, r) = client.send(req).await?;
            if status == reqwest::StatusCode::CREATED {
                println!(
                    "{}: now version {}",
                    r["id"].as_str().unwrap_or("?"),
                    r["version"]
                );
            } else {
                println!(
                    "{}: unchanged (identical to version {})",
                    r["id"].as_str().unwrap_or("?"),
                    r["version"]
                );
            }
            print_warnings(&r);
            Ok(())
        }
        ReleaseCommand::Retract { id, reason } => {
            let req = client
                .request(
                    Method::POST,
                    &format!("/api/v1/releases/{}/retraction", enc(&id)),
                )
                .json(&serde_json::json!({ "reason": reason }));
            let (_, r) = client.send(req).await?;
            println!("{}: retracted", r["id"].as_str().unwrap_or("?"));
            Ok(())
        }
    }
}

pub async fn deliveries(client: &Client, cmd: DeliveriesCommand) -> anyhow::Result<()> {
    use reqwest::Method;
    match cmd {
        DeliveriesCommand::List {
            release,
            status,
            partner,
            since,
        } => {
            let req = match &release {
                Some(id) => client.request(
                    Method::GET,
                    &format!("/api/v1/releases/{}/deliveries", enc(id)),
                ),
                None => {
                    let mut q = vec![("status", status)];
                    q.extend(partner.map(|p| ("partner", p)));
                    q.extend(since.map(|s| ("since", s)));
                    client.request(Method::GET, "/api/v1/deliveries").query(&q)
                }
            };
            let (_, list) = client.send(req).await?;
            println!(
                "{:<26}  {:<10}  {:<9}  {:>3}  {:<25}  ERROR",
                "ID", "STATUS", "EVENT", "TRY", "TARGET"
            );
            for d in list["items"].as_array().into_iter().flatten() {
                println!(
                    "{:<26}  {:<10}  {:<9}  {:>3}  {:<25}  {}",
                    d["id"].as_str().unwrap_or(""),
                    d["status"].as_str().unwrap_or(""),
                    d["event"].as_str().unwrap_or(""),
                    d["attempts"].as_u64().unwrap_or(0),
                    d["target"].as_str().unwrap_or(""),
                    d["last_error"].as_str().unwrap_or("")
                );
            }
            Ok(())
        }
        DeliveriesCommand::Retry { id } => {
            let (_, d) = client
                .send(client.request(
                    Method::POST,
                    &format!("/api/v1/deliveries/{}/retry", enc(&id)),
                ))
                .await?;
            println!(
                "{}: queued again for {}",
                d["id"].as_str().unwrap_or("?"),
                d["target"].as_str().unwrap_or("?")
            );
            Ok(())
        }
        DeliveriesCommand::Partners => {
            let (_, list) = client
                .send(client.request(Method::GET, "/api/v1/partners"))
                .await?;
            println!(
                "{:<24}  {:<12}  {:<9}  {:>6}  {:<25}  STATE",
                "PARTNER", "FORMAT", "BREAKER", "QUEUED", "NEXT DUE"
            );
            for p in list["items"].as_array().into_iter().flatten() {
                let state = match p["disabled"]["reason"].as_str() {
                    Some(why) => format!("disabled: {why}"),
                    None => "enabled".into(),
                };
                println!(
                    "{:<24}  {:<12}  {:<9}  {:>6}  {:<25}  {state}",
                    p["id"].as_str().unwrap_or(""),
                    p["format"].as_str().unwrap_or(""),
                    p["breaker"].as_str().unwrap_or(""),
                    p["queued"].as_u64().unwrap_or(0),
                    p["next_due"].as_str().unwrap_or("-"),
                );
            }
            Ok(())
        }
        DeliveriesCommand::Enable { partner } => {
            client
                .send(client.request(
                    Method::POST,
                    &format!("/api/v1/partners/{}/enable", enc(&partner)),
                ))
                .await?;
            println!("{partner}: enabled");
            Ok(())
        }
        DeliveriesCommand::Recover { partner, since } => {
            let (_, r) = client
                .send(
                    client
                        .request(Method::POST, "/api/v1/deliveries/recover")
                        .json(&serde_json::json!({"partner": partner, "since": since})),
                )
                .await?;
            println!(
                "{} failed deliver{} to {partner} queued again",
                r["count"].as_u64().unwrap_or(0),
                if r["count"].as_u64() == Some(1) {
                    "y"
                } else {
                    "ies"
                }
            );
            Ok(())
        }
    }
}

/// Percent-encodes a path segment.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn local(config: &Config, rfc3339: Option<&str>) -> String {
    rfc3339
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| {
            t.with_timezone(&config.timezone())
                .format("%Y-%m-%d %H:%M")
                .to_string()
        })
        .unwrap_or_default()
}

/// `siar parse FILE`: the parsed release as JSON, warnings included; no daemon needed.
pub fn parse_file(config: &Config, file: &Path, format: Option<&str>) -> anyhow::Result<()> {
    let format = match format {
        Some("kalsel" | "text" | "txt") => Format::Kalsel,
        Some("markdown" | "md") => Format::Markdown,
        Some("json") => Format::Json,
        Some(other) => bail!("unknown format `{other}` (use kalsel, markdown or json)"),
        None => {
            let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
            Format::from_file_name(name).ok_or_else(|| {
                anyhow!(
                    "{}: unsupported file type (use .txt, .md or .json, or --format)",
                    file.display()
                )
            })?
        }
    };
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let tz = config.timezone();
    let ctx = siar_ingest::ParseContext {
        today: chrono::Utc::now().with_timezone(&tz).date_naive(),
        timezone: tz,
        max_bytes: config.ingest.max_bytes,
        language: config.publisher.language.clone(),
    };
    let parsed =
        siar_ingest::parse(&bytes, format, &ctx).map_err(|e| anyhow!("{}: {e}", file.display()))?;
    let out = serde_json::json!({
        "format": format.as_str(),
        "content_hash": parsed.content_hash,
        "publish_at": parsed.publish_at,
        "release": parsed.content,
        "warnings": parsed.content.warnings,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

#[derive(Subcommand)]
pub enum SubscribersCommand {
    /// Add the addresses in a CSV file (the first column, or a column named email, address
    /// or surel) to a list: as pending (nobody is mailed until they confirm through the site),
    /// or with --confirmed and --source as already confirmed.
    Import {
        csv: std::path::PathBuf,
        #[arg(long)]
        list: String,
        /// They already consented elsewhere: no confirmation needed. Requires --source.
        #[arg(long, requires = "source")]
        confirmed: bool,
        /// On what grounds (kept in each subscriber's consent trail), e.g. "daftar hadir
        /// konferensi pers 2026-11-02, persetujuan tertulis".
        #[arg(long)]
        source: Option<String>,
    },
    /// Write a list's subscribers as CSV on stdout (every status, with the consent trail).
    Export {
        #[arg(long)]
        list: String,
    },
}

/// Addresses per import request.
const IMPORT_BATCH: usize = 5_000;

fn read_addresses(path: &Path) -> anyhow::Result<Vec<(u64, String)>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_path(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let mut column = 0;
    let mut out = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = i as u64 + 1;
        let record =
            record.with_context(|| format!("{}: line {line} is not CSV", path.display()))?;
        if i == 0 && !record.iter().any(|f| f.contains('@')) {
            // A header row: find the address column.
            column = record
                .iter()
                .position(|f| {
                    matches!(
                        f.to_lowercase().as_str(),
                        "email" | "e-mail" | "address" | "surel" | "alamat surel"
                    )
                })
                .unwrap_or(0);
            continue;
        }
        let Some(field) = record.get(column) else {
            continue;
        };
        if !field.is_empty() {
            out.push((line, field.to_owned()));
        }
    }
    Ok(out)
}

pub async fn subscribers(client: &Client, cmd: SubscribersCommand) -> anyhow::Result<()> {
    use reqwest::Method;
    match cmd {
        SubscribersCommand::Import {
            csv,
            list,
            confirmed,
            source,
        } => {
            let rows = read_addresses(&csv)?;
            let bar = indicatif::ProgressBar::new(rows.len() as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} addresses ({per_sec}, {eta} left)",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let (mut added, mut unchanged, mut suppressed) = (0u64, 0u64, 0u64);
            let mut invalid = Vec::new();
            for batch in rows.chunks(IMPORT_BATCH) {
                let body = serde_json::json!({
                    "addresses": batch.iter().map(|(_, a)| a).collect::<Vec<_>>(),
                    "confirmed": confirmed,
                    "source": source,
                });
                let (_, r) = client
                    .send(
                        client
                            .request(
                                Method::POST,
                                &format!("/api/v1/lists/{}/subscribers", enc(&list)),
                            )
                            .json(&body),
                    )
                    .await?;
                added += r["added"].as_u64().unwrap_or(0);
                unchanged += r["unchanged"].as_u64().unwrap_or(0);
                suppressed += r["suppressed"].as_u64().unwrap_or(0);
                for bad in r["invalid"].as_array().into_iter().flatten() {
                    let idx = bad["index"].as_u64().unwrap_or(0) as usize;
                    if let Some((line, addr)) = batch.get(idx) {
                        invalid.push(format!(
                            "  line {line}: `{addr}`: {}",
                            bad["error"].as_str().unwrap_or("invalid")
                        ));
                    }
                }
                bar.inc(batch.len() as u64);
            }
            bar.finish_and_clear();
            println!(
                "{list}: {added} added{}, {unchanged} already there, {suppressed} suppressed (bounced), {} invalid",
                if confirmed { " as confirmed" } else { " as pending" },
                invalid.len()
            );
            for line in invalid.iter().take(50) {
                println!("{line}");
            }
            if invalid.len() > 50 {
                println!("  … and {} more", invalid.len() - 50);
            }
            Ok(())
        }
        SubscribersCommand::Export { list } => {
            let mut out = csv::Writer::from_writer(std::io::stdout().lock());
            out.write_record([
                "address",
                "status",
                "created_at",
                "confirmed_at",
                "left_at",
                "consent",
            ])?;
            let bar = indicatif::ProgressBar::new_spinner();
            let mut after: Option<String> = None;
            loop {
                let mut path = format!("/api/v1/lists/{}/subscribers?limit=10000", enc(&list));
                if let Some(a) = &after {
                    path.push_str(&format!("&after={}", enc(a)));
                }
                let (_, page) = client.send(client.request(Method::GET, &path)).await?;
                for s in page["items"].as_array().into_iter().flatten() {
                    let consent: Vec<String> = s["history"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|e| {
                            format!(
                                "{} {} ({})",
                                e["at"].as_str().unwrap_or(""),
                                e["action"].as_str().unwrap_or(""),
                                e["source"].as_str().unwrap_or("")
                            )
                        })
                        .collect();
                    out.write_record([
                        s["address"].as_str().unwrap_or(""),
                        s["status"].as_str().unwrap_or(""),
                        s["created_at"].as_str().unwrap_or(""),
                        s["confirmed_at"].as_str().unwrap_or(""),
                        s["left_at"].as_str().unwrap_or(""),
                        &consent.join("; "),
                    ])?;
                    bar.inc(1);
                }
                match page["next"].as_str() {
                    Some(n) => after = Some(n.to_owned()),
                    None => break,
                }
            }
            out.flush()?;
            bar.finish_and_clear();
            Ok(())
        }
    }
}

#[derive(Subcommand)]
pub enum StoreCommand {
    /// Write a consistent backup of the store on stdout (JSON lines): through the running
    /// daemon, or straight from the store when no daemon is running.
    Export,
    /// Restore a backup into an empty store (store.path) while no daemon uses it.
    Import { backup: std::path::PathBuf },
}

pub async fn store(client: &Client, config: &Config, cmd: StoreCommand) -> anyhow::Result<()> {
    match cmd {
        StoreCommand::Export => {
            let resp = client
                .request(reqwest::Method::GET, "/api/v1/store/export")
                .send()
                .await;
            match resp {
                Ok(resp) => export_from_daemon(client, resp).await,
                Err(e) if e.is_connect() => {
                    eprintln!(
                        "siar is not running at {}; exporting straight from {}",
                        client.base,
                        config.store.path.display()
                    );
                    let (store, media) = open_store(config)?;
                    let stdout = std::io::stdout();
                    let mut out = std::io::BufWriter::new(stdout.lock());
                    let s = store.export(Some(&media), &mut out)?;
                    eprintln!("exported {} records and {} media files", s.records, s.media);
                    Ok(())
                }
                Err(e) => {
                    Err(anyhow::anyhow!(e)).context(format!("cannot reach siar at {}", client.base))
                }
            }
        }
        StoreCommand::Import { backup } => {
            let (store, media) = open_store(config)?;
            let s = store.import(&backup, &media).with_context(|| {
                format!(
                    "importing {} into {}",
                    backup.display(),
                    config.store.path.display()
                )
            })?;
            let trees: Vec<String> = s.trees.iter().map(|(t, n)| format!("{t} {n}")).collect();
            println!(
                "imported {} records ({}) and {} media files into {}",
                s.records,
                trees.join(", "),
                s.media,
                config.store.path.display()
            );
            Ok(())
        }
    }
}

fn open_store(config: &Config) -> anyhow::Result<(siar_store::Store, siar_store::MediaStore)> {
    let path = &config.store.path;
    let store = siar_store::Store::open(path).with_context(|| {
        format!(
            "opening the store at {} (store.path); if siar is running, stop it first — only one process may open the store",
            path.display()
        )
    })?;
    let media = siar_store::MediaStore::open(&path.join("media"))
        .with_context(|| format!("opening {}", path.join("media").display()))?;
    Ok((store, media))
}

async fn export_from_daemon(client: &Client, resp: reqwest::Response) -> anyhow::Result<()> {
    use std::io::Write;
    let status = resp.status();
    if !status.is_success() {
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        bail!(
            "{} {}: {}",
            status.as_u16(),
            body["error"]["code"].as_str().unwrap_or("error"),
            body["error"]["message"].as_str().unwrap_or("no details")
        );
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut resp = resp;
    let mut bytes = 0u64;
    let mut last = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .with_context(|| format!("the export from {} broke off", client.base))?
    {
        out.write_all(&chunk)
            .context("writing the backup to stdout")?;
        bytes += chunk.len() as u64;
        last.extend_from_slice(&chunk);
        if last.len() > 4096 {
            last.drain(..last.len() - 4096);
        }
    }
    out.flush().context("writing the backup to stdout")?;
    // The end marker says what was written; without it the backup is incomplete.
    let tail = String::from_utf8_lossy(&last);
    let end: Value = tail
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or(Value::Null);
    if end["end"].is_null() {
        bail!(
            "the export ended without its end marker after {bytes} bytes: the backup is incomplete"
        );
    }
    eprintln!(
        "exported {} records and {} media files ({bytes} bytes)",
        end["end"]["records"], end["end"]["media"]
    );
    Ok(())
}
