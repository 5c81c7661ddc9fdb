//! Configurable limits: per-user send rate, failed-login rate, message body size.

mod support;

use serde_json::json;
use support::*;

const FLAGS: &[&str] = &["--rate-limit-per-user", "5", "--login-rate-limit", "3", "--max-body-bytes", "64"];

#[tokio::test]
async fn send_burst_is_rate_limited_per_user() {
    let api = shared_with(FLAGS).api();
    let a = api.user("rla").await;
    let b = api.user("rlb").await;
    api.befriend(&a, &b).await;
    let cid = dm(&a.id, &b.id);

    let mut created = 0u64;
    let mut limited = false;
    for i in 0..100 {
        let r = api.send_raw(&a.token, &cid, &cmid("burst"), &format!("burst {i}")).await;
        match r.status {
            201 => created += 1,
            429 => {
                r.err(429, "rate_limited");
                limited = true;
                break;
            }
            _ => panic!("unexpected answer during the burst: {} {}", r.status, r.text),
        }
    }
    assert!(limited, "100 sends in a burst were never rate limited at 5/s");
    assert!(created >= 1, "the first send of a burst is allowed");
    // Refused sends are not stored.
    assert_eq!(api.history(&b.token, &cid, "").await["max_seq"], json!(created));
    // Another user is not affected.
    api.send(&b, &cid, "my own budget").await;
    // The budget refills.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    api.send(&a, &cid, "after a pause").await;
}

#[tokio::test]
async fn failed_logins_are_rate_limited_per_user_id() {
    let api = shared_with(FLAGS).api();
    let id = uid("lrl");
    api.register(&id, "the right one").await;
    let mut limited = false;
    for _ in 0..10 {
        let r = api.login_raw(&id, "a wrong one", None).await;
        match r.status {
            401 => r.err(401, "invalid_credentials"),
            429 => {
                r.err(429, "rate_limited");
                limited = true;
                break;
            }
            _ => panic!("unexpected login answer: {} {}", r.status, r.text),
        }
    }
    assert!(limited, "10 wrong passwords were never rate limited at 3/min");
    // Another user id is not affected.
    let other = uid("lrl");
    api.register(&other, "the right one").await;
    api.login_raw(&other, "a wrong one", None).await.err(401, "invalid_credentials");
    api.login(&other, "the right one").await;
}

#[tokio::test]
async fn max_body_bytes_is_configurable() {
    let api = shared_with(FLAGS).api();
    let a = api.user("mba").await;
    let b = api.user("mbb").await;
    api.befriend(&a, &b).await;
    let cid = dm(&a.id, &b.id);
    api.send(&a, &cid, &"x".repeat(64)).await;
    api.send_raw(&a.token, &cid, &cmid("big"), &"x".repeat(65)).await.err(413, "payload_too_large");
    assert_eq!(api.history(&b.token, &cid, "").await["max_seq"], json!(1));
}
