//! Subscribing and unsubscribing, in Bahasa Indonesia: double opt-in with a signed, expiring
//! link whose page asks for one button press (so mail scanners that follow links cannot
//! confirm), and one-click unsubscribe (RFC 8058: a POST to the link in `List-Unsubscribe`
//! answers 200 at once; a GET only shows a page with the button).
//!
//! Requests are limited per address and per client IP (the peer, or `X-Forwarded-For` when
//! the peer is a proxy on this host), so nobody can mail-bomb a stranger through siar. The
//! answer to a subscribe request is the same whether or not the address was already on the
//! list: it tells nobody who subscribes.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use maud::{html, Markup};
use serde::Deserialize;
use siar_fanout::render::FeedContext;
use siar_store::{ConfirmOutcome, SubscribeOutcome};

use super::feeds::feed_context;
use super::pages::{layout, page};
use crate::app::App;
use crate::mail::tokens::TokenError;

/// Sliding one-hour windows of request times per key.
#[derive(Default)]
pub struct Limiter {
    seen: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Limiter {
    /// Counts a request for `key`; false when `per_hour` were already made in the last hour.
    pub fn allow(&self, key: &str, per_hour: u32) -> bool {
        let hour = Duration::from_secs(3600);
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() > 100_000 {
            seen.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < hour));
        }
        let q = seen.entry(key.to_owned()).or_default();
        while q.front().is_some_and(|t| now.duration_since(*t) >= hour) {
            q.pop_front();
        }
        if q.len() >= per_hour as usize {
            return false;
        }
        q.push_back(now);
        true
    }
}

/// The client's address: the peer, or the first `X-Forwarded-For` hop when the peer is a
/// proxy on this host.
fn client_ip(req_headers: &HeaderMap, peer: Option<SocketAddr>) -> Option<IpAddr> {
    let peer = peer?.ip();
    if peer.is_loopback() {
        if let Some(ip) = req_headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse().ok())
        {
            return Some(ip);
        }
    }
    Some(peer)
}

/// The client's address (see [`client_ip`]), as an extractor.
pub struct ClientIp(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        Ok(Self(client_ip(&parts.headers, peer)))
    }
}

#[derive(Deserialize)]
pub struct SubscribeBody {
    #[serde(default, alias = "address")]
    email: String,
    #[serde(default)]
    list: String,
}

/// The subscribe form, for the newsroom page.
pub fn form(app: &App, ctx: &FeedContext) -> Markup {
    html! {
        form method="post" action={ (ctx.public_url) "/subscribe" } {
            h3 { "Berlangganan lewat surel" }
            @if app.config.lists.len() == 1 {
                input type="hidden" name="list" value=(app.config.lists[0].id);
                p { (app.config.lists[0].name) ". " (app.config.lists[0].description) }
            } @else {
                fieldset {
                    legend { "Daftar" }
                    @for (i, l) in app.config.lists.iter().enumerate() {
                        p {
                            input type="radio" name="list" id={ "daftar-" (l.id) } value=(l.id) checked[i == 0];
                            " "
                            label for={ "daftar-" (l.id) } { strong { (l.name) } @if !l.description.is_empty() { " — " (l.description) } }
                        }
                    }
                }
            }
            p {
                label for="surel" { "Alamat surel" }
                br;
                input #surel type="email" name="email" required autocomplete="email" inputmode="email";
            }
            p { button type="submit" { "Daftar" } }
            p.meta { "Kami akan mengirim tautan konfirmasi. Anda bisa berhenti berlangganan kapan saja lewat tautan di setiap surel." }
        }
    }
}

fn notice_page(app: &App, status: StatusCode, title: &str, body: Markup) -> Response {
    let ctx = feed_context(app);
    let markup = layout(
        app,
        title,
        title,
        &format!("{}/", ctx.public_url),
        "/feeds",
        html! { meta name="robots" content="noindex"; },
        html! {
            h1 { (title) }
            (body)
            p { a href={ (ctx.public_url) "/" } { "Kembali ke daftar siaran pers" } }
        },
    );
    let mut resp = page(markup);
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    resp
}

fn answer(
    app: &App,
    json: bool,
    status: StatusCode,
    code: &str,
    title: &str,
    text: &str,
) -> Response {
    if json {
        let body = serde_json::json!({ "status": code, "message": text });
        return (status, Json(body)).into_response();
    }
    notice_page(app, status, title, html! { p { (text) } })
}

