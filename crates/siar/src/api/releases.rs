//! `/api/v1/releases…`: create, list, show, versions, corrections, retraction, audit.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use siar_ingest::Format;
use siar_model::{AuditEntry, Category, Release, ReleaseId, Source, Version};
use siar_store::ReleaseFilter;
use utoipa::{IntoParams, ToSchema};

use super::ApiError;
use crate::app::{App, Input};

/// Query parameters of a create or correction request.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CreateParams {
    /// When to publish: RFC 3339, or local `YYYY-MM-DD HH:MM` in the publisher's time zone.
    /// Overrides a `publish_at` in the body. Absent: at once.
    publish_at: Option<String>,
    /// Comma-separated categories to add.
    categories: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CorrectionParams {
    /// What this correction changes, for readers ("Koreksi: …").
    note: String,
}

/// A release as JSON input (`application/json`). Either `text` (a whole Kalsel plain-text
/// release) or `title` and `body`. Unknown fields are refused.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct ReleaseInput {
    text: Option<String>,
    title: Option<String>,
    /// Paragraphs, or one string with blank lines between paragraphs.
    body: Option<Vec<String>>,
    body_html: Option<String>,
    captions: Option<Vec<String>>,
    dateline: Option<String>,
    #[schema(format = Date)]
    event_date: Option<String>,
    closing_codes: Option<Vec<String>>,
    source_agency: Option<String>,
    footer: Option<String>,
    categories: Option<Vec<String>>,
    language: Option<String>,
    attachments: Option<Vec<siar_model::Attachment>>,
    publish_at: Option<String>,
}

/// A release with its files (`multipart/form-data`). Attachments in the release may refer to
/// a file as `upload:FILENAME`; files it does not mention are attached as they are.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The release: text/plain, text/markdown or application/json (or a .txt/.md/.json file).
    #[schema(format = Binary)]
    release: String,
    /// Photos and audio: JPEG, PNG, WebP, GIF, MP3, Ogg, M4A, WAV, PDF.
    #[schema(format = Binary)]
    media: Vec<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct RetractionRequest {
    /// Why the release is withdrawn; shown to readers.
    reason: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Page size, 1–500 (default 50).
    limit: Option<usize>,
    /// `next_cursor` from the previous page.
    cursor: Option<String>,
    /// Only this category.
    category: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ReleasePage {
    items: Vec<Release>,
    next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct VersionList {
    items: Vec<Version>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    limit: Option<usize>,
    release: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    items: Vec<AuditEntry>,
}

/// An oversized body is read to its end (up to this much) before the 413 goes out, so the
/// client, still sending, gets the answer instead of a reset connection.
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

/// Reads a request body of at most `limit` bytes (`server.body_limit`).
async fn body(body: Body, limit: usize) -> Result<Vec<u8>, ApiError> {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut buf = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| ApiError::bad_request(format!("could not read the request body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total = total.saturating_add(data.len());
        if total <= limit {
            buf.extend_from_slice(&data);
        } else if total > DRAIN_LIMIT {
            break;
        }
    }
    if total > limit {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request body is over the limit of {limit} bytes (server.body_limit)"),
        ));
    }
    Ok(buf)
}

fn format_of(headers: &HeaderMap) -> Result<Format, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    Format::from_content_type(ct).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "Content-Type `{ct}` is not accepted: use text/plain (Kalsel text), text/markdown or application/json"
            ),
        )
    })
}

