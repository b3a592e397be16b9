//! Partner webhooks on the wire: Standard Webhooks signing, the event envelope, one attempt
//! over HTTP, and what its outcome means for the next one.
//!
//! Every attempt of one delivery carries the same `webhook-id` (so the partner can drop
//! repeats) and a fresh `webhook-timestamp`; `webhook-signature` holds `v1,<base64 HMAC-SHA256
//! of "id.timestamp.body">` once per active secret (several during a rotation). Redirects are
//! never followed: a partner that moved must be reconfigured, not guessed.
//!
//! The client is hyper's pooled HTTP/1.1 client (the one reqwest wraps) with a connector of
//! our own: names resolve through the SSRF guard, connections go to the addresses it checked,
//! and `https` partners get TLS (rustls, Mozilla's roots). Taken directly it costs a little
//! over half of what reqwest does per request, which is most of what a delivery costs.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::legacy::connect::HttpConnector;

use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

/// A signing secret: the bytes behind `whsec_<base64>`, kept as the HMAC keyed with them (the
/// key is prepared once, not on every signature).
#[derive(Clone)]
pub struct Secret(Hmac<Sha256>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl Secret {
    /// Reads `whsec_<base64>` (the prefix is optional).
    pub fn parse(s: &str) -> Result<Self, String> {
        let b64 = s.trim().strip_prefix("whsec_").unwrap_or(s.trim());
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| format!("not a whsec_ secret (base64 after `whsec_`): {e}"))?;
        if bytes.len() < 16 {
            return Err(format!(
                "a secret must hold at least 16 bytes; this one has {}",
                bytes.len()
            ));
        }
        // HMAC takes a key of any length.
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(&bytes)
            .map_err(|e| format!("not a usable HMAC key: {e}"))?;
        Ok(Self(mac))
    }

    /// Every secret in `s`, separated by spaces or commas (several during a rotation).
    pub fn parse_list(s: &str) -> Result<Vec<Self>, String> {
        s.split([' ', ',', '\n'])
            .filter(|p| !p.trim().is_empty())
            .map(Self::parse)
            .collect()
    }
}

/// The `webhook-signature` header value for `id`, `timestamp` (Unix seconds) and `body`.
pub fn signature(secrets: &[Secret], id: &str, timestamp: i64, body: &[u8]) -> String {
    let timestamp = timestamp.to_string();
    let mut out = String::with_capacity(secrets.len() * 48);
    for (i, s) in secrets.iter().enumerate() {
        let mut mac = s.0.clone();
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        if i > 0 {
            out.push(' ');
        }
        out.push_str("v1,");
        base64::engine::general_purpose::STANDARD
            .encode_string(mac.finalize().into_bytes(), &mut out);
    }
    out
}

/// The body every partner gets: `{"type", "timestamp", "data"}`.
pub fn envelope(event_type: &str, at: DateTime<Utc>, data: Value) -> Vec<u8> {
    let v = json!({
        "type": event_type,
        "timestamp": at.to_rfc3339_opts(SecondsFormat::Secs, true),
        "data": data,
    });
    serde_json::to_vec(&v).unwrap_or_default()
}

/// [`envelope`] around `data` already serialised as JSON (shared by many partners).
pub fn envelope_raw(event_type: &str, at: DateTime<Utc>, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 96);
    out.extend_from_slice(b"{\"type\":");
    out.extend_from_slice(&serde_json::to_vec(event_type).unwrap_or_default());
    out.extend_from_slice(b",\"timestamp\":\"");
    out.extend_from_slice(at.to_rfc3339_opts(SecondsFormat::Secs, true).as_bytes());
    out.extend_from_slice(b"\",\"data\":");
    out.extend_from_slice(data);
    out.push(b'}');
    out
}

/// What an attempt's outcome asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx.
    Delivered,
    /// Network error, timeout, 408, 429, 5xx: try again, not before `min_wait` (a
    /// Retry-After, or the floor for timeouts and 429s).
    Retry { min_wait: Option<Duration> },
    /// 410 Gone: the partner asks never to be called again.
    Gone,
    /// Any other answer (4xx, a redirect): failed for good, replayable by an operator.
    Fail,
}

/// How an attempt went, for the attempt log.
#[derive(Clone, Debug)]
pub struct AttemptResult {
    pub verdict: Verdict,
    pub status: Option<u16>,
    pub duration: Duration,
    /// The first 4 KiB of the response body.
    pub response: String,
    /// `timeout`, `connect`, `refused_address`, `http_5xx`, `http_4xx`, `redirect`, …; empty
    /// when delivered.
    pub error_class: String,
    pub error: String,
}

