//! The admin console: `GET /ui`, a single page over the published admin API.
//!
//! Its three assets are embedded in the binary at build time (no Node build step, no CDN,
//! works offline) and talk only to `/admin/*` with the operator's admin token. The page is
//! open under the same rule as the API: with an admin token configured anyone may load it
//! (it holds no data; every API call needs the token), without one only loopback peers may
//! (403 for others, as `/admin` answers).

use poem::http::{StatusCode, header};
use poem::web::Data;
use poem::{Request, Response, handler};

use crate::state::AppState;

const INDEX: &str = include_str!("index.html");
const SCRIPT: &str = include_str!("app.js");
const STYLE: &str = include_str!("app.css");

/// The page's Content-Security-Policy: its own script and style, API calls to itself,
/// no frames (the console must not be framed: it has buttons that end sessions).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `GET /ui` (and `/ui/`): the page.
#[handler]
pub fn page(req: &Request, state: Data<&AppState>) -> Response {
    asset(req, &state, "text/html; charset=utf-8", INDEX)
}

/// `GET /ui/app.js`.
#[handler]
pub fn script(req: &Request, state: Data<&AppState>) -> Response {
    asset(req, &state, "text/javascript; charset=utf-8", SCRIPT)
}

/// `GET /ui/app.css`.
#[handler]
pub fn style(req: &Request, state: Data<&AppState>) -> Response {
    asset(req, &state, "text/css; charset=utf-8", STYLE)
}

fn asset(req: &Request, state: &AppState, content_type: &str, body: &'static str) -> Response {
    if state.settings().admin_token.is_none() && !crate::auth::from_loopback(req) {
        return crate::error::json_response(
            StatusCode::FORBIDDEN,
            &serde_json::json!({
                "code": "forbidden",
                "message": "no admin token is configured, so the admin console answers local requests only; set [admin] token or SWITCHBOARD_ADMIN_TOKEN",
            }),
        );
    }
    Response::builder()
        .content_type(content_type)
        .header(header::CACHE_CONTROL, "no-cache")
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(header::X_FRAME_OPTIONS, "DENY")
        .header(header::REFERRER_POLICY, "no-referrer")
        .header(header::CONTENT_SECURITY_POLICY, CSP)
        .body(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_assets_stay_small_and_refer_only_to_themselves() {
        // The README says "under 120 KiB".
        let total = INDEX.len() + SCRIPT.len() + STYLE.len();
        assert!(total < 120 * 1024, "console is {total} bytes");
        for asset in [INDEX, SCRIPT, STYLE] {
            // Nothing fetched from elsewhere (the SVG namespace URI is only a name).
            for outside in [
                "https://",
                "src=\"http",
                "href=\"http",
                "url(http",
                "import ",
            ] {
                assert!(
                    !asset.contains(outside),
                    "the console refers to {outside:?}"
                );
            }
        }
        assert!(INDEX.contains("app.js") && INDEX.contains("app.css"));
    }
}
