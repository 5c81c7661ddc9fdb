//! The machine-readable contract: `GET /v1/openapi.json`, an OpenAPI 3.1 document of every HTTP
//! endpoint, and `GET /v1/ws.schema.json`, a JSON Schema of every WebSocket frame both ways.
//! Both are public (no token), like the contract says.
//!
//! Generated, never written by hand: every body, answer and frame schema is the wire crate's
//! type (`parley_wire`, `utoipa::ToSchema`), so a changed type changes the document. The
//! endpoints are [`endpoints`], one line each (method, path template, who may call it, body,
//! answers, the error statuses it can answer); the tests hold that list to the router (every
//! `warp::path!` route in `routes/*.rs` and `ws.rs` is in the document and nothing else is),
//! so a route added without its line fails the build's tests. Adding an endpoint to the
//! document is one line in [`endpoints`].
//!
//! Error statuses are the ones the code can answer, each with the error envelope: the
//! shared ones of every authenticated route (401, 503 while the node is not serving, 500 on a
//! storage error), of every JSON body (400, 408, 413, 415), of every read (400 for a malformed
//! query or `min_cursor`, 503 when `min_cursor` is not reached in time), and each route's own.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use parley_wire::bodies::{
    AddLearnerBody, AddMembersBody, AddVotersBody, AdminUserBody, CreateGroupBody, FriendRequestBody, IssueTokenBody,
    LoginBody, MuteBody, ReadBody, RegisterBody, RoleBody, SendBody, SetMembershipBody, SetPasswordBody, TransferBody,
    UpdateGroupBody,
};
use parley_wire::conversation::ConversationList;
use parley_wire::frames::{ClientFrame, ServerFrame};
use parley_wire::group::{Group, GroupList, GroupWritten};
use parley_wire::journal::{DigestReport, JournalPage, VerifyReport};
use parley_wire::message::{History, MessageWritten, ReadAnswer};
use parley_wire::ops::{ClusterStatus, LearnerAdded, MembershipChanged, Status};
use parley_wire::update::SyncPage;
use parley_wire::users::{AdminUserPage, SessionToken, UserProfile};
use parley_wire::users::{BlockList, FriendAccepted, FriendList, FriendRequestSent, FriendRequests, SessionList};
use parley_wire::ErrorEnvelope;
use serde_json::{json, Value};
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ComponentsBuilder, ObjectBuilder, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{InfoBuilder, OpenApi, OpenApiBuilder, PathsBuilder, Ref, RefOr, Required, Schema};
use utoipa::{PartialSchema, ToSchema};
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::http::{json as json_reply, json_text};

/// Who may call an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// No token.
    Anyone,
    /// A user's JWT (`Authorization: Bearer`), security scheme `bearer`.
    User,
    /// The node's admin token (also a bearer), security scheme `admin`.
    Admin,
}

/// What an answer's body is.
#[derive(Debug, Clone)]
enum Body {
    /// A wire type, by its component name.
    Json(String),
    /// No body (204, 101).
    Empty,
    /// `text/plain` (Prometheus metrics).
    Text,
    /// Any JSON document (the documents themselves).
    AnyJson,
    /// A file of the web client, in one of these media types.
    Asset(&'static [&'static str]),
}

/// One endpoint of the document: built by the one-line constructors in [`endpoints`].
#[derive(Clone)]
pub struct Endpoint {
    pub method: HttpMethod,
    /// The path template, parameters in braces (`/v1/groups/{gid}`).
    pub path: &'static str,
    pub caller: Caller,
    summary: &'static str,
    body: Option<String>,
    answers: Vec<(u16, Body, &'static str)>,
    errors: Vec<u16>,
    /// Query parameters: name, what it means and the least value accepted (all optional
    /// non-negative integers, but `token`).
    query: Vec<(&'static str, &'static str, u64)>,
    /// Path parameters that are integers (the others are strings).
    int_params: &'static [&'static str],
    /// The wire types this endpoint names, and the types they name.
    schemas: Vec<(String, RefOr<Schema>)>,
    /// A write: it answers the `Parley-Cursor` header.
    write: bool,
    /// A WebSocket upgrade: the handshake's headers are required parameters.
    upgrade: bool,
}

/// Statuses every authenticated route can answer: 401 (no, a bad or a revoked token), 503 (the
/// node is installing a snapshot, or waits for the token's session to apply), 500 (storage).
const AUTHED: &[u16] = &[401, 500, 503];
/// Statuses of a JSON body: malformed or invalid (400), too late (408), too large (413), not
/// declared `application/json` (415).
const JSON_BODY: &[u16] = &[400, 408, 413, 415];
/// A read: a malformed query string or `min_cursor`, or `min_cursor` not applied in 5 s.
const READ: &[u16] = &[400, 503];