/// `POST /subscribe`: a form or JSON `{"email", "list"}`. Sends a confirmation mail.
pub async fn subscribe(
    State(app): State<Arc<App>>,
    ClientIp(ip): ClientIp,
    req: Request,
) -> Response {
    let headers = req.headers().clone();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let json = content_type.starts_with("application/json")
        || headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("application/json") && !a.contains("text/html"));
    let body = if content_type.starts_with("application/json") {
        Json::<SubscribeBody>::from_request(req, &app)
            .await
            .map(|Json(b)| b)
            .map_err(|e| e.body_text())
    } else {
        Form::<SubscribeBody>::from_request(req, &app)
            .await
            .map(|Form(b)| b)
            .map_err(|e| e.body_text())
    };
    let bad = |text: &str| {
        answer(
            &app,
            json,
            StatusCode::BAD_REQUEST,
            "invalid",
            "Permintaan tidak dapat diproses",
            text,
        )
    };
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            return bad(&format!(
                "Formulir tidak terbaca: {}",
                e.chars().take(200).collect::<String>()
            ))
        }
    };
    let Some(mailer) = app.mail.get() else {
        return answer(
            &app,
            json,
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Layanan surel belum siap",
            "Layanan surel belum siap. Silakan coba lagi sebentar lagi.",
        );
    };
    let list = if body.list.is_empty() && mailer.lists.len() == 1 {
        mailer.lists.keys().next().cloned().unwrap_or_default()
    } else {
        body.list.clone()
    };
    if !mailer.lists.contains_key(&list) {
        return bad(&format!(
            "Daftar \"{}\" tidak ada.",
            list.chars().take(60).collect::<String>()
        ));
    }
    let address = match siar_model::normalize_address(&body.email) {
        Ok(a) => a,
        Err(_) => return bad("Alamat surel tidak valid. Periksa kembali penulisannya."),
    };
    let limits = &app.config.smtp;
    let ip_ok = ip.is_none_or(|ip| {
        mailer
            .limits
            .allow(&format!("ip:{ip}"), limits.subscribe_per_ip_per_hour)
    });
    if !ip_ok
        || !mailer.limits.allow(
            &format!("address:{address}"),
            limits.subscribe_per_address_per_hour,
        )
    {
        let mut resp = answer(
            &app,
            json,
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "Terlalu banyak permintaan",
            "Terlalu banyak permintaan berlangganan dalam satu jam terakhir. Silakan coba lagi nanti.",
        );
        resp.headers_mut().insert(
            header::RETRY_AFTER,
            header::HeaderValue::from_static("3600"),
        );
        return resp;
    }
    let source = if json { "api" } else { "form" };
    let ip_text = ip.map(|i| i.to_string());
    match app.store.request_subscription(
        &list,
        &address,
        source,
        ip_text.as_deref(),
        app.clock.now(),
    ) {
        Ok(SubscribeOutcome::ConfirmationNeeded(s)) => {
            if let Err(e) = app.store.flush().await {
                tracing::error!(error = %e, "Could not flush a subscription request.");
            }
            mailer.send_confirmation(&app, &s);
        }
        Ok(SubscribeOutcome::AlreadyConfirmed) => {}
        Err(e) => {
            tracing::error!(error = %e, "Could not record a subscription request.");
            return answer(
                &app,
                json,
                StatusCode::INTERNAL_SERVER_ERROR,
                "error",
                "Terjadi kesalahan",
                "Permintaan belum tersimpan. Silakan coba lagi.",
            );
        }
    }
    answer(
        &app,
        json,
        StatusCode::ACCEPTED,
        "confirmation_sent",
        "Periksa kotak surat Anda",
        "Jika alamat itu belum terdaftar, kami mengirim surel berisi tautan konfirmasi. Buka tautan itu dan tekan tombol \"Konfirmasi\" untuk mulai menerima siaran pers.",
    )
}

fn token_problem(app: &App, e: TokenError) -> Response {
    match e {
        TokenError::Expired => notice_page(
            app,
            StatusCode::GONE,
            "Tautan kedaluwarsa",
            html! { p { "Tautan konfirmasi ini sudah kedaluwarsa. Silakan daftar lagi dari halaman utama." } },
        ),
        TokenError::Invalid => notice_page(
            app,
            StatusCode::BAD_REQUEST,
            "Tautan tidak valid",
            html! { p { "Tautan ini rusak atau tidak dibuat oleh situs ini. Salin tautan lengkap dari surel Anda." } },
        ),
    }
}

fn button_page(app: &App, title: &str, text: String, button: &str) -> Response {
    notice_page(
        app,
        StatusCode::OK,
        title,
        html! {
            p { (text) }
            form method="post" {
                button type="submit" { (button) }
            }
        },
    )
}

fn list_name(app: &App, id: &str) -> String {
    app.config
        .lists
        .iter()
        .find(|l| l.id == id)
        .map_or_else(|| id.to_owned(), |l| l.name.clone())
}

/// `GET /confirm/{token}`: a page with one button; changes nothing.
pub async fn confirm_page(State(app): State<Arc<App>>, Path(token): Path<String>) -> Response {
    let Some(mailer) = app.mail.get() else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    match mailer.key.open_confirm(&token, app.clock.now()) {
        Ok(c) => button_page(
            &app,
            "Konfirmasi langganan",
            format!(
                "Tekan tombol di bawah untuk mulai menerima \"{}\" di {}.",
                list_name(&app, &c.list),
                c.address
            ),
            "Konfirmasi",
        ),
        Err(e) => token_problem(&app, e),
    }
}

