//! Accounts and tokens for an app backend (`/v1/admin/users*`) and `--registration closed`,
//! as an app's backend uses them: create the user, issue tokens, deactivate, force a logout.

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;

/// A server whose accounts only the app's backend creates.
fn closed() -> &'static TestServer {
    shared_with(&["--registration", "closed", "--login-rate-limit", "0"])
}

#[tokio::test]
async fn with_registration_closed_the_backend_creates_users_and_issues_their_tokens() {
    let server = closed();
    let (api, admin) = (server.api(), server.admin_token.as_str());
    let id = uid("app");

    // Nobody registers themselves.
    api.register_raw(&id, "correct horse", None).await.err(403, "forbidden");

    // Without the admin token, nothing; a user's token is not an admin token either.
    api.post("/v1/admin/users", None, json!({"user_id": id})).await.err(401, "unauthorized");
    api.post("/v1/admin/users", Some("nope"), json!({"user_id": id})).await.err(401, "unauthorized");

    // The backend creates the account, without a password.
    let r = api.post("/v1/admin/users", Some(admin), json!({"user_id": id, "display_name": "Ada"})).await;
    r.write(201);
    assert_eq!((r.json["user_id"].as_str(), r.json["display_name"].as_str()), (Some(id.as_str()), Some("Ada")));
    api.post("/v1/admin/users", Some(admin), json!({"user_id": id})).await.err(409, "user_exists");
    api.post("/v1/admin/users", Some(admin), json!({"user_id": "Bad Id"})).await.err(400, "invalid_request");
    api.post("/v1/admin/users", Some(admin), json!({"user_id": uid("app"), "password": "short"}))
        .await
        .err(400, "invalid_request");
    api.post("/v1/admin/users", Some(admin), json!({"user_id": uid("app"), "extra": 1}))
        .await
        .err(400, "invalid_request");

    // No password: a password login can never succeed.
    api.login_raw(&id, "", None).await.err(401, "invalid_credentials");
    api.login_raw(&id, "correct horse", None).await.err(401, "invalid_credentials");

    // A token, as a login's: it works on every user endpoint and lists as a session.
    let before = now_ms();
    let r = api
        .post(
            &format!("/v1/admin/users/{id}/tokens"),
            Some(admin),
            json!({"device": "pixel", "platform": "android", "ttl_secs": 600}),
        )
        .await;
    r.write(201);
    let token = r.json["token"].as_str().expect("token").to_owned();
    let expires_at = as_u64(&r.json["expires_at"], "expires_at");
    assert!(expires_at >= before + 600_000 && expires_at <= now_ms() + 600_000, "ttl_secs honoured: {expires_at}");
    let me = api.get("/v1/me", Some(&token)).await;
    assert_eq!(me.ok(200)["display_name"], json!("Ada"));
    let sessions = api.get("/v1/sessions", Some(&token)).await;
    let listed = sessions.ok(200)["sessions"].as_array().unwrap().clone();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0]["session_id"].clone(), listed[0]["device"].clone()),
        (r.json["session_id"].clone(), json!("pixel"))
    );
    // Defaults with an empty body; bad inputs are clear errors.
    api.post_empty(&format!("/v1/admin/users/{id}/tokens"), Some(admin)).await.write(201);
    let path = format!("/v1/admin/users/{id}/tokens");
    api.post(&path, Some(admin), json!({"platform": "fridge"})).await.err(400, "invalid_request");
    api.post(&path, Some(admin), json!({"ttl_secs": 1})).await.err(400, "invalid_request");
    api.post(&path, Some(admin), json!({"ttl_secs": "long"})).await.err(400, "invalid_request");
    api.post("/v1/admin/users/nobody_here/tokens", Some(admin), json!({})).await.err(404, "not_found");
    api.post(&path, Some(&token), json!({})).await.err(401, "unauthorized");

    // The backend sets a password: now the user can log in with it too.
    let r = api
        .call("PUT", &format!("/v1/admin/users/{id}/password"), Some(admin), Some(&json!({"password": "new password"})))
        .await;
    r.write(204);
    api.login(&id, "new password").await;
    api.call("PUT", &format!("/v1/admin/users/{id}/password"), Some(admin), Some(&json!({"password": "x"})))
        .await
        .err(400, "invalid_request");
    // The token issued before still works (setting a password keeps sessions).
    api.get("/v1/me", Some(&token)).await.ok(200);
}