/// Timeouts and 429s wait at least this long before the next attempt.
pub const SLOW_DOWN: Duration = Duration::from_secs(60);

/// The longest Retry-After honoured; longer asks are capped.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

fn retry_after(headers: &http::HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?;
    let wait = if let Ok(secs) = v.trim().parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = DateTime::parse_from_rfc2822(v.trim())
            .ok()?
            .with_timezone(&Utc);
        (at - now).to_std().unwrap_or_default()
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// What a status code means.
pub fn classify(status: u16) -> (Verdict, &'static str) {
    match status {
        200..=299 => (Verdict::Delivered, ""),
        408 => (Verdict::Retry { min_wait: None }, "http_408"),
        429 => (
            Verdict::Retry {
                min_wait: Some(SLOW_DOWN),
            },
            "http_429",
        ),
        410 => (Verdict::Gone, "http_410"),
        300..=399 => (Verdict::Fail, "redirect"),
        500..=599 => (Verdict::Retry { min_wait: None }, "http_5xx"),
        _ => (Verdict::Fail, "http_4xx"),
    }
}

/// A partner URL as attempts use it; `Err` says why it cannot be one.
pub fn target(url: &str) -> Result<http::Uri, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("{url}: only http and https partners can be called"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        // Named without them: the error goes to logs and to check-config's output.
        let mut shown = parsed.clone();
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        return Err(format!(
            "{shown}: credentials in the URL are not sent; give them as a header"
        ));
    }
    parsed.as_str().parse().map_err(|e| format!("{url}: {e}"))
}

/// One signed POST of `body` to `url` (from [`target`]).
#[allow(clippy::too_many_arguments)]
pub async fn attempt(
    client: &Client,
    url: &http::Uri,
    id: &str,
    secrets: &[Secret],
    body: Vec<u8>,
    extra_headers: &[(String, String)],
    timeout: Duration,
    now: DateTime<Utc>,
) -> AttemptResult {
    let ts = now.timestamp();
    let started = Instant::now();
    let failed = |class: &str, error: String, verdict: Verdict| AttemptResult {
        verdict,
        status: None,
        duration: started.elapsed(),
        response: String::new(),
        error_class: class.into(),
        error,
    };
    let mut req = http::Request::post(url.clone())
        .header(USER_AGENT, client.user_agent.clone())
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .header("webhook-id", id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", signature(secrets, id, ts, &body));
    for (k, v) in extra_headers {
        match (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            (Ok(k), Ok(v)) => req = req.header(k, v),
            _ => {
                return failed(
                    "invalid_header",
                    format!("the configured header `{k}` is not a valid HTTP header"),
                    Verdict::Fail,
                )
            }
        }
    }
    let req = match req.body(http_body_util::Full::new(bytes::Bytes::from(body))) {
        Ok(r) => r,
        Err(e) => return failed("invalid_url", e.to_string(), Verdict::Fail),
    };
    // The timeout covers connecting, sending and the answer's head; reading the answer's
    // body (below) gets as long again.
    let resp = match tokio::time::timeout(timeout, client.http.request(req)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            let class = if is_refused_address(&e) {
                "refused_address"
            } else if e.is_connect() {
                "connect"
            } else {
                "network"
            };
            let verdict = if class == "refused_address" {
                Verdict::Fail
            } else {
                Verdict::Retry { min_wait: None }
            };
            return failed(class, error_chain(&e), verdict);
        }
        Err(_) => {
            return failed(
                "timeout",
                format!("no answer within {} s", timeout.as_secs_f64()),
                Verdict::Retry {
                    min_wait: Some(SLOW_DOWN),
                },
            )
        }
    };
    let status = resp.status().as_u16();
    let (mut verdict, class) = classify(status);
    if let Verdict::Retry { min_wait } = &mut verdict {
        if let Some(ra) = retry_after(resp.headers(), now) {
            *min_wait = Some(min_wait.map_or(ra, |w| w.max(ra)));
        }
    }
    // The first 4 KiB of the answer, for the attempt log; a body that never ends is cut off
    // by the timeout.
    let mut response = Vec::new();
    let mut body = resp.into_body();
    while response.len() < 4096 {
        match tokio::time::timeout(timeout, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    response.extend_from_slice(&data);
                }
            }
            _ => break,
        }
    }
    response.truncate(4096);
    AttemptResult {
        verdict,
        status: Some(status),
        duration: started.elapsed(),
        response: String::from_utf8_lossy(&response).into_owned(),
        error_class: class.into(),
        error: if class.is_empty() {
            String::new()
        } else {
            format!("the partner answered {status}")
        },
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn is_refused_address(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&dyn std::error::Error> = Some(e);
    while let Some(c) = cur {
        if c.to_string().contains(REFUSED) {
            return true;
        }
        cur = c.source();
    }
    false
}

const REFUSED: &str = "refused: the address is private";

/// True for addresses a partner URL must not reach unless `allow_private`: loopback, private
/// (RFC 1918, ULA), link-local (cloud metadata at 169.254.169.254), CGNAT, multicast,
/// unspecified, broadcast, documentation, and IPv4-mapped/compatible forms of those.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1])) // CGNAT 100.64/10
                || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF 192.0.0/24
                || (o[0] == 198 && (18..20).contains(&o[1])) // benchmarking
                || o[0] >= 240 // reserved
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let seg = v6.segments();
            // IPv4-compatible ::a.b.c.d (deprecated, still routable to v4 on some stacks).
            if seg[..6].iter().all(|&s| s == 0) && !v6.is_loopback() && !v6.is_unspecified() {
                let [a, b] = seg[6].to_be_bytes();
                let [c, d] = seg[7].to_be_bytes();
                return is_private(IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, d)));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (seg[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (seg[0] == 0x2001 && seg[1] == 0x0db8) // documentation
                || (seg[0] == 0x0064 && seg[1] == 0xff9b) // NAT64 to v4 space
        }
    }
}

