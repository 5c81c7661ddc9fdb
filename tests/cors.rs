//! `--cors-origin`: preflights answered before authentication for allowed origins and refused
//! (403, no allow headers) for others; CORS headers on ordinary and error answers; nothing at
//! all without the flag; the WebSocket refuses a disallowed `Origin` and allows a listed one, a
//! same-origin page and a request without `Origin`.

mod support;

use support::*;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const APP: &str = "https://app.example";

fn cors_server() -> &'static TestServer {
    shared_with(&["--rate-limit-per-user", "0", "--cors-origin", APP, "--cors-origin", "http://localhost:5173"])
}

async fn with_headers(api: &Api, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut req =
        api.http.request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), format!("{}{path}", api.base));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    api.finish(method, path, req).await
}

fn header<'a>(r: &'a Resp, name: &str) -> Option<&'a str> {
    r.headers.get(name).map(|v| v.to_str().expect("visible ASCII header"))
}

#[tokio::test]
async fn an_allowed_preflight_is_answered_before_authentication() {
    let api = cors_server().api();
    // A write route that needs a token and a body: the preflight has neither.
    for path in ["/v1/conversations/d:a_1:b_1/messages", "/v1/me", "/no/such/route"] {
        let r = with_headers(
            &api,
            "OPTIONS",
            path,
            &[
                ("origin", APP),
                ("access-control-request-method", "POST"),
                ("access-control-request-headers", "authorization, content-type"),
            ],
        )
        .await;
        assert_eq!(r.status, 204, "{path}: {}", r.text);
        assert_eq!(header(&r, "access-control-allow-origin"), Some(APP));
        let methods = header(&r, "access-control-allow-methods").unwrap_or_default();
        for m in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            assert!(methods.contains(m), "{path}: allow-methods {methods:?} lacks {m}");
        }
        let allowed = header(&r, "access-control-allow-headers").unwrap_or_default().to_ascii_lowercase();
        assert!(allowed.contains("authorization") && allowed.contains("content-type"), "{allowed:?}");
        assert!(header(&r, "access-control-max-age").is_some_and(|s| s.parse::<u64>().is_ok_and(|n| n > 0)));
        assert!(header(&r, "vary").is_some_and(|v| v.contains("Origin")));
        assert!(r.text.is_empty(), "a 204 has no body: {:?}", r.text);
    }
}

#[tokio::test]
async fn a_preflight_from_another_origin_gets_no_allow_headers() {
    let api = cors_server().api();
    let r = with_headers(
        &api,
        "OPTIONS",
        "/v1/me",
        &[("origin", "https://evil.example"), ("access-control-request-method", "GET")],
    )
    .await;
    r.err(403, "forbidden");
    for h in ["access-control-allow-origin", "access-control-allow-methods", "access-control-allow-headers"] {
        assert!(header(&r, h).is_none(), "{h} on a refused preflight: {:?}", r.headers);
    }
}