fn ep(method: HttpMethod, path: &'static str, caller: Caller, summary: &'static str) -> Endpoint {
    let mut errors = Vec::new();
    match caller {
        Caller::Anyone => {}
        Caller::User => errors.extend_from_slice(AUTHED),
        // Admin requests are per-source-IP rate limited (ip_limits.rs).
        Caller::Admin => errors.extend_from_slice(&[401, 429, 500, 503]),
    }
    let write = !matches!(method, HttpMethod::Get);
    Endpoint {
        method,
        path,
        caller,
        summary,
        body: None,
        answers: Vec::new(),
        errors,
        query: Vec::new(),
        int_params: &[],
        schemas: Vec::new(),
        write,
        upgrade: false,
    }
}

fn get(path: &'static str, caller: Caller, summary: &'static str) -> Endpoint {
    let e = ep(HttpMethod::Get, path, caller, summary);
    // Every read of a user or admin takes `min_cursor` (read-your-writes on any node).
    match caller {
        Caller::Anyone => e,
        _ => e.min_cursor(),
    }
}
fn post(path: &'static str, caller: Caller, summary: &'static str) -> Endpoint {
    ep(HttpMethod::Post, path, caller, summary)
}
fn put(path: &'static str, caller: Caller, summary: &'static str) -> Endpoint {
    ep(HttpMethod::Put, path, caller, summary)
}
fn patch(path: &'static str, caller: Caller, summary: &'static str) -> Endpoint {
    ep(HttpMethod::Patch, path, caller, summary)
}
fn delete(path: &'static str, caller: Caller, summary: &'static str) -> Endpoint {
    ep(HttpMethod::Delete, path, caller, summary)
}

impl Endpoint {
    fn named<T: ToSchema>(&mut self) -> String {
        let name = T::name().into_owned();
        self.schemas.push((name.clone(), T::schema()));
        T::schemas(&mut self.schemas);
        name
    }

    /// A JSON request body of type `T` (and its statuses).
    fn body<T: ToSchema>(mut self) -> Self {
        self.body = Some(self.named::<T>());
        self.errors(JSON_BODY)
    }

    /// A JSON answer of type `T` with `status`.
    fn ok<T: ToSchema>(mut self, status: u16, what: &'static str) -> Self {
        let name = self.named::<T>();
        self.answers.push((status, Body::Json(name), what));
        self
    }

    /// An answer without a body.
    fn empty(mut self, status: u16, what: &'static str) -> Self {
        self.answers.push((status, Body::Empty, what));
        self
    }

    fn text(mut self, what: &'static str) -> Self {
        self.answers.push((200, Body::Text, what));
        self
    }

    /// A web client file (`/`, `/app/...`), in one of `types`.
    fn asset(mut self, types: &'static [&'static str], what: &'static str) -> Self {
        self.answers.push((200, Body::Asset(types), what));
        self
    }

    fn any_json(mut self, what: &'static str) -> Self {
        self.answers.push((200, Body::AnyJson, what));
        self
    }

    /// Further error statuses this endpoint can answer (with the error envelope).
    fn errors(mut self, statuses: &[u16]) -> Self {
        self.errors.extend_from_slice(statuses);
        self
    }

    fn read(self) -> Self {
        self.errors(READ)
    }

    fn min_cursor(self) -> Self {
        self.query("min_cursor", "Wait (up to 5 s) until this node has applied this cursor, else 503.")
    }

    fn query(mut self, name: &'static str, what: &'static str) -> Self {
        self.query.push((name, what, 0));
        self
    }

    /// A `limit` that refuses 0.
    fn limit(mut self, what: &'static str) -> Self {
        self.query.push(("limit", what, 1));
        self
    }

    /// The WebSocket handshake (RFC 6455) as required headers.
    fn websocket(mut self) -> Self {
        self.upgrade = true;
        self
    }

    fn ints(mut self, names: &'static [&'static str]) -> Self {
        self.int_params = names;
        self
    }

    /// The path's parameters, in order.
    pub fn path_params(&self) -> Vec<&'static str> {
        self.path.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))).collect()
    }
}

use Caller::{Admin, Anyone, User};

