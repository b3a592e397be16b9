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

pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
