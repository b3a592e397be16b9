//! `/api/v1/…/deliveries`: what the outbox holds, and replaying a delivery.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::{Deserialize, Serialize};
use siar_model::{Delivery, DeliveryId, DeliveryStatus};
use utoipa::{IntoParams, ToSchema};

use super::ApiError;
use crate::app::App;

#[derive(Serialize, ToSchema)]
pub struct DeliveryList {
    items: Vec<Delivery>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryParams {
    /// pending, in_flight, delivered, failed or superseded (default failed).
    status: Option<String>,
    /// Page size, 1–1000 (default 100).
    limit: Option<usize>,
    /// The last id of the previous page.
    after: Option<String>,
    /// Only this partner's deliveries.
    partner: Option<String>,
    /// Only deliveries changed since then: RFC 3339, or local `YYYY-MM-DD HH:MM`.
    since: Option<String>,
}

fn parse_since(
    app: &App,
    since: Option<&str>,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
    since
        .filter(|s| !s.trim().is_empty())
        .map(|w| siar_ingest::parse_when(w, app.config.timezone()))
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("since: {e}")))
}

fn matches(
    d: &Delivery,
    partner: Option<&str>,
    since: Option<chrono::DateTime<chrono::Utc>>,
) -> bool {
    partner.is_none_or(|p| d.target == siar_model::Target::Partner(p.to_owned()))
        && since.is_none_or(|t| d.updated_at >= t)
}

