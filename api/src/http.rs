//! Small warp building blocks shared by the routes: the request context (headers + query),
//! a size-limited body that never rejects, JSON parsing into `invalid_request`, and responses
//! that carry `Parley-Cursor`.
//!
//! Filters here never reject on bad input: errors travel as values to the handler, so every
//! malformed request gets the contract's JSON error instead of warp's default.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use warp::http::{HeaderMap, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::auth::{bearer, AuthUser};
use crate::error::ApiError;
use crate::state::AppState;

pub const CURSOR_HEADER: &str = "parley-cursor";

/// Headers and query string of a request.
pub struct Req {
    pub headers: HeaderMap,
    pub query: HashMap<String, String>,
    pub query_error: bool,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn bearer(&self) -> Option<&str> {
        bearer(self.header("authorization"))
    }

    /// An optional unsigned integer query parameter.
    pub fn u64_param(&self, name: &str) -> Result<Option<u64>, ApiError> {
        if self.query_error {
            return Err(ApiError::invalid("malformed query string"));
        }
        // The document (`/v1/openapi.json`) says int64: a value past it, or an empty one, is as
        // malformed as a word.
        match self.query.get(name) {
            None => Ok(None),
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|n| *n <= i64::MAX as u64)
                .map(Some)
                .ok_or_else(|| ApiError::invalid(format!("{name} must be an integer from 0 to 2^63-1"))),
        }
    }

    pub fn str_param(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str)
    }
}

/// Extracts a [`Req`]; never rejects.
pub fn req() -> impl Filter<Extract = (Req,), Error = Infallible> + Clone {
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    warp::header::headers_cloned().and(query).map(|headers: HeaderMap, raw: String| {
        let (query, query_error) = match serde_urlencoded::from_str::<Vec<(String, String)>>(&raw) {
            Ok(pairs) => (pairs.into_iter().collect(), false),
            Err(_) => (HashMap::new(), true),
        };
        Req { headers, query, query_error }
    })
}

/// Passes the shared state to handlers.
pub fn with(state: &Arc<AppState>) -> impl Filter<Extract = (Arc<AppState>,), Error = Infallible> + Clone {
    let s = state.clone();
    warp::any().map(move || s.clone())
}

/// A JSON write route's body, up to `limit` bytes, within the node's body timeout. Never
/// rejects: a body not declared JSON is 415 (checked before a byte is read: the CSRF guard), a
/// larger one `payload_too_large`, a late one 408.
pub fn body(
    s: &Arc<AppState>,
    limit: u64,
) -> impl Filter<Extract = (Result<Bytes, ApiError>,), Error = warp::Rejection> + Clone {
    let timeout = s.cfg.body_timeout;
    warp::header::headers_cloned().and(warp::body::stream()).then(move |headers: HeaderMap, stream| async move {
        require_json(&headers)?;
        read_body(&headers, stream, limit, timeout).await
    })
}

/// A JSON write route's body like [`body`], read only once `gate` has passed: a caller that
/// fails it (say, a bad admin token) is answered before a byte of the body is read.
pub fn gated_body(
    s: &Arc<AppState>,
    limit: u64,
    gate: fn(&AppState, &Req) -> Result<(), ApiError>,
) -> impl Filter<Extract = (Result<Bytes, ApiError>,), Error = warp::Rejection> + Clone {
    let timeout = s.cfg.body_timeout;
    with(s).and(req()).and(warp::header::headers_cloned()).and(warp::body::stream()).then(
        move |s: Arc<AppState>, r: Req, headers: HeaderMap, stream| async move {
            gate(&s, &r)?;
            require_json(&headers)?;
            read_body(&headers, stream, limit, timeout).await
        },
    )
}

/// A user write route's body like [`body`], read only once the request's token checks out: a
/// caller without a valid session is answered 401 before a byte of the body is read.
pub fn authed_body(
    s: &Arc<AppState>,
    limit: u64,
) -> impl Filter<Extract = (Result<Bytes, ApiError>,), Error = warp::Rejection> + Clone {
    let timeout = s.cfg.body_timeout;
    with(s).and(req()).and(warp::header::headers_cloned()).and(warp::body::stream()).then(
        move |s: Arc<AppState>, r: Req, headers: HeaderMap, stream| async move {
            s.user(&r).await?;
            require_json(&headers)?;
            read_body(&headers, stream, limit, timeout).await
        },
    )
}

/// Refuses a body that is not declared `application/json` (parameters such as `charset` are
/// fine). A browser sends a cross-site form or a "simple" fetch only as `text/plain`,
/// urlencoded or multipart; requiring JSON makes every such request a preflighted one, which
/// stops login CSRF. A request with no body at all needs no type (it gets the route's own
/// "a JSON body is required").
fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let chunked = headers.contains_key(warp::http::header::TRANSFER_ENCODING);
    if !chunked && declared_length(headers).unwrap_or(0) == 0 {
        return Ok(());
    }
    let essence = headers
        .get(warp::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim());
    match essence {
        Some(t) if t.eq_ignore_ascii_case("application/json") => Ok(()),
        Some(t) => Err(ApiError::unsupported_media_type(format!("the body must be application/json, not {t:?}"))),
        None => Err(ApiError::unsupported_media_type("the body must be sent as content-type: application/json")),
    }
}

/// The `content-length` a request declares, if any.
pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(warp::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok())
}

