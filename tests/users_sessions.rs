//! Registration, login, profiles and sessions (list, logout, revoke).

mod support;

use serde_json::json;
use support::*;

#[tokio::test]
async fn register_returns_profile_and_cursor() {
    let api = shared().api();
    let id = uid("reg");
    let r = api.register_raw(&id, "correct horse", Some("Alice Liddell")).await;
    r.write(201);
    assert_eq!(r.json["user_id"], json!(id));
    assert_eq!(r.json["display_name"], json!("Alice Liddell"));

    // display_name defaults to the user id.
    let id2 = uid("reg");
    let r = api.register_raw(&id2, "correct horse", None).await;
    r.write(201);
    assert_eq!(r.json["user_id"], json!(id2));
    assert_eq!(r.json["display_name"], json!(id2));

    // Profiles are visible to other users, and to oneself via /v1/me.
    let token = api.login(&id, "correct horse").await;
    let me = api.get("/v1/me", Some(&token)).await;
    me.ok(200);
    assert_eq!(me.json["user_id"], json!(id));
    assert_eq!(me.json["display_name"], json!("Alice Liddell"));
    let other = api.get(&format!("/v1/users/{id2}"), Some(&token)).await;
    other.ok(200);
    assert_eq!(other.json["user_id"], json!(id2));
    assert_eq!(other.json["display_name"], json!(id2));

    let missing = api.get(&format!("/v1/users/{}", uid("nobody")), Some(&token)).await;
    missing.err(404, "not_found");
}

#[tokio::test]
async fn duplicate_registration_is_user_exists() {
    let api = shared().api();
    let id = uid("dup");
    api.register(&id, "password-1").await;
    api.register_raw(&id, "password-2", None).await.err(409, "user_exists");
    // The original password still works, the second one does not.
    api.login(&id, "password-1").await;
    api.login_raw(&id, "password-2", None).await.err(401, "invalid_credentials");
}

#[tokio::test]
async fn user_id_rules() {
    let api = shared().api();
    let suffix = uid("x").replace('_', "");
    for bad in [
        "ab".to_string(),
        String::new(),
        format!("Upper{suffix}"),
        format!("dash-{suffix}"),
        format!("dot.{suffix}"),
        format!("sp ace{suffix}"),
        format!("é{suffix}"),
        format!("{}{suffix}", "a".repeat(33)),
    ] {
        api.register_raw(&bad, "long enough", None).await.err(400, "invalid_request");
    }
    // Boundaries that are valid: 3 and 32 characters of [a-z0-9_] (this server is fresh and
    // only this test uses 3-character ids).
    api.register_raw("q_3", "long enough", None).await.write(201);
    let n = uid("b").replace('_', "");
    let long = format!("{}{}", "z_9".repeat(10), &n[n.len() - 2..]);
    assert_eq!(long.len(), 32);
    api.register_raw(&long, "long enough", None).await.write(201);
}

#[tokio::test]
async fn password_and_display_name_rules() {
    let api = shared().api();
    api.register_raw(&uid("pw"), "1234567", None).await.err(400, "invalid_request");
    api.register_raw(&uid("pw"), "", None).await.err(400, "invalid_request");
    api.register_raw(&uid("pw"), &"p".repeat(1025), None).await.err(400, "invalid_request");
    // 8 and 1024 bytes are fine.
    let short = uid("pw");
    api.register_raw(&short, "12345678", None).await.write(201);
    api.login(&short, "12345678").await;
    let long = uid("pw");
    let long_pw = "q".repeat(1024);
    api.register_raw(&long, &long_pw, None).await.write(201);
    api.login(&long, &long_pw).await;
    // Bytes, not characters: 513 two-byte characters are 1026 bytes.
    api.register_raw(&uid("pw"), &"é".repeat(513), None).await.err(400, "invalid_request");

    api.register_raw(&uid("dn"), "long enough", Some("")).await.err(400, "invalid_request");
    api.register_raw(&uid("dn"), "long enough", Some(&"n".repeat(129))).await.err(400, "invalid_request");
    let ok = uid("dn");
    let r = api.register_raw(&ok, "long enough", Some(&"n".repeat(128))).await;
    r.write(201);
    assert_eq!(r.json["display_name"], json!("n".repeat(128)));
    // 128 characters, not bytes.
    let ok2 = uid("dn");
    let name = "é".repeat(128);
    let r = api.register_raw(&ok2, "long enough", Some(&name)).await;
    r.write(201);
    assert_eq!(r.json["display_name"], json!(name));
}