#[tokio::test]
async fn the_user_list_pages_through_every_account() {
    // Its own server, so the list holds exactly what this test made.
    let server = TestServer::start();
    let (api, admin) = (server.api(), server.admin_token.as_str());
    let ids = ["u_delta", "u_alpha", "u_echo", "u_charlie", "u_bravo"];
    for id in ids {
        api.post("/v1/admin/users", Some(admin), json!({"user_id": id})).await.write(201);
    }
    api.register("u_foxtrot", "correct horse").await; // open registration: listed the same
    api.post_empty("/v1/admin/users/u_charlie/deactivate", Some(admin)).await.write(204);

    let mut seen = Vec::new();
    let mut after = String::new();
    for _ in 0..10 {
        let r = api.get(&format!("/v1/admin/users?limit=2&after={after}"), Some(admin)).await;
        let page = r.ok(200)["users"].as_array().unwrap().clone();
        assert!(page.len() <= 2, "{}", r.text);
        for u in &page {
            assert!(u["created_at"].as_u64().is_some_and(|t| t > 0), "{u}");
            seen.push((u["user_id"].as_str().unwrap().to_owned(), u["deactivated"].as_bool().unwrap()));
        }
        match r.json["next"].as_str() {
            Some(n) => after = n.to_owned(),
            None => break,
        }
    }
    let expect: Vec<(String, bool)> = ["u_alpha", "u_bravo", "u_charlie", "u_delta", "u_echo", "u_foxtrot"]
        .iter()
        .map(|id| (id.to_string(), *id == "u_charlie"))
        .collect();
    assert_eq!(seen, expect);
    let all = api.get("/v1/admin/users", Some(admin)).await;
    assert_eq!(all.ok(200)["users"].as_array().unwrap().len(), 6);
    assert_eq!(all.json["next"], json!(null));
    api.get("/v1/admin/users?limit=0", Some(admin)).await.err(400, "invalid_request");
    api.get("/v1/admin/users?limit=1001", Some(admin)).await.err(400, "invalid_request");
    api.get("/v1/admin/users", None).await.err(401, "unauthorized");
}

#[tokio::test]
async fn deactivation_closes_sockets_refuses_logins_tokens_and_sends_until_reactivated() {
    let server = shared_with(&["--login-rate-limit", "0"]);
    let (api, admin) = (server.api(), server.admin_token.as_str());
    let (alice, bob, conv) = api.friends("deact").await;
    let phone = api.login_session(&bob.id, &bob.password, Some("phone")).await;
    let mut ws = ws_connect(server, &phone.token).await;
    send_json(&mut ws, &json!({"type": "sync", "since": 0})).await;
    next_of_type(&mut ws, "updates", Duration::from_secs(5)).await;

    let r = api.post_empty(&format!("/v1/admin/users/{}/deactivate", bob.id), Some(admin)).await;
    r.write(204);
    // The open socket is closed as a revoked session's is.
    let (code, _) = read_until_close(&mut ws, Duration::from_secs(5)).await;
    assert_eq!(code, Some(4001));
    // Every token is dead; logging in and new tokens are refused as deactivated.
    api.get("/v1/me", Some(&bob.token)).await.err(401, "unauthorized");
    api.get("/v1/me", Some(&phone.token)).await.err(401, "unauthorized");
    api.login_raw(&bob.id, &bob.password, None).await.err(403, "account_deactivated");
    api.post(&format!("/v1/admin/users/{}/tokens", bob.id), Some(admin), json!({}))
        .await
        .err(403, "account_deactivated");
    // Nobody reaches the account.
    api.send_raw(&alice.token, &conv, &cmid("to-deactivated"), "hello?").await.err(403, "forbidden");
    // A wrong password is still just wrong (it does not tell that the account exists).
    api.login_raw(&bob.id, "not the password", None).await.err(401, "invalid_credentials");
    // Deactivating again is fine.
    api.post_empty(&format!("/v1/admin/users/{}/deactivate", bob.id), Some(admin)).await.ok(204);

    api.post_empty(&format!("/v1/admin/users/{}/reactivate", bob.id), Some(admin)).await.write(204);
    let token = api.login(&bob.id, &bob.password).await;
    api.get("/v1/me", Some(&token)).await.ok(200);
    api.send(&alice, &conv, "welcome back").await;
    api.post_empty("/v1/admin/users/nobody_here/deactivate", Some(admin)).await.err(404, "not_found");
}

#[tokio::test]
async fn force_logout_revokes_every_session_of_the_user_only() {
    let server = shared_with(&["--login-rate-limit", "0"]);
    let (api, admin) = (server.api(), server.admin_token.as_str());
    let (alice, bob, _) = api.friends("logout_all").await;
    let mut tokens = vec![bob.token.clone()];
    for d in ["a", "b", "c"] {
        tokens.push(api.login_session(&bob.id, &bob.password, Some(d)).await.token);
    }
    let r = api.delete(&format!("/v1/admin/users/{}/sessions", bob.id), Some(admin)).await;
    r.write(204);
    for t in &tokens {
        api.get("/v1/me", Some(t)).await.err(401, "unauthorized");
    }
    // Only bob's sessions, and he can log in again at once.
    api.get("/v1/me", Some(&alice.token)).await.ok(200);
    let fresh = api.login(&bob.id, &bob.password).await;
    api.get("/v1/me", Some(&fresh)).await.ok(200);
    // A user with no session left: still 204.
    let carol = api.user("logout_none").await;
    api.delete(&format!("/v1/sessions/{}", carol.session_id), Some(&carol.token)).await.write(204);
    api.delete(&format!("/v1/admin/users/{}/sessions", carol.id), Some(admin)).await.ok(204);
}