/// Reads a body of at most `limit` bytes within `timeout`. A declared length over the limit is
/// refused before anything is read; a chunked body is cut off as soon as it passes the limit;
/// either way nothing past `limit` is ever buffered, and a stalled sender is dropped at
/// `timeout` instead of holding its connection and buffer.
pub async fn read_body<S, B>(headers: &HeaderMap, stream: S, limit: u64, timeout: Duration) -> Result<Bytes, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    if declared_length(headers).is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    match tokio::time::timeout(timeout, collect(stream, limit)).await {
        Ok(body) => body,
        Err(_) => {
            Err(ApiError::request_timeout(format!("the request body was not received within {} s", timeout.as_secs())))
        }
    }
}

fn too_large(limit: u64) -> ApiError {
    ApiError::payload_too_large(format!("request body is larger than {limit} bytes"))
}

async fn collect<S, B>(stream: S, limit: u64) -> Result<Bytes, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let mut stream = std::pin::pin!(stream);
    let mut buf = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| ApiError::invalid("could not read the request body"))?;
        if (buf.len() + chunk.remaining()) as u64 > limit {
            return Err(too_large(limit));
        }
        buf.put(chunk);
    }
    Ok(buf.freeze())
}

/// Parses a JSON body; anything malformed, mistyped or missing is `invalid_request`.
pub fn parse<T: DeserializeOwned>(body: Result<Bytes, ApiError>) -> Result<T, ApiError> {
    parse_json(&body?)
}

/// [`parse`] of a body already read.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ApiError::invalid("a JSON body is required"));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))
}

/// Decodes a percent-encoded path segment.
pub fn segment(raw: &str) -> Result<String, ApiError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            let v = hex
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| ApiError::invalid("bad percent-encoding in path"))?;
            out.push(v);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ApiError::invalid("path is not UTF-8"))
}

/// A JSON answer: a wire type in its canonical text (`parley_wire::canonical_text`: keys in
/// byte order, as every answer has always been written).
pub fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response {
    match parley_wire::canonical_text(value) {
        Ok(text) => json_text(status, text),
        // Not reachable with the wire types (strings, numbers, lists, JSON values); answered
        // as a server error rather than a panic all the same.
        Err(e) => {
            tracing::error!(error = %e, "answer does not serialise");
            let text = r#"{"error":{"code":"internal","message":"answer does not serialise"}}"#;
            json_text(StatusCode::INTERNAL_SERVER_ERROR, text.to_owned())
        }
    }
}

/// A JSON answer already rendered as text.
pub fn json_text(status: StatusCode, text: String) -> Response {
    let mut resp = Response::new(text.into());
    *resp.status_mut() = status;
    resp.headers_mut().insert(warp::http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// A write's JSON answer (a wire type that carries `cursor`) with the `Parley-Cursor` header.
pub fn written<T: Serialize>(status: StatusCode, value: &T, cursor: u64) -> Response {
    with_cursor(json(status, value), cursor)
}

/// A write's 204 answer with the `Parley-Cursor` header.
pub fn no_content(cursor: u64) -> Response {
    with_cursor(warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response(), cursor)
}

fn with_cursor(mut resp: Response, cursor: u64) -> Response {
    resp.headers_mut().insert(CURSOR_HEADER, HeaderValue::from(cursor));
    resp
}

/// Runs a handler and turns its error into the contract's JSON error; counts the answer.
pub async fn respond(state: Arc<AppState>, fut: impl Future<Output = Result<Response, ApiError>>) -> Response {
    let resp = match fut.await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    state.metrics.http_requests.inc();
    match resp.status().as_u16() {
        400..=499 => state.metrics.http_errors_4xx.inc(),
        500..=599 => state.metrics.http_errors_5xx.inc(),
        _ => {}
    }
    resp
}

impl AppState {
    /// The node's admin token, as `Authorization: Bearer` or `X-Admin-Token` (constant time).
    pub fn admin(&self, r: &Req) -> Result<(), ApiError> {
        self.auth.authenticate_admin(r.bearer().or_else(|| r.header("x-admin-token")))
    }

    /// The authenticated user of a request.
    pub async fn user(&self, r: &Req) -> Result<AuthUser, ApiError> {
        self.authenticate_token(r.bearer()).await
    }

    /// Checks a token; if its session was created at a cursor this node has not applied yet
    /// (a login on another node a moment ago), waits for it rather than refusing.
    pub async fn authenticate_token(&self, token: Option<&str>) -> Result<AuthUser, ApiError> {
        self.serving()?;
        match self.auth.verify(&self.store, token)? {
            crate::auth::Verified::Session(user) => Ok(user),
            crate::auth::Verified::Pending { cursor } => {
                self.wait_applied(cursor).await?;
                self.auth.authenticate(&self.store, token)
            }
        }
    }

    /// Refuses while this node's projections are mid-way through a snapshot install: they are
    /// at no consistent point of the journal, so nothing is read from them.
    pub fn serving(&self) -> Result<(), ApiError> {
        if self.raft.is_installing() {
            return Err(ApiError::unavailable(
                "this node is catching up from a snapshot; try another node or retry shortly",
            ));
        }
        Ok(())
    }

    /// The authenticated user of a read, then `?min_cursor=N` honoured: in that order, so an
    /// unauthenticated request is refused at once instead of holding a connection for the
    /// whole apply wait.
    pub async fn reader(&self, r: &Req) -> Result<AuthUser, ApiError> {
        let me = self.user(r).await?;
        self.read_gate(r).await?;
        Ok(me)
    }

    /// Honours `?min_cursor=N` on reads. Call it only once the caller is authenticated (or
    /// on a route the contract leaves public): it may wait [`APPLY_WAIT`](crate::state::APPLY_WAIT).
    pub async fn read_gate(&self, r: &Req) -> Result<(), ApiError> {
        if let Some(c) = r.u64_param("min_cursor")? {
            self.wait_applied(c).await?;
        }
        Ok(())
    }
}
