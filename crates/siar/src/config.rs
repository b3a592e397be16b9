//! Configuration: the commented defaults file built into the binary, then a config file, then
//! `SIAR_<SECTION>_<KEY>` environment variables, then one [`Config::validate`] step whose
//! errors name the key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::schedule::When;

/// The default configuration, exactly as shipped in `config/siar.toml`.
pub const DEFAULT_TOML: &str = include_str!("../../../config/siar.toml");

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: Server,
    pub store: StoreConfig,
    pub publisher: Publisher,
    pub api: Api,
    pub ingest: Ingest,
    pub feeds: Feeds,
    pub media: Media,
    pub smtp: Smtp,
    #[serde(default)]
    pub lists: Vec<ListConfig>,
    #[serde(default)]
    pub partners: Vec<PartnerConfig>,
    pub ops: Ops,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    pub listen: String,
    pub public_url: String,
    pub body_limit: usize,
    pub threads: usize,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    pub path: PathBuf,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Publisher {
    pub name: String,
    pub short_name: String,
    pub timezone: String,
    pub language: String,
    pub tag_authority: String,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Api {
    pub token_env: String,
    #[serde(default)]
    pub url: String,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Ingest {
    pub inbox: PathBuf,
    pub scan_interval_ms: u64,
    pub settle_ms: u64,
    pub max_bytes: usize,
    #[serde(default)]
    pub upstream: Vec<UpstreamConfig>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    pub name: String,
    pub url: String,
    pub schedule: String,
    #[serde(default)]
    pub categories: Vec<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Feeds {
    pub items: usize,
    pub max_age_secs: u64,
    #[serde(default)]
    pub websub_hub: String,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Media {
    pub max_bytes: usize,
    pub max_files: usize,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Smtp {
    pub url: String,
    pub from: String,
    pub max_connections: usize,
    pub rate_per_second: u32,
    /// Bound on one whole send (connecting included).
    pub timeout_secs: u64,
    /// Messages per SMTP session before it is closed and a fresh one opened.
    pub rotate_after: u32,
    /// The envelope sender (bounces go there). Empty: the address of `from`. With `{verp}`
    /// in it (`bounces+{verp}@…`), each mail gets its own return path naming the recipient.
    pub return_path: String,
    /// Optional `mailto:` for `List-Unsubscribe`, beside the one-click HTTPS link.
    pub unsubscribe_mailto: String,
    /// DKIM: selector and domain; the key (RSA PKCS#1 PEM or Ed25519 base64) from the file
    /// or the environment variable named. Empty selector: no signing.
    pub dkim_selector: String,
    pub dkim_domain: String,
    pub dkim_key_file: String,
    pub dkim_key_env: String,
    /// Hours a confirmation link stays valid.
    pub confirm_hours: u32,
    /// Days after which a subscription never confirmed is deleted.
    pub purge_unconfirmed_days: u32,
    /// Subscribe requests allowed per address and per client IP per hour.
    pub subscribe_per_address_per_hour: u32,
    pub subscribe_per_ip_per_hour: u32,
    /// Seconds to wait before retry 1, 2, …, after a 4xx or an unreachable relay; after the
    /// last the recipient's mail fails for good.
    pub retry_schedule_secs: Vec<u64>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListConfig {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default = "instant")]
    pub mode: String,
    #[serde(default)]
    pub categories: Vec<String>,
    /// Overrides `smtp.from` for this list.
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub reply_to: String,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PartnerConfig {
    pub id: String,
    #[serde(default)]
    pub name: String,
    pub url: String,
    pub format: String,
    #[serde(default = "instant")]
    pub schedule: String,
    #[serde(default)]
    pub secret_env: String,
    #[serde(default)]
    pub categories: Vec<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    #[serde(default = "one")]
    pub concurrency: usize,
    #[serde(default)]
    pub rate_per_minute: u32,
    #[serde(default)]
    pub allow_private: bool,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Seconds to wait before attempt 2, 3, …; after the last, the delivery fails for good.
    #[serde(default = "default_retry_schedule")]
    pub retry_schedule_secs: Vec<u64>,
    #[serde(default = "default_breaker_failures")]
    pub breaker_failures: u32,
    #[serde(default = "default_breaker_cooldown")]
    pub breaker_cooldown_secs: u64,
    #[serde(default = "default_disable_after_days")]
    pub disable_after_days: u32,
    /// Radio scripts: the word budget.
    #[serde(default = "default_words")]
    pub words: usize,
}

/// Immediately, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h.
pub fn default_retry_schedule() -> Vec<u64> {
    vec![0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400]
}
fn default_breaker_failures() -> u32 {
    5
}
fn default_breaker_cooldown() -> u64 {
    60
}
fn default_disable_after_days() -> u32 {
    5
}
fn default_words() -> usize {
    150
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Ops {
    #[serde(default)]
    pub email: String,
}

fn instant() -> String {
    "instant".into()
}
fn default_timeout() -> u64 {
    15
}
fn one() -> usize {
    1
}
fn yes() -> bool {
    true
}

/// One problem with the configuration, naming the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Environment variables whose name starts with `SIAR_` but that are not config keys.
const NOT_CONFIG_ENV: &[&str] = &["SIAR_API_TOKEN", "SIAR_URL", "SIAR_LOG", "SIAR_CONFIG"];

impl Config {
    /// Loads the defaults, then `file` (if any), then `SIAR_*` variables from `env`.
    /// Returns the config and notes about environment variables that looked like config
    /// keys but matched none.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(Config, Vec<String>), Vec<ConfigError>> {
        let one = |key: &str, message: String| {
            vec![ConfigError {
                key: key.to_owned(),
                message,
            }]
        };
        let mut value: toml::Table =
            toml::from_str(DEFAULT_TOML).map_err(|e| one("(built-in defaults)", e.to_string()))?;
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| one(&path.display().to_string(), format!("cannot read: {e}")))?;
            let overlay: toml::Table = toml::from_str(&text)
                .map_err(|e| one(&path.display().to_string(), e.to_string()))?;
            merge(&mut value, overlay);
        }
        let notes = apply_env(&mut value, env);
        let config: Config = toml::Value::Table(value)
            .try_into()
            .map_err(|e: toml::de::Error| one("config", e.message().to_owned()))?;
        let errors = config.validate();
        if errors.is_empty() {
            Ok((config, notes))
        } else {
            Err(errors)
        }
    }

    /// Every problem, each naming its key.
    pub fn validate(&self) -> Vec<ConfigError> {
        let mut errs = Vec::new();
        let mut err = |key: String, message: String| errs.push(ConfigError { key, message });
        if self.server.listen.parse::<SocketAddr>().is_err() {
            err(
                "server.listen".into(),
                format!(
                    "`{}` is not an address such as 127.0.0.1:8080",
                    self.server.listen
                ),
            );
        }
        if !is_http_url(&self.server.public_url) {
            err(
                "server.public_url".into(),
                format!("`{}` is not an http(s) URL", self.server.public_url),
            );
        }
        if self.server.threads > 64 {
            err(
                "server.threads".into(),
                "must be at most 64 (0: one per core)".into(),
            );
        }
        if self.server.body_limit < 1024 {
            err(
                "server.body_limit".into(),
                "must be at least 1024 bytes".into(),
            );
        }
        if self.store.path.as_os_str().is_empty() {
            err("store.path".into(), "must not be empty".into());
        }
        if self.publisher.timezone.parse::<chrono_tz::Tz>().is_err() {
            err(
                "publisher.timezone".into(),
                format!(
                    "`{}` is not an IANA time zone such as Asia/Makassar",
                    self.publisher.timezone
                ),
            );
        }
        let tag = &self.publisher.tag_authority;
        if tag.is_empty()
            || !tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
        {
            err(
                "publisher.tag_authority".into(),
                format!("`{tag}` is not a domain name"),
            );
        }
        if self.publisher.language.is_empty()
            || !self
                .publisher
                .language
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            err(
                "publisher.language".into(),
                format!("`{}` is not a language tag", self.publisher.language),
            );
        }
        if self.api.token_env.is_empty() {
            err(
                "api.token_env".into(),
                "must name an environment variable".into(),
            );
        }
        if !self.api.url.is_empty() && !is_http_url(&self.api.url) {
            err(
                "api.url".into(),
                format!("`{}` is not an http(s) URL", self.api.url),
            );
        }
        if self.ingest.max_bytes < 1024 || self.ingest.max_bytes > 64 * 1024 * 1024 {
            err(
                "ingest.max_bytes".into(),
                "must be between 1 KiB and 64 MiB".into(),
            );
        }
        if self.ingest.scan_interval_ms < 50 {
            err(
                "ingest.scan_interval_ms".into(),
                "must be at least 50".into(),
            );
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, u) in self.ingest.upstream.iter().enumerate() {
            let key = |k: &str| format!("ingest.upstream[{i}].{k}");
            if !is_id(&u.name) {
                err(
                    key("name"),
                    format!("`{}` must be letters, digits and hyphens", u.name),
                );
            } else if !names.insert(u.name.clone()) {
                err(key("name"), format!("`{}` is used twice", u.name));
            }
            if !is_http_url(&u.url) {
                err(key("url"), format!("`{}` is not an http(s) URL", u.url));
            }
            match When::parse(&u.schedule) {
                Ok(When::Instant) => err(key("schedule"), "must be a cron expression".into()),
                Ok(_) => {}
                Err(e) => err(key("schedule"), e),
            }
            for c in &u.categories {
                if siar_model::Category::parse(c).is_err() {
                    err(key("categories"), format!("`{c}` is not a category name"));
                }
            }
        }
        if self.feeds.max_age_secs > 86_400 {
            err(
                "feeds.max_age_secs".into(),
                "must be at most 86400 (a day)".into(),
            );
        }
        if self.feeds.items == 0 || self.feeds.items > 1000 {
            err("feeds.items".into(), "must be between 1 and 1000".into());
        }
        if !self.feeds.websub_hub.is_empty() && !is_http_url(&self.feeds.websub_hub) {
            err(
                "feeds.websub_hub".into(),
                format!("`{}` is not an http(s) URL", self.feeds.websub_hub),
            );
        }
        if self.media.max_bytes < 1024 || self.media.max_bytes > 256 * 1024 * 1024 {
            err(
                "media.max_bytes".into(),
                "must be between 1 KiB and 256 MiB".into(),
            );
        }
        if self.media.max_files > 32 {
            err("media.max_files".into(), "must be at most 32".into());
        }
        if !(self.smtp.url.starts_with("smtp://") || self.smtp.url.starts_with("smtps://")) {
            err(
                "smtp.url".into(),
                format!("`{}` must start with smtp:// or smtps://", self.smtp.url),
            );
        }
        if self.smtp.max_connections == 0 {
            err("smtp.max_connections".into(), "must be at least 1".into());
        }
        if self.smtp.rate_per_second == 0 {
            err("smtp.rate_per_second".into(), "must be at least 1".into());
        }
        if let Err(e) = siar_fanout::smtp::RelayConfig::from_url(&self.smtp.url) {
            err("smtp.url".into(), e);
        }
        let mailbox = |key: String, v: &str, err: &mut dyn FnMut(String, String)| {
            if !v.is_empty() && v.parse::<siar_fanout::smtp::Mailbox>().is_err() {
                err(
                    key,
                    format!("`{v}` is not a mail address (`Name <user@domain>` or `user@domain`)"),
                );
            }
        };
        if self.smtp.from.is_empty() {
            err("smtp.from".into(), "must be set".into());
        }
        mailbox("smtp.from".into(), &self.smtp.from, &mut err);
        if !self.smtp.return_path.is_empty()
            && siar_model::normalize_address(&self.smtp.return_path.replace("{verp}", "x")).is_err()
        {
            err(
                "smtp.return_path".into(),
                format!(
                    "`{}` is not an address (use `{{verp}}` in the local part for VERP)",
                    self.smtp.return_path
                ),
            );
        }
        if !self.smtp.unsubscribe_mailto.is_empty()
            && !self.smtp.unsubscribe_mailto.starts_with("mailto:")
        {
            err(
                "smtp.unsubscribe_mailto".into(),
                "must start with mailto:".into(),
            );
        }
        if self.smtp.timeout_secs == 0 {
            err("smtp.timeout_secs".into(), "must be at least 1".into());
        }
        if self.smtp.rotate_after == 0 {
            err("smtp.rotate_after".into(), "must be at least 1".into());
        }
        if self.smtp.confirm_hours == 0 {
            err("smtp.confirm_hours".into(), "must be at least 1".into());
        }
        if !self.smtp.dkim_selector.is_empty() {
            match self.dkim() {
                Ok(_) => {}
                Err(e) => err("smtp.dkim_key_file".into(), e),
            }
        }
        let mut ids = std::collections::BTreeSet::new();
        for (i, l) in self.lists.iter().enumerate() {
            let key = |k: &str| format!("lists[{i}].{k}");
            if !is_id(&l.id) {
                err(
                    key("id"),
                    format!("`{}` must be letters, digits and hyphens", l.id),
                );
            } else if !ids.insert(l.id.clone()) {
                err(key("id"), format!("`{}` is used twice", l.id));
            }
            if let Err(e) = When::parse(&l.mode) {
                err(key("mode"), e);
            }
            for c in &l.categories {
                if siar_model::Category::parse(c).is_err() {
                    err(key("categories"), format!("`{c}` is not a category name"));
                }
            }
            mailbox(key("from"), &l.from, &mut err);
            mailbox(key("reply_to"), &l.reply_to, &mut err);
        }
        let mut ids = std::collections::BTreeSet::new();
        for (i, p) in self.partners.iter().enumerate() {
            let key = |k: &str| format!("partners[{i}].{k}");
            if !is_id(&p.id) {
                err(
                    key("id"),
                    format!("`{}` must be letters, digits and hyphens", p.id),
                );
            } else if !ids.insert(p.id.clone()) {
                err(key("id"), format!("`{}` is used twice", p.id));
            }
            if !is_http_url(&p.url) {
                err(key("url"), format!("`{}` is not an http(s) URL", p.url));
            } else if let Err(e) = siar_fanout::webhook::target(&p.url) {
                err(key("url"), e);
            }
            if !matches!(p.format.as_str(), "ninjs" | "radio-script") {
                err(
                    key("format"),
                    format!("`{}` is not one of: ninjs, radio-script", p.format),
                );
            }
            if let Err(e) = When::parse(&p.schedule) {
                err(key("schedule"), e);
            }
            for c in &p.categories {
                if siar_model::Category::parse(c).is_err() {
                    err(key("categories"), format!("`{c}` is not a category name"));
                }
            }
            if p.timeout_secs == 0 || p.timeout_secs > 300 {
                err(key("timeout_secs"), "must be between 1 and 300".into());
            }
            if p.concurrency == 0 {
                err(key("concurrency"), "must be at least 1".into());
            }
            if p.enabled && p.secret_env.is_empty() {
                err(
                    key("secret_env"),
                    "must name the environment variable holding the whsec_ secret".into(),
                );
            }
            for (k, v) in &p.headers {
                let bad_name = axum::http::HeaderName::from_bytes(k.as_bytes()).is_err();
                let reserved = k.to_ascii_lowercase().starts_with("webhook-")
                    || k.eq_ignore_ascii_case("content-type")
                    || k.eq_ignore_ascii_case("host");
                if bad_name || reserved || axum::http::HeaderValue::from_str(v).is_err() {
                    err(
                        key("headers"),
                        format!(
                            "`{k}` cannot be set (not a valid header, or one siar sets itself)"
                        ),
                    );
                }
            }
            if p.retry_schedule_secs.len() > 50
                || p.retry_schedule_secs.iter().any(|&s| s > 7 * 86400)
            {
                err(
                    key("retry_schedule_secs"),
                    "at most 50 waits of at most 7 days each".into(),
                );
            }
            if p.breaker_failures == 0 {
                err(key("breaker_failures"), "must be at least 1".into());
            }
            if p.words < 20 {
                err(key("words"), "must be at least 20".into());
            }
            if p.format == "ninjs" && p.words != default_words() {
                err(key("words"), "applies only to radio-script partners".into());
            }
        }
        errs
    }

    /// The DKIM signer, when `smtp.dkim_selector` is set: the key from `dkim_key_file` or the
    /// environment variable `dkim_key_env`.
    pub fn dkim(&self) -> Result<Option<siar_fanout::smtp::DkimConfig>, String> {
        let s = &self.smtp;
        if s.dkim_selector.is_empty() {
            return Ok(None);
        }
        let key = if !s.dkim_key_file.is_empty() {
            std::fs::read_to_string(&s.dkim_key_file)
                .map_err(|e| format!("cannot read the DKIM key {}: {e}", s.dkim_key_file))?
        } else if !s.dkim_key_env.is_empty() {
            std::env::var(&s.dkim_key_env).map_err(|_| {
                format!(
                    "the environment variable {} (smtp.dkim_key_env) is not set",
                    s.dkim_key_env
                )
            })?
        } else {
            return Err(
                "smtp.dkim_selector is set but neither dkim_key_file nor dkim_key_env".into(),
            );
        };
        let domain = if s.dkim_domain.is_empty() {
            s.from
                .parse::<siar_fanout::smtp::Mailbox>()
                .map(|m| m.email.domain().to_owned())
                .map_err(|e| format!("smtp.from: {e}"))?
        } else {
            s.dkim_domain.clone()
        };
        siar_fanout::render::dkim_config(&s.dkim_selector, &domain, &key).map(Some)
    }

    /// Each enabled partner's signing secrets, read from the environment variable its
    /// `secret_env` names (several, separated by spaces or commas, during a rotation).
    pub fn partner_secrets(
        &self,
    ) -> Result<BTreeMap<String, Vec<siar_fanout::webhook::Secret>>, Vec<ConfigError>> {
        let mut out = BTreeMap::new();
        let mut errs = Vec::new();
        for (i, p) in self.partners.iter().enumerate().filter(|(_, p)| p.enabled) {
            let key = format!("partners[{i}].secret_env");
            let problem = match std::env::var(&p.secret_env) {
                Err(_) => Some(format!(
                    "the environment variable {} is not set",
                    p.secret_env
                )),
                Ok(v) => match siar_fanout::webhook::Secret::parse_list(&v) {
                    Ok(list) if list.is_empty() => {
                        Some(format!("{} holds no secret", p.secret_env))
                    }
                    Ok(list) => {
                        out.insert(p.id.clone(), list);
                        None
                    }
                    Err(e) => Some(format!("{}: {e}", p.secret_env)),
                },
            };
            if let Some(message) = problem {
                errs.push(ConfigError { key, message });
            }
        }
        if errs.is_empty() {
            Ok(out)
        } else {
            Err(errs)
        }
    }

    pub fn timezone(&self) -> chrono_tz::Tz {
        self.publisher
            .timezone
            .parse()
            .unwrap_or(chrono_tz::Asia::Makassar)
    }

    /// The API token from the environment variable `api.token_env` names, if set.
    pub fn api_token(&self) -> Option<String> {
        std::env::var(&self.api.token_env)
            .ok()
            .filter(|t| !t.is_empty())
    }

    /// Where the command line finds the daemon.
    pub fn api_base_url(&self) -> String {
        if let Ok(u) = std::env::var("SIAR_URL") {
            if !u.is_empty() {
                return u.trim_end_matches('/').to_owned();
            }
        }
        if !self.api.url.is_empty() {
            return self.api.url.trim_end_matches('/').to_owned();
        }
        format!("http://{}", self.server.listen)
    }
}

fn is_http_url(s: &str) -> bool {
    (s.starts_with("http://") || s.starts_with("https://"))
        && s.len() > "https://".len()
        && !s.contains(char::is_whitespace)
}

fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (k, v) in overlay {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Applies `SIAR_<SECTION>_<KEY>=value` to keys that exist; returns notes for variables that
/// name a section but no key in it.
fn apply_env(
    value: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Vec<String> {
    let mut notes = Vec::new();
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix("SIAR_") else {
            continue;
        };
        if NOT_CONFIG_ENV.contains(&name.as_str()) {
            continue;
        }
        let rest = rest.to_ascii_lowercase();
        let Some((section, key)) = rest.split_once('_') else {
            continue;
        };
        let Some(toml::Value::Table(table)) = value.get_mut(section) else {
            continue;
        };
        match table.get(key) {
            Some(old) => {
                let new = match old {
                    toml::Value::Integer(_) => raw.trim().parse().map(toml::Value::Integer).ok(),
                    toml::Value::Boolean(_) => raw.trim().parse().map(toml::Value::Boolean).ok(),
                    _ => Some(toml::Value::String(raw.clone())),
                };
                match new {
                    Some(v) => {
                        table.insert(key.to_owned(), v);
                    }
                    None => notes.push(format!(
                        "{name}=`{raw}` is not a valid {section}.{key}; ignored"
                    )),
                }
            }
            None => notes.push(format!("{name} matches no key of [{section}]; ignored")),
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn defaults_load_and_validate() {
        let (c, notes) = Config::load(None, env(&[])).unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:8080");
        assert_eq!(c.store.path, PathBuf::from("data"));
        assert_eq!(c.timezone(), chrono_tz::Asia::Makassar);
        assert!(notes.is_empty());
    }

    #[test]
    fn env_overrides_and_notes() {
        let (c, notes) = Config::load(
            None,
            env(&[
                ("SIAR_SERVER_LISTEN", "127.0.0.1:0"),
                ("SIAR_STORE_PATH", "/tmp/x"),
                ("SIAR_FEEDS_ITEMS", "50"),
                ("SIAR_SERVER_LISTN", "x"),
                ("SIAR_API_TOKEN", "secret"),
            ]),
        )
        .unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:0");
        assert_eq!(c.store.path, PathBuf::from("/tmp/x"));
        assert_eq!(c.feeds.items, 50);
        assert_eq!(
            notes,
            ["SIAR_SERVER_LISTN matches no key of [server]; ignored"]
        );
    }

    #[test]
    fn errors_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("siar.toml");
        std::fs::write(
            &path,
            r#"
[publisher]
timezone = "Asia/Banjarbaru"
[[partners]]
id = "radio"
url = "ftp://radio"
format = "mp3"
schedule = "0 30 5,11,17 * *  * * *"
[[lists]]
id = "jurnalis"
name = "J"
mode = "every morning"
"#,
        )
        .unwrap();
        let errs = Config::load(Some(&path), env(&[])).unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "publisher.timezone",
                "lists[0].mode",
                "partners[0].url",
                "partners[0].format",
                "partners[0].schedule",
                "partners[0].secret_env"
            ]
        );
        std::fs::write(&path, "[server]\nlisten = \"127.0.0.1:1\"\nlistne = 3\n").unwrap();
        let errs = Config::load(Some(&path), env(&[])).unwrap_err();
        assert!(errs[0].message.contains("listne"), "{errs:?}");
    }

    /// A partner URL with credentials in it, and a header that cannot go on the wire, are
    /// named by check-config (the header by name only: its value may be a token).
    #[test]
    fn partner_urls_and_headers_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("siar.toml");
        std::fs::write(
            &path,
            r#"
[[partners]]
id = "mc"
url = "https://user:rahasia@mc.kalselprov.go.id/hook"
format = "ninjs"
secret_env = "SIAR_MC_SECRET"
headers = { "Bad Header" = "Bearer t0ken", "X-Fine" = "ok" }
"#,
        )
        .unwrap();
        let errs = Config::load(
            Some(&path),
            env(&[("SIAR_MC_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]),
        )
        .unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["partners[0].url", "partners[0].headers"], "{errs:?}");
        assert!(errs[0].message.contains("credentials"), "{errs:?}");
        assert!(errs[1].message.contains("Bad Header"), "{errs:?}");
        // Neither the password in the URL nor a header's value is repeated.
        let said = format!("{errs:?}");
        assert!(
            !said.contains("rahasia") && !said.contains("t0ken"),
            "{said}"
        );
    }

    #[test]
    fn mail_keys_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("siar.toml");
        std::fs::write(
            &path,
            r#"
[smtp]
url = "smtp://relay:25?tls=maybe"
from = "bukan alamat"
return_path = "bounces+{verp}"
unsubscribe_mailto = "berhenti@kalselprov.go.id"
rotate_after = 0
dkim_selector = "siar2026"
[[lists]]
id = "jurnalis"
name = "J"
from = "<>"
"#,
        )
        .unwrap();
        let errs = Config::load(Some(&path), env(&[])).unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
        for k in [
            "smtp.url",
            "smtp.from",
            "smtp.return_path",
            "smtp.unsubscribe_mailto",
            "smtp.rotate_after",
            "smtp.dkim_key_file",
            "lists[0].from",
        ] {
            assert!(keys.contains(&k), "{k} not named: {errs:?}");
        }
    }
}