/// The partners' resolver: every address of a name, or with the guard on, only its public
/// ones (see [`is_private`]); the connection then goes to an address this resolver returned,
/// so what was checked is what is dialled. A name with no public address fails to resolve
/// with a clear error.
#[derive(Clone, Default)]
pub struct GuardedResolver {
    /// Private addresses allowed (`allow_private`).
    pub allow_private: bool,
}

type Resolving =
    Pin<Box<dyn Future<Output = Result<std::vec::IntoIter<SocketAddr>, std::io::Error>> + Send>>;

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Resolving;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if allow_private {
                return Ok(addrs.into_iter());
            }
            let public: Vec<SocketAddr> = addrs
                .iter()
                .copied()
                .filter(|a| !is_private(a.ip()))
                .collect();
            if public.is_empty() {
                return Err(std::io::Error::other(format!(
                    "{host}: {REFUSED} ({}); set allow_private = true for a partner on this network",
                    addrs
                        .iter()
                        .map(|a| a.ip().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            Ok(public.into_iter())
        })
    }
}

/// The error for a URL whose host is a private IP literal (no resolver is asked for those).
pub fn check_literal(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
    let host = parsed.host_str().unwrap_or("");
    let Ok(ip) = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    else {
        return Ok(());
    };
    if is_private(ip) {
        return Err(format!(
            "{ip}: {REFUSED}; set allow_private = true for a partner on this network"
        ));
    }
    Ok(())
}

type Connector = hyper_rustls::HttpsConnector<HttpConnector<GuardedResolver>>;

/// An HTTP client for partners: keep-alive connections pooled per partner, no redirects, no
/// proxies from the environment, no decompression, and unless `allow_private`, the guarded
/// resolver. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    http: hyper_util::client::legacy::Client<Connector, http_body_util::Full<bytes::Bytes>>,
    user_agent: HeaderValue,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("webhook::Client")
    }
}

