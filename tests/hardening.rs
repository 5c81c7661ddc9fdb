//! Abuse resistance of the endpoints a stranger can reach: what oversized login input costs
//! the node's memory, whom a failed-login lockout locks out, and the per-source-IP limits.

mod common;

use std::net::{IpAddr, Ipv4Addr};

use common::*;
use serde_json::json;

fn source(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc status")
}

#[tokio::test]
async fn oversized_login_attempts_are_refused_and_leave_no_memory_behind() {
    let server = TestServer::start();
    let api = server.api();
    let pid = server.pid().expect("server pid");
    // ~1 MiB user ids and a password past the limit: each was remembered by the failed-login
    // table for good (200 of them grew the node by 200 MB).
    let attempt = |i: usize| {
        let body = json!({"user_id": format!("{i}{}", "x".repeat(1_040_000)), "password": "p".repeat(1025)});
        let api = api.clone();
        async move { api.post("/v1/sessions", None, body).await }
    };
    let mut answers = Vec::new();
    for i in 0..20 {
        answers.push(attempt(i).await);
    }
    let before = rss_kib(pid);
    for i in 20..220 {
        answers.push(attempt(i).await);
    }
    let grown_mib = rss_kib(pid).saturating_sub(before) / 1024;
    assert!(grown_mib <= 16, "200 oversized logins grew the server by {grown_mib} MiB");
    // Each was refused as malformed: no account has such an id.
    for r in &answers {
        r.err(400, "invalid_request");
    }
    // A normal login still works.
    let id = uid("mem");
    api.register(&id, "the right one").await;
    api.login(&id, "the right one").await;
}

#[tokio::test]
async fn a_password_guesser_locks_out_only_their_own_address() {
    let server = shared_with(&["--login-rate-limit", "3"]);
    let owner = Api::from_source(&server.base_url(), source(1));
    let guesser = Api::from_source(&server.base_url(), source(77));
    let id = uid("lock");
    owner.register(&id, "the right one").await;
    for _ in 0..3 {
        guesser.login_raw(&id, "a wrong guess", None).await.err(401, "invalid_credentials");
    }
    let r = guesser.login_raw(&id, "the right one", None).await;
    r.err(429, "rate_limited");
    assert!(r.headers.contains_key("retry-after"), "429 without Retry-After");
    // The account's owner, from their own address, is not locked out.
    owner.login(&id, "the right one").await;
}

#[tokio::test]
async fn per_source_limits_answer_429_with_retry_after() {
    let server = TestServer::start_with(&[
        "--login-rate-limit",
        "0",
        "--login-rate-limit-per-ip",
        "4",
        "--register-rate-limit-per-ip",
        "2",
        "--admin-rate-limit-per-ip",
        "3",
    ]);
    let here = Api::from_source(&server.base_url(), source(5));
    let there = Api::from_source(&server.base_url(), source(6));
    let retry_after = |r: &Resp| -> u64 {
        let v = r.headers.get("retry-after").unwrap_or_else(|| panic!("429 without Retry-After: {r:?}"));
        v.to_str().ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("Retry-After not seconds: {v:?}"))
    };

    // Registrations.
    let id = uid("ipl");
    here.register(&id, "the right one").await;
    here.register(&uid("ipl"), "the right one").await;
    let r = here.register_raw(&uid("ipl"), "the right one", None).await;
    r.err(429, "rate_limited");
    assert!((1..=60).contains(&retry_after(&r)));
    there.register(&uid("ipl"), "the right one").await;

    // Logins, right or wrong.
    here.login(&id, "the right one").await;
    for _ in 0..3 {
        here.login_raw(&id, "a wrong one", None).await.err(401, "invalid_credentials");
    }
    let r = here.login_raw(&id, "the right one", None).await;
    r.err(429, "rate_limited");
    assert!((1..=60).contains(&retry_after(&r)));
    there.login(&id, "the right one").await;

    // Admin-token guesses: past the limit even the right token waits.
    for _ in 0..3 {
        here.get("/v1/admin/journal", Some("a guess")).await.err(401, "unauthorized");
    }
    let r = here.get("/v1/admin/journal", Some(&server.admin_token)).await;
    r.err(429, "rate_limited");
    assert!(retry_after(&r) >= 1);
    there.get("/v1/admin/journal", Some(&server.admin_token)).await.ok(200);
}
