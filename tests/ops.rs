//! Operations endpoints: health, readiness, metrics, cluster status, the admin journal.

mod support;

use serde_json::{json, Value};
use support::*;

#[tokio::test]
async fn health_and_readiness() {
    let api = shared().api();
    let r = api.get("/healthz", None).await;
    assert_eq!(r.ok(200), &json!({"status": "ok"}));
    // Under concurrent writes (other tests) applied may trail committed for a moment: the
    // node must be ready within a short bounded wait.
    api.ready().await;
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let api = shared().api();
    // Cause some traffic first.
    let u = api.user("metrics").await;
    api.get("/v1/me", Some(&u.token)).await.ok(200);
    let r = api.get("/metrics", None).await;
    r.ok(200);
    let ct = r.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    assert!(ct.starts_with("text/plain"), "content-type {ct:?}");
    let mut samples = 0;
    for line in r.text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            let rest = rest.trim_start();
            assert!(
                rest.starts_with("HELP ") || rest.starts_with("TYPE ") || !rest.is_empty(),
                "bad comment line {line:?}"
            );
            if let Some(t) = rest.strip_prefix("TYPE ") {
                let kind = t.split_whitespace().nth(1).unwrap_or("");
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                    "bad TYPE line {line:?}"
                );
            }
            continue;
        }
        // name{labels} value [timestamp]
        let name_end = line.find(['{', ' ']).unwrap_or_else(|| panic!("bad sample {line:?}"));
        let name = &line[..name_end];
        assert!(
            !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                && !name.chars().next().unwrap().is_ascii_digit(),
            "bad metric name in {line:?}"
        );
        let after = if line[name_end..].starts_with('{') {
            let close = line.rfind('}').unwrap_or_else(|| panic!("unclosed labels in {line:?}"));
            &line[close + 1..]
        } else {
            &line[name_end..]
        };
        let value = after.split_whitespace().next().unwrap_or_else(|| panic!("no value in {line:?}"));
        assert!(value.parse::<f64>().is_ok() || ["NaN", "+Inf", "-Inf"].contains(&value), "bad value in {line:?}");
        samples += 1;
    }
    assert!(samples > 0, "no samples in /metrics:\n{}", r.text);
}

#[tokio::test]
async fn cluster_status_of_a_single_node() {
    let api = shared().api();
    let u = api.user("cluster").await;
    let r = api.get("/v1/me", Some(&u.token)).await;
    r.ok(200);
    let (_, c) = {
        let b = api.user("clusterb").await;
        api.befriend(&u, &b).await;
        api.send(&u, &dm(&u.id, &b.id), "x").await
    };

    let r = api.get("/v1/cluster", None).await;
    let v = r.ok(200).clone();
    let node_id = as_u64(&v["node_id"], "node_id");
    assert_eq!(v["leader_id"], json!(node_id), "a single node leads itself: {}", r.text);
    assert!(as_u64(&v["term"], "term") >= 1, "{}", r.text);
    assert!(v.get("last_applied").is_some_and(|x| !x.is_null()), "last_applied: {}", r.text);
    assert!(as_u64(&v["cursor"], "cursor") >= c, "cluster cursor behind an applied write: {}", r.text);
    let members = v["members"].as_array().unwrap_or_else(|| panic!("members: {}", r.text));
    assert_eq!(members.len(), 1, "{}", r.text);
    assert_eq!(members[0]["node_id"], json!(node_id));
    assert_eq!(members[0]["voter"], json!(true));
    assert!(members[0]["addr"].as_str().is_some_and(|s| !s.is_empty()), "{}", r.text);
}

#[tokio::test]
async fn admin_endpoints_need_the_admin_token() {
    let server = shared();
    let api = server.api();
    let u = api.user("notadmin").await;
    for path in ["/v1/admin/journal?from=1&limit=5", "/v1/admin/journal/verify"] {
        api.get(path, None).await.err(401, "unauthorized");
        api.get(path, Some("wrong-admin-token")).await.err(401, "unauthorized");
        api.get(path, Some(&u.token)).await.err(401, "unauthorized");
        api.get(path, Some(&server.admin_token)).await.ok(200);
    }
    // And the admin token is not a user token.
    api.get("/v1/me", Some(&server.admin_token)).await.err(401, "unauthorized");
}

fn check_entries(entries: &[Value]) {
    for e in entries {
        as_u64(&e["cursor"], "entry.cursor");
        as_u64(&e["ts"], "entry.ts");
        for h in ["prev_hash", "hash"] {
            let s = as_str(&e[h], h);
            assert!(!s.is_empty(), "empty {h}: {e}");
        }
        assert!(e.get("event").is_some_and(|x| !x.is_null()), "entry without event: {e}");
    }
    for w in entries.windows(2) {
        assert!(w[1]["cursor"].as_u64() > w[0]["cursor"].as_u64(), "cursors not ascending: {} then {}", w[0], w[1]);
        assert_eq!(
            w[1]["prev_hash"], w[0]["hash"],
            "hash chain broken between {} and {}",
            w[0]["cursor"], w[1]["cursor"]
        );
        assert!(w[1]["ts"].as_u64() >= w[0]["ts"].as_u64(), "ts went backwards");
    }
}

