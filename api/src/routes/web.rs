//! The built-in web client: `GET /` and its modules and stylesheet under `/app/`, compiled into
//! the binary (`api/assets/`), so a node serves a working chat page with no build step and no
//! files beside it.
//!
//! The page is plain JavaScript modules talking to this node's own API and WebSocket
//! (same-origin: it needs no `--cors-origin`). Every answer here carries a strict
//! Content-Security-Policy: scripts only from this origin and never inline, no plugins, no
//! framing, connections only back to this node (HTTP and its WebSocket). The client renders
//! server data as text only; the policy is the second wall should that ever slip.

use warp::filters::BoxedFilter;
use warp::http::header::{CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_FRAME_OPTIONS};
use warp::http::HeaderValue;
use warp::reply::Reply;
use warp::reply::Response;
use warp::Filter;

use crate::error::ApiError;

/// The policy of every page and asset. `connect-src` names `ws:`/`wss:` because `'self'` does
/// not cover WebSocket URLs in every browser still in use.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                       connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One file of the client: its name under `/app/`, its type, its bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const JS: &str = "text/javascript; charset=utf-8";

const INDEX: Asset = Asset {
    name: "index.html",
    content_type: "text/html; charset=utf-8",
    body: include_str!("../../assets/index.html"),
};

/// Everything `/app/` serves; a name not listed is 404.
const ASSETS: &[Asset] = &[
    Asset { name: "icon.svg", content_type: "image/svg+xml", body: include_str!("../../assets/icon.svg") },
    Asset { name: "app.css", content_type: "text/css; charset=utf-8", body: include_str!("../../assets/app.css") },
    Asset { name: "main.js", content_type: JS, body: include_str!("../../assets/main.js") },
    Asset { name: "api.js", content_type: JS, body: include_str!("../../assets/api.js") },
    Asset { name: "state.js", content_type: JS, body: include_str!("../../assets/state.js") },
    Asset { name: "views.js", content_type: JS, body: include_str!("../../assets/views.js") },
];

pub fn routes() -> BoxedFilter<(Response,)> {
    let index = warp::path::end().and(warp::get()).map(|| serve(&INDEX));
    let app = warp::path!("app" / String).and(warp::get()).and_then(|name: String| async move {
        match ASSETS.iter().find(|a| a.name == name) {
            Some(asset) => Ok(serve(asset)),
            // Answered here, not rejected: a rejection would fall through to the router's
            // "no such route".
            None => Ok::<_, warp::Rejection>(ApiError::not_found("no such file").into_response()),
        }
    });
    index.or(app).unify().boxed()
}

fn serve(asset: &Asset) -> Response {
    let mut resp = Response::new(asset.body.into());
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // The page's URL carries nothing secret, but nothing else needs to know where it was.
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_listed_assets_and_has_no_inline_script() {
        for line in INDEX.body.lines().filter(|l| l.contains("src=") || l.contains("href=")) {
            let Some(path) = line.split("/app/").nth(1).and_then(|rest| rest.split('"').next()) else { continue };
            assert!(ASSETS.iter().any(|a| a.name == path), "index.html loads /app/{path}, which is not served");
        }
        // Every <script> has a src (CSP `script-src 'self'` would block an inline one anyway).
        assert!(INDEX.body.matches("<script").count() == INDEX.body.matches("<script type=\"module\" src=").count());
        for a in ASSETS.iter().filter(|a| a.content_type == JS) {
            assert!(
                !a.body.contains("innerHTML") && !a.body.contains("insertAdjacentHTML"),
                "{}: renders HTML",
                a.name
            );
            for import in a.body.lines().filter_map(|l| l.split(" from './").nth(1)) {
                let file = import.trim_end_matches(['\'', ';']);
                assert!(ASSETS.iter().any(|x| x.name == file), "{} imports {file}, which is not served", a.name);
            }
        }
    }
}