/// Every delivery of one release, oldest first.
#[utoipa::path(
    get, path = "/api/v1/releases/{id}/deliveries", tag = "deliveries",
    params(("id" = String, Path, description = "Release id or slug")),
    responses((status = 200, body = DeliveryList), (status = 404, body = super::ErrorBody), (status = 401, body = super::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn for_release(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Json<DeliveryList>, ApiError> {
    let r = match id.parse() {
        Ok(rid) => app.store.release(rid)?,
        Err(_) => app.store.release_by_slug(&id)?,
    }
    .ok_or_else(|| {
        ApiError::not_found(format!(
            "no release `{}`",
            id.chars().take(80).collect::<String>()
        ))
    })?;
    Ok(Json(DeliveryList {
        items: app.store.deliveries_for_release(r.id)?,
    }))
}

/// Deliveries with one status, oldest first.
#[utoipa::path(
    get, path = "/api/v1/deliveries", tag = "deliveries", params(DeliveryParams),
    responses((status = 200, body = DeliveryList), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn list(
    State(app): State<Arc<App>>,
    Query(p): Query<DeliveryParams>,
) -> Result<Json<DeliveryList>, ApiError> {
    let status: DeliveryStatus = p
        .status
        .as_deref()
        .unwrap_or("failed")
        .parse()
        .map_err(ApiError::bad_request)?;
    let limit = p.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit must be between 1 and 1000"));
    }
    let after = p
        .after
        .as_deref()
        .map(str::parse::<DeliveryId>)
        .transpose()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let since = parse_since(&app, p.since.as_deref())?;
    let partner = p.partner.as_deref();
    Ok(Json(DeliveryList {
        items: app
            .store
            .deliveries_where(status, limit, after, &|d| matches(d, partner, since))?,
    }))
}

#[derive(Deserialize, ToSchema)]
pub struct RecoverRequest {
    /// The partner whose deliveries to queue again.
    partner: String,
    /// Deliveries that failed since then: RFC 3339, or local `YYYY-MM-DD HH:MM`.
    since: String,
}

#[derive(Serialize, ToSchema)]
pub struct Recovered {
    /// How many deliveries were queued again.
    count: usize,
    items: Vec<Delivery>,
}

/// Queue again every delivery to a partner that failed since a time (after an outage).
#[utoipa::path(
    post, path = "/api/v1/deliveries/recover", tag = "deliveries", request_body = RecoverRequest,
    responses((status = 200, body = Recovered), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn recover(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Json(req): Json<RecoverRequest>,
) -> Result<Json<Recovered>, ApiError> {
    let since = parse_since(&app, Some(&req.since))?
        .ok_or_else(|| ApiError::bad_request("since is required"))?;
    if !app.config.partners.iter().any(|p| p.id == req.partner) {
        return Err(ApiError::bad_request(format!(
            "no partner `{}` in the configuration",
            req.partner.chars().take(80).collect::<String>()
        )));
    }
    let actor = match headers.get("siar-source").and_then(|v| v.to_str().ok()) {
        Some("cli") => "cli",
        _ => "api",
    };
    let failed = app
        .store
        .deliveries_where(DeliveryStatus::Failed, usize::MAX, None, &|d| {
            matches(d, Some(&req.partner), Some(since))
        })?;
    let now = app.clock.now();
    let mut items = Vec::new();
    for d in failed {
        items.push(app.store.retry_delivery(d.id, actor, now)?);
    }
    app.store.flush().await?;
    app.deliveries_changed.notify_waiters();
    tracing::info!(partner = %req.partner, %since, count = items.len(), actor, "Failed deliveries queued again.");
    Ok(Json(Recovered {
        count: items.len(),
        items,
    }))
}

/// Replay a delivery now (failed, delivered or superseded; a pending one is brought forward).
#[utoipa::path(
    post, path = "/api/v1/deliveries/{id}/retry", tag = "deliveries",
    params(("id" = String, Path, description = "Delivery id")),
    responses((status = 200, body = Delivery), (status = 404, body = super::ErrorBody), (status = 409, body = super::ErrorBody), (status = 401, body = super::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn retry(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Delivery>, ApiError> {
    let id: DeliveryId = id.parse().map_err(|_| {
        ApiError::not_found(format!(
            "no delivery `{}`",
            id.chars().take(80).collect::<String>()
        ))
    })?;
    let actor = match headers.get("siar-source").and_then(|v| v.to_str().ok()) {
        Some("cli") => "cli",
        _ => "api",
    };
    Ok(Json(app.retry_delivery(id, actor).await?))
}

#[derive(Serialize, ToSchema)]
pub struct AttemptList {
    items: Vec<siar_model::Attempt>,
}

/// A delivery's attempt log: time, status, duration, the first 4 KiB of the answer, and the
/// error class.
#[utoipa::path(
    get, path = "/api/v1/deliveries/{id}/attempts", tag = "deliveries",
    params(("id" = String, Path, description = "Delivery id")),
    responses((status = 200, body = AttemptList), (status = 404, body = super::ErrorBody), (status = 401, body = super::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn attempts(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Json<AttemptList>, ApiError> {
    let not_found = || {
        ApiError::not_found(format!(
            "no delivery `{}`",
            id.chars().take(80).collect::<String>()
        ))
    };
    let did: DeliveryId = id.parse().map_err(|_| not_found())?;
    if app.store.delivery(did)?.is_none() {
        return Err(not_found());
    }
    Ok(Json(AttemptList {
        items: app.store.attempts(did)?,
    }))
}

/// Enables a partner that was disabled (by a 410 or by days of failures); its waiting
/// deliveries go out again.
#[utoipa::path(
    post, path = "/api/v1/partners/{id}/enable", tag = "deliveries",
    params(("id" = String, Path, description = "Partner id")),
    responses((status = 204), (status = 404, body = super::ErrorBody), (status = 401, body = super::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn enable_partner(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<axum::http::StatusCode, ApiError> {
    if !app.enable_partner(&id).await? {
        return Err(ApiError::not_found(format!(
            "no enabled partner `{}` in the configuration",
            id.chars().take(80).collect::<String>()
        )));
    }
    Ok(axum::http::StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct PartnerList {
    items: Vec<crate::deliver::PartnerStatus>,
}

/// Every enabled partner in the configuration: disabled or not, its breaker, its queue.
#[utoipa::path(
    get, path = "/api/v1/partners", tag = "deliveries",
    responses((status = 200, body = PartnerList), (status = 401, body = super::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn partners(State(app): State<Arc<App>>) -> Result<Json<PartnerList>, ApiError> {
    let items = match app.webhooks.get() {
        Some(engine) => engine.status(&app)?,
        None => Vec::new(),
    };
    Ok(Json(PartnerList { items }))
}
