//! Group calls of the harness, for tests that name their users (`own`, `bob`) on a server of
//! their own: every call takes the acting [`User`] and a group id, and answers a [`Resp`].
//! A facade over [`Api`]; nothing here is a second client.

use serde_json::{json, Value};

use super::{cursors, Api, Resp, TestServer, User};

/// Every named user's password.
pub const PASSWORD: &str = "correct horse battery";

/// [`Api`] with group-shaped calls.
#[derive(Clone)]
pub struct GroupApi {
    pub api: Api,
}

impl GroupApi {
    pub fn new(server: &TestServer) -> GroupApi {
        GroupApi { api: server.api() }
    }

    pub async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> Resp {
        self.api.call(method, path, token, body.as_ref()).await
    }

    /// A call as `u`.
    async fn call_as(&self, method: &str, path: &str, u: &User, body: Option<Value>) -> Resp {
        self.call(method, path, Some(&u.token), body).await
    }

    pub async fn get(&self, path: &str, u: &User) -> Resp {
        self.call_as("GET", path, u, None).await
    }

    pub async fn post(&self, path: &str, u: &User, body: Value) -> Resp {
        self.call_as("POST", path, u, Some(body)).await
    }

    /// The node's `/metrics` text.
    pub async fn metrics(&self) -> String {
        self.api.get("/metrics", None).await.text
    }

    /// Registers exactly `id` and logs in.
    pub async fn user(&self, id: &str) -> User {
        self.api.register_raw(id, PASSWORD, None).await.ok(201);
        let s = self.api.login_session(id, PASSWORD, None).await;
        User { id: id.to_owned(), password: PASSWORD.to_owned(), token: s.token, session_id: s.session_id }
    }

    pub async fn users(&self, ids: &[&str]) -> Vec<User> {
        let mut out = Vec::new();
        for id in ids {
            out.push(self.user(id).await);
        }
        out
    }

    pub async fn create(&self, owner: &User, name: &str, members: &[&User]) -> Resp {
        let ids: Vec<&str> = members.iter().map(|m| m.id.as_str()).collect();
        self.post("/v1/groups", owner, json!({"name": name, "members": ids})).await
    }

    /// Creates a group and returns its id.
    pub async fn group(&self, owner: &User, members: &[&User]) -> String {
        let r = self.create(owner, "crew", members).await;
        r.write(201);
        r.json["group_id"].as_str().expect("group_id is a string").to_owned()
    }

    pub async fn add(&self, actor: &User, gid: &str, users: &[&str]) -> Resp {
        self.post(&format!("/v1/groups/{gid}/members"), actor, json!({ "user_ids": users })).await
    }

    pub async fn kick(&self, actor: &User, gid: &str, user: &str) -> Resp {
        self.call_as("DELETE", &format!("/v1/groups/{gid}/members/{user}"), actor, None).await
    }

    pub async fn leave(&self, actor: &User, gid: &str) -> Resp {
        self.call_as("POST", &format!("/v1/groups/{gid}/leave"), actor, None).await
    }

    pub async fn role(&self, actor: &User, gid: &str, user: &str, role: &str) -> Resp {
        let path = format!("/v1/groups/{gid}/members/{user}/role");
        self.call_as("PUT", &path, actor, Some(json!({ "role": role }))).await
    }

    pub async fn mute(&self, actor: &User, gid: &str, user: &str, until_ms: u64) -> Resp {
        let path = format!("/v1/groups/{gid}/members/{user}/mute");
        self.call_as("PUT", &path, actor, Some(json!({ "until_ms": until_ms }))).await
    }

    pub async fn patch(&self, actor: &User, gid: &str, body: Value) -> Resp {
        self.call_as("PATCH", &format!("/v1/groups/{gid}"), actor, Some(body)).await
    }

    pub async fn transfer(&self, actor: &User, gid: &str, to: &str) -> Resp {
        self.post(&format!("/v1/groups/{gid}/transfer"), actor, json!({ "to": to })).await
    }

    pub async fn dismiss(&self, actor: &User, gid: &str) -> Resp {
        self.call_as("DELETE", &format!("/v1/groups/{gid}"), actor, None).await
    }

    pub async fn send(&self, from: &User, gid: &str, body: &str) -> Resp {
        let cmid = super::cmid(&from.id);
        self.post(&format!("/v1/conversations/g:{gid}/messages"), from, json!({"client_msg_id": cmid, "body": body}))
            .await
    }

    /// Sends and returns `(seq, cursor)`.
    pub async fn sent(&self, from: &User, gid: &str, body: &str) -> (u64, u64) {
        let r = self.send(from, gid, body).await;
        let cursor = r.write(201);
        (r.json["message"]["seq"].as_u64().expect("seq"), cursor)
    }

    pub async fn read(&self, u: &User, gid: &str, seq: u64) -> Resp {
        self.post(&format!("/v1/conversations/g:{gid}/read"), u, json!({ "seq": seq })).await
    }

    pub async fn history(&self, u: &User, gid: &str, query: &str) -> Resp {
        self.get(&format!("/v1/conversations/g:{gid}/messages{query}"), u).await
    }

    pub async fn conversation(&self, u: &User, gid: &str) -> Option<Value> {
        self.api.conversation(&u.token, &format!("g:{gid}")).await
    }

    /// Every update after `since`, paging with `limit`; checks ascending, unique cursors.
    pub async fn sync_all(&self, u: &User, since: u64, limit: u64) -> (Vec<Value>, u64) {
        let (out, cursor) = self.api.sync_all(&u.token, since, Some(limit)).await;
        let cs = cursors(&out);
        assert!(cs.windows(2).all(|w| w[0] < w[1]), "sync cursors must ascend without repeats: {cs:?}");
        (out, cursor)
    }
}
