//! CORS for browser apps served from another origin (`--cors-origin`), and the WebSocket's
//! `Origin` check.
//!
//! Why: a page on `https://app.example` may call a node's API only if the node says so in CORS
//! headers; without them the browser hides every answer from the page. With no
//! `--cors-origin` nothing here changes an answer: no CORS headers at all, as before, and the
//! built-in client at `/` needs none (it is same-origin).
//!
//! What it owns:
//! - [`Cors`]: the allowed origins (exact `scheme://host[:port]`, or `*`), checked once at start.
//! - [`preflight`]: `OPTIONS` with an `Origin`, answered before authentication and the per-IP
//!   gates, without reading a body (a browser's preflight carries no token): 204 with the
//!   allow headers for an allowed origin, 403 `forbidden` without any for another.
//! - [`decorate`]: every other answer (errors included) to an allowed origin gets
//!   `Access-Control-Allow-Origin` and `Access-Control-Expose-Headers`, so a page can read the
//!   status, the error envelope and `Parley-Cursor`.
//! - [`Cors::check_ws`]: the WebSocket handshake refuses a browser page of another origin
//!   (403). WebSockets are not subject to CORS, so this is the only guard there.
//!
//! Invariants: a request with no `Origin` (curl, SDKs, other nodes) is never refused here;
//! a page served by this node itself (its `Origin` is this request's `Host`) is always allowed;
//! no `Access-Control-Allow-Credentials`: tokens travel in `Authorization` (or the WebSocket's
//! `?token=`), never in cookies, so there is no ambient authority to lend another origin.

use std::sync::Arc;

use warp::http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, HOST, ORIGIN, VARY,
};
use warp::http::{HeaderMap, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::error::ApiError;

/// What a preflight allows: every method the contract uses.
const ALLOW_METHODS: &str = "GET, POST, PUT, PATCH, DELETE";
/// Request headers a client sends: the token, the JSON body's type (which makes every write a
/// preflighted request: see `http::require_json`) and a client-chosen request id.
const ALLOW_HEADERS: &str = "Authorization, Content-Type, Parley-Request-Id";
/// Response headers a page may read besides the safelisted ones.
const EXPOSE_HEADERS: &str = "Parley-Cursor, Parley-Request-Id, Retry-After";
/// Seconds a browser may cache a preflight (Chromium caps this at 7200).
const MAX_AGE: &str = "600";

/// Why a `--cors-origin` value is refused at start.
#[derive(Debug, thiserror::Error)]
#[error("bad --cors-origin {0:?}: expected `*` or an origin such as https://app.example:8443 (scheme, host, optional port; no path)")]
pub struct BadOrigin(pub String);

/// The origins allowed to use this node from a browser. Empty: CORS is off.
#[derive(Debug, Clone, Default)]
pub struct Cors {
    any: bool,
    /// Lowercase `scheme://host[:port]`, as browsers serialise an `Origin`.
    origins: Vec<String>,
}

/// Whether an answer goes to an allowed origin, and what to put in its
/// `Access-Control-Allow-Origin`.
enum Verdict {
    /// No CORS configured, or no `Origin` header: nothing to add.
    NotCors,
    Allowed(HeaderValue),
    Refused,
}

impl Cors {
    /// Checks every configured origin; `*` allows any.
    pub fn new<S: AsRef<str>>(origins: &[S]) -> Result<Cors, BadOrigin> {
        let mut cors = Cors::default();
        for o in origins.iter().map(|o| o.as_ref().trim()).filter(|o| !o.is_empty()) {
            if o == "*" {
                cors.any = true;
                continue;
            }
            let normal = o.trim_end_matches('/').to_ascii_lowercase();
            let Some((scheme, authority)) = normal.split_once("://") else { return Err(BadOrigin(o.into())) };
            let authority_ok =
                !authority.is_empty() && authority.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b));
            if !matches!(scheme, "http" | "https") || !authority_ok {
                return Err(BadOrigin(o.into()));
            }
            if !cors.origins.contains(&normal) {
                cors.origins.push(normal);
            }
        }
        Ok(cors)
    }

    pub fn enabled(&self) -> bool {
        self.any || !self.origins.is_empty()
    }

    fn verdict(&self, headers: &HeaderMap) -> Verdict {
        let Some(origin) = headers.get(ORIGIN).filter(|_| self.enabled()) else { return Verdict::NotCors };
        if self.any {
            return Verdict::Allowed(HeaderValue::from_static("*"));
        }
        let allowed = origin.to_str().is_ok_and(|o| {
            let o = o.to_ascii_lowercase();
            self.origins.contains(&o) || same_origin(&o, headers)
        });
        if allowed {
            Verdict::Allowed(origin.clone())
        } else {
            Verdict::Refused
        }
    }

    /// The WebSocket handshake's check: with `--cors-origin` set, a browser page of another
    /// origin is refused 403; no `Origin` (not a browser) and same-origin pages pass.
    pub fn check_ws(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        match self.verdict(headers) {
            Verdict::Refused => {
                tracing::debug!(origin = ?headers.get(ORIGIN), "websocket from a disallowed origin refused");
                Err(forbidden_origin())
            }
            Verdict::NotCors | Verdict::Allowed(_) => Ok(()),
        }
    }
}

