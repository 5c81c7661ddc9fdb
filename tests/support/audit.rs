//! Calls of the harness for the audit tests: users named by the test, writes that must
//! succeed (their cursor), the live digest and a user's sync cursors. A facade over [`Api`].

use serde_json::{json, Value};

use super::{Api, Resp, TestServer};

/// Every user's password.
pub const PASSWORD: &str = "correct horse battery";

#[derive(Clone)]
pub struct AuditApi {
    pub api: Api,
    pub admin: String,
}

impl AuditApi {
    pub fn new(server: &TestServer) -> AuditApi {
        AuditApi { api: server.api(), admin: server.admin_token.clone() }
    }

    pub async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> Resp {
        self.api.call(method, path, token, body.as_ref()).await
    }

    /// An admin `GET`.
    pub async fn admin_get(&self, path: &str) -> Resp {
        self.api.get(path, Some(&self.admin)).await
    }

    /// A write that must succeed: its cursor and body.
    pub async fn write(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> (u64, Value) {
        let r = self.call(method, path, Some(token), body).await;
        assert!((200..300).contains(&r.status), "{method} {path}: {} {}", r.status, r.text);
        let cursor = r.cursor_header().unwrap_or_else(|| panic!("{method} {path}: no Parley-Cursor header"));
        (cursor, r.json)
    }

    /// Registers exactly `user`; the registration's cursor.
    pub async fn register(&self, user: &str) -> u64 {
        self.api.register_raw(user, PASSWORD, None).await.write(201)
    }

    /// Logs in: `(token, session_id, cursor)`.
    pub async fn login(&self, user: &str) -> (String, String, u64) {
        let r = self.call("POST", "/v1/sessions", None, Some(json!({"user_id": user, "password": PASSWORD}))).await;
        let cursor = r.write(201);
        (
            r.json["token"].as_str().expect("token").to_owned(),
            r.json["session_id"].as_str().expect("sid").to_owned(),
            cursor,
        )
    }

    /// `GET /v1/admin/digest`: `(cursor, digest)`.
    pub async fn digest(&self) -> (u64, String) {
        let r = self.admin_get("/v1/admin/digest").await;
        let v = r.ok(200);
        (v["cursor"].as_u64().expect("cursor"), v["digest"].as_str().expect("digest").to_owned())
    }

    /// Every update cursor the user's sync returns, in small pages to the end.
    pub async fn sync_cursors(&self, token: &str) -> Vec<u64> {
        super::cursors(&self.api.sync_all(token, 0, Some(7)).await.0)
    }
}