/// Every HTTP endpoint of a node, one line each. The internal `/raft/*` RPCs are not part of
/// the contract and are left out.
#[rustfmt::skip] // A table: one line per endpoint.
pub fn endpoints() -> Vec<Endpoint> {
    vec![
        // Users and sessions.
        post("/v1/users", Anyone, "Register").body::<RegisterBody>().ok::<UserProfile>(201, "registered").errors(&[409, 429, 500, 503]),
        post("/v1/sessions", Anyone, "Log in").body::<LoginBody>().ok::<SessionToken>(201, "a new session").errors(&[401, 429, 500, 503]),
        get("/v1/sessions", User, "My sessions").read().ok::<SessionList>(200, "the caller's unexpired sessions"),
        delete("/v1/sessions/{session_id}", User, "Log out (`current`) or revoke a session").empty(204, "revoked").errors(&[400, 404]),
        get("/v1/me", User, "My profile").read().ok::<UserProfile>(200, "the caller"),
        get("/v1/users/{user_id}", User, "A user's profile").read().ok::<UserProfile>(200, "the user").errors(&[404]),
        // Friends and blocks.
        post("/v1/friends/requests", User, "Ask to be friends").body::<FriendRequestBody>().ok::<FriendRequestSent>(201, "asked (or friends at once)").errors(&[403, 404, 409]),
        get("/v1/friends/requests", User, "Friend requests").read().ok::<FriendRequests>(200, "incoming and outgoing"),
        post("/v1/friends/requests/{from}/accept", User, "Accept a request").ok::<FriendAccepted>(200, "friends now").errors(&[400, 403, 404, 409]),
        post("/v1/friends/requests/{from}/reject", User, "Reject a request").empty(204, "rejected").errors(&[400, 404]),
        get("/v1/friends", User, "My friends").read().ok::<FriendList>(200, "the caller's friends"),
        delete("/v1/friends/{user_id}", User, "Unfriend (both sides)").empty(204, "removed").errors(&[400, 403, 404]),
        put("/v1/blocks/{user_id}", User, "Block a user").empty(204, "blocked").errors(&[400, 404]),
        delete("/v1/blocks/{user_id}", User, "Unblock a user").empty(204, "unblocked").errors(&[400, 404]),
        get("/v1/blocks", User, "Users I block").read().ok::<BlockList>(200, "blocked user ids"),
        // Groups.
        post("/v1/groups", User, "Create a group").body::<CreateGroupBody>().ok::<GroupWritten>(201, "created").errors(&[403, 404]),
        get("/v1/groups", User, "My groups").read().ok::<GroupList>(200, "the caller's groups"),
        get("/v1/groups/{gid}", User, "A group").read().ok::<Group>(200, "the group").errors(&[403, 404]),
        patch("/v1/groups/{gid}", User, "Rename, mute all").body::<UpdateGroupBody>().ok::<GroupWritten>(200, "updated").errors(&[403, 404]),
        delete("/v1/groups/{gid}", User, "Dismiss").empty(204, "dismissed").errors(&[400, 403, 404]),
        post("/v1/groups/{gid}/members", User, "Add members").body::<AddMembersBody>().ok::<GroupWritten>(200, "added").errors(&[403, 404, 409]),
        delete("/v1/groups/{gid}/members/{uid}", User, "Kick a member").empty(204, "kicked").errors(&[400, 403, 404]),
        post("/v1/groups/{gid}/leave", User, "Leave").empty(204, "left").errors(&[400, 403, 404, 409]),
        put("/v1/groups/{gid}/members/{uid}/role", User, "Set a member's role").body::<RoleBody>().ok::<GroupWritten>(200, "set").errors(&[403, 404]),
        post("/v1/groups/{gid}/transfer", User, "Transfer ownership").body::<TransferBody>().ok::<GroupWritten>(200, "transferred").errors(&[403, 404]),
        put("/v1/groups/{gid}/members/{uid}/mute", User, "Mute a member").body::<MuteBody>().empty(204, "muted").errors(&[403, 404]),
        // Conversations and messages.
        get("/v1/conversations", User, "My conversations").read().ok::<ConversationList>(200, "newest activity first"),
        post("/v1/conversations/{cid}/messages", User, "Send").body::<SendBody>().ok::<MessageWritten>(201, "sent").ok::<MessageWritten>(200, "an idempotent repeat: the original").errors(&[403, 404, 429]),
        get("/v1/conversations/{cid}/messages", User, "History").read().query("after_seq", "Only messages with a greater seq.").query("before_seq", "Only messages with a smaller seq.").limit("At most this many (default 50, at least 1; above 500 is 500).").ok::<History>(200, "ascending seq").errors(&[403]),
        post("/v1/conversations/{cid}/read", User, "Mark read").body::<ReadBody>().ok::<ReadAnswer>(200, "the read marker").errors(&[403, 404]),
        post("/v1/conversations/{cid}/messages/{seq}/revoke", User, "Revoke a message").ints(&["seq"]).ok::<MessageWritten>(200, "revoked").errors(&[400, 403, 404]),
        // Sync.
        get("/v1/sync", User, "Updates after a cursor").read().query("since", "Updates with a greater cursor (default 0).").limit("At most this many (default 100, at least 1; above 1000 is 1000).").query("wait_ms", "With nothing new, wait up to this long (above 30000 is 30000).").ok::<SyncPage>(200, "ascending cursors"),
        get("/v1/ws", User, "WebSocket upgrade (frames: /v1/ws.schema.json)").websocket().query("token", "The user token, for clients that cannot set headers.").empty(101, "switching to the WebSocket").errors(&[400]),
        // Operations.
        get("/healthz", Anyone, "Liveness").ok::<Status>(200, "the process serves"),
        get("/readyz", Anyone, "Readiness").ok::<Status>(200, "a leader is known and this node is caught up").errors(&[503]),
        get("/metrics", Anyone, "Prometheus metrics").text("Prometheus text format"),
        get("/v1/cluster", Anyone, "Cluster status").min_cursor().read().ok::<ClusterStatus>(200, "this node's view"),
        get("/v1/admin/journal", Admin, "Journal entries").read().query("from", "Entries with cursors >= this (default 1).").query("limit", "At most this many (default 100; 0 is 1, above 1000 is 1000).").ok::<JournalPage>(200, "ascending cursors"),
        get("/v1/admin/journal/verify", Admin, "Verify the hash chain").read().ok::<VerifyReport>(200, "the chain's state"),
        get("/v1/admin/digest", Admin, "Projection digest").read().ok::<DigestReport>(200, "the digest"),
        post("/v1/admin/cluster/learners", Admin, "Add a learner").body::<AddLearnerBody>().ok::<LearnerAdded>(200, "caught up").ok::<LearnerAdded>(202, "still catching up at the deadline"),
        post("/v1/admin/cluster/voters", Admin, "Promote learners").body::<AddVotersBody>().ok::<MembershipChanged>(200, "changed").errors(&[404]),
        put("/v1/admin/cluster/membership", Admin, "Set the voters").body::<SetMembershipBody>().ok::<MembershipChanged>(200, "changed").errors(&[404]),
        delete("/v1/admin/cluster/nodes/{id}", Admin, "Remove a member").ints(&["id"]).ok::<MembershipChanged>(200, "removed").errors(&[400, 404]),
        // Accounts and tokens for an app backend.
        post("/v1/admin/users", Admin, "Create an account (no password: admin-issued tokens only)")
            .body::<AdminUserBody>()
            .ok::<UserProfile>(201, "created")
            .errors(&[400, 409]),
        get("/v1/admin/users", Admin, "Accounts, a page in user id order")
            .read()
            .query("after", "Accounts with a greater user id (the previous page's `next`).")
            .query("limit", "At most this many (default 100, 1 to 1000).")
            .ok::<AdminUserPage>(200, "a page; `next` is null at the end")
            .errors(&[400]),
        post("/v1/admin/users/{uid}/tokens", Admin, "Issue a token (a session, as a login's)")
            .body::<IssueTokenBody>()
            .ok::<SessionToken>(201, "the new session's token")
            .errors(&[400, 403, 404]),
        post("/v1/admin/users/{uid}/deactivate", Admin, "Deactivate (revokes every session)")
            .empty(204, "deactivated")
            .errors(&[400, 404]),
        post("/v1/admin/users/{uid}/reactivate", Admin, "Reactivate").empty(204, "active").errors(&[400, 404]),
        delete("/v1/admin/users/{uid}/sessions", Admin, "Force logout everywhere")
            .empty(204, "every session revoked")
            .errors(&[400, 404]),
        put("/v1/admin/users/{uid}/password", Admin, "Set the password (sessions are kept)")
            .body::<SetPasswordBody>()
            .empty(204, "set")
            .errors(&[400, 404]),
        // The web client (files inside the binary).
        get("/", Anyone, "The web client's page").asset(&["text/html"], "the page"),
        get("/app/{file}", Anyone, "A file of the web client")
            .asset(&["text/javascript", "text/css", "image/svg+xml"], "the file")
            .errors(&[404]),
        // The contract itself.
        get("/v1/openapi.json", Anyone, "This document").any_json("OpenAPI 3.1"),
        get("/v1/ws.schema.json", Anyone, "JSON Schema of the WebSocket frames").any_json("JSON Schema 2020-12"),
    ]
}

