//! The dashboard: plain HTML, CSS and JavaScript embedded in the binary
//! (`src/api/dashboard/`), served at `/` without a token. The page holds no
//! data: it asks for a token and reads everything through the API.

use axum::Router;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rust_embed::RustEmbed;

use super::error::ApiError;
use super::extract::ApiPath;

#[derive(RustEmbed)]
#[folder = "src/api/dashboard/"]
struct Assets;

/// Only our own files, no inline script, no framing: the page handles a
/// token and must not run anything else.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// `/` and `/dashboard/{file}`.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { asset("index.html") }))
        .route(
            "/dashboard/{file}",
            get(|ApiPath(file): ApiPath<String>| async move { asset(&file) }),
        )
}

fn content_type(file: &str) -> &'static str {
    match file.rsplit_once('.').map(|(_, extension)| extension) {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

fn asset(file: &str) -> Response {
    let Some(content) = Assets::get(file) else {
        return ApiError::not_found(format!("no dashboard file {file}")).into_response();
    };
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static(content_type(file))),
            (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                HeaderName::from_static("content-security-policy"),
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            ),
            (
                HeaderName::from_static("x-content-type-options"),
                HeaderValue::from_static("nosniff"),
            ),
            (
                HeaderName::from_static("referrer-policy"),
                HeaderValue::from_static("no-referrer"),
            ),
        ],
        content.data,
    )
        .into_response()
}