#[tokio::test]
async fn journal_and_verify() {
    let server = shared();
    let api = server.api();
    let admin = server.admin_token.as_str();
    let a = api.user("jra").await;
    let b = api.user("jrb").await;
    api.befriend(&a, &b).await;
    let (m, msg_cursor) = api.send(&a, &dm(&a.id, &b.id), "journaled").await;

    let r = api.get("/v1/admin/journal?from=1&limit=20", Some(admin)).await;
    let entries = r.ok(200)["entries"].as_array().unwrap_or_else(|| panic!("entries: {}", r.text)).clone();
    assert!(!entries.is_empty() && entries.len() <= 20, "{}", r.text);
    assert!(as_u64(&entries[0]["cursor"], "cursor") >= 1);
    check_entries(&entries);

    // The write's cursor is an entry of the journal.
    let r = api.get(&format!("/v1/admin/journal?from={msg_cursor}&limit=1"), Some(admin)).await;
    let entries = r.ok(200)["entries"].as_array().unwrap().clone();
    assert_eq!(entries.len(), 1, "{}", r.text);
    assert_eq!(entries[0]["cursor"], json!(msg_cursor));
    assert_eq!(entries[0]["ts"], m["ts"], "the message's ts is its journal entry's ts");
    let text = entries[0]["event"].to_string();
    assert!(text.contains("journaled") || text.contains(&a.id), "the entry is the message: {text}");

    // `from` is inclusive; pages concatenate along the chain.
    let r1 =
        api.get(&format!("/v1/admin/journal?from={}&limit=3", msg_cursor.saturating_sub(5).max(1)), Some(admin)).await;
    let p1 = r1.ok(200)["entries"].as_array().unwrap().clone();
    assert!(!p1.is_empty() && p1.len() <= 3, "{}", r1.text);
    let next = as_u64(&p1.last().unwrap()["cursor"], "cursor") + 1;
    let r2 = api.get(&format!("/v1/admin/journal?from={next}&limit=3"), Some(admin)).await;
    let p2 = r2.ok(200)["entries"].as_array().unwrap().clone();
    let mut both = p1.clone();
    both.extend(p2);
    check_entries(&both);

    // Verify: ok, and its head is the hash of the last entry.
    let v = api.verify(admin).await;
    assert_eq!(v["ok"], json!(true), "{v}");
    let last = as_u64(&v["last_cursor"], "last_cursor");
    assert!(last >= msg_cursor);
    let head = as_str(&v["head_hash"], "head_hash").to_string();
    let r = api.get(&format!("/v1/admin/journal?from={last}&limit=1"), Some(admin)).await;
    let e = r.ok(200)["entries"].as_array().unwrap().clone();
    assert_eq!(e[0]["cursor"], json!(last));
    assert_eq!(e[0]["hash"], json!(head));

    // Past the end: no entries.
    let r = api.get(&format!("/v1/admin/journal?from={}&limit=5", last + 1_000_000), Some(admin)).await;
    assert_eq!(r.ok(200)["entries"], json!([]));
}

/// `GET /v1/openapi.json` and `GET /v1/ws.schema.json` need no token, and the document
/// describes this server: every documented operation is routed (none gets the router's "no
/// such route"), and what each answers without a token is a status the document lists for it.
#[tokio::test]
async fn the_contract_documents_are_public_and_describe_this_server() {
    let api = shared().api();
    let doc = api.get("/v1/openapi.json", None).await.ok(200).clone();
    assert_eq!(doc["openapi"], "3.1.0");
    let ws = api.get("/v1/ws.schema.json", None).await.ok(200).clone();
    assert!(ws["$defs"]["ClientFrame"].is_object() && ws["$defs"]["ServerFrame"].is_object(), "{ws}");
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() > 30, "{} paths", paths.len());
    for (template, item) in paths {
        for (method, op) in item.as_object().expect("path item") {
            let ints: Vec<&str> = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["in"] == "path" && p["schema"]["type"] == "integer")
                        .filter_map(|p| p["name"].as_str())
                        .collect()
                })
                .unwrap_or_default();
            let path: Vec<String> = template
                .split('/')
                .map(|seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(name) if ints.contains(&name) => "1".to_owned(),
                    Some(_) => "zz_nobody".to_owned(),
                    None => seg.to_owned(),
                })
                .collect();
            let path = path.join("/");
            let r = api.call(&method.to_uppercase(), &path, None, None).await;
            let unrouted = r.status == 404 && r.json["error"]["message"] == "no such route";
            assert!(!unrouted, "{method} {template} is documented but not routed");
            assert!(
                op["responses"].get(r.status.to_string()).is_some(),
                "{method} {path} answered {} ({}), which its document does not list",
                r.status,
                r.text
            );
        }
    }
}
