//! Routes, one module per resource, composed into the node's filter.

pub mod admin;
pub mod admin_users;
pub mod conversations;
pub mod friends;
pub mod groups;
pub mod ops;
pub mod raft;
pub mod sync;
pub mod users;
pub mod web;

use std::sync::Arc;

use warp::filters::BoxedFilter;
use warp::http::header::{CACHE_CONTROL, X_CONTENT_TYPE_OPTIONS};
use warp::http::{HeaderMap, HeaderValue};
use warp::reply::Response;
use warp::Filter;

use crate::state::AppState;

/// Every route of a node, with contract errors for everything that matches none.
pub fn all(s: &Arc<AppState>) -> BoxedFilter<(Response,)> {
    let routes = users::routes(s)
        .or(friends::routes(s))
        .unify()
        .or(conversations::routes(s))
        .unify()
        .or(groups::routes(s))
        .unify()
        .or(sync::routes(s))
        .unify()
        .or(crate::ws::routes(s))
        .unify()
        .or(ops::routes(s))
        .unify()
        .or(raft::routes(s))
        .unify()
        .or(admin::routes(s))
        .unify()
        .or(admin_users::routes(s))
        .unify()
        .or(web::routes())
        .unify()
        .or(crate::openapi::routes())
        .unify()
        // Last: what no route matched (405 with `Allow` for a known path, else 404).
        .or(warp::method()
            .and(warp::path::full())
            .map(|m: warp::http::Method, p: warp::path::FullPath| crate::openapi::unmatched(&m, p.as_str())))
        .unify();
    let api = crate::ip_limits::gate(s).and(routes).recover(crate::error::recover).unify();
    // Preflights first: before the per-IP gates and any authentication (a browser sends no
    // token on a preflight), and without reading a body.
    let cors = Arc::new(s.cfg.cors.clone());
    let answered = crate::cors::preflight(cors.clone()).or(api).unify().map(hardened);
    if !cors.enabled() {
        // No `--cors-origin`: answers exactly as without CORS support (no header copied).
        return answered.boxed();
    }
    answered
        .and(warp::header::headers_cloned())
        .map(move |resp: Response, headers: HeaderMap| crate::cors::decorate(&cors, &headers, resp))
        .boxed()
}

/// Headers on every answer, errors included. `nosniff`: a browser never reinterprets a JSON
/// answer (say, a message body) as HTML or script. `no-store`: answers carry tokens (login,
/// refresh, admin) and private data, which no browser or proxy cache should keep; nothing a
/// node serves is meant to be cached.
fn hardened(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
