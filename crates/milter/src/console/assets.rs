//! The console's static files, compiled into the binary: the style sheet, the
//! script (selection of all rows, confirmation of deletions, reading an
//! uploaded message into the form), and the icon. Their paths carry the
//! package version so a new binary's files are never taken from a cache.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

const CSS: &[u8] = include_bytes!("assets/console.css");
const JS: &[u8] = include_bytes!("assets/console.js");
const ICON: &[u8] = include_bytes!("assets/icon.svg");

/// The style sheet's path.
pub const CSS_PATH: &str = concat!("/assets/console-", env!("CARGO_PKG_VERSION"), ".css");
/// The script's path.
pub const JS_PATH: &str = concat!("/assets/console-", env!("CARGO_PKG_VERSION"), ".js");
/// The icon's path.
pub const ICON_PATH: &str = "/assets/icon.svg";

fn file(name: &str) -> Option<(&'static [u8], &'static str)> {
    match name {
        n if Some(n) == CSS_PATH.strip_prefix("/assets/") => Some((CSS, "text/css; charset=utf-8")),
        n if Some(n) == JS_PATH.strip_prefix("/assets/") => {
            Some((JS, "text/javascript; charset=utf-8"))
        }
        "icon.svg" => Some((ICON, "image/svg+xml")),
        _ => None,
    }
}

fn answer(body: &'static [u8], kind: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    r
}

/// `GET /assets/{name}`.
pub async fn serve(Path(name): Path<String>) -> Response {
    match file(&name) {
        Some((body, kind)) => answer(body, kind),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// `GET /favicon.ico`: the icon (browsers ask for it whatever the page says).
pub async fn favicon() -> Response {
    answer(ICON, "image/svg+xml")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_files_are_served_by_their_paths_only() {
        assert!(file(CSS_PATH.trim_start_matches("/assets/")).is_some());
        assert!(file(JS_PATH.trim_start_matches("/assets/")).is_some());
        assert!(file("icon.svg").is_some());
        assert!(file("../Cargo.toml").is_none());
        assert!(file("console.css").is_none());
        // No inline handlers or eval in the script: the policy would refuse them.
        let js = std::str::from_utf8(JS).unwrap();
        assert!(!js.contains("eval(") && !js.contains("innerHTML"));
    }
}