fn source_of(headers: &HeaderMap) -> Source {
    match headers.get("siar-source").and_then(|v| v.to_str().ok()) {
        Some("cli") => Source::Cli,
        _ => Source::Api,
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let k = v
        .to_str()
        .map_err(|_| ApiError::bad_request("Idempotency-Key must be visible ASCII"))?
        .trim();
    if k.is_empty() || k.len() > 255 {
        return Err(ApiError::bad_request(
            "Idempotency-Key must be 1 to 255 characters",
        ));
    }
    Ok(Some(k.to_owned()))
}

fn input(
    app: &App,
    headers: &HeaderMap,
    params: &CreateParams,
    bytes: Vec<u8>,
) -> Result<Input, ApiError> {
    let publish_at = params
        .publish_at
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .map(|w| siar_ingest::parse_when(w, app.config.timezone()))
        .transpose()
        .map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_publish_at",
                e.to_string(),
            )
        })?;
    let categories = params
        .categories
        .as_deref()
        .unwrap_or("")
        .split(',')
        .filter(|c| !c.trim().is_empty())
        .map(|c| {
            Category::parse(c).map_err(|e| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_category",
                    e.to_string(),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Input {
        bytes,
        media: Vec::new(),
        format: format_of(headers)?,
        source: source_of(headers),
        idempotency_key: idempotency_key(headers)?,
        publish_at,
        categories,
    })
}

/// The file types accepted as media, as sniffed from their first bytes (never trusting the
/// client's claim), with the extension they are stored under. No SVG: it can carry script.
const MEDIA_TYPES: &[(&str, &str)] = &[
    ("image/jpeg", "jpg"),
    ("image/png", "png"),
    ("image/webp", "webp"),
    ("image/gif", "gif"),
    ("audio/mpeg", "mp3"),
    ("audio/ogg", "ogg"),
    ("audio/m4a", "m4a"),
    ("audio/x-wav", "wav"),
    ("application/pdf", "pdf"),
];

/// Reads one multipart field to its end, refusing more than `limit` bytes.
async fn read_field(
    field: &mut axum::extract::multipart::Field<'_>,
    limit: usize,
    what: &str,
    key: &str,
) -> Result<Vec<u8>, ApiError> {
    let mut buf = Vec::new();
    while let Some(chunk) = field
        .chunk()
        .await
        .map_err(|e| ApiError::bad_request(format!("could not read {what}: {e}")))?
    {
        if buf.len() + chunk.len() > limit {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("{what} is over the limit of {limit} bytes ({key})"),
            ));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// `multipart/form-data`: a `release` part (Kalsel text, Markdown or JSON, by its
/// Content-Type or file name) and any number of `media` parts (photos, audio), stored
/// content-addressed before the release refers to them.
async fn multipart_input(
    app: &App,
    headers: &HeaderMap,
    params: &CreateParams,
    body: Body,
) -> Result<Input, ApiError> {
    use axum::extract::FromRequest;
    let mut req = axum::http::Request::new(body);
    *req.headers_mut() = headers.clone();
    let mut mp = axum::extract::Multipart::from_request(req, &())
        .await
        .map_err(|e| {
            ApiError::bad_request(format!("not a valid multipart body: {}", e.body_text()))
        })?;
    let mut release: Option<(Vec<u8>, Format)> = None;
    let mut media = Vec::new();
    while let Some(mut field) = mp.next_field().await.map_err(|e| {
        ApiError::bad_request(format!("not a valid multipart body: {}", e.body_text()))
    })? {
        let name = field.name().unwrap_or("").to_owned();
        let file_name = field.file_name().map(str::to_owned);
        match name.as_str() {
            "release" => {
                let format = field
                    .content_type()
                    .and_then(Format::from_content_type)
                    .or_else(|| file_name.as_deref().and_then(Format::from_file_name))
                    .ok_or_else(|| {
                        ApiError::new(
                            StatusCode::UNSUPPORTED_MEDIA_TYPE,
                            "unsupported_media_type",
                            "the `release` part must be text/plain, text/markdown or application/json (or a .txt, .md or .json file)",
                        )
                    })?;
                let bytes = read_field(
                    &mut field,
                    app.config.ingest.max_bytes,
                    "the release",
                    "ingest.max_bytes",
                )
                .await?;
                release = Some((bytes, format));
            }
            "media" => {
                let Some(file_name) = file_name.filter(|n| !n.is_empty()) else {
                    return Err(ApiError::bad_request(
                        "every `media` part needs a file name",
                    ));
                };
                if media.len() >= app.config.media.max_files {
                    return Err(ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "too_many_files",
                        format!(
                            "at most {} media files per release (media.max_files)",
                            app.config.media.max_files
                        ),
                    ));
                }
                let what = format!("media file `{file_name}`");
                let bytes = read_field(
                    &mut field,
                    app.config.media.max_bytes,
                    &what,
                    "media.max_bytes",
                )
                .await?;
                let sniffed = infer::get(&bytes).map(|k| k.mime_type());
                let Some(&(mime, ext)) =
                    sniffed.and_then(|m| MEDIA_TYPES.iter().find(|(t, _)| *t == m))
                else {
                    return Err(ApiError::new(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        "unsupported_media_type",
                        format!(
                            "{what} is {}; accepted are JPEG, PNG, WebP, GIF, MP3, Ogg, M4A, WAV and PDF",
                            sniffed.unwrap_or("of an unknown type")
                        ),
                    ));
                };
                let store = app.media().clone();
                let stored = tokio::task::spawn_blocking(move || store.put(&bytes, ext, mime))
                    .await
                    .map_err(|e| {
                        ApiError::new(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "internal_error",
                            e.to_string(),
                        )
                    })?
                    .map_err(|e| {
                        ApiError::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "storage_unavailable",
                            format!("could not store {what}: {e}"),
                        )
                    })?;
                media.push((file_name, stored));
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown part `{other}`: send `release` and any number of `media` parts"
                )))
            }
        }
    }
    let Some((bytes, format)) = release else {
        return Err(ApiError::bad_request(
            "the multipart body has no `release` part",
        ));
    };
    let mut headers = headers.clone();
    headers.insert(
        header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/plain"),
    );
    let mut inp = input(app, &headers, params, bytes)?;
    inp.format = format;
    inp.media = media;
    Ok(inp)
}

