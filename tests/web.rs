//! The built-in web client's files over HTTP: `GET /` and `/app/*` with their content types and
//! a strict Content-Security-Policy; anything else under `/app/` is the contract's 404. (The
//! client itself runs in a browser in tests/browser.rs.)

mod support;

use support::*;

fn header<'a>(r: &'a Resp, name: &str) -> &'a str {
    r.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_else(|| panic!("{} lacks {name}", r.path))
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_with_their_types_and_a_strict_policy() {
    let api = shared().api();
    let page = api.get("/", None).await;
    page.ok(200);
    assert!(header(&page, "content-type").starts_with("text/html"));
    assert!(page.text.contains("<script type=\"module\" src=\"/app/main.js\"></script>"), "{}", page.text);
    for (path, ty) in [
        ("/app/main.js", "text/javascript"),
        ("/app/api.js", "text/javascript"),
        ("/app/state.js", "text/javascript"),
        ("/app/views.js", "text/javascript"),
        ("/app/app.css", "text/css"),
        ("/app/icon.svg", "image/svg+xml"),
    ] {
        let r = api.get(path, None).await;
        r.ok(200);
        assert!(header(&r, "content-type").starts_with(ty), "{path}: {}", header(&r, "content-type"));
        assert!(!r.text.is_empty(), "{path} is empty");
    }
    for r in [&page, &api.get("/app/main.js", None).await] {
        let csp = header(r, "content-security-policy");
        for directive in
            ["default-src 'none'", "script-src 'self'", "connect-src 'self' ws: wss:", "frame-ancestors 'none'"]
        {
            assert!(csp.contains(directive), "{}: CSP {csp:?} lacks {directive}", r.path);
        }
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{csp}");
        assert_eq!(header(r, "x-content-type-options"), "nosniff");
    }
}

#[tokio::test]
async fn unknown_assets_are_not_found_and_other_methods_not_allowed() {
    let api = shared().api();
    for path in ["/app/nope.js", "/app/", "/app/main.js/x", "/app/..%2Fsrc%2Fmain.rs", "/index.html"] {
        api.get(path, None).await.err(404, "not_found");
    }
    // A known path with another method: 405 with `Allow`, as everywhere.
    let r = api.call("POST", "/", None, None).await;
    r.err(405, "invalid_request");
    assert_eq!(r.headers.get("allow").and_then(|v| v.to_str().ok()), Some("GET"));
}
