//! Issue 11, hole 4: traffic between nodes was plain HTTP (bodies, password hashes). With
//! `--peer-tls-cert/-key/-ca` a node serves its whole listener over TLS and dials its peers
//! with `https://`, trusting only the cluster's CA. The CA and the node certificate are made
//! here with rcgen, for this test only.

mod support;

use std::time::Duration;

use serde_json::json;
use support::cluster::*;

/// A throwaway CA and one certificate for 127.0.0.1 it signed, as PEM files in `dir`:
/// `(ca, cert, key)` paths.
fn certificates(dir: &std::path::Path) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "parley test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let node_key = rcgen::KeyPair::generate().unwrap();
    let mut node = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    node.subject_alt_names.push(rcgen::SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
    let node_cert = node.signed_by(&node_key, &ca_cert, &ca_key).unwrap();
    let write = |name: &str, pem: String| {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path.to_str().unwrap().to_string()
    };
    (write("ca.pem", ca_cert.pem()), write("node.pem", node_cert.pem()), write("node.key", node_key.serialize_pem()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_replicates_and_refuses_plain_http() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path());
    let ca_pem = std::fs::read(&ca).unwrap();
    let http = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca_pem).unwrap())
        .timeout(HTTP_TIMEOUT)
        .build()
        .unwrap();
    let flags = ["--peer-tls-cert", &cert, "--peer-tls-key", &key, "--peer-tls-ca", &ca];
    // Readiness (a leader, every node caught up) already needs votes and appends over TLS.
    let c = Cluster::start_with(3, &flags, http.clone(), "https").await;
    let ids = c.ids();
    let (leader, _) = c.wait_leader(&ids).await;
    let follower = *ids.iter().find(|i| **i != leader).unwrap();
    let bases: Vec<String> = ids.iter().map(|i| c.url(*i)).collect();

    // Writes on a follower are forwarded to the leader over TLS, and replicate to every node.
    let alice = user(&http, &c.url(follower), "alice_t").await;
    let bob = user(&http, &c.url(leader), "bob_t").await;
    befriend(&http, &c.url(follower), &c.url(leader), &alice, &bob).await;
    let conv = dm(&alice.id, &bob.id);
    let url = format!("{}/v1/conversations/{conv}/messages", c.url(follower));
    let (s, b) = post(&http, &url, Some(&alice.token), json!({"client_msg_id": "tls-1", "body": "over tls"})).await;
    assert_eq!(s, 201, "{b}");
    let cursor = b["cursor"].as_u64().unwrap();
    applied_everywhere(&http, &bases, cursor).await;
    for id in &ids {
        let got = messages(&http, &c.url(*id), &bob, &conv, cursor).await;
        assert_eq!(got.len(), 1, "node {id}: {got:?}");
        assert_eq!(got[0]["body"], json!("over tls"));
    }
    c.wait_converged(&ids, Duration::from_secs(10)).await;

    // Plain HTTP to a TLS node, as a peer without TLS would send it: never served.
    let plain = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    for path in ["/raft/vote", "/raft/write", "/healthz"] {
        let sent = plain.post(format!("http://{}{path}", c.addr(leader))).body("x").send().await;
        assert!(sent.is_err(), "plain HTTP {path} was answered: {:?}", sent.map(|r| r.status()));
    }
    // A client that does not trust the cluster's CA does not get past the handshake either.
    let untrusting = reqwest::Client::builder().use_rustls_tls().timeout(Duration::from_secs(5)).build().unwrap();
    let sent = untrusting.get(format!("{}/healthz", c.url(leader))).send().await;
    assert!(sent.is_err(), "a certificate outside the system roots was accepted: {:?}", sent.map(|r| r.status()));
    // The cluster is unharmed.
    let (s, b) = get(&http, &format!("{}/healthz", c.url(follower)), None).await;
    assert_eq!(s, 200, "{b}");
}
