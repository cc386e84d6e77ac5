//! The admin console: `GET /ui`, a single page over the published admin API.
//!
//! Its three assets are embedded in the binary at build time (no Node build step, no CDN,
//! works offline) and talk only to `/admin/*` with the operator's admin token. The page is
//! open under the same rule as the API: with an admin token configured anyone may load it
//! (it holds no data; every API call needs the token), without one only loopback peers may
//! (403 for others, as `/admin` answers).
//!
//! A browser that accepts gzip gets each asset gzipped: compressed once, on its first
//! request, and kept (about a quarter of the plain size). The size budget is on those bytes,
//! what an operator's browser downloads.

use std::io::Write;
use std::sync::OnceLock;

use bytes::Bytes;
use poem::http::{StatusCode, header};
use poem::web::Data;
use poem::{Request, Response, handler};

use crate::state::AppState;

const INDEX: &str = include_str!("index.html");
const SCRIPT: &str = include_str!("app.js");
const STYLE: &str = include_str!("app.css");

/// One embedded asset and its gzipped bytes, made on first use.
struct Asset {
    content_type: &'static str,
    plain: &'static str,
    gzipped: OnceLock<Option<Bytes>>,
}

impl Asset {
    const fn new(content_type: &'static str, plain: &'static str) -> Self {
        Self {
            content_type,
            plain,
            gzipped: OnceLock::new(),
        }
    }

    /// The gzipped bytes (`None` if compressing failed, which writing to memory does not).
    fn gzipped(&self) -> Option<&Bytes> {
        self.gzipped.get_or_init(|| gzip(self.plain)).as_ref()
    }
}

static PAGE: Asset = Asset::new("text/html; charset=utf-8", INDEX);
static SCRIPT_ASSET: Asset = Asset::new("text/javascript; charset=utf-8", SCRIPT);
static STYLE_ASSET: Asset = Asset::new("text/css; charset=utf-8", STYLE);

fn gzip(text: &str) -> Option<Bytes> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(text.as_bytes()).ok()?;
    encoder.finish().ok().map(Bytes::from)
}

/// Whether the request's `Accept-Encoding` takes gzip (`gzip` or `*`, without `q=0`).
fn accepts_gzip(req: &Request) -> bool {
    req.headers()
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or_default().trim();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
        })
}

/// The page's Content-Security-Policy: its own script and style, API calls to itself,
/// no frames (the console must not be framed: it has buttons that end sessions).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `GET /ui` (and `/ui/`): the page.
#[handler]
pub fn page(req: &Request, state: Data<&AppState>) -> Response {
    asset(req, &state, &PAGE)
}

/// `GET /ui/app.js`.
#[handler]
pub fn script(req: &Request, state: Data<&AppState>) -> Response {
    asset(req, &state, &SCRIPT_ASSET)
}

/// `GET /ui/app.css`.
#[handler]
pub fn style(req: &Request, state: Data<&AppState>) -> Response {
    asset(req, &state, &STYLE_ASSET)
}

fn asset(req: &Request, state: &AppState, asset: &Asset) -> Response {
    if state.settings().admin_token.is_none() && !crate::auth::from_loopback(req) {
        return crate::error::json_response(
            StatusCode::FORBIDDEN,
            &serde_json::json!({
                "code": "forbidden",
                "message": "no admin token is configured, so the admin console answers local requests only; set [admin] token or SWITCHBOARD_ADMIN_TOKEN",
            }),
        );
    }
    let builder = Response::builder()
        .content_type(asset.content_type)
        .header(header::VARY, "accept-encoding")
        .header(header::CACHE_CONTROL, "no-cache")
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(header::X_FRAME_OPTIONS, "DENY")
        .header(header::REFERRER_POLICY, "no-referrer")
        .header(header::CONTENT_SECURITY_POLICY, CSP);
    match asset.gzipped().filter(|_| accepts_gzip(req)) {
        Some(gzipped) => builder
            .header(header::CONTENT_ENCODING, "gzip")
            .body(gzipped.clone()),
        None => builder.body(asset.plain),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_assets_stay_small_and_refer_only_to_themselves() {
        // The README says "under 40 KiB gzipped": what a browser downloads.
        let total: usize = [&PAGE, &SCRIPT_ASSET, &STYLE_ASSET]
            .iter()
            .map(|a| a.gzipped().map_or(usize::MAX, Bytes::len))
            .sum();
        assert!(total < 40 * 1024, "console is {total} bytes gzipped");
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

    #[test]
    fn gzip_is_served_to_who_accepts_it() {
        let accepts = |value: &str| {
            accepts_gzip(
                &Request::builder()
                    .header(header::ACCEPT_ENCODING, value)
                    .finish(),
            )
        };
        assert!(accepts("gzip, deflate, br, zstd"));
        assert!(accepts("br;q=1.0, GZIP;q=0.5"));
        assert!(accepts("*"));
        assert!(!accepts("br, zstd"));
        assert!(!accepts("gzip;q=0"));
        assert!(!accepts("gzip; q=0.000, identity"));
        assert!(!accepts_gzip(&Request::builder().finish()));
    }
}
