//! The embedded web UI as a browser fetches it: the page, its hashed bundle, caching,
//! precompressed variants and the security headers.

mod common;

use common::TestServer;

/// `src="static/…"` and `href="static/…"` references in a page.
fn static_refs(html: &str) -> Vec<String> {
    html.split("\"static/")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(|name| format!("/static/{name}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_revalidates_and_its_hashed_bundle_is_immutable() {
    let server = TestServer::start().await;
    let page = server.http.get(server.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let headers = page.headers().clone();
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/html"));
    assert_eq!(headers["cache-control"], "no-cache");
    let csp = headers["content-security-policy"].to_str().unwrap();
    // WebAssembly may be compiled (the recording player), JavaScript never evaluated.
    assert!(csp.contains("script-src 'self' 'wasm-unsafe-eval';"), "{csp}");
    assert!(!csp.replace("'wasm-unsafe-eval'", "").contains("unsafe-eval"), "{csp}");
    let html = page.text().await.unwrap();
    let refs = static_refs(&html);
    assert!(refs.iter().any(|r| r.ends_with(".js")), "the page loads its script: {refs:?}");
    assert!(refs.iter().any(|r| r.ends_with(".css")), "the page loads its style: {refs:?}");
    assert!(!html.contains("<script>"), "no inline script");

    let again = server
        .http
        .get(server.url("/"))
        .header("If-None-Match", headers["etag"].clone())
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);

    for path in &refs {
        let response = server.http.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let h = response.headers();
        assert_eq!(h["cache-control"], "public, max-age=31536000, immutable", "{path}");
        assert!(h.get("content-encoding").is_none(), "{path}: no encoding was asked for");
        let kind = h["content-type"].to_str().unwrap();
        let want = if path.ends_with(".js") { "javascript" } else { "text/css" };
        assert!(kind.contains(want), "{path}: {kind}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn precompressed_variants_follow_accept_encoding() {
    let server = TestServer::start().await;
    let html = server.http.get(server.url("/")).send().await.unwrap().text().await.unwrap();
    let script = static_refs(&html).into_iter().find(|r| r.ends_with(".js")).unwrap();
    let plain = server.http.get(server.url(&script)).send().await.unwrap();
    let plain_etag = plain.headers()["etag"].clone();
    let plain = plain.bytes().await.unwrap();

    for (accept, encoding) in
        [("gzip, deflate, br", "br"), ("gzip", "gzip"), ("br;q=0, gzip", "gzip")]
    {
        let response = server
            .http
            .get(server.url(&script))
            .header("Accept-Encoding", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let h = response.headers().clone();
        assert_eq!(h["content-encoding"], encoding, "Accept-Encoding: {accept}");
        assert_eq!(h["vary"], "Accept-Encoding");
        assert_ne!(h["etag"], plain_etag, "each variant has its own ETag");
        let body = response.bytes().await.unwrap();
        assert!(body.len() < plain.len() / 2, "{encoding}: {} of {}", body.len(), plain.len());
        if encoding == "gzip" {
            let mut decoded = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut decoded)
                .unwrap();
            assert_eq!(decoded, plain, "the gzip variant is the same file");
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_assets_are_404() {
    let server = TestServer::start().await;
    for path in ["/static/nope-123.js", "/nope.html", "/static/"] {
        let response = server.http.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
    }
    server.stop().await;
}
