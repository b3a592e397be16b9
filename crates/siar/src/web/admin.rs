//! `/admin`: the operator page, in Bahasa Indonesia. What is queued, what went out and what
//! failed, per release and per partner or list; failing and disabled partners; buttons to send
//! a failed delivery again and to re-enable a partner.
//!
//! It works without JavaScript. An operator signs in with the API token through a form and
//! gets a session cookie (HttpOnly, SameSite=Strict, 12 hours, signed with a key derived from
//! the token, so changing the token ends every session); `Authorization: Bearer` works too,
//! for scripts. Every form that changes something carries a CSRF field bound to the session.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use maud::{html, Markup, PreEscaped, DOCTYPE};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use siar_model::{Delivery, DeliveryId, DeliveryStatus, Queue};
use subtle::ConstantTimeEq;

use crate::app::App;

const COOKIE: &str = "siar_admin";
const SESSION_HOURS: i64 = 12;

const STYLE: &str = "
body{font:15px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;color:#1b1b1b}
header,main{max-width:72rem;margin:0 auto;padding:0 1rem}
header{border-bottom:3px solid #0b5394;display:flex;justify-content:space-between;align-items:center}
table{border-collapse:collapse;width:100%;margin:.5rem 0 1.5rem}
th,td{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f6fa}
.gagal,.nonaktif{color:#990000;font-weight:600}
.pesan{background:#eef7ee;border-left:4px solid #2e7d32;padding:.4rem .8rem}
.galat{background:#fff0f0;border-left:4px solid #990000;padding:.4rem .8rem}
form.inline{display:inline}
button{font:inherit;padding:.2rem .7rem;cursor:pointer}
code{font-size:.85rem}
";

type HmacSha256 = Hmac<Sha256>;

/// The session signing key: derived from the API token, never the token itself.
fn key(app: &App) -> Option<[u8; 32]> {
    let token = app.token.as_deref()?;
    Some(Sha256::digest(format!("siar admin session\0{token}").as_bytes()).into())
}

fn sign(key: &[u8; 32], what: &str) -> String {
    // A 32-byte key is always a valid HMAC key.
    let mut mac = HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(what.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn same(a: &str, b: &str) -> bool {
    bool::from(
        Sha256::digest(a.as_bytes())
            .as_slice()
            .ct_eq(Sha256::digest(b.as_bytes()).as_slice()),
    )
}

fn new_session(key: &[u8; 32], now: DateTime<Utc>) -> String {
    let until = (now + chrono::Duration::hours(SESSION_HOURS)).timestamp();
    let nonce = ulid::Ulid::new();
    format!(
        "{until}.{nonce}.{}",
        sign(key, &format!("session:{until}.{nonce}"))
    )
}

fn valid_session(key: &[u8; 32], value: &str, now: DateTime<Utc>) -> bool {
    let mut parts = value.splitn(3, '.');
    let (Some(until), Some(nonce), Some(sig)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let Ok(until_secs) = until.parse::<i64>() else {
        return false;
    };
    until_secs > now.timestamp() && same(sig, &sign(key, &format!("session:{until}.{nonce}")))
}

fn csrf_for(key: &[u8; 32], session: &str) -> String {
    sign(key, &format!("csrf:{session}"))
}

fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(n, _)| *n == COOKIE)
        .map(|(_, v)| v.to_owned())
}

/// Who is asking: a signed-in session (with the CSRF value its forms carry), or a script with
/// the bearer token (no cookie, so no CSRF to fear).
enum Caller {
    Session { csrf: String },
    Bearer,
}

fn caller(app: &App, headers: &HeaderMap) -> Option<Caller> {
    let key = key(app)?;
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    if let (Some(given), Some(token)) = (bearer, app.token.as_deref()) {
        return same(given, token).then_some(Caller::Bearer);
    }
    let session = cookie(headers)?;
    valid_session(&key, &session, app.clock.now()).then(|| Caller::Session {
        csrf: csrf_for(&key, &session),
    })
}

fn frame(title: &str, signed_in: bool, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="id" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="robots" content="noindex";
                title { (title) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    h1 { (title) }
                    @if signed_in {
                        form.inline method="post" action="/admin/logout" {
                            button type="submit" { "Keluar" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

fn respond(status: StatusCode, markup: Markup) -> Response {
    let mut resp = (status, markup.into_string()).into_response();
    let h = resp.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    resp
}

fn login_page(app: &App, error: Option<&str>) -> Response {
    let body = html! {
        @if app.token.is_none() {
            p.galat { "Token API belum diatur: halaman operator tidak dapat dibuka." }
        }
        @if let Some(e) = error { p.galat role="alert" { (e) } }
        form method="post" action="/admin/login" {
            p {
                label for="token" { "Token API" } br;
                input #token type="password" name="token" autocomplete="current-password" required;
            }
            button type="submit" { "Masuk" }
        }
    };
    respond(
        StatusCode::UNAUTHORIZED,
        frame("Masuk ke panel operator siar", false, body),
    )
}

#[derive(Deserialize)]
pub struct Login {
    #[serde(default)]
    token: String,
}

/// `POST /admin/login`.
pub async fn login(State(app): State<Arc<App>>, Form(f): Form<Login>) -> Response {
    let (Some(token), Some(key)) = (app.token.as_deref(), key(&app)) else {
        return login_page(&app, None);
    };
    if !same(f.token.trim(), token) {
        tracing::warn!("Admin sign-in refused: wrong token.");
        return login_page(&app, Some("Token salah."));
    }
    let session = new_session(&key, app.clock.now());
    let secure = if app.config.server.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let set = format!(
        "{COOKIE}={session}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        SESSION_HOURS * 3600
    );
    tracing::info!("Operator signed in to /admin.");
    let mut resp = Redirect::to("/admin").into_response();
    if let Ok(v) = HeaderValue::from_str(&set) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// `POST /admin/logout`.
pub async fn logout() -> Response {
    let mut resp = Redirect::to("/admin").into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("siar_admin=; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    resp
}

#[derive(Deserialize)]
pub struct Notice {
    pesan: Option<String>,
}

/// Messages after an action, by a fixed name: nothing from the query string is echoed.
fn notice(name: &str) -> Option<(&'static str, bool)> {
    Some(match name {
        "dikirim-ulang" => (
            "Pengiriman dijadwalkan ulang dan akan segera dikirim.",
            true,
        ),
        "diaktifkan" => ("Mitra diaktifkan kembali.", true),
        "tidak-ditemukan" => ("Tidak ditemukan: mungkin sudah berubah.", false),
        "gagal" => ("Tindakan gagal; lihat log siar.", false),
        "csrf" => (
            "Formulir kedaluwarsa; muat ulang halaman dan coba lagi.",
            false,
        ),
        _ => return None,
    })
}

fn when(app: &App, t: DateTime<Utc>) -> String {
    t.with_timezone(&app.config.timezone())
        .format("%d-%m-%Y %H:%M WITA")
        .to_string()
}

fn status_word(s: DeliveryStatus) -> &'static str {
    match s {
        DeliveryStatus::Pending => "menunggu",
        DeliveryStatus::InFlight => "sedang dikirim",
        DeliveryStatus::Delivered => "terkirim",
        DeliveryStatus::Failed => "gagal",
        DeliveryStatus::Superseded => "digantikan",
    }
}

fn retry_button(d: &Delivery, csrf: &str) -> Markup {
    html! {
        form.inline method="post" action={ "/admin/deliveries/" (d.id) "/retry" } {
            input type="hidden" name="csrf" value=(csrf);
            button type="submit" aria-label={ "Kirim ulang ke " (d.target) } { "Kirim ulang" }
        }
    }
}

/// `GET /admin`.
pub async fn page(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<Notice>,
) -> Response {
    let Some(who) = caller(&app, &headers) else {
        return login_page(&app, None);
    };
    let csrf = match &who {
        Caller::Session { csrf } => csrf.clone(),
        Caller::Bearer => String::new(),
    };
    let worker = app.clone();
    let body = tokio::task::spawn_blocking(move || dashboard(&worker, &csrf)).await;
    let body = match body {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "The operator page could not read the store.");
            html! { p.galat { "Penyimpanan tidak dapat dibaca: " (e) } }
        }
        Err(e) => html! { p.galat { "Halaman gagal disusun: " (e) } },
    };
    let note = q.pesan.as_deref().and_then(notice);
    respond(
        StatusCode::OK,
        frame(
            "Panel operator siar",
            matches!(who, Caller::Session { .. }),
            html! {
                @if let Some((text, ok)) = note {
                    p class=(if ok { "pesan" } else { "galat" }) role="status" { (text) }
                }
                (body)
            },
        ),
    )
}

fn dashboard(app: &App, csrf: &str) -> siar_store::Result<Markup> {
    let now = app.clock.now();
    let queues = [
        (Queue::Webhook, "Webhook mitra"),
        (Queue::List, "Daftar surel (pengiriman ke daftar)"),
        (Queue::Email, "Surel satuan"),
    ]
    .into_iter()
    .map(|(q, name)| Ok((name, app.store.queue_stats(q, now)?)))
    .collect::<siar_store::Result<Vec<_>>>()?;
    let partners = match app.webhooks.get() {
        Some(engine) => engine.status(app)?,
        None => Vec::new(),
    };
    let mut lists = Vec::new();
    for l in &app.config.lists {
        lists.push((l, app.store.subscriber_counts(&l.id)?));
    }
    let recent = app.store.list(&Default::default(), 15, None)?.items;
    let mut per_release = Vec::new();
    for r in &recent {
        let mut by_target: std::collections::BTreeMap<String, Vec<Delivery>> = Default::default();
        for d in app.store.deliveries_for_release(r.id)? {
            by_target.entry(d.target.to_string()).or_default().push(d);
        }
        per_release.push((r, by_target));
    }
    let failed = app
        .store
        .deliveries_with_status(DeliveryStatus::Failed, 100, None)?;
    Ok(html! {
        section aria-labelledby="antrean" {
            h2 #antrean { "Antrean" }
            table {
                thead { tr { th { "Saluran" } th { "Menunggu" } th { "Jatuh tempo sekarang" } th { "Tertua jatuh tempo" } } }
                tbody {
                    @for (name, s) in &queues {
                        tr {
                            td { (name) }
                            td { (s.depth) }
                            td { (s.due_now) }
                            td { @if let Some(t) = s.oldest_due { (when(app, t)) } @else { "—" } }
                        }
                    }
                }
            }
        }
        section aria-labelledby="mitra" {
            h2 #mitra { "Mitra" }
            @if partners.is_empty() { p { "Tidak ada mitra di konfigurasi." } }
            @else {
                table {
                    thead { tr { th { "Mitra" } th { "Status" } th { "Pemutus" } th { "Gagal berturut-turut" } th { "Antrean" } th { "Berikutnya" } th { "" } } }
                    tbody {
                        @for p in &partners {
                            tr {
                                td { strong { (p.name) } br; code { (p.id) } }
                                td {
                                    @if let Some(d) = &p.disabled {
                                        span.nonaktif { "Nonaktif" } " sejak " (when(app, d.at)) br; (d.reason)
                                    } @else if p.consecutive_failures > 0 {
                                        span.gagal { "Bermasalah" }
                                        @if let Some(t) = p.failing_since { " sejak " (when(app, t)) }
                                    } @else { "Aktif" }
                                }
                                td { (match p.breaker.as_str() { "open" => "terbuka (jeda)", "half_open" => "setengah terbuka", _ => "tertutup" }) }
                                td { (p.consecutive_failures) }
                                td { (p.queued) }
                                td { @if let Some(t) = p.next_due { (when(app, t)) } @else { "—" } }
                                td {
                                    @if p.disabled.is_some() {
                                        form.inline method="post" action={ "/admin/partners/" (p.id) "/enable" } {
                                            input type="hidden" name="csrf" value=(csrf);
                                            button type="submit" aria-label={ "Aktifkan kembali " (p.name) } { "Aktifkan kembali" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="daftar" {
            h2 #daftar { "Daftar surel" }
            @if lists.is_empty() { p { "Tidak ada daftar surel di konfigurasi." } }
            @else {
                table {
                    thead { tr { th { "Daftar" } th { "Mode" } th { "Terkonfirmasi" } th { "Menunggu konfirmasi" } th { "Berhenti" } } }
                    tbody {
                        @for (l, counts) in &lists {
                            tr {
                                td { strong { (l.name) } br; code { (l.id) } }
                                td { (if l.mode == "instant" { "segera" } else { l.mode.as_str() }) }
                                td { (counts.get("confirmed").copied().unwrap_or(0)) }
                                td { (counts.get("pending").copied().unwrap_or(0)) }
                                td { (counts.get("unsubscribed").copied().unwrap_or(0)) }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="gagal" {
            h2 #gagal { "Pengiriman gagal" }
            @if failed.is_empty() { p { "Tidak ada pengiriman yang gagal." } }
            @else {
                table {
                    thead { tr { th { "Tujuan" } th { "Rilis" } th { "Percobaan" } th { "Galat terakhir" } th { "" } } }
                    tbody {
                        @for d in &failed {
                            tr {
                                td { code { (d.target) } }
                                td { code { (d.release_id) } " v" (d.version) }
                                td { (d.attempts) }
                                td { (d.last_error.as_deref().unwrap_or("")) }
                                td { (retry_button(d, csrf)) }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="rilis" {
            h2 #rilis { "Rilis terbaru" }
            @if per_release.is_empty() { p { "Belum ada rilis." } }
            @for (r, by_target) in &per_release {
                h3 { (r.content.title) }
                p { code { (r.id) } " · versi " (r.version) " · " (when(app, r.publish_at)) }
                @if by_target.is_empty() { p { "Tidak ada tujuan." } }
                @else {
                    table {
                        thead { tr { th { "Tujuan" } th { "Terkirim" } th { "Menunggu" } th { "Gagal" } th { "Status terakhir" } th { "" } } }
                        tbody {
                            @for (target, ds) in by_target {
                                @let count = |f: &dyn Fn(DeliveryStatus) -> bool| ds.iter().filter(|d| f(d.status)).count();
                                @let last = ds.iter().max_by_key(|d| (d.version, d.updated_at));
                                tr {
                                    td { code { (target) } }
                                    td { (count(&|s| s == DeliveryStatus::Delivered)) }
                                    td { (count(&|s| matches!(s, DeliveryStatus::Pending | DeliveryStatus::InFlight))) }
                                    td class=(if count(&|s| s == DeliveryStatus::Failed) > 0 { "gagal" } else { "" }) {
                                        (count(&|s| s == DeliveryStatus::Failed))
                                    }
                                    td { @if let Some(d) = last { (status_word(d.status)) } }
                                    td {
                                        @for d in ds.iter().filter(|d| d.status == DeliveryStatus::Failed) {
                                            (retry_button(d, csrf))
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    })
}

#[derive(Deserialize)]
pub struct Action {
    #[serde(default)]
    csrf: String,
}

/// Checks who posts and their CSRF field: `Some` is the answer to give instead.
fn refusal(app: &App, headers: &HeaderMap, form: &Action) -> Option<Response> {
    match caller(app, headers) {
        None => Some(login_page(app, Some("Sesi berakhir; silakan masuk lagi."))),
        Some(Caller::Bearer) => None,
        Some(Caller::Session { csrf }) if same(&form.csrf, &csrf) => None,
        Some(Caller::Session { .. }) => {
            tracing::warn!("Admin action refused: missing or wrong CSRF field.");
            Some(Redirect::to("/admin?pesan=csrf").into_response())
        }
    }
}

/// `POST /admin/deliveries/{id}/retry`.
pub async fn retry(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<Action>,
) -> Response {
    if let Some(r) = refusal(&app, &headers, &form) {
        return r;
    }
    let Ok(id) = id.parse::<DeliveryId>() else {
        return Redirect::to("/admin?pesan=tidak-ditemukan").into_response();
    };
    let outcome = match app.retry_delivery(id, "admin").await {
        Ok(_) => "dikirim-ulang",
        Err(siar_store::StoreError::DeliveryNotFound(_) | siar_store::StoreError::Conflict(_)) => {
            "tidak-ditemukan"
        }
        Err(e) => {
            tracing::error!(delivery = %id, error = %e, "Could not retry a delivery from /admin.");
            "gagal"
        }
    };
    Redirect::to(&format!("/admin?pesan={outcome}")).into_response()
}

/// `POST /admin/partners/{id}/enable`.
pub async fn enable(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<Action>,
) -> Response {
    if let Some(r) = refusal(&app, &headers, &form) {
        return r;
    }
    let outcome = match app.enable_partner(&id).await {
        Ok(true) => "diaktifkan",
        Ok(false) => "tidak-ditemukan",
        Err(e) => {
            tracing::error!(partner = %id, error = %e, "Could not enable a partner from /admin.");
            "gagal"
        }
    };
    Redirect::to(&format!("/admin?pesan={outcome}")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_and_cannot_be_forged() {
        let key = [7u8; 32];
        let now = Utc::now();
        let s = new_session(&key, now);
        assert!(valid_session(&key, &s, now));
        assert!(!valid_session(&key, &s, now + chrono::Duration::hours(13)));
        assert!(!valid_session(&[8u8; 32], &s, now), "another token's key");
        let (until, rest) = s.split_once('.').unwrap();
        let later = until.parse::<i64>().unwrap() + 86_400;
        assert!(
            !valid_session(&key, &format!("{later}.{rest}"), now),
            "extended"
        );
        assert!(!valid_session(&key, "", now));
        assert_ne!(csrf_for(&key, &s), csrf_for(&key, &new_session(&key, now)));
    }
}