/// Finds a release by id, or by slug for convenience.
fn find(app: &App, id: &str) -> Result<Release, ApiError> {
    let r = match id.parse::<ReleaseId>() {
        Ok(rid) => app.store.release(rid)?,
        Err(_) => app.store.release_by_slug(id)?,
    };
    r.ok_or_else(|| {
        ApiError::not_found(format!(
            "no release `{}`",
            id.chars().take(80).collect::<String>()
        ))
    })
}

fn created(r: Release, was_created: bool) -> Response {
    let location = format!("/api/v1/releases/{}", r.id);
    let status = if was_created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (status, [(header::LOCATION, location)], Json(r)).into_response()
}

/// Ingest a release.
///
/// Answers 201 once the release is durably stored (flushed to disk), or 200 with the
/// existing release when the same input (same content, or same `Idempotency-Key`) was sent
/// before.
#[utoipa::path(
    post, path = "/api/v1/releases", tag = "releases",
    params(CreateParams,
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: the same key returns the same release."),
        ("Siar-Source" = Option<String>, Header, description = "`cli` when the siar command line sends it.")),
    request_body(content(
        (String = "text/plain"),
        (String = "text/markdown"),
        (ReleaseInput = "application/json"),
        (UploadForm = "multipart/form-data")
    ), description = "A Kalsel plain-text release, Markdown with YAML front matter, or JSON; or a multipart form with the release and its photos and audio."),
    responses(
        (status = 201, description = "Stored and durable", body = Release),
        (status = 200, description = "Already known: the existing release", body = Release),
        (status = 401, body = super::ErrorBody), (status = 413, body = super::ErrorBody),
        (status = 415, body = super::ErrorBody), (status = 422, body = super::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(params): Query<CreateParams>,
    bytes: Body,
) -> Result<Response, ApiError> {
    let is_multipart = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/form-data")
        });
    let input = if is_multipart {
        multipart_input(&app, &headers, &params, bytes).await?
    } else {
        input(
            &app,
            &headers,
            &params,
            body(bytes, app.config.server.body_limit).await?,
        )?
    };
    let out = app.ingest(input).await?;
    Ok(created(out.release, out.created))
}

