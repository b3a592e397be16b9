//! Sending mail to the relay: one recipient per message, over sessions siar keeps and caps.
//!
//! lettre's pooled transport neither caps how many sessions it opens nor bounds a whole send
//! (its timeout covers connecting), and it cannot tell a refused recipient from a refused
//! message. So siar drives lettre's SMTP connection itself:
//!
//! - **Sessions capped by a semaphore** (`max_connections`); idle sessions are kept and
//!   reused, and **rotated** (QUIT, reconnect) after `rotate_after` messages.
//! - **A token bucket** paces messages to `rate_per_second`; a 421 or other 4xx halves the
//!   rate (slow down), which then recovers step by step with each accepted message.
//! - **A timeout around every send** (connect, MAIL, RCPT, DATA, the message, the reply).
//! - **Replies are classified by the command they answer**: 5xx to RCPT is about the
//!   mailbox (bounced: suppress the address); 5xx elsewhere is about the message (failed,
//!   the address is kept); 4xx and network trouble are worth another try.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Quit, Rcpt, Rset};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::Address;
use tokio::sync::Semaphore;

pub use lettre::message;
pub use lettre::message::dkim::DkimConfig;
pub use lettre::message::Mailbox;

/// How the relay is reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tls {
    /// Plain SMTP; STARTTLS when the relay offers it.
    Opportunistic,
    /// Plain SMTP; STARTTLS is required (`smtp://…?tls=required`).
    Required,
    /// Implicit TLS from the first byte (`smtps://`).
    Wrapper,
    /// Never TLS (`smtp://…?tls=none`): for a relay on the same host.
    None,
}

/// The relay and how hard siar may push it.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    pub host: String,
    pub port: u16,
    pub tls: Tls,
    pub credentials: Option<(String, String)>,
    /// Our name in EHLO.
    pub hello: String,
    pub max_connections: usize,
    pub rate_per_second: u32,
    /// Bound on one whole send, connecting included.
    pub timeout: Duration,
    /// Messages per session before it is closed and a fresh one opened.
    pub rotate_after: u32,
}

impl RelayConfig {
    /// Reads `smtp://[user:pass@]host[:port][?tls=required|none]` or `smtps://…`; the other
    /// fields get their defaults.
    pub fn from_url(url: &str) -> Result<Self, String> {
        let u = url::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
        let (tls, default_port) = match u.scheme() {
            "smtp" => (Tls::Opportunistic, 25),
            "smtps" => (Tls::Wrapper, 465),
            s => return Err(format!("`{s}://` is not smtp:// or smtps://")),
        };
        let tls = match u.query_pairs().find(|(k, _)| k == "tls").map(|(_, v)| v) {
            None => tls,
            Some(v) if v == "required" && tls == Tls::Opportunistic => Tls::Required,
            Some(v) if v == "none" && tls == Tls::Opportunistic => Tls::None,
            Some(v) => {
                return Err(format!(
                    "tls={v} is not `required` or `none` (smtp:// only)"
                ))
            }
        };
        let host = u
            .host_str()
            .ok_or_else(|| format!("`{url}` names no host"))?
            .trim_matches(['[', ']'])
            .to_owned();
        let credentials = (!u.username().is_empty()).then(|| {
            let dec = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (dec(u.username()), dec(u.password().unwrap_or("")))
        });
        Ok(Self {
            host,
            port: u.port().unwrap_or(default_port),
            tls,
            credentials,
            hello: "localhost".into(),
            max_connections: 16,
            rate_per_second: 200,
            timeout: Duration::from_secs(60),
            rotate_after: 1000,
        })
    }
}

/// What became of one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendOutcome {
    /// The relay took it (250 after the data).
    Sent,
    /// Try again later: a 4xx, a timeout, a network error, the relay unreachable.
    Retry {
        class: &'static str,
        code: Option<u16>,
        message: String,
    },
    /// The mailbox was refused for good (5xx to RCPT): suppress the address.
    Bounced { code: u16, message: String },
    /// The message was refused for good (5xx to MAIL or DATA): not the mailbox's fault.
    Failed { code: Option<u16>, message: String },
}

