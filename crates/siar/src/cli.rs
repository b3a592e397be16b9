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
