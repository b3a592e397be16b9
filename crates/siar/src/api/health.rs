//! `/healthz` (the process answers) and `/readyz` (it can do its job).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::App;

#[derive(Serialize, ToSchema)]
pub struct Health {
    status: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    problems: Vec<String>,
}

/// Liveness: 200 while the process serves HTTP.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok",
        problems: Vec::new(),
    })
}

/// Readiness: 200 when the store takes writes and the scheduler runs; 503 otherwise.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn readyz(State(app): State<Arc<App>>) -> (StatusCode, Json<Health>) {
    let mut problems = Vec::new();
    let store = app.store.clone();
    match tokio::task::spawn_blocking(move || store.check_writable()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => problems.push(format!("store: {e}")),
        Err(e) => problems.push(format!("store check did not finish: {e}")),
    }
    if !app.is_scheduler_running() {
        problems.push("scheduler: not running".into());
    }
    if problems.is_empty() {
        (
            StatusCode::OK,
            Json(Health {
                status: "ready",
                problems,
            }),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "not_ready",
                problems,
            }),
        )
    }
}
