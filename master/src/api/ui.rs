//! The web admin (`ui/`), embedded in the binary so one file runs a master
//! and the admin works offline: `/` and `/ui/*`.

use poem::http::StatusCode;
use poem::web::Path;
use poem::{IntoResponse, Response, handler};

/// (path under `/ui/`, content type, bytes)
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../ui/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../../../ui/app.css"),
    ),
    (
        "vendor/bootstrap.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../../../ui/vendor/bootstrap.min.css"),
    ),
    (
        "vendor/bootstrap.bundle.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../ui/vendor/bootstrap.bundle.min.js"),
    ),
];

const INDEX: &[u8] = include_bytes!("../../../ui/index.html");

fn file(content_type: &str, bytes: &'static [u8]) -> Response {
    Response::builder()
        .content_type(content_type)
        // Small files, and a new binary may bring new ones: always revalidate.
        .header("Cache-Control", "no-cache")
        .body(bytes)
}

/// `GET /`: the admin page.
#[handler]
pub(crate) fn index() -> Response {
    file("text/html; charset=utf-8", INDEX)
}

/// `GET /ui/<path>`: the admin's scripts and styles.
#[handler]
pub(crate) fn asset(Path(path): Path<String>) -> Response {
    match FILES.iter().find(|(name, _, _)| *name == path) {
        Some((_, content_type, bytes)) => file(content_type, bytes),
        None => super::error_response(StatusCode::NOT_FOUND, &format!("no such file: /ui/{path}"))
            .into_response(),
    }
}
