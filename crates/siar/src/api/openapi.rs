//! The OpenAPI document, generated from the handlers' annotations and the model types.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "siar", description = "Press-release syndication: ingest, publish, correct, retract, and watch deliveries."),
    paths(
        super::releases::create, super::releases::list, super::releases::show,
        super::releases::versions, super::releases::version, super::releases::correct,
        super::releases::retract, super::releases::audit,
        super::deliveries::for_release, super::deliveries::list, super::deliveries::retry,
        super::deliveries::attempts, super::deliveries::enable_partner,
        super::deliveries::recover, super::deliveries::partners,
        super::lists::lists, super::lists::subscribers, super::lists::import,
        super::lists::recipients, super::lists::bounce,
        super::backup::export,
        super::health::healthz, super::health::readyz,
    ),
    modifiers(&Bearer)
)]
pub struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub async fn document() -> Json<serde_json::Value> {
    static DOC: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    Json(
        DOC.get_or_init(|| {
            let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
            refine(&mut doc);
            doc
        })
        .clone(),
    )
}

/// What `siar`'s local or RFC 3339 times look like (`2026-12-01 06:00`, `2026-12-01T06:00:00+08:00`).
const WHEN_PATTERN: &str = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?(Z|[+-][0-9]{2}:[0-9]{2})?$";

/// A delivery id: a ULID (26 characters of Crockford base-32).
const ULID_PATTERN: &str = "^[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$";

/// Completes the generated document with what the handlers check but the annotations do not
/// say: the error answers every operation can give (the API's middleware shapes them all as
/// `ErrorBody`), and the bounds and formats of parameters and bodies, so a client (or a tool
/// such as schemathesis) can tell a valid request from the schema alone.
fn refine(doc: &mut serde_json::Value) {
    use serde_json::json;
    let error = |why: &str| json!({"description": why, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}});
    let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return;
    };
    for (path, ops) in paths.iter_mut() {
        if !path.starts_with("/api/v1/") {
            continue;
        }
        let Some(ops) = ops.as_object_mut() else {
            continue;
        };
        for (method, op) in ops.iter_mut() {
            let mut common = vec![
                ("400", "The request is malformed (a parameter or the body)."),
                ("401", "No token, or a wrong one."),
                ("404", "No such resource."),
                ("503", "The store cannot be written or read right now."),
            ];
            if method == "post" {
                common.extend([
                    ("409", "The resource's state does not allow it."),
                    ("413", "The body is larger than the limit."),
                    (
                        "415",
                        "The body's content type is not one this operation takes.",
                    ),
                    ("422", "The body is well-formed but not acceptable."),
                ]);
            }
            if let Some(responses) = op.get_mut("responses").and_then(|r| r.as_object_mut()) {
                for (code, why) in common {
                    responses.entry(code).or_insert_with(|| error(why));
                }
            }
            let Some(params) = op.get_mut("parameters").and_then(|p| p.as_array_mut()) else {
                continue;
            };
            for param in params.iter_mut() {
                let name = param["name"].as_str().unwrap_or_default().to_owned();
                let place = param["in"].as_str().unwrap_or_default().to_owned();
                let schema = &mut param["schema"];
                match (place.as_str(), name.as_str()) {
                    ("path", "id") if path.starts_with("/api/v1/deliveries/") => {
                        schema["pattern"] = json!(ULID_PATTERN);
                    }
                    ("query", "after") if path == "/api/v1/deliveries" => {
                        schema["pattern"] = json!(ULID_PATTERN);
                    }
                    ("query", "limit") => {
                        let max = match path.as_str() {
                            "/api/v1/releases" => 500,
                            "/api/v1/lists/{id}/subscribers" => 10_000,
                            _ => 1000,
                        };
                        schema["minimum"] = json!(1);
                        schema["maximum"] = json!(max);
                    }
                    ("query", "since" | "publish_at") => {
                        schema["pattern"] = json!(WHEN_PATTERN);
                    }
                    ("query", "cursor") => {
                        schema["pattern"] = json!("^[0-9a-f]{48}$");
                    }
                    ("query", "note") => {
                        param["required"] = json!(true);
                        param["schema"]["minLength"] = json!(1);
                        param["schema"]["maxLength"] = json!(1000);
                    }
                    ("path", "n") => {
                        schema["minimum"] = json!(1);
                    }
                    _ => {}
                }
            }
        }
    }
    let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(|s| s.as_object_mut())
    else {
        return;
    };
    if let Some(r) = schemas.get_mut("RetractionRequest") {
        r["properties"]["reason"]["minLength"] = json!(1);
        r["properties"]["reason"]["maxLength"] = json!(1000);
    }
    if let Some(r) = schemas.get_mut("RecoverRequest") {
        r["properties"]["partner"]["minLength"] = json!(1);
        r["properties"]["since"]["pattern"] = json!(WHEN_PATTERN);
    }
    if let Some(i) = schemas.get_mut("ImportRequest") {
        i["properties"]["source"]["minLength"] = json!(1);
        i["if"] = json!({"properties": {"confirmed": {"const": true}}, "required": ["confirmed"]});
        i["then"] = json!({"required": ["source"]});
    }
}
