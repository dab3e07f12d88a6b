//! The web portal at /ui: a few static files embedded in the binary (no web server beside it,
//! no CDN, no outside request), which talk to the admin API's documented routes with the
//! token the user logs in with. Public: the files hold no data; every call they make is
//! checked like the CLI's.
//!
//! `DASH_UI_DIR=<dir>` serves the files from that dir instead, read on each request: for
//! working on the portal without rebuilding the binary.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The portal's files: name, content type, content.
const FILES: [(&str, &str, &str); 3] = [
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../../ui/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../ui/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../../ui/app.css"),
    ),
];

/// Only our own files and the admin API: no inline script, no outside origin, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `/ui` and `/ui/`: the page.
pub async fn page() -> Response {
    file("index.html")
}

/// `/ui/{file}`: an asset; any other name is the page too (the portal's own paths, e.g.
/// /ui/services/web, are routed by the page).
pub async fn asset(Path(name): Path<String>) -> Response {
    if FILES.iter().any(|(n, _, _)| *n == name) {
        file(&name)
    } else {
        file("index.html")
    }
}

fn file(name: &str) -> Response {
    let Some((_, content_type, embedded)) = FILES.iter().find(|(n, _, _)| *n == name) else {
        return (StatusCode::NOT_FOUND, "no such file\n").into_response();
    };
    let body = match std::env::var_os("DASH_UI_DIR") {
        Some(dir) => match std::fs::read_to_string(std::path::Path::new(&dir).join(name)) {
            Ok(text) => text,
            Err(e) => {
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("DASH_UI_DIR: reading {name}: {e}\n"),
                )
                    .into_response();
            }
        },
        None => (*embedded).to_string(),
    };
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}