/// A page served by this node itself: its origin is `http(s)://` + this request's `Host`.
/// A browser always sets `Host` to the server it connects to, so another site cannot fake this.
fn same_origin(origin: &str, headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(HOST).and_then(|h| h.to_str().ok()) else { return false };
    let authority = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://"));
    authority.is_some_and(|a| a.eq_ignore_ascii_case(host))
}

fn forbidden_origin() -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", "this origin is not allowed (--cors-origin)")
}

/// Answers CORS preflights (`OPTIONS` with an `Origin`) when CORS is on; rejects (falls
/// through to the routes, which answer 404 as before) otherwise: another method, no `Origin`
/// (not a browser's preflight), or CORS off. Reads headers only, never the body.
pub fn preflight(cors: Arc<Cors>) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    // `options()` first: any other method falls through before a header is copied.
    warp::options().and(warp::header::headers_cloned()).and_then(move |headers: HeaderMap| {
        let cors = cors.clone();
        async move {
            Ok(match cors.verdict(&headers) {
                Verdict::NotCors => return Err(warp::reject::not_found()),
                Verdict::Refused => {
                    tracing::debug!(origin = ?headers.get(ORIGIN), "CORS preflight from a disallowed origin refused");
                    forbidden_origin().into_response()
                }
                Verdict::Allowed(origin) => {
                    let mut resp = Response::default();
                    *resp.status_mut() = StatusCode::NO_CONTENT;
                    let h = resp.headers_mut();
                    h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
                    h.insert(ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(ALLOW_METHODS));
                    h.insert(ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static(ALLOW_HEADERS));
                    h.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static(MAX_AGE));
                    resp
                }
            })
        }
    })
}

/// Adds the CORS headers to an answer for an allowed origin (a preflight already has them).
/// With CORS on, every answer says `Vary: Origin`: it depends on the request's origin, so a
/// shared cache must not serve one origin's answer to another.
pub fn decorate(cors: &Cors, headers: &HeaderMap, mut resp: Response) -> Response {
    if !cors.enabled() {
        return resp;
    }
    let verdict = cors.verdict(headers);
    let h = resp.headers_mut();
    h.append(VARY, HeaderValue::from_static("Origin"));
    if let Verdict::Allowed(origin) = verdict {
        if !h.contains_key(ACCESS_CONTROL_ALLOW_ORIGIN) {
            h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            h.insert(ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSE_HEADERS));
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn origins_are_checked_at_start() {
        assert!(Cors::new(&["https://app.example", "http://127.0.0.1:5173/", "*"]).is_ok());
        for bad in ["app.example", "ftp://x", "https://", "https://a.example/path", "https://a b"] {
            assert!(Cors::new(&[bad]).is_err(), "{bad} should be refused");
        }
        assert!(!Cors::new::<&str>(&[]).unwrap().enabled());
        assert!(!Cors::new(&[" "]).unwrap().enabled());
    }

    #[test]
    fn the_ws_check_allows_listed_same_origin_and_originless_requests_only() {
        let cors = Cors::new(&["https://App.Example/"]).unwrap();
        assert!(cors.check_ws(&headers(&[("origin", "https://app.example")])).is_ok());
        assert!(cors.check_ws(&headers(&[])).is_ok());
        assert!(cors.check_ws(&headers(&[("origin", "http://node:8080"), ("host", "node:8080")])).is_ok());
        let refused = cors.check_ws(&headers(&[("origin", "https://evil.example"), ("host", "node:8080")]));
        assert_eq!(refused.map_err(|e| (e.status, e.code)), Err((StatusCode::FORBIDDEN, "forbidden")));
        // Off: any origin passes, as before the flag existed.
        assert!(Cors::default().check_ws(&headers(&[("origin", "https://evil.example")])).is_ok());
    }

    #[test]
    fn decorate_adds_nothing_when_off_and_the_wildcard_when_any() {
        let h = headers(&[("origin", "https://a.example")]);
        let plain = decorate(&Cors::default(), &h, Response::default());
        assert!(plain.headers().is_empty());
        let any = decorate(&Cors::new(&["*"]).unwrap(), &h, Response::default());
        assert_eq!(any.headers()[ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert_eq!(any.headers()[ACCESS_CONTROL_EXPOSE_HEADERS], EXPOSE_HEADERS);
        let other = decorate(&Cors::new(&["https://b.example"]).unwrap(), &h, Response::default());
        assert!(!other.headers().contains_key(ACCESS_CONTROL_ALLOW_ORIGIN));
        assert_eq!(other.headers()[VARY], "Origin");
    }
}