impl SendOutcome {
    /// `2xx`, `4xx`, `5xx` or `network`: for metrics and the attempt log.
    pub fn reply_class(&self) -> &'static str {
        match self {
            SendOutcome::Sent => "2xx",
            SendOutcome::Retry { code: Some(_), .. } => "4xx",
            SendOutcome::Retry { code: None, .. } => "network",
            SendOutcome::Bounced { .. } => "5xx",
            SendOutcome::Failed { code: Some(_), .. } => "5xx",
            SendOutcome::Failed { code: None, .. } => "client",
        }
    }
}

/// The reply classes messages are counted by.
pub const REPLY_CLASSES: [&str; 5] = ["2xx", "4xx", "5xx", "network", "client"];

/// Paces messages; slows down when the relay asks.
struct Bucket {
    configured: f64,
    state: Mutex<BucketState>,
}

struct BucketState {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: u32) -> Self {
        let rate = f64::from(rate.max(1));
        Self {
            configured: rate,
            state: Mutex::new(BucketState {
                rate,
                tokens: rate.min(10.0),
                last: Instant::now(),
            }),
        }
    }

    /// How long to wait before sending: zero when a token was free.
    fn reserve(&self) -> Duration {
        let Ok(mut s) = self.state.lock() else {
            return Duration::ZERO;
        };
        let now = Instant::now();
        let burst = s.rate.clamp(1.0, 50.0);
        s.tokens = (s.tokens + now.duration_since(s.last).as_secs_f64() * s.rate).min(burst);
        s.last = now;
        s.tokens -= 1.0;
        if s.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-s.tokens / s.rate)
        }
    }

    fn slow_down(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.rate = (s.rate / 2.0).max(1.0);
        }
    }

    fn accepted(&self) {
        if let Ok(mut s) = self.state.lock() {
            if s.rate < self.configured {
                s.rate = (s.rate + self.configured / 200.0).min(self.configured);
            }
        }
    }

    fn rate(&self) -> f64 {
        self.state.lock().map(|s| s.rate).unwrap_or(self.configured)
    }
}

struct Session {
    conn: AsyncSmtpConnection,
    sent: u32,
    /// The relay offers PIPELINING (RFC 2920): MAIL, RCPT and DATA go in one write.
    pipelining: bool,
}

/// The relay, shared by everything that sends mail.
pub struct Relay {
    cfg: RelayConfig,
    sessions: Semaphore,
    idle: Mutex<Vec<Session>>,
    bucket: Bucket,
    opened: std::sync::atomic::AtomicU64,
    /// Of those, sessions on which the relay offered PIPELINING.
    pipelined: std::sync::atomic::AtomicU64,
    /// Messages by reply class, as [`REPLY_CLASSES`].
    replies: [std::sync::atomic::AtomicU64; 5],
    /// How long each message took with the relay (connecting included), for `/metrics`.
    pub latency: crate::histogram::Histogram,
}

/// Upper bounds (seconds) of the send latency histogram's buckets.
pub const LATENCY_BUCKETS: [f64; 9] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

enum Stage {
    Connect,
    Mail,
    Rcpt,
    Data,
}

/// Why a send stopped: at which command, with which reply.
struct Failure {
    stage: Stage,
    code: Option<u16>,
    message: String,
    timeout: bool,
}

impl Failure {
    fn from_lettre(stage: Stage, e: &lettre::transport::smtp::Error) -> Self {
        Self {
            stage,
            code: e.status().map(u16::from),
            message: e.to_string(),
            timeout: e.is_timeout(),
        }
    }

    fn connect(message: &str) -> Self {
        Self {
            stage: Stage::Connect,
            code: None,
            message: message.to_owned(),
            timeout: false,
        }
    }
}

impl Relay {
    pub fn new(cfg: RelayConfig) -> Self {
        Self {
            sessions: Semaphore::new(cfg.max_connections.max(1)),
            bucket: Bucket::new(cfg.rate_per_second),
            idle: Mutex::new(Vec::new()),
            opened: Default::default(),
            replies: Default::default(),
            latency: crate::histogram::Histogram::new(&LATENCY_BUCKETS),
            pipelined: Default::default(),
            cfg,
        }
    }

