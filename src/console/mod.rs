//! The web console's static assets (HTML, ES modules, CSS), embedded in the binary and served
//! at `/console` on the API listener. No framework and no build step: what is in `assets/` is
//! what the browser runs.
//!
//! Architecture invariant: the assets carry no data, so they are the only thing served
//! unsigned; every figure the console shows comes from a signed API call (`POST /`, ECS's
//! actions and `WasmgateV1.*`), never from a second path into the store.

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Response, StatusCode};

/// Where the console is served.
pub const PATH: &str = "/console";

/// The content security policy of every asset: scripts and styles from this origin only (no
/// inline code), so nothing injected into a page can run and read the signing key.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                      img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
                      form-action 'none'; frame-ancestors 'none'";

/// (file name, content type, bytes).
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("assets/index.html"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/style.css"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/api.js"),
    ),
    (
        "sigv4.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/sigv4.js"),
    ),
    (
        "ui.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/ui.js"),
    ),
    (
        "pages.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/pages.js"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/app.js"),
    ),
];

/// Whether `path` is the console's (`/console`, `/console/...`).
pub fn is_console(path: &str) -> bool {
    path == PATH
        || path
            .strip_prefix(PATH)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The asset at `path` (one of the console's paths), or a 404 naming it.
pub fn serve(path: &str) -> Response<Full<Bytes>> {
    let name = path
        .strip_prefix(PATH)
        .unwrap_or_default()
        .trim_start_matches('/');
    let name = if name.is_empty() { "index.html" } else { name };
    let Some((_, content_type, bytes)) = ASSETS.iter().find(|(file, _, _)| *file == name) else {
        return Response::builder()
            .status(StatusCode::NOT_FOUND)
            .header("content-type", "text/plain; charset=utf-8")
            .body(Full::new(Bytes::from(format!(
                "the console has no file {name}; open {PATH}/\n"
            ))))
            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())));
    };
    Response::builder()
        .header("content-type", *content_type)
        // Embedded assets change only with the binary; revalidating costs one loopback trip.
        .header("cache-control", "no-cache")
        .header("content-security-policy", POLICY)
        .header("x-content-type-options", "nosniff")
        .header("referrer-policy", "no-referrer")
        .body(Full::new(Bytes::from_static(bytes)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_the_page_at_its_root_and_nothing_outside_it() {
        assert!(is_console("/console"));
        assert!(is_console("/console/app.js"));
        assert!(!is_console("/consoles"));
        assert!(!is_console("/v1/tasks"));
        for path in ["/console", "/console/"] {
            let page = serve(path);
            assert_eq!(page.status(), StatusCode::OK);
            assert_eq!(
                page.headers()["content-type"],
                "text/html; charset=utf-8",
                "{path}"
            );
        }
        assert_eq!(serve("/console/app.js").status(), StatusCode::OK);
        assert_eq!(
            serve("/console/../Cargo.toml").status(),
            StatusCode::NOT_FOUND
        );
    }
}