#[tokio::test]
async fn login_returns_a_one_hour_token() {
    let api = shared().api();
    let id = uid("login");
    api.register(&id, "s3cret-pass").await;
    let before = now_ms();
    let r = api.login_raw(&id, "s3cret-pass", Some("phone")).await;
    r.write(201);
    let token = as_str(&r.json["token"], "token");
    assert!(!as_str(&r.json["session_id"], "session_id").is_empty());
    let expires_at = as_u64(&r.json["expires_at"], "expires_at");
    let hour = 3_600_000;
    assert!(
        expires_at + 120_000 >= before + hour && expires_at <= now_ms() + hour + 120_000,
        "expires_at {expires_at} is not about one hour from now ({before})"
    );
    let claims = jwt_claims(token);
    let exp = as_u64(&claims["exp"], "exp claim");
    assert!(exp.abs_diff(expires_at / 1000) <= 2, "JWT exp {exp} != expires_at {expires_at}/1000");

    let me = api.get("/v1/me", Some(token)).await;
    assert_eq!(me.ok(200)["user_id"], json!(id));
}

#[tokio::test]
async fn login_failures_are_invalid_credentials() {
    let api = shared().api();
    let id = uid("lf");
    api.register(&id, "right password").await;
    api.login_raw(&id, "wrong password", None).await.err(401, "invalid_credentials");
    api.login_raw(&uid("ghost"), "whatever123", None).await.err(401, "invalid_credentials");
    // Same answer for a bad password and an unknown user: neither reveals which it was.
    api.login(&id, "right password").await;
}

#[tokio::test]
async fn sessions_list_devices() {
    let api = shared().api();
    let id = uid("sess");
    api.register(&id, "password!").await;
    let t0 = now_ms();
    let phone = api.login_session(&id, "password!", Some("phone")).await;
    let laptop = api.login_session(&id, "password!", Some("laptop")).await;
    let anon = api.login_session(&id, "password!", None).await;
    assert_ne!(phone.session_id, laptop.session_id);

    let r = api.get("/v1/sessions", Some(&laptop.token)).await;
    let list = r.ok(200)["sessions"].as_array().expect("sessions array").clone();
    assert_eq!(list.len(), 3, "three sessions: {}", r.text);
    for (s, device) in [(&phone, "phone"), (&laptop, "laptop"), (&anon, "unknown")] {
        let entry = list
            .iter()
            .find(|e| e["session_id"] == json!(s.session_id))
            .unwrap_or_else(|| panic!("session {} missing: {}", s.session_id, r.text));
        assert_eq!(entry["device"], json!(device));
        let created = as_u64(&entry["created_at"], "created_at");
        assert!(created + 60_000 >= t0 && created <= now_ms() + 60_000, "created_at {created} not near now");
    }

    // Another user's list does not show them.
    let other = api.user("sessx").await;
    let r = api.get("/v1/sessions", Some(&other.token)).await;
    let list = r.ok(200)["sessions"].as_array().unwrap().clone();
    assert_eq!(list.len(), 1, "{}", r.text);
    assert_eq!(list[0]["session_id"], json!(other.session_id));
}

#[tokio::test]
async fn logout_refuses_the_token_at_once() {
    let api = shared().api();
    let id = uid("logout");
    api.register(&id, "password!").await;
    let a = api.login_session(&id, "password!", Some("a")).await;
    let b = api.login_session(&id, "password!", Some("b")).await;

    let r = api.delete("/v1/sessions/current", Some(&a.token)).await;
    r.write(204);
    assert!(r.text.is_empty(), "204 has no body: {}", r.text);

    api.get("/v1/me", Some(&a.token)).await.err(401, "unauthorized");
    api.get("/v1/sessions", Some(&a.token)).await.err(401, "unauthorized");
    // The other device is unaffected and no longer lists the closed session.
    let r = api.get("/v1/sessions", Some(&b.token)).await;
    let list = r.ok(200)["sessions"].as_array().unwrap().clone();
    assert!(list.iter().all(|s| s["session_id"] != json!(a.session_id)), "{}", r.text);
    assert!(list.iter().any(|s| s["session_id"] == json!(b.session_id)), "{}", r.text);
}