fn method_name(m: &HttpMethod) -> &'static str {
    match m {
        HttpMethod::Get => "get",
        HttpMethod::Post => "post",
        HttpMethod::Put => "put",
        HttpMethod::Delete => "delete",
        HttpMethod::Options => "options",
        HttpMethod::Head => "head",
        HttpMethod::Patch => "patch",
        HttpMethod::Trace => "trace",
    }
}

fn status_text(status: u16) -> &'static str {
    StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("error")
}

fn integer() -> RefOr<Schema> {
    <u64 as PartialSchema>::schema()
}

fn string() -> RefOr<Schema> {
    <String as PartialSchema>::schema()
}

/// A path parameter's form, by its name: what the routes accept before looking anything up.
fn path_string(name: &str) -> RefOr<Schema> {
    let pattern = match name {
        // User ids in paths are not checked for form: an unknown one is 404 (or a no-op).
        "user_id" | "from" | "uid" => None,
        "cid" => Some("^(d:[a-z0-9_]{3,32}:[a-z0-9_]{3,32}|g:[1-9][0-9]{0,18})$"),
        "gid" => Some("^[1-9][0-9]{0,18}$"),
        "session_id" => Some("^[A-Za-z0-9_-]{1,64}$"),
        _ => None,
    };
    ObjectBuilder::new().schema_type(Type::String).pattern(pattern).into()
}

