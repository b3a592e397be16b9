//! `/media/{name}`: uploaded photos and audio. Names are content hashes, so a file never
//! changes and may be cached for a year.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::app::App;

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("jpg") => "image/jpeg",
        Some("png") => "image/png",
        Some("webp") => "image/webp",
        Some("gif") => "image/gif",
        Some("mp3") => "audio/mpeg",
        Some("ogg") => "audio/ogg",
        Some("m4a") => "audio/mp4",
        Some("wav") => "audio/wav",
        Some("pdf") => "application/pdf",
        _ => "application/octet-stream",
    }
}

pub async fn file(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(path) = app.media().path(&name) else {
        return (StatusCode::NOT_FOUND, "Berkas tidak ditemukan.\n").into_response();
    };
    let etag = format!("\"{}\"", name.split('.').next().unwrap_or_default());
    let fixed = [
        (header::ETAG, etag.clone()),
        (
            header::CACHE_CONTROL,
            "public, max-age=31536000, immutable".to_owned(),
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
    ];
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if matches {
        return (StatusCode::NOT_MODIFIED, fixed).into_response();
    }
    match tokio::fs::read(&path).await {
        Ok(bytes) => (
            StatusCode::OK,
            fixed,
            [(header::CONTENT_TYPE, content_type(&name))],
            bytes,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(file = %name, error = %e, "Could not read a stored media file.");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Berkas tidak dapat dibaca.\n",
            )
                .into_response()
        }
    }
}
