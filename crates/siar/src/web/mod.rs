//! The public side: feeds (and, beside them, the newsroom pages).

pub mod feeds;

use std::sync::Arc;

use axum::routing::get;
use axum::Router;

use crate::app::App;

/// Routes anyone may call.
pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/feeds/{file}", get(feeds::main_feed))
        .route("/feeds/{category}/{file}", get(feeds::category_feed))
        .route("/feeds/archive/{n}/{file}", get(feeds::archive))
        .route(
            "/feeds/{category}/archive/{n}/{file}",
            get(feeds::category_archive),
        )
}