fn param(name: &str, place: ParameterIn, required: Required, schema: RefOr<Schema>) -> ParameterBuilder {
    ParameterBuilder::new().name(name).parameter_in(place).required(required).schema(Some(schema))
}

fn json_content(name: &str) -> utoipa::openapi::Content {
    ContentBuilder::new().schema(Some(Ref::from_schema_name(name))).build()
}

fn operation(e: &Endpoint) -> utoipa::openapi::path::Operation {
    let tag = e.path.trim_start_matches("/v1/").split('/').next().unwrap_or("ops").to_owned();
    let mut op = OperationBuilder::new()
        .summary(Some(e.summary))
        .tag(tag)
        .operation_id(Some(format!("{}{}", method_name(&e.method), e.path).replace(['/', '{', '}', '.'], "_")));
    for p in e.path_params() {
        let schema = if e.int_params.contains(&p) { integer() } else { path_string(p) };
        op = op.parameter(param(p, ParameterIn::Path, Required::True, schema));
    }
    for (name, what, least) in &e.query {
        let schema = match (*name, *least) {
            ("token", _) => string(),
            (_, 0) => integer(),
            (_, least) => ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(least as f64)).into(),
        };
        op = op.parameter(param(name, ParameterIn::Query, Required::False, schema).description(Some(*what)));
    }
    if e.upgrade {
        let fixed = |v: &str| -> RefOr<Schema> {
            ObjectBuilder::new().schema_type(Type::String).enum_values(Some([v.to_owned()])).into()
        };
        for (name, schema) in [
            ("Connection", fixed("Upgrade")),
            ("Upgrade", fixed("websocket")),
            ("Sec-WebSocket-Version", fixed("13")),
            ("Sec-WebSocket-Key", ObjectBuilder::new().schema_type(Type::String).min_length(Some(1)).into()),
        ] {
            op = op.parameter(param(name, ParameterIn::Header, Required::True, schema));
        }
    }
    if let Some(body) = &e.body {
        op = op.request_body(Some(
            RequestBodyBuilder::new()
                .required(Some(Required::True))
                .content("application/json", json_content(body))
                .build(),
        ));
    }
    let cursor = HeaderBuilder::new()
        .schema(integer())
        .description(Some("The journal position at which the write was applied."))
        .build();
    for (status, body, what) in &e.answers {
        let mut r = ResponseBuilder::new().description(*what);
        r = match body {
            Body::Json(name) => r.content("application/json", json_content(name)),
            Body::Empty => r,
            Body::Text => r.content("text/plain", ContentBuilder::new().schema(Some(string())).build()),
            Body::Asset(types) => {
                types.iter().fold(r, |r, t| r.content(*t, ContentBuilder::new().schema(Some(string())).build()))
            }
            Body::AnyJson => r.content(
                "application/json",
                ContentBuilder::new().schema(Some(ObjectBuilder::new().schema_type(Type::Object))).build(),
            ),
        };
        if e.write && *status < 300 && *status != 101 {
            r = r.header("Parley-Cursor", cursor.clone());
        }
        op = op.response(status.to_string(), r.build());
    }
    let mut errors = e.errors.clone();
    errors.sort_unstable();
    errors.dedup();
    for status in errors {
        let mut r = ResponseBuilder::new()
            .description(status_text(status))
            .content("application/json", json_content(&ErrorEnvelope::name()));
        if status == 429 {
            r = r.header("Retry-After", HeaderBuilder::new().schema(integer()).description(Some("Seconds.")).build());
        }
        op = op.response(status.to_string(), r.build());
    }
    match e.caller {
        Caller::Anyone => {}
        Caller::User => op = op.security(SecurityRequirement::new("bearer", Vec::<String>::new())),
        Caller::Admin => op = op.security(SecurityRequirement::new("admin", Vec::<String>::new())),
    }
    op.build()
}

