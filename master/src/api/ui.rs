//! The web admin (`ui/`), embedded in the binary so one file runs a master
//! and the admin works offline: `/` and `/ui/*`. Its scripts are ES modules
//! (`ui/app.js` imports `ui/js/*.js`): each must be listed here.

use poem::http::StatusCode;
use poem::web::Path;
use poem::{IntoResponse, Response, handler};

/// (path under `/ui/`, content type, bytes)
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "theme.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../ui/theme.js"),
    ),
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
        "js/lib.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../ui/js/lib.js"),
    ),
    (
        "js/charts.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../ui/js/charts.js"),
    ),
    (
        "js/live.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../ui/js/live.js"),
    ),
    (
        "js/dashboard.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../ui/js/dashboard.js"),
    ),
    (
        "js/jobs.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../ui/js/jobs.js"),
    ),
    (
        "js/job.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../ui/js/job.js"),
    ),
    (
        "js/run.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../ui/js/run.js"),
    ),
    (
        "js/logs.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../ui/js/logs.js"),
    ),
    (
        "js/cluster.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../ui/js/cluster.js"),
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
    (
        "vendor/chart.umd.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../ui/vendor/chart.umd.min.js"),
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

#[cfg(test)]
mod tests {
    /// A module of the admin left out of `FILES` would be a 404 in the
    /// browser and a blank page.
    #[test]
    fn every_module_of_the_admin_is_served() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../ui/js");
        // The directory is part of the repository: reading it cannot fail in a checkout.
        for entry in std::fs::read_dir(dir).expect("ui/js exists") {
            let name = entry.expect("a readable entry").file_name();
            let path = format!("js/{}", name.to_string_lossy());
            assert!(
                super::FILES.iter().any(|(p, _, _)| *p == path),
                "ui/{path} is not embedded: add it to FILES in master/src/api/ui.rs"
            );
        }
    }
}
