//! `GET /api/v1/store/export`: a consistent backup of the running daemon's store.

use std::io::{Seek, Write};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::ApiError;
use crate::app::App;

/// The store as JSON lines (see `siar store export`). The snapshot is copied to an unnamed
/// file beside the store first, so writers wait only for the copy, never for the client.
#[utoipa::path(
    get, path = "/api/v1/store/export", tag = "store",
    responses(
        (status = 200, description = "The backup: JSON lines, ending with a line that holds the record count and a SHA-256 of the lines before it", content_type = "application/x-ndjson", body = String),
        (status = 401, body = super::ErrorBody),
        (status = 503, body = super::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn export(State(app): State<Arc<App>>) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    let worker = app.clone();
    let (file, summary) = tokio::task::spawn_blocking(move || {
        let unavailable = |e: std::io::Error| {
            ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                format!("cannot write the backup beside the store: {e}"),
            )
        };
        let mut file = tempfile::tempfile_in(&worker.config.store.path).map_err(unavailable)?;
        let summary = {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, &mut file);
            let s = worker.store.export(Some(worker.media()), &mut w)?;
            w.flush().map_err(unavailable)?;
            s
        };
        file.rewind().map_err(unavailable)?;
        Ok::<_, ApiError>((file, summary))
    })
    .await
    .map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the export stopped: {e}"),
        )
    })??;
    tracing::info!(
        records = summary.records,
        media = summary.media,
        ms = started.elapsed().as_millis() as u64,
        "Backup exported."
    );
    let name = format!(
        "siar-backup-{}.jsonl",
        app.clock.now().format("%Y%m%dT%H%M%SZ")
    );
    let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file));
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}