/// The OpenAPI 3.1 document of [`endpoints`].
pub fn document() -> OpenApi {
    let endpoints = endpoints();
    let mut paths: BTreeMap<&str, PathItem> = BTreeMap::new();
    let mut components = ComponentsBuilder::new();
    let mut schemas = vec![(ErrorEnvelope::name().into_owned(), ErrorEnvelope::schema())];
    ErrorEnvelope::schemas(&mut schemas);
    for e in &endpoints {
        let op = operation(e);
        match paths.get_mut(e.path) {
            Some(item) => item.merge_operations(PathItem::new(e.method.clone(), op)),
            None => {
                paths.insert(e.path, PathItem::new(e.method.clone(), op));
            }
        }
        schemas.extend(e.schemas.iter().cloned());
    }
    for (name, schema) in schemas {
        components = components.schema(name, schema);
    }
    let bearer = |what: &str| {
        let mut http = Http::new(HttpAuthScheme::Bearer);
        http.description = Some(what.to_owned());
        SecurityScheme::Http(http)
    };
    components = components
        .security_scheme("bearer", bearer("A user's session token (a JWT from POST /v1/sessions)."))
        .security_scheme("admin", bearer("The node's admin token (its configuration), not a user JWT."));
    let mut builder = PathsBuilder::new();
    for (path, item) in paths {
        builder = builder.path(path, item);
    }
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Parley")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some("Parley's HTTP API (shared/API.md), generated from the wire types.")),
        )
        .paths(builder.build())
        .components(Some(components.build()))
        .build()
}

/// The JSON Schema (2020-12) of every WebSocket frame: `ClientFrame` (client to server) and
/// `ServerFrame` (server to client), with the types they name under `$defs`.
pub fn ws_schema() -> Result<Value, serde_json::Error> {
    let mut schemas = vec![
        (ClientFrame::name().into_owned(), ClientFrame::schema()),
        (ServerFrame::name().into_owned(), ServerFrame::schema()),
    ];
    ClientFrame::schemas(&mut schemas);
    ServerFrame::schemas(&mut schemas);
    let mut defs = serde_json::Map::new();
    for (name, schema) in schemas {
        defs.insert(name, serde_json::to_value(schema)?);
    }
    let mut doc = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "/v1/ws.schema.json",
        "title": "Parley WebSocket frames (GET /v1/ws, text frames of JSON)",
        "description": "A frame is a ClientFrame (client to server) or a ServerFrame (server to client).",
        "oneOf": [{"$ref": "#/$defs/ClientFrame"}, {"$ref": "#/$defs/ServerFrame"}],
        "$defs": defs,
    });
    // utoipa names its references for an OpenAPI document; here they live under `$defs`.
    rewrite_refs(&mut doc);
    Ok(doc)
}