/// `POST /confirm/{token}`: confirms. Idempotent.
pub async fn confirm(
    State(app): State<Arc<App>>,
    Path(token): Path<String>,
    ClientIp(ip): ClientIp,
) -> Response {
    let Some(mailer) = app.mail.get() else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let now = app.clock.now();
    let c = match mailer.key.open_confirm(&token, now) {
        Ok(c) => c,
        Err(e) => return token_problem(&app, e),
    };
    let ip = ip.map(|i| i.to_string());
    let requested = c.requested_at.unwrap_or(now);
    match app
        .store
        .confirm_subscription(&c.list, &c.address, requested, ip.as_deref(), now)
    {
        Ok(ConfirmOutcome::Confirmed(_)) | Ok(ConfirmOutcome::AlreadyConfirmed) => {
            if let Err(e) = app.store.flush().await {
                tracing::error!(error = %e, "Could not flush a confirmation.");
            }
            notice_page(
                &app,
                StatusCode::OK,
                "Langganan aktif",
                html! { p { "Terima kasih. " (c.address) " kini menerima \"" (list_name(&app, &c.list)) "\". Setiap surel memuat tautan untuk berhenti berlangganan." } },
            )
        }
        Ok(ConfirmOutcome::Stale) => notice_page(
            &app,
            StatusCode::GONE,
            "Tautan sudah tidak berlaku",
            html! { p { "Tautan ini dibuat sebelum permintaan terakhir Anda. Silakan daftar lagi dari halaman utama untuk menerima tautan baru." } },
        ),
        Err(e) => {
            tracing::error!(error = %e, "Could not record a confirmation.");
            notice_page(
                &app,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Terjadi kesalahan",
                html! { p { "Konfirmasi belum tersimpan. Silakan coba lagi." } },
            )
        }
    }
}

/// `GET /unsubscribe/{token}`: a page with one button; changes nothing.
pub async fn unsubscribe_page(State(app): State<Arc<App>>, Path(token): Path<String>) -> Response {
    let Some(mailer) = app.mail.get() else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    match mailer.key.open_unsubscribe(&token) {
        Ok(c) => button_page(
            &app,
            "Berhenti berlangganan",
            format!(
                "Tekan tombol di bawah untuk berhenti menerima \"{}\" di {}.",
                list_name(&app, &c.list),
                c.address
            ),
            "Berhenti berlangganan",
        ),
        Err(e) => token_problem(&app, e),
    }
}

/// `POST /unsubscribe/{token}`: unsubscribes at once and answers 200 (RFC 8058 one-click;
/// the body, `List-Unsubscribe=One-Click` from a mail client, is not needed).
pub async fn unsubscribe(
    State(app): State<Arc<App>>,
    Path(token): Path<String>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
) -> Response {
    let Some(mailer) = app.mail.get() else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let c = match mailer.key.open_unsubscribe(&token) {
        Ok(c) => c,
        Err(e) => return token_problem(&app, e),
    };
    let ip = ip.map(|i| i.to_string());
    let one_click = headers.get(header::CONTENT_TYPE).is_some_and(|v| {
        v.as_bytes()
            .starts_with(b"application/x-www-form-urlencoded")
    }) && headers.get(header::REFERER).is_none();
    let source = if one_click {
        "one-click"
    } else {
        "unsubscribe page"
    };
    match app
        .store
        .unsubscribe(&c.list, &c.address, source, ip.as_deref(), app.clock.now())
    {
        Ok(_) => {
            if let Err(e) = app.store.flush().await {
                tracing::error!(error = %e, "Could not flush an unsubscribe.");
            }
            notice_page(
                &app,
                StatusCode::OK,
                "Anda telah berhenti berlangganan",
                html! { p { (c.address) " tidak akan lagi menerima \"" (list_name(&app, &c.list)) "\". Anda bisa mendaftar lagi kapan saja dari halaman utama." } },
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "Could not record an unsubscribe.");
            notice_page(
                &app,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Terjadi kesalahan",
                html! { p { "Permintaan belum tersimpan. Silakan coba lagi." } },
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limiter_counts_per_key_within_the_hour() {
        let l = Limiter::default();
        assert!((0..20).all(|_| l.allow("ip:10.0.0.1", 20)));
        assert!(!l.allow("ip:10.0.0.1", 20), "the 21st request in the hour");
        // Another client and another address are counted apart.
        assert!(l.allow("ip:10.0.0.2", 20));
        assert!(l.allow("address:a@b.id", 3));
    }

    #[test]
    fn the_client_is_the_peer_unless_a_local_proxy_forwards() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "203.0.113.9, 10.0.0.1".parse().unwrap());
        let local: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let remote: SocketAddr = "198.51.100.7:5000".parse().unwrap();
        assert_eq!(
            client_ip(&h, Some(local)),
            Some("203.0.113.9".parse().unwrap())
        );
        // A client that is not a local proxy cannot pick its own address.
        assert_eq!(client_ip(&h, Some(remote)), Some(remote.ip()));
        assert_eq!(client_ip(&HeaderMap::new(), Some(local)), Some(local.ip()));
    }
}