/// A partner client (see [`Client`]).
pub fn client(allow_private: bool, user_agent: &str) -> Result<Client, String> {
    let mut http = HttpConnector::new_with_resolver(GuardedResolver { allow_private });
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        })
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_timer(hyper_util::rt::TokioTimer::new())
        .build(connector);
    Ok(Client {
        http,
        user_agent: HeaderValue::from_str(user_agent)
            .map_err(|e| format!("user agent `{user_agent}`: {e}"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_with_the_reference_implementation() {
        let raw = [7u8; 32];
        let whsec = format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        );
        let old = format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode([9u8; 24])
        );
        let secrets = Secret::parse_list(&format!("{old} {whsec}")).unwrap();
        let body = envelope(
            "release.published",
            Utc::now(),
            json!({"uri": "tag:x,2026:release/1", "headline": "Uji “kutip” 🎉"}),
        );
        let now = Utc::now().timestamp();
        let sig = signature(&secrets, "01J.v1.published", now, &body);
        assert_eq!(sig.split(' ').count(), 2, "one signature per secret");
        let mut headers = http::HeaderMap::new();
        headers.insert("webhook-id", "01J.v1.published".parse().unwrap());
        headers.insert("webhook-timestamp", now.to_string().parse().unwrap());
        headers.insert("webhook-signature", sig.parse().unwrap());
        for s in [&whsec, &old] {
            standardwebhooks::Webhook::new(s)
                .unwrap()
                .verify(&body, &headers)
                .unwrap();
        }
        // A changed body or a foreign secret fails.
        let mut tampered = body.clone();
        tampered.push(b' ');
        let wh = standardwebhooks::Webhook::new(&whsec).unwrap();
        assert!(wh.verify(&tampered, &headers).is_err());
        let other = format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode([1u8; 32])
        );
        assert!(standardwebhooks::Webhook::new(&other)
            .unwrap()
            .verify(&body, &headers)
            .is_err());
    }

    #[test]
    fn raw_envelope_is_the_same_json() {
        let at = Utc::now();
        let data = json!({"uri": "tag:x", "t": "“kutip” \u{1F389}"});
        let a: Value =
            serde_json::from_slice(&envelope("release.corrected", at, data.clone())).unwrap();
        let b: Value = serde_json::from_slice(&envelope_raw(
            "release.corrected",
            at,
            &serde_json::to_vec(&data).unwrap(),
        ))
        .unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn secrets_are_checked() {
        assert!(Secret::parse("whsec_not base64!").is_err());
        assert!(Secret::parse("whsec_c2hvcnQ=").is_err(), "too short");
        assert!(Secret::parse_list("").unwrap().is_empty());
    }

    #[test]
    fn statuses_classified() {
        assert_eq!(classify(204).0, Verdict::Delivered);
        assert_eq!(classify(410).0, Verdict::Gone);
        assert_eq!(classify(302).0, Verdict::Fail);
        assert_eq!(classify(404).0, Verdict::Fail);
        assert_eq!(classify(408).0, Verdict::Retry { min_wait: None });
        assert_eq!(
            classify(429).0,
            Verdict::Retry {
                min_wait: Some(SLOW_DOWN)
            }
        );
        assert_eq!(classify(503).0, Verdict::Retry { min_wait: None });
    }

    #[test]
    fn private_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "224.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "fd00::1",
            "fe80::1",
            "ff02::1",
            "64:ff9b::a00:1",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip} is private");
        }
        for ip in ["103.10.20.30", "8.8.8.8", "2001:4860:4860::8888"] {
            assert!(!is_private(ip.parse().unwrap()), "{ip} is public");
        }
        assert!(check_literal("http://127.0.0.1:8080/hook").is_err());
        assert!(check_literal("http://[::ffff:10.0.0.1]/hook").is_err());
        assert!(check_literal("https://mc.kalselprov.go.id/hook").is_ok());
    }

    /// A plain-HTTP endpoint answers an `http` partner, and an `https` one is refused there: the
    /// client speaks TLS for https (and checks the certificate, which a plain server lacks).
    #[tokio::test]
    async fn https_partners_get_tls() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0; 65536];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        // Good enough for one small request per read.
                        if s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                });
            }
        });
        let client = client(true, "siar-test").unwrap();
        let send = |scheme: &str| {
            let url = target(&format!("{scheme}://127.0.0.1:{port}/hook")).unwrap();
            let client = client.clone();
            async move {
                attempt(
                    &client,
                    &url,
                    "id",
                    &[],
                    b"{}".to_vec(),
                    &[("authorization".into(), "Bearer t".into())],
                    Duration::from_secs(5),
                    Utc::now(),
                )
                .await
            }
        };
        let plain = send("http").await;
        assert_eq!(plain.verdict, Verdict::Delivered, "{plain:?}");
        assert_eq!(plain.status, Some(204));
        let tls = send("https").await;
        assert_eq!(tls.status, None, "{tls:?}");
        assert_eq!(tls.error_class, "connect", "{tls:?}");
        assert!(matches!(tls.verdict, Verdict::Retry { .. }), "{tls:?}");
    }

    #[test]
    fn only_http_urls_without_credentials_are_targets() {
        assert!(target("https://mc.kalselprov.go.id/hook?x=1").is_ok());
        assert!(target("ftp://mc.kalselprov.go.id/hook").is_err());
        let e = target("https://user:rahasia@mc.kalselprov.go.id/hook").unwrap_err();
        assert!(e.contains("credentials") && !e.contains("rahasia"), "{e}");
        assert!(target("not a url").is_err());
    }

    #[tokio::test]
    async fn names_resolving_to_private_addresses_are_refused() {
        let client = client(false, "siar-test").unwrap();
        let r = attempt(
            &client,
            &target("http://localhost:9/hook").unwrap(),
            "id",
            &[],
            b"{}".to_vec(),
            &[],
            Duration::from_secs(5),
            Utc::now(),
        )
        .await;
        assert_eq!(r.error_class, "refused_address", "{r:?}");
        assert_eq!(r.verdict, Verdict::Fail);
    }
}