/// List releases, newest `publish_at` first, including scheduled ones.
#[utoipa::path(
    get, path = "/api/v1/releases", tag = "releases", params(ListParams),
    responses((status = 200, body = ReleasePage), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn list(
    State(app): State<Arc<App>>,
    Query(p): Query<ListParams>,
) -> Result<Json<ReleasePage>, ApiError> {
    let limit = p.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_request("limit must be between 1 and 500"));
    }
    let category = p
        .category
        .as_deref()
        .map(Category::parse)
        .transpose()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let filter = ReleaseFilter {
        public_at: None,
        category,
    };
    let page = app
        .store
        .list(&filter, limit, p.cursor.as_deref())
        .map_err(|e| match e {
            siar_store::StoreError::Conflict(m) => ApiError::bad_request(m),
            e => e.into(),
        })?;
    Ok(Json(ReleasePage {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
}

/// One release, by id or slug.
#[utoipa::path(
    get, path = "/api/v1/releases/{id}", tag = "releases",
    params(("id" = String, Path, description = "Release id or slug")),
    responses((status = 200, body = Release), (status = 404, body = super::ErrorBody), (status = 401, body = super::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn show(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Json<Release>, ApiError> {
    Ok(Json(find(&app, &id)?))
}

/// Every version of a release, oldest first.
#[utoipa::path(
    get, path = "/api/v1/releases/{id}/versions", tag = "releases",
    params(("id" = String, Path, description = "Release id or slug")),
    responses((status = 200, body = VersionList), (status = 404, body = super::ErrorBody), (status = 401, body = super::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn versions(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Json<VersionList>, ApiError> {
    let r = find(&app, &id)?;
    Ok(Json(VersionList {
        items: app.store.versions(r.id)?,
    }))
}

/// One version of a release.
#[utoipa::path(
    get, path = "/api/v1/releases/{id}/versions/{n}", tag = "releases",
    params(("id" = String, Path, description = "Release id or slug"), ("n" = u32, Path, description = "Version number, from 1")),
    responses((status = 200, body = Version), (status = 404, body = super::ErrorBody), (status = 401, body = super::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn version(
    State(app): State<Arc<App>>,
    Path((id, n)): Path<(String, String)>,
) -> Result<Json<Version>, ApiError> {
    let r = find(&app, &id)?;
    let n: u32 = n
        .parse()
        .map_err(|_| ApiError::not_found(format!("no version `{n}`")))?;
    app.store
        .version(r.id, n)?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("release {} has no version {n}", r.id)))
}

/// Correct a release: a new version with a note. It goes to everyone who received an
/// earlier version, marked as a correction.
#[utoipa::path(
    post, path = "/api/v1/releases/{id}/corrections", tag = "releases",
    params(("id" = String, Path, description = "Release id or slug"), CorrectionParams),
    request_body(content(
        (String = "text/plain"),
        (String = "text/markdown"),
        (ReleaseInput = "application/json")
    ), description = "The corrected release, in any input format."),
    responses(
        (status = 201, description = "New version stored", body = Release),
        (status = 200, description = "Identical to the current version: nothing changed", body = Release),
        (status = 404, body = super::ErrorBody), (status = 409, body = super::ErrorBody),
        (status = 413, body = super::ErrorBody), (status = 415, body = super::ErrorBody),
        (status = 422, body = super::ErrorBody), (status = 401, body = super::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn correct(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(params): Query<CorrectionParams>,
    bytes: Body,
) -> Result<Response, ApiError> {
    let note = siar_model::text::collapse_whitespace(&params.note);
    if note.is_empty() || note.chars().count() > 1000 {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_note",
            "note must be 1 to 1000 characters",
        ));
    }
    let r = find(&app, &id)?;
    let create = CreateParams {
        publish_at: None,
        categories: None,
    };
    let input = input(
        &app,
        &headers,
        &create,
        body(bytes, app.config.server.body_limit).await?,
    )?;
    let out = app.correct(r.id, input, &note).await?;
    Ok(created(out.release, out.created))
}

/// Retract a release. Those who received it are told; the feeds show it withdrawn.
#[utoipa::path(
    post, path = "/api/v1/releases/{id}/retraction", tag = "releases",
    params(("id" = String, Path, description = "Release id or slug")),
    request_body = RetractionRequest,
    responses((status = 200, body = Release), (status = 404, body = super::ErrorBody), (status = 422, body = super::ErrorBody), (status = 401, body = super::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn retract(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Json<RetractionRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Release>, ApiError> {
    let Json(req) = body.map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            e.body_text(),
        )
    })?;
    let reason =
        siar_model::text::collapse_whitespace(&siar_model::text::strip_forbidden(&req.reason).0);
    if reason.is_empty() || reason.chars().count() > 1000 {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_reason",
            "reason must be 1 to 1000 characters",
        ));
    }
    let r = find(&app, &id)?;
    let actor = source_of(&headers).actor();
    Ok(Json(app.retract(r.id, &reason, &actor).await?))
}

/// The audit log, newest first.
#[utoipa::path(
    get, path = "/api/v1/audit", tag = "operations", params(AuditParams),
    responses((status = 200, body = AuditPage), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn audit(
    State(app): State<Arc<App>>,
    Query(p): Query<AuditParams>,
) -> Result<Json<AuditPage>, ApiError> {
    let limit = p.limit.unwrap_or(100).clamp(1, 1000);
    let release = match p.release.as_deref() {
        Some(id) => Some(find(&app, id)?.id),
        None => None,
    };
    Ok(Json(AuditPage {
        items: app.store.audit_log(limit, release)?,
    }))
}