#[tokio::test]
async fn revoke_another_device() {
    let api = shared().api();
    let id = uid("revoke");
    api.register(&id, "password!").await;
    let phone = api.login_session(&id, "password!", Some("phone")).await;
    let laptop = api.login_session(&id, "password!", Some("laptop")).await;
    api.get("/v1/me", Some(&phone.token)).await.ok(200);

    let r = api.delete(&format!("/v1/sessions/{}", phone.session_id), Some(&laptop.token)).await;
    let cursor = r.write(204);

    // Refused at once (single node: the revocation is applied when the 204 is sent).
    api.get("/v1/me", Some(&phone.token)).await.err(401, "unauthorized");
    api.get("/v1/me", Some(&laptop.token)).await.ok(200);

    // The user's devices learn about it through sync.
    let (updates, _) = api.sync_all(&laptop.token, 0, None).await;
    let revoked = of_type(&updates, "session_revoked");
    assert_eq!(revoked.len(), 1, "one session_revoked update: {updates:?}");
    assert_eq!(revoked[0]["session_id"], json!(phone.session_id));
    assert_eq!(revoked[0]["cursor"], json!(cursor), "the update sits at the write's cursor");

    // Revoking again, or an unknown session: not found.
    api.delete(&format!("/v1/sessions/{}", phone.session_id), Some(&laptop.token)).await.err(404, "not_found");
    api.delete("/v1/sessions/no-such-session", Some(&laptop.token)).await.err(404, "not_found");
}

#[tokio::test]
async fn cannot_revoke_someone_elses_session() {
    let api = shared().api();
    let alice = api.user("alice").await;
    let bob = api.user("bob").await;
    api.delete(&format!("/v1/sessions/{}", bob.session_id), Some(&alice.token)).await.err(404, "not_found");
    api.get("/v1/me", Some(&bob.token)).await.ok(200);
}

#[tokio::test]
async fn bad_tokens_are_unauthorized() {
    let api = shared().api();
    let u = api.user("tok").await;
    api.get("/v1/me", None).await.err(401, "unauthorized");
    api.get("/v1/me", Some("not-a-jwt")).await.err(401, "unauthorized");
    api.get("/v1/me", Some("")).await.err(401, "unauthorized");
    // A tampered signature.
    let parts: Vec<&str> = u.token.split('.').collect();
    let sig = parts[2];
    let first = if sig.starts_with('A') { "B" } else { "A" };
    let forged = format!("{}.{}.{}{}", parts[0], parts[1], first, &sig[1..]);
    api.get("/v1/me", Some(&forged)).await.err(401, "unauthorized");
    // A tampered payload (someone else's user id) with the original signature.
    let mut claims = jwt_claims(&u.token);
    if let Some(obj) = claims.as_object_mut() {
        for (_, v) in obj.iter_mut() {
            if v == &json!(u.id) {
                *v = json!("someone_else");
            }
        }
        // Make sure the payload differs even if no claim held the user id.
        obj.insert("forged".into(), json!(true));
    }
    let payload = b64url_encode(claims.to_string().as_bytes());
    let forged = format!("{}.{}.{}", parts[0], payload, parts[2]);
    api.get("/v1/me", Some(&forged)).await.err(401, "unauthorized");
    // Wrong scheme.
    let r = api
        .finish(
            "GET",
            "/v1/me",
            api.http.get(format!("{}/v1/me", api.base)).header("authorization", format!("Basic {}", u.token)),
        )
        .await;
    r.err(401, "unauthorized");
    api.get("/v1/me", Some(&u.token)).await.ok(200);
}

fn b64url_encode(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = ((b[0] as u32) << 16) | ((b[1] as u32) << 8) | b[2] as u32;
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}
