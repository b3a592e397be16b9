//! The public side: feeds and the newsroom pages, both drawn from one snapshot.

pub mod feeds;
pub mod media;
pub mod pages;

use std::sync::Arc;

use axum::routing::get;
use axum::Router;

use crate::app::App;

/// Routes anyone may call.
pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/", get(pages::index))
        .route("/releases/{slug}", get(pages::release))
        .route("/categories/{category}", get(pages::category))
        .route("/media/{file}", get(media::file))
        .route("/feeds/{*path}", get(feeds::serve))
}
