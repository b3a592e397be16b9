//! The public side: feeds and the newsroom pages, both drawn from one snapshot.

pub mod admin;
pub mod feeds;
pub mod media;
pub mod pages;
pub mod subscribe;

use std::sync::Arc;

use axum::routing::{get, post};
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
        .route("/admin", get(admin::page))
        .route("/admin/login", post(admin::login))
        .route("/admin/logout", post(admin::logout))
        .route("/admin/deliveries/{id}/retry", post(admin::retry))
        .route("/admin/partners/{id}/enable", post(admin::enable))
        .route("/subscribe", post(subscribe::subscribe))
        .route(
            "/confirm/{token}",
            get(subscribe::confirm_page).post(subscribe::confirm),
        )
        .route(
            "/unsubscribe/{token}",
            get(subscribe::unsubscribe_page).post(subscribe::unsubscribe),
        )
}