    pub fn config(&self) -> &RelayConfig {
        &self.cfg
    }

    /// The pace right now, in messages a second (below the configured rate after a 4xx).
    pub fn current_rate(&self) -> f64 {
        self.bucket.rate()
    }

    /// Messages by how the relay answered (see [`SendOutcome::reply_class`]).
    pub fn replies(&self) -> [(&'static str, u64); 5] {
        std::array::from_fn(|i| {
            (
                REPLY_CLASSES[i],
                self.replies[i].load(std::sync::atomic::Ordering::Relaxed),
            )
        })
    }

    /// Sessions opened so far (rotation and reconnects included).
    pub fn sessions_opened(&self) -> u64 {
        self.opened.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Of those, how many pipelined their commands (the relay offered PIPELINING).
    pub fn sessions_pipelined(&self) -> u64 {
        self.pipelined.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Sends `message` (complete, CRLF line ends) from `sender` (the envelope's return path;
    /// empty for none) to one recipient.
    pub async fn send(&self, sender: &str, recipient: &str, message: &[u8]) -> SendOutcome {
        let from = if sender.is_empty() {
            None
        } else {
            match sender.parse::<Address>() {
                Ok(a) => Some(a),
                Err(e) => {
                    return SendOutcome::Failed {
                        code: None,
                        message: format!("the return path `{sender}` is not an address: {e}"),
                    }
                }
            }
        };
        let to = match recipient.parse::<Address>() {
            Ok(a) => a,
            Err(e) => {
                return SendOutcome::Bounced {
                    code: 553,
                    message: format!("`{recipient}` is not an address: {e}"),
                }
            }
        };
        let Ok(_permit) = self.sessions.acquire().await else {
            return SendOutcome::Retry {
                class: "shutdown",
                code: None,
                message: "the relay is closing".into(),
            };
        };
        let wait = self.bucket.reserve();
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let idle = self.idle.lock().ok().and_then(|mut v| v.pop());
        let mut session = idle;
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(self.cfg.timeout, async {
            if session.is_none() {
                session = Some(self.connect().await?);
            }
            match session.as_mut() {
                Some(s) => transact(&mut s.conn, s.pipelining, from, to, message).await,
                None => Err(Failure::connect("no session")),
            }
        })
        .await;
        let outcome = match result {
            Err(_) => {
                // The session is mid-command: unusable.
                session = None;
                SendOutcome::Retry {
                    class: "timeout",
                    code: None,
                    message: format!("no answer within {} s", self.cfg.timeout.as_secs_f64()),
                }
            }
            Ok(Ok(())) => SendOutcome::Sent,
            Ok(Err(f)) => {
                let keep = f.code.is_some_and(|c| c != 421)
                    && session.as_ref().is_some_and(|s| !s.conn.has_broken());
                if keep {
                    if let Some(s) = session.as_mut() {
                        if s.conn.command(Rset).await.is_err() {
                            session = None;
                        }
                    }
                } else {
                    session = None;
                }
                let Failure {
                    stage,
                    code,
                    message,
                    timeout,
                } = f;
                match (stage, code) {
                    (_, Some(c)) if (400..500).contains(&c) => SendOutcome::Retry {
                        class: "smtp_4xx",
                        code,
                        message,
                    },
                    (Stage::Rcpt, Some(c)) if c >= 500 => SendOutcome::Bounced { code: c, message },
                    (Stage::Mail | Stage::Data, Some(c)) if c >= 500 => {
                        SendOutcome::Failed { code, message }
                    }
                    (Stage::Connect, _) => SendOutcome::Retry {
                        class: "connect",
                        code,
                        message,
                    },
                    _ if timeout => SendOutcome::Retry {
                        class: "timeout",
                        code,
                        message,
                    },
                    _ => SendOutcome::Retry {
                        class: "network",
                        code,
                        message,
                    },
                }
            }
        };
        self.latency.record(started.elapsed());
        if let Some(i) = REPLY_CLASSES
            .iter()
            .position(|c| *c == outcome.reply_class())
        {
            self.replies[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        match &outcome {
            SendOutcome::Sent => self.bucket.accepted(),
            SendOutcome::Retry { code: Some(_), .. } => self.bucket.slow_down(),
            _ => {}
        }
        if let Some(mut s) = session {
            if matches!(outcome, SendOutcome::Sent) {
                s.sent += 1;
            }
            if s.sent >= self.cfg.rotate_after {
                let _ = tokio::time::timeout(Duration::from_secs(5), s.conn.command(Quit)).await;
            } else if let Ok(mut idle) = self.idle.lock() {
                idle.push(s);
            }
        }
        outcome
    }

    /// Closes the idle sessions politely.
    pub async fn close(&self) {
        let sessions: Vec<Session> = self
            .idle
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default();
        for mut s in sessions {
            let _ = tokio::time::timeout(Duration::from_secs(5), s.conn.quit()).await;
        }
    }

    async fn connect(&self) -> Result<Session, Failure> {
        self.open_session()
            .await
            .map_err(|e| Failure::from_lettre(Stage::Connect, &e))?
    }

    async fn open_session(
        &self,
    ) -> Result<Result<Session, Failure>, lettre::transport::smtp::Error> {
        let hello = ClientId::Domain(self.cfg.hello.clone());
        let tls = || TlsParameters::new(self.cfg.host.clone());
        let wrapper = match self.cfg.tls {
            Tls::Wrapper => Some(tls()?),
            _ => None,
        };
        let mut conn = AsyncSmtpConnection::connect_tokio1(
            (self.cfg.host.as_str(), self.cfg.port),
            Some(self.cfg.timeout),
            &hello,
            wrapper,
            None,
        )
        .await?;
        match self.cfg.tls {
            Tls::Opportunistic if conn.can_starttls() => conn.starttls(tls()?, &hello).await?,
            Tls::Required => {
                if !conn.can_starttls() {
                    return Ok(Err(Failure::connect(
                        "the relay does not offer STARTTLS, and smtp.url requires it",
                    )));
                }
                conn.starttls(tls()?, &hello).await?
            }
            _ => {}
        }
        if let Some((user, pass)) = &self.cfg.credentials {
            conn.auth(
                &[Mechanism::Plain, Mechanism::Login],
                &Credentials::new(user.clone(), pass.clone()),
            )
            .await?;
        }
        self.opened
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // lettre keeps only the EHLO keywords it uses; ask again to learn about PIPELINING
        // (RFC 5321 allows a second EHLO; it changes nothing else).
        let pipelining = conn
            .command(Ehlo::new(hello.clone()))
            .await
            .map(|r| {
                r.message()
                    .any(|l| l.trim().eq_ignore_ascii_case("PIPELINING"))
            })
            .unwrap_or(false);
        if pipelining {
            self.pipelined
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(Ok(Session {
            conn,
            sent: 0,
            pipelining,
        }))
    }
}

async fn transact(
    conn: &mut AsyncSmtpConnection,
    pipelining: bool,
    from: Option<Address>,
    to: Address,
    message: &[u8],
) -> Result<(), Failure> {
    let mut params = Vec::new();
    let ascii = |a: &Address| <Address as AsRef<str>>::as_ref(a).is_ascii();
    let utf8 = from.as_ref().is_some_and(|a| !ascii(a)) || !ascii(&to);
    if utf8 && conn.server_info().supports_feature(Extension::SmtpUtfEight) {
        params.push(MailParameter::SmtpUtfEight);
    }
    if !message.is_ascii() && conn.server_info().supports_feature(Extension::EightBitMime) {
        params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    if pipelining {
        // One write, three replies, read in order whatever each says.
        let batch = Payload(format!(
            "{}{}{}",
            Mail::new(from, params),
            Rcpt::new(to, Vec::new()),
            Data
        ));
        let mail = conn.command(batch).await;
        if let Err(e) = &mail {
            if e.status().is_none() {
                return Err(Failure::from_lettre(Stage::Mail, e));
            }
        }
        let rcpt = conn.read_response().await;
        if let Err(e) = &rcpt {
            if e.status().is_none() {
                return Err(Failure::from_lettre(Stage::Rcpt, e));
            }
        }
        let data = conn.read_response().await;
        let first_failure = match (&mail, &rcpt, &data) {
            (Err(e), _, _) => Some(Failure::from_lettre(Stage::Mail, e)),
            (_, Err(e), _) => Some(Failure::from_lettre(Stage::Rcpt, e)),
            (_, _, Err(e)) => Some(Failure::from_lettre(Stage::Data, e)),
            _ => None,
        };
        if let Some(f) = first_failure {
            if data.is_ok() {
                // DATA was accepted although an earlier command failed: end it empty.
                let _ = conn.command(Payload(".\r\n".into())).await;
            }
            return Err(f);
        }
    } else {
        conn.command(Mail::new(from, params))
            .await
            .map_err(|e| Failure::from_lettre(Stage::Mail, &e))?;
        conn.command(Rcpt::new(to, Vec::new()))
            .await
            .map_err(|e| Failure::from_lettre(Stage::Rcpt, &e))?;
        conn.command(Data)
            .await
            .map_err(|e| Failure::from_lettre(Stage::Data, &e))?;
    }
    // The message and its terminating dot in one write: lettre's `message` writes them
    // separately, and the small second write then waits out Nagle's algorithm against the
    // relay's delayed ACK (~40 ms a message).
    match std::str::from_utf8(message) {
        Ok(text) => conn.command(Payload(dot_stuffed(text))).await,
        Err(_) => conn.message(message).await,
    }
    .map_err(|e| Failure::from_lettre(Stage::Data, &e))?;
    Ok(())
}

/// A message ready for the wire after DATA.
struct Payload(String);

impl std::fmt::Display for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `text` with every line that starts with a dot given another (RFC 5321 §4.5.2), ending in
/// CRLF, then the lone dot that ends the data.
fn dot_stuffed(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        if line.starts_with('.') {
            out.push('.');
        }
        out.push_str(line);
    }
    if !out.ends_with("\r\n") {
        if out.ends_with('\r') {
            out.push('\n');
        } else {
            out.push_str("\r\n");
        }
    }
    out.push_str(".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_urls() {
        let c = RelayConfig::from_url("smtp://127.0.0.1:2525").unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.tls),
            ("127.0.0.1", 2525, Tls::Opportunistic)
        );
        assert!(c.credentials.is_none());
        let c = RelayConfig::from_url("smtps://siar:p%40ss@relay.kalselprov.go.id").unwrap();
        assert_eq!((c.port, c.tls.clone()), (465, Tls::Wrapper));
        assert_eq!(c.credentials, Some(("siar".into(), "p@ss".into())));
        let c = RelayConfig::from_url("smtp://relay:587?tls=required").unwrap();
        assert_eq!(c.tls, Tls::Required);
        assert!(RelayConfig::from_url("http://relay").is_err());
        assert!(RelayConfig::from_url("smtps://relay?tls=none").is_err());
    }

    #[test]
    fn data_is_dot_stuffed_and_terminated() {
        assert_eq!(
            dot_stuffed("a\r\n.b\r\n..c\r\n"),
            "a\r\n..b\r\n...c\r\n.\r\n"
        );
        assert_eq!(dot_stuffed(".\r\nend"), "..\r\nend\r\n.\r\n");
        assert_eq!(dot_stuffed(""), "\r\n.\r\n");
    }

    #[test]
    fn the_bucket_paces_and_slows_down() {
        let b = Bucket::new(100);
        // A burst up to the bucket's size is free, then each message waits ~10 ms.
        let waits: Vec<Duration> = (0..20).map(|_| b.reserve()).collect();
        assert!(waits[0].is_zero());
        assert!(waits[19] > Duration::from_millis(50), "{waits:?}");
        b.slow_down();
        assert!((b.rate() - 50.0).abs() < 1e-9);
        for _ in 0..1000 {
            b.accepted();
        }
        assert!((b.rate() - 100.0).abs() < 1e-9);
    }
}
