//! `/api/v1/lists…` and `/api/v1/bounces`: mailing lists, their subscribers (import and
//! export), how a mailing went, and bounce reports from the relay.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use siar_model::{DeliveryId, Subscriber};
use siar_store::ImportRow;
use utoipa::{IntoParams, ToSchema};

use super::ApiError;
use crate::app::App;

/// Most addresses one import request may carry.
const IMPORT_MAX: usize = 10_000;

#[derive(Serialize, ToSchema)]
pub struct ListSummary {
    id: String,
    name: String,
    description: String,
    /// `instant` or the digest's cron expression.
    mode: String,
    /// Subscribers by status.
    subscribers: BTreeMap<String, u64>,
}

#[derive(Serialize, ToSchema)]
pub struct ListList {
    items: Vec<ListSummary>,
}

fn known_list(app: &App, id: &str) -> Result<(), ApiError> {
    if app.config.lists.iter().any(|l| l.id == id) {
        Ok(())
    } else {
        Err(ApiError::not_found(format!(
            "no list `{}`",
            id.chars().take(60).collect::<String>()
        )))
    }
}

/// Every configured list with its subscriber counts.
#[utoipa::path(
    get, path = "/api/v1/lists", tag = "lists",
    responses((status = 200, body = ListList), (status = 401, body = super::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn lists(State(app): State<Arc<App>>) -> Result<Json<ListList>, ApiError> {
    let mut items = Vec::new();
    for l in &app.config.lists {
        items.push(ListSummary {
            id: l.id.clone(),
            name: l.name.clone(),
            description: l.description.clone(),
            mode: l.mode.clone(),
            subscribers: app.store.subscriber_counts(&l.id)?,
        });
    }
    Ok(Json(ListList { items }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SubscriberParams {
    /// The last address of the previous page.
    after: Option<String>,
    /// Page size, 1–10000 (default 1000).
    limit: Option<usize>,
}

#[derive(Serialize, ToSchema)]
pub struct SubscriberPage {
    items: Vec<Subscriber>,
    /// Pass as `after` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

/// A list's subscribers in address order, every status, with their consent trail.
#[utoipa::path(
    get, path = "/api/v1/lists/{id}/subscribers", tag = "lists",
    params(("id" = String, Path, description = "List id"), SubscriberParams),
    responses((status = 200, body = SubscriberPage), (status = 400, body = super::ErrorBody), (status = 404, body = super::ErrorBody), (status = 401, body = super::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn subscribers(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Query(p): Query<SubscriberParams>,
) -> Result<Json<SubscriberPage>, ApiError> {
    known_list(&app, &id)?;
    let limit = p.limit.unwrap_or(1000);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::bad_request("limit must be between 1 and 10000"));
    }
    let items = app.store.subscribers(&id, p.after.as_deref(), limit)?;
    let next = (items.len() == limit)
        .then(|| items.last().map(|s| s.address.clone()))
        .flatten();
    Ok(Json(SubscriberPage { items, next }))
}

#[derive(Deserialize, ToSchema)]
pub struct ImportRequest {
    /// Up to 10,000 addresses.
    addresses: Vec<String>,
    /// Import as already confirmed (no confirmation mail). Needs `source`.
    #[serde(default)]
    confirmed: bool,
    /// On what grounds they are confirmed (kept in each subscriber's consent trail).
    #[serde(default)]
    source: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct InvalidAddress {
    /// 0-based position in `addresses`.
    index: usize,
    error: String,
}

#[derive(Serialize, ToSchema)]
pub struct ImportResult {
    added: u64,
    unchanged: u64,
    suppressed: u64,
    invalid: Vec<InvalidAddress>,
}

/// Adds subscribers: pending (they get nothing until they confirm through the site), or
/// confirmed with a stated source. Never overrides an unsubscribe.
#[utoipa::path(
    post, path = "/api/v1/lists/{id}/subscribers", tag = "lists",
    params(("id" = String, Path, description = "List id")),
    request_body = ImportRequest,
    responses((status = 200, body = ImportResult), (status = 400, body = super::ErrorBody), (status = 404, body = super::ErrorBody), (status = 401, body = super::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn import(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Json(req): Json<ImportRequest>,
) -> Result<Json<ImportResult>, ApiError> {
    known_list(&app, &id)?;
    if req.addresses.len() > IMPORT_MAX {
        return Err(ApiError::bad_request(format!(
            "at most {IMPORT_MAX} addresses per request (got {})",
            req.addresses.len()
        )));
    }
    let source = req
        .source
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    if req.confirmed && source.is_none() {
        return Err(ApiError::bad_request(
            "importing as confirmed needs a source: on what grounds did they consent?",
        ));
    }
    let mut rows = Vec::with_capacity(req.addresses.len());
    let mut invalid = Vec::new();
    for (index, a) in req.addresses.iter().enumerate() {
        match siar_model::normalize_address(a) {
            Ok(address) => rows.push(ImportRow { address }),
            Err(error) => invalid.push(InvalidAddress { index, error }),
        }
    }
    let confirmed: Option<String> = if req.confirmed {
        source.map(str::to_owned)
    } else {
        None
    };
    let store = app.store.clone();
    let now = app.clock.now();
    let list = id.clone();
    let report = tokio::task::spawn_blocking(move || {
        store.import_subscribers(&list, &rows, confirmed.as_deref(), now)
    })
    .await
    .map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("import task: {e}"),
        )
    })??;
    app.store.flush().await?;
    Ok(Json(ImportResult {
        added: report.added,
        unchanged: report.unchanged,
        suppressed: report.suppressed,
        invalid,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct Recipients {
    /// The mailing job (the id of its first list delivery).
    job: String,
    list: String,
    digest: bool,
    /// Recipients made so far, and whether all are.
    rows: u32,
    materialised: bool,
    done: bool,
    pending: u64,
    sent: u64,
    bounced: u64,
    failed: u64,
    skipped: u64,
}

/// How a list delivery's mailing stands: recipients by outcome.
#[utoipa::path(
    get, path = "/api/v1/deliveries/{id}/recipients", tag = "lists",
    params(("id" = String, Path, description = "A list delivery id")),
    responses((status = 200, body = Recipients), (status = 400, body = super::ErrorBody), (status = 404, body = super::ErrorBody), (status = 401, body = super::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn recipients(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Json<Recipients>, ApiError> {
    let id: DeliveryId = id
        .parse()
        .map_err(|e: siar_model::IdParseError| ApiError::not_found(format!("no delivery: {e}")))?;
    let job = app
        .store
        .job_of(id)?
        .ok_or_else(|| ApiError::not_found(format!("no mailing for delivery {id} (yet)")))?;
    let c = app.store.row_counts(job.id)?;
    Ok(Json(Recipients {
        job: job.id.to_string(),
        list: job.list,
        digest: job.digest,
        rows: job.rows,
        materialised: job.materialised,
        done: job.done,
        pending: c.pending,
        sent: c.sent,
        bounced: c.bounced,
        failed: c.failed,
        skipped: c.skipped,
    }))
}

#[derive(Deserialize, ToSchema)]
pub struct BounceReport {
    /// The address that bounced…
    #[serde(default)]
    address: Option<String>,
    /// …or the VERP return path the bounce came back to.
    #[serde(default)]
    return_path: Option<String>,
    /// The relay's diagnostic, e.g. `550 5.1.1 user unknown`.
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct BounceResult {
    suppressed: String,
    /// Subscriptions the bounce ended.
    subscriptions_ended: usize,
}

/// A hard bounce reported by the relay: the address is suppressed on every list.
#[utoipa::path(
    post, path = "/api/v1/bounces", tag = "lists",
    request_body = BounceReport,
    responses((status = 200, body = BounceResult), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn bounce(
    State(app): State<Arc<App>>,
    Json(b): Json<BounceReport>,
) -> Result<Json<BounceResult>, ApiError> {
    let address = match (&b.address, &b.return_path) {
        (Some(a), _) => siar_model::normalize_address(a).map_err(ApiError::bad_request)?,
        (None, Some(rp)) => app
            .mail
            .get()
            .and_then(|m| m.verp_recipient(rp))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "return_path is not one of ours (smtp.return_path with {verp})",
                )
            })?,
        (None, None) => {
            return Err(ApiError::bad_request(
                "give the bounced `address` or the `return_path` it came back to",
            ))
        }
    };
    let reason = b
        .reason
        .as_deref()
        .map(|r| r.chars().take(500).collect::<String>())
        .unwrap_or_else(|| "reported by the relay".into());
    let ended = app.store.suppress(
        &address,
        &format!("bounce report: {reason}"),
        app.clock.now(),
    )?;
    app.store.flush().await?;
    tracing::info!(
        subscriptions = ended,
        "A bounce report suppressed an address."
    );
    Ok(Json(BounceResult {
        suppressed: address,
        subscriptions_ended: ended,
    }))
}