fn rewrite_refs(v: &mut Value) {
    match v {
        Value::Object(o) => {
            for (k, child) in o.iter_mut() {
                match (k.as_str(), child) {
                    ("$ref", Value::String(r)) => {
                        if let Some(name) = r.strip_prefix("#/components/schemas/") {
                            *r = format!("#/$defs/{name}");
                        }
                    }
                    (_, child) => rewrite_refs(child),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(rewrite_refs),
        _ => {}
    }
}

/// Both documents, rendered once: they depend only on the code.
fn rendered() -> &'static Result<(String, String), String> {
    static DOCS: OnceLock<Result<(String, String), String>> = OnceLock::new();
    DOCS.get_or_init(|| {
        let openapi = document().to_json().map_err(|e| e.to_string())?;
        let ws = ws_schema().map_err(|e| e.to_string())?.to_string();
        Ok((openapi, ws))
    })
}

/// The answer to a request no route matched: 405 with `Allow` (RFC 9110) when the path is a
/// documented one that takes other methods, else 404 `no such route`. (warp's own rejection
/// for a wrong method carries no method list, and was answered 404; found by schemathesis.)
pub fn unmatched(method: &warp::http::Method, path: &str) -> Response {
    static TABLE: OnceLock<Vec<(Vec<&'static str>, &'static str)>> = OnceLock::new();
    let table = TABLE
        .get_or_init(|| endpoints().iter().map(|e| (e.path.split('/').collect(), method_name(&e.method))).collect());
    let segments: Vec<&str> = path.split('/').collect();
    // How many segments of `path` a template names literally, if it matches at all: a path
    // matches its most literal templates only (`/v1/friends/requests` is not
    // `/v1/friends/{user_id}`).
    let literal = |template: &[&str]| {
        let fits = template.len() == segments.len()
            && template.iter().zip(&segments).all(|(t, s)| t.starts_with('{') && !s.is_empty() || t == s);
        fits.then(|| template.iter().filter(|t| !t.starts_with('{')).count())
    };
    let best = table.iter().filter_map(|(t, _)| literal(t)).max();
    let allowed: Vec<&str> =
        table.iter().filter(|(t, _)| best.is_some() && literal(t) == best).map(|(_, m)| *m).collect();
    let asked = method.as_str().to_ascii_lowercase();
    if allowed.is_empty() || allowed.contains(&asked.as_str()) {
        return crate::ApiError::not_found("no such route").into_response();
    }
    let allow = allowed.iter().map(|m| m.to_ascii_uppercase()).collect::<Vec<_>>().join(", ");
    let mut resp = crate::ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request",
        format!("{} is not allowed here; allowed: {allow}", method.as_str()),
    )
    .into_response();
    if let Ok(v) = warp::http::HeaderValue::from_str(&allow) {
        resp.headers_mut().insert(warp::http::header::ALLOW, v);
    }
    resp
}

/// `GET /v1/openapi.json` and `GET /v1/ws.schema.json`: no token, no state.
pub fn routes() -> BoxedFilter<(Response,)> {
    let doc = |which: fn(&(String, String)) -> &String| match rendered() {
        Ok(docs) => json_text(StatusCode::OK, which(docs).clone()),
        Err(e) => {
            tracing::error!(error = %e, "the contract documents do not render");
            json_reply(StatusCode::INTERNAL_SERVER_ERROR, &crate::ApiError::internal("document does not render").body())
        }
    };
    let openapi = warp::path!("v1" / "openapi.json").and(warp::get()).map(move || doc(|d| &d.0));
    let ws = warp::path!("v1" / "ws.schema.json").and(warp::get()).map(move || doc(|d| &d.1));
    openapi.or(ws).unify().boxed()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// `(METHOD, /template/with/{})` of every `warp::path!` route in the given sources, found by
    /// reading them: a route is `warp::path!(segments)` followed by `.and(warp::<method>())`.
    fn routes_in(source: &str) -> Vec<(String, String)> {
        let mut found = Vec::new();
        let mut rest = source;
        while let Some(at) = rest.find("warp::path!(") {
            rest = &rest[at + "warp::path!(".len()..];
            let Some(close) = rest.find(')') else { break };
            let segments: Vec<String> = rest[..close]
                .split('/')
                .map(|seg| {
                    let seg = seg.trim();
                    match seg.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                        Some(literal) => literal.to_owned(),
                        None => "{}".to_owned(),
                    }
                })
                .collect();
            let after = &rest[close..];
            let method = after
                .find(".and(warp::")
                .map(|i| &after[i + ".and(warp::".len()..])
                .and_then(|m| m.split_once("()"))
                .map(|(m, _)| m.to_uppercase())
                .unwrap_or_else(|| panic!("route {segments:?} has no method filter after it"));
            found.push((method, format!("/{}", segments.join("/"))));
        }
        // The root: `warp::path::end().and(warp::<method>())`.
        let mut rest = source;
        while let Some(at) = rest.find("warp::path::end().and(warp::") {
            rest = &rest[at + "warp::path::end().and(warp::".len()..];
            if let Some((m, _)) = rest.split_once("()") {
                found.push((m.to_uppercase(), "/".to_owned()));
            }
        }
        found
    }

    fn router() -> BTreeSet<(String, String)> {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files: Vec<_> = std::fs::read_dir(src.join("routes"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "rs"))
            .collect();
        files.push(src.join("ws.rs"));
        files.push(src.join("openapi.rs"));
        let mut all = BTreeSet::new();
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            // Only the code, not its tests (this file's tests quote routes as data).
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            for (method, path) in routes_in(code) {
                // The raft RPCs between nodes are not the public contract.
                if !path.starts_with("/raft/") {
                    all.insert((method, path));
                }
            }
        }
        all
    }

    fn documented() -> BTreeSet<(String, String)> {
        let doc: Value = serde_json::to_value(document()).unwrap();
        let mut all = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            let template: Vec<String> =
                path.split('/').map(|s| if s.starts_with('{') { "{}".to_owned() } else { s.to_owned() }).collect();
            for method in item.as_object().unwrap().keys() {
                all.insert((method.to_uppercase(), template.join("/")));
            }
        }
        all
    }

    #[test]
    fn the_route_reader_finds_routes_and_their_methods() {
        let src = r#"let a = warp::path!("v1" / "groups" / String / "members" / String)
            .and(warp::delete()).and(with(s));
            let b = warp::path!("healthz").and(warp::get()).map(|| 1);"#;
        assert_eq!(
            routes_in(src),
            vec![
                ("DELETE".to_owned(), "/v1/groups/{}/members/{}".to_owned()),
                ("GET".to_owned(), "/healthz".to_owned())
            ]
        );
    }

    /// Every route of the router is in the document, and the document has nothing else: a
    /// route added without its line in `endpoints` (or a line left after its route went) fails.
    #[test]
    fn the_document_has_every_route_of_the_router_and_no_other() {
        let router = router();
        let documented = documented();
        assert!(router.len() > 40, "the route reader found only {} routes", router.len());
        let undocumented: Vec<_> = router.difference(&documented).collect();
        assert!(undocumented.is_empty(), "routes missing from the OpenAPI document: {undocumented:?}");
        let unrouted: Vec<_> = documented.difference(&router).collect();
        assert!(unrouted.is_empty(), "documented but not routed: {unrouted:?}");
    }

    /// Walks every `$ref` of `v` and checks it names a schema in `defs` (under `prefix`).
    fn refs_resolve(v: &Value, prefix: &str, defs: &serde_json::Map<String, Value>, seen: &mut usize) {
        match v {
            Value::Object(o) => {
                if let Some(Value::String(r)) = o.get("$ref") {
                    let name = r.strip_prefix(prefix).unwrap_or_else(|| panic!("foreign $ref {r}"));
                    assert!(defs.contains_key(name), "dangling $ref {r}");
                    *seen += 1;
                }
                o.values().for_each(|c| refs_resolve(c, prefix, defs, seen));
            }
            Value::Array(a) => a.iter().for_each(|c| refs_resolve(c, prefix, defs, seen)),
            _ => {}
        }
    }

    /// The document has the shape OpenAPI 3.1 requires: version, info, paths of operations
    /// with responses, declared path parameters, unique operation ids, resolvable references,
    /// known security schemes; every error answer is the error envelope.
    #[test]
    fn the_document_is_openapi_3_1() {
        let doc: Value = serde_json::from_str(&document().to_json().unwrap()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
        assert_eq!(schemes["bearer"]["type"], "http");
        assert_eq!(schemes["bearer"]["scheme"], "bearer");
        assert_eq!(schemes["admin"]["scheme"], "bearer");
        let mut refs = 0;
        refs_resolve(&doc, "#/components/schemas/", schemas, &mut refs);
        assert!(refs > 100, "only {refs} references");
        let mut ids = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            assert!(path.starts_with('/'), "{path}");
            let params: BTreeSet<&str> =
                path.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))).collect();
            for (method, op) in item.as_object().unwrap() {
                assert!(["get", "post", "put", "patch", "delete"].contains(&method.as_str()), "{method} {path}");
                assert!(ids.insert(op["operationId"].as_str().unwrap().to_owned()), "duplicate id at {method} {path}");
                let declared: BTreeSet<&str> = op["parameters"]
                    .as_array()
                    .map(|ps| ps.iter().filter(|p| p["in"] == "path").map(|p| p["name"].as_str().unwrap()).collect())
                    .unwrap_or_default();
                assert_eq!(declared, params, "path parameters of {method} {path}");
                let responses = op["responses"].as_object().unwrap();
                assert!(!responses.is_empty(), "{method} {path}");
                for (status, r) in responses {
                    let code: u16 = status.parse().unwrap();
                    assert!((100..600).contains(&code), "{status}");
                    assert!(r["description"].is_string());
                    if code >= 400 {
                        assert_eq!(
                            r["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/ErrorEnvelope",
                            "{method} {path} {status}"
                        );
                    }
                }
                if let Some(sec) = op["security"].as_array() {
                    for req in sec {
                        for name in req.as_object().unwrap().keys() {
                            assert!(schemes.contains_key(name), "{name}");
                        }
                    }
                    assert!(responses.contains_key("401"), "{method} {path} takes a token but never answers 401");
                }
            }
        }
    }

    /// The WebSocket schema names every frame type both ways, and its references resolve.
    #[test]
    fn the_ws_schema_has_every_frame_both_ways() {
        let doc = ws_schema().unwrap();
        assert_eq!(doc["$schema"], "https://json-schema.org/draft/2020-12/schema");
        let defs = doc["$defs"].as_object().unwrap();
        let mut refs = 0;
        refs_resolve(&doc, "#/$defs/", defs, &mut refs);
        assert!(refs > 10);
        let types = |name: &str| -> BTreeSet<String> {
            defs[name]["oneOf"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|v| v["properties"]["type"]["enum"].as_array().cloned().unwrap_or_default())
                .map(|t| t.as_str().unwrap().to_owned())
                .collect()
        };
        let set = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<BTreeSet<_>>();
        assert_eq!(types("ClientFrame"), set(&["sync", "send", "read", "ping"]));
        assert_eq!(types("ServerFrame"), set(&["updates", "ack", "error", "pong"]));
        // Every update type is reachable from the `updates` frame.
        assert!(defs.contains_key("UpdateKind") && defs.contains_key("Update"), "{:?}", defs.keys());
    }
}