#[tokio::test]
async fn answers_and_errors_to_an_allowed_origin_carry_the_cors_headers() {
    let api = cors_server().api();
    let u = api.user("corsy").await;
    let auth = format!("Bearer {}", u.token);
    let ok = with_headers(&api, "GET", "/v1/me", &[("origin", APP), ("authorization", &auth)]).await;
    ok.ok(200);
    let unauthorized = with_headers(&api, "GET", "/v1/me", &[("origin", "http://localhost:5173")]).await;
    unauthorized.err(401, "unauthorized");
    let missing = with_headers(&api, "GET", "/v1/nope", &[("origin", APP)]).await;
    missing.err(404, "not_found");
    for (r, origin) in [(&ok, APP), (&unauthorized, "http://localhost:5173"), (&missing, APP)] {
        assert_eq!(header(r, "access-control-allow-origin"), Some(origin), "{} {}", r.method, r.path);
        let exposed = header(r, "access-control-expose-headers").unwrap_or_default();
        for h in ["Parley-Cursor", "Parley-Request-Id", "Retry-After"] {
            assert!(exposed.contains(h), "{} {}: expose {exposed:?} lacks {h}", r.method, r.path);
        }
    }
    // A write: the page reads the cursor header through Expose-Headers.
    let body = serde_json::json!({"display_name": "x"}).to_string();
    let r = api
        .finish(
            "POST",
            "/v1/friends/requests",
            api.http
                .post(format!("{}/v1/friends/requests", api.base))
                .header("origin", APP)
                .header("authorization", &auth)
                .header("content-type", "application/json")
                .body(body),
        )
        .await;
    r.err(400, "invalid_request");
    assert_eq!(header(&r, "access-control-allow-origin"), Some(APP));
    // Another origin's actual request is answered (CORS is enforced by the browser), but
    // without the allow header, so its page cannot read the answer.
    let other = with_headers(&api, "GET", "/healthz", &[("origin", "https://evil.example")]).await;
    other.ok(200);
    assert!(header(&other, "access-control-allow-origin").is_none());
}

#[tokio::test]
async fn without_the_flag_there_are_no_cors_headers_and_options_is_not_allowed() {
    let api = shared().api();
    let pre =
        with_headers(&api, "OPTIONS", "/v1/me", &[("origin", APP), ("access-control-request-method", "GET")]).await;
    // A method the path does not take, as any other: 405 with `Allow`, and nothing of CORS.
    pre.err(405, "invalid_request");
    assert_eq!(header(&pre, "allow"), Some("GET"));
    let get = with_headers(&api, "GET", "/healthz", &[("origin", APP)]).await;
    get.ok(200);
    for r in [&pre, &get] {
        let cors: Vec<_> = r.headers.keys().filter(|k| k.as_str().starts_with("access-control-")).collect();
        assert!(cors.is_empty(), "{} {}: {cors:?}", r.method, r.path);
        assert!(header(r, "vary").is_none_or(|v| !v.contains("Origin")));
    }
}

async fn ws_with_origin(server: &TestServer, token: &str, origin: Option<&str>) -> Result<Ws, u16> {
    use tokio_tungstenite::tungstenite::Error;
    let mut req = format!("{}?token={token}", server.ws_url()).into_client_request().unwrap();
    if let Some(o) = origin {
        req.headers_mut().insert("origin", o.parse().unwrap());
    }
    match tokio::time::timeout(WS_TIMEOUT, tokio_tungstenite::connect_async(req)).await {
        Err(_) => panic!("WebSocket connect timed out"),
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(Error::Http(resp))) => {
            let body = resp.body().as_deref().map(String::from_utf8_lossy).unwrap_or_default().to_string();
            assert!(body.contains("\"forbidden\""), "refusal body is the error envelope: {body:?}");
            Err(resp.status().as_u16())
        }
        Ok(Err(e)) => panic!("WebSocket upgrade failed without an HTTP status: {e:?}"),
    }
}

#[tokio::test]
async fn the_websocket_refuses_other_origins_when_cors_is_set() {
    let server = cors_server();
    let u = server.api().user("wsorigin").await;
    assert_eq!(ws_with_origin(server, &u.token, Some("https://evil.example")).await.err(), Some(403));
    for origin in [Some(APP), None, Some(&format!("http://{}", server.addr) as &str)] {
        let mut ws = ws_with_origin(server, &u.token, origin)
            .await
            .unwrap_or_else(|s| panic!("origin {origin:?} refused with {s}"));
        send_json(&mut ws, &serde_json::json!({"type": "ping"})).await;
        next_of_type(&mut ws, "pong", WS_TIMEOUT).await;
    }
    // Without the flag any origin may connect, as before.
    let plain = shared();
    let v = plain.api().user("wsplain").await;
    assert!(ws_with_origin(plain, &v.token, Some("https://evil.example")).await.is_ok());
}
