//! The error contract: unknown routes, oversized and malformed bodies, missing auth. Every
//! error is `{"error":{"code","message"}}` with the right status, never a 500 or a dropped
//! connection.

mod support;

use serde_json::json;
use support::*;

#[tokio::test]
async fn unknown_routes_are_not_found_and_wrong_methods_not_allowed() {
    let api = shared().api();
    let u = api.user("route").await;
    let t = Some(u.token.as_str());
    let json_error = |r: &Resp, what: &str| {
        let ct = r.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
        assert!(ct.starts_with("application/json"), "{what}: content-type {ct:?}");
    };
    for (method, path) in [("GET", "/nope"), ("GET", "/v1/nope"), ("GET", "/v1/sessions/current/extra")] {
        let r = api.call(method, path, t, None).await;
        r.err(404, "not_found");
        json_error(&r, &format!("{method} {path}"));
    }
    // A known path with another method: 405 with the methods it takes in `Allow`.
    let me = format!("/v1/users/{}", u.id);
    for (method, path, allow) in [
        ("GET", "/v1/users", "POST"),
        ("PATCH", "/v1/me", "GET"),
        ("DELETE", "/v1/me", "GET"),
        ("PUT", "/v1/sessions", "GET, POST"),
        ("DELETE", me.as_str(), "GET"),
        ("GET", "/v1/friends/requests/x/accept", "POST"),
        ("PUT", "/v1/conversations", "GET"),
        ("POST", "/healthz", "GET"),
        // A literal segment beats a parameter: not `DELETE /v1/friends/{user_id}`'s.
        ("PUT", "/v1/friends/requests", "GET, POST"),
    ] {
        let r = api.call(method, path, t, None).await;
        r.err(405, "invalid_request");
        json_error(&r, &format!("{method} {path}"));
        let got = r.headers.get("allow").and_then(|v| v.to_str().ok()).unwrap_or("");
        let mut got: Vec<&str> = got.split(", ").collect();
        got.sort_unstable();
        assert_eq!(got.join(", "), allow, "{method} {path}: Allow");
    }
    // Without a token too, outside /v1.
    api.get("/definitely/not/here", None).await.err(404, "not_found");
}

#[tokio::test]
async fn bodies_over_one_mib_are_payload_too_large() {
    let api = shared().api();
    let u = api.user("huge").await;
    let server = shared();
    let filler = "z".repeat(1024 * 1024 + 1024);
    // Raw requests: the server may answer 413 before reading the body and close; an HTTP
    // client library can then fail with a broken pipe while still writing and never show the
    // answer, so the body is written while the response is read.
    let cases = [
        ("/v1/users", None, json!({"user_id": uid("huge"), "password": "long enough", "display_name": filler})),
        ("/v1/friends/requests", Some(&u.token), json!({"to": "someone", "note": filler})),
    ];
    for (path, token, body) in cases {
        let body = serde_json::to_vec(&body).unwrap();
        let auth = token.map(|t| format!("authorization: Bearer {t}\r\n")).unwrap_or_default();
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n{auth}content-length: {}\r\n\r\n",
            server.addr,
            body.len()
        );
        let (status, json, text) = raw_http(server.addr, &head, body).await;
        assert_eq!(status, 413, "POST {path} with {} KiB: {text}", filler.len() / 1024);
        assert_eq!(json["error"]["code"], json!("payload_too_large"), "{text}");
        assert!(json["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{text}");
    }
    // The server is fine afterwards.
    api.get("/v1/me", Some(&u.token)).await.ok(200);
}

