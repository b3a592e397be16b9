//! The HTTP surface: the authenticated API under `/api/v1`, its OpenAPI document, and the
//! health endpoints. Every error is `{"error": {"code", "message"}}` with the right status.

mod backup;
mod deliveries;
mod health;
mod lists;
mod metrics;
mod openapi;
mod releases;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

use crate::app::{App, IngestError};
use siar_ingest::ParseError;
use siar_store::StoreError;

/// The whole HTTP application.
pub fn router(app: Arc<App>) -> Router {
    // Releases may carry photos and audio: the create route takes bodies up to the upload
    // limits; everything else keeps `server.body_limit`.
    let upload_limit = app.config.server.body_limit
        + app
            .config
            .media
            .max_bytes
            .saturating_mul(app.config.media.max_files)
        + 64 * 1024;
    let api = Router::new()
        .route(
            "/releases",
            post(releases::create)
                .layer(axum::extract::DefaultBodyLimit::max(upload_limit))
                .get(releases::list),
        )
        .route("/releases/{id}", get(releases::show))
        .route("/releases/{id}/versions", get(releases::versions))
        .route("/releases/{id}/versions/{n}", get(releases::version))
        .route("/releases/{id}/corrections", post(releases::correct))
        .route("/releases/{id}/retraction", post(releases::retract))
        .route("/releases/{id}/deliveries", get(deliveries::for_release))
        .route("/deliveries", get(deliveries::list))
        .route("/deliveries/{id}/retry", post(deliveries::retry))
        .route("/deliveries/{id}/attempts", get(deliveries::attempts))
        .route("/deliveries/recover", post(deliveries::recover))
        .route("/partners", get(deliveries::partners))
        .route("/partners/{id}/enable", post(deliveries::enable_partner))
        .route("/audit", get(releases::audit))
        .route("/lists", get(lists::lists))
        .route(
            "/lists/{id}/subscribers",
            get(lists::subscribers)
                .post(lists::import)
                .layer(axum::extract::DefaultBodyLimit::max(4 * 1024 * 1024)),
        )
        .route("/deliveries/{id}/recipients", get(lists::recipients))
        .route("/bounces", post(lists::bounce))
        .route("/store/export", get(backup::export))
        .fallback(|| async { ApiError::not_found("no such API route") })
        .layer(axum::extract::DefaultBodyLimit::max(
            app.config.server.body_limit,
        ))
        .layer(middleware::from_fn_with_state(app.clone(), require_token))
        .layer(middleware::map_response(json_errors));
    // Request ids and request tracing for the API; the public routes (feeds, pages, media)
    // stay lean: a feed poll is answered from memory and should cost nothing more.
    Router::new()
        .nest("/api/v1", api)
        .route("/api/openapi.json", get(openapi::document))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::metrics))
        .layer(
            tower::ServiceBuilder::new()
                .layer(tower_http::request_id::SetRequestIdLayer::x_request_id(
                    tower_http::request_id::MakeRequestUuid,
                ))
                .layer(tower_http::trace::TraceLayer::new_for_http())
                .layer(tower_http::request_id::PropagateRequestIdLayer::x_request_id()),
        )
        .merge(crate::web::router())
        .with_state(app)
}

/// The error body every failing API call returns.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable name, e.g. `invalid_release`, `not_found`.
    code: String,
    /// What went wrong, for a person.
    message: String,
    /// For input errors: the 1-based line of the input at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<usize>,
}

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    line: Option<usize>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            line: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, code = self.code, message = %self.message, "Request failed.");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
                line: self.line,
            },
        };
        let mut resp = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"siar\""),
            );
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let (status, code) = match &e {
            StoreError::ReleaseNotFound(_) | StoreError::DeliveryNotFound(_) => {
                (StatusCode::NOT_FOUND, "not_found")
            }
            StoreError::Conflict(_) | StoreError::LeaseLost(_) => {
                (StatusCode::CONFLICT, "conflict")
            }
            StoreError::Storage { .. } => (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable"),
            StoreError::Corrupt { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "storage_corrupt"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<ParseError> for ApiError {
    fn from(e: ParseError) -> Self {
        let status = match e {
            ParseError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        let mut err = ApiError::new(status, e.code(), e.to_string());
        err.line = e.line();
        err
    }
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::Parse(p) => p.into(),
            IngestError::Store(s) => s.into(),
            IngestError::Media(m) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_media", m)
            }
        }
    }
}

/// Gives the errors axum itself produces (a malformed query or path, a wrong method) the one
/// JSON error shape the API promises.
async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let text = match axum::body::to_bytes(resp.into_body(), 16 * 1024).await {
        Ok(b) => String::from_utf8_lossy(&b).trim().to_owned(),
        Err(_) => String::new(),
    };
    let code = match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_request",
        s if s.is_server_error() => "internal_error",
        _ => "error",
    };
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    ApiError::new(status, code, message).into_response()
}

/// Bearer-token check for every `/api/v1` route. Both sides are hashed before a
/// constant-time comparison, so neither content nor length leaks through timing.
async fn require_token(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let Some(expected) = app.token.as_deref() else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "api_disabled",
            format!(
                "no API token is configured: set the environment variable {}",
                app.config.api.token_env
            ),
        )
        .into_response();
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let ok = given.is_some_and(|g| {
        let a = Sha256::digest(g.as_bytes());
        let b = Sha256::digest(expected.as_bytes());
        bool::from(a.ct_eq(&b))
    });
    if !ok {
        let msg = if given.is_none() {
            "this route needs `Authorization: Bearer <token>`"
        } else {
            "the bearer token is not valid"
        };
        return ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", msg).into_response();
    }
    next.run(req).await
}