#[tokio::test]
async fn malformed_bodies_are_invalid_request() {
    let api = shared().api();
    let a = api.user("mal").await;
    let b = api.user("malb").await;
    api.befriend(&a, &b).await;
    let cid = dm(&a.id, &b.id);
    let msgs = format!("/v1/conversations/{cid}/messages");
    let read = format!("/v1/conversations/{cid}/read");

    let garbage: &[&[u8]] = &[b"", b"{", b"not json", b"[]", b"\"str\"", b"null", b"{\"a\":}", b"\xff\xfe"];
    for path in ["/v1/users", "/v1/sessions", "/v1/friends/requests", msgs.as_str(), read.as_str()] {
        let token = if path.starts_with("/v1/conversations") || path == "/v1/friends/requests" {
            Some(a.token.as_str())
        } else {
            None
        };
        for g in garbage {
            let r = api.call_raw("POST", path, token, g.to_vec()).await;
            r.err(400, "invalid_request");
        }
        // Missing fields.
        api.call("POST", path, token, Some(&json!({}))).await.err(400, "invalid_request");
    }
    // Wrong types.
    for body in [
        json!({"user_id": 12345, "password": "long enough"}),
        json!({"user_id": uid("t"), "password": 12345678}),
        json!({"user_id": uid("t"), "password": "long enough", "display_name": 5}),
        json!({"user_id": uid("t"), "password": ["long enough"]}),
    ] {
        api.post("/v1/users", None, body).await.err(400, "invalid_request");
    }
    for body in [
        json!({"user_id": a.id, "password": 1}),
        json!({"user_id": a.id, "password": a.password, "device": 7}),
        json!({"password": a.password}),
    ] {
        api.post("/v1/sessions", None, body).await.err(400, "invalid_request");
    }
    api.post("/v1/friends/requests", Some(&a.token), json!({"to": b.id, "note": 3})).await.err(400, "invalid_request");
    api.post(&msgs, Some(&a.token), json!({"client_msg_id": 1, "body": "x"})).await.err(400, "invalid_request");
    api.post(&msgs, Some(&a.token), json!({"client_msg_id": "c", "body": "x", "reply_to": "one"}))
        .await
        .err(400, "invalid_request");
    api.post(&read, Some(&a.token), json!({"seq": 1.5})).await.err(400, "invalid_request");
    api.post(&read, Some(&a.token), json!({"seq": null})).await.err(400, "invalid_request");

    // None of it was stored.
    assert_eq!(api.history(&a.token, &cid, "").await["max_seq"], json!(0));
}

#[tokio::test]
async fn every_user_endpoint_needs_a_token() {
    let api = shared().api();
    let u = api.user("noauth").await;
    let other = api.user("noautho").await;
    let cid = dm(&u.id, &other.id);
    let endpoints: Vec<(&str, String, Option<serde_json::Value>)> = vec![
        ("GET", "/v1/sessions".into(), None),
        ("DELETE", "/v1/sessions/current".into(), None),
        ("DELETE", format!("/v1/sessions/{}", u.session_id), None),
        ("GET", "/v1/me".into(), None),
        ("GET", format!("/v1/users/{}", u.id), None),
        ("POST", "/v1/friends/requests".into(), Some(json!({"to": other.id}))),
        ("GET", "/v1/friends/requests".into(), None),
        ("POST", format!("/v1/friends/requests/{}/accept", other.id), None),
        ("POST", format!("/v1/friends/requests/{}/reject", other.id), None),
        ("GET", "/v1/friends".into(), None),
        ("DELETE", format!("/v1/friends/{}", other.id), None),
        ("PUT", format!("/v1/blocks/{}", other.id), None),
        ("DELETE", format!("/v1/blocks/{}", other.id), None),
        ("GET", "/v1/blocks".into(), None),
        ("GET", "/v1/conversations".into(), None),
        ("POST", format!("/v1/conversations/{cid}/messages"), Some(json!({"client_msg_id": "c", "body": "x"}))),
        ("GET", format!("/v1/conversations/{cid}/messages"), None),
        ("POST", format!("/v1/conversations/{cid}/read"), Some(json!({"seq": 1}))),
        ("POST", format!("/v1/conversations/{cid}/messages/1/revoke"), None),
        ("GET", "/v1/sync?since=0".into(), None),
    ];
    for (method, path, body) in &endpoints {
        for token in [None, Some("garbage.token.here")] {
            let r = api.call(method, path, token, body.as_ref()).await;
            r.err(401, "unauthorized");
        }
    }
    // Nothing happened: the session still works, no request was made.
    api.get("/v1/me", Some(&u.token)).await.ok(200);
    let r = api.get("/v1/friends/requests", Some(&other.token)).await;
    assert_eq!(r.ok(200)["incoming"], json!([]));
}

#[tokio::test]
async fn open_endpoints_need_no_token() {
    let api = shared().api();
    api.get("/healthz", None).await.ok(200);
    api.ready().await;
    api.get("/metrics", None).await.ok(200);
    api.get("/v1/cluster", None).await.ok(200);
}

/// Integer query parameters are integers from 0 to 2^63-1, as the OpenAPI document says: an
/// empty value or one past int64 is `invalid_request`, not silently ignored or clamped.
#[tokio::test]
async fn integer_query_parameters_are_checked_against_the_document() {
    let server = shared();
    let api = server.api();
    let u = api.user("intq").await;
    for q in ["min_cursor=", "min_cursor=9223372036854775808", "min_cursor=-1", "min_cursor=1.5"] {
        api.get(&format!("/v1/friends?{q}"), Some(&u.token)).await.err(400, "invalid_request");
    }
    api.get("/v1/friends?min_cursor=0", Some(&u.token)).await.ok(200);
    let admin = server.admin_token.as_str();
    api.get("/v1/admin/journal?limit=9223372036854775808", Some(admin)).await.err(400, "invalid_request");
    api.get("/v1/admin/journal?limit=9223372036854775807", Some(admin)).await.ok(200);
}
