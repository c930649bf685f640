//! TLS served by kterm itself: HTTPS with a certificate from `[tls]`, Secure cookies and wss://
//! URLs, reloading the certificate on SIGHUP, and bad TLS settings refused with exit code 2.

mod common;

use std::path::{Path, PathBuf};

use common::{eventually, RealServer, TestServer};
use kterm::config::{AuthMode, TokenEntry};
use serde_json::json;

const ALICE: &str = "alice-token-0123456789";

/// A fresh self-signed certificate for 127.0.0.1 and localhost: (cert PEM, key PEM).
fn self_signed() -> (String, String) {
    let names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
    let key = rcgen::generate_simple_self_signed(names).expect("certificate");
    (key.cert.pem(), key.signing_key.serialize_pem())
}

fn write_pair(dir: &Path, (cert, key): &(String, String)) -> (PathBuf, PathBuf) {
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, key).unwrap();
    (cert_path, key_path)
}

/// A client that trusts only `cert`, with no pooled connections to reuse.
fn trusting(cert: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.as_bytes()).unwrap())
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_https_with_secure_cookies_and_reloads_the_certificate() {
    let certs = tempfile::tempdir().unwrap();
    let first = self_signed();
    let (cert, key) = write_pair(certs.path(), &first);
    let server = TestServer::start_with(|c| {
        c.tls.cert = cert.clone();
        c.tls.key = key.clone();
        c.auth.mode = AuthMode::Token;
        c.auth.tokens = vec![TokenEntry {
            user: "alice".into(),
            token: Some(ALICE.into()),
            token_sha256: None,
        }];
    })
    .await;
    let base = server.base.replace("http://", "https://");
    let client = trusting(&first.0);
    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(reqwest::get(format!("{}/healthz", server.base)).await.is_err(), "no plain HTTP");

    let login = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"token": ALICE}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 204);
    let cookie = login.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("Secure") && cookie.contains("HttpOnly"), "{cookie}");
    let session: serde_json::Value = client
        .post(format!("{base}/api/v1/sessions"))
        .bearer_auth(ALICE)
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        session["websocket_url"].as_str().unwrap().starts_with("wss://127.0.0.1:"),
        "{session}"
    );

    // A new certificate in place, then a reload: new connections get it.
    let second = self_signed();
    write_pair(certs.path(), &second);
    server.server.as_ref().unwrap().reload_tls().expect("reload");
    let health = trusting(&second.0).get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(trusting(&first.0).get(format!("{base}/healthz")).send().await.is_err());
    // A broken pair on disk is refused and the served certificate stays.
    std::fs::write(&key, "not a key").unwrap();
    assert!(server.server.as_ref().unwrap().reload_tls().is_err());
    let health = trusting(&second.0).get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate_of_the_real_binary() {
    let dir = tempfile::tempdir().unwrap();
    let first = self_signed();
    let (cert, key) = write_pair(dir.path(), &first);
    let toml = format!("[tls]\ncert = {:?}\nkey = {:?}\n", cert, key);
    let mut server = RealServer::start_in(dir, &toml);
    assert!(server.base.starts_with("https://"), "{}", server.base);
    let base = server.base.clone();
    assert_eq!(
        trusting(&first.0).get(format!("{base}/healthz")).send().await.unwrap().status(),
        200
    );

    let second = self_signed();
    write_pair(server.dir.path(), &second);
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(server.pid(), libc::SIGHUP) };
    eventually("the new certificate after SIGHUP", || async {
        trusting(&second.0).get(format!("{base}/healthz")).send().await.ok().map(|_| ())
    })
    .await;
    server.sigterm();
    assert_eq!(server.wait_exit(), Some(0), "SIGHUP did not stop it; SIGTERM did");
}

#[test]
fn bad_tls_settings_exit_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let pair = self_signed();
    let (cert, _) = write_pair(dir.path(), &pair);
    let other = self_signed();
    let wrong_key = dir.path().join("other.pem");
    std::fs::write(&wrong_key, &other.1).unwrap();
    let cases = [
        (format!("[tls]\ncert = {cert:?}\n"), "tls.cert"),
        (format!("[tls]\ncert = \"/nonexistent/cert.pem\"\nkey = {wrong_key:?}\n"), "tls.cert"),
        (format!("[tls]\ncert = {cert:?}\nkey = {wrong_key:?}\n"), "tls.key"),
        ("[auth]\nmode = \"proxy\"\n".to_string(), "auth.trusted_proxies"),
        (
            "[auth]\nmode = \"proxy\"\ntrusted_proxies = [\"10.0.0.0/33\"]\n".to_string(),
            "auth.trusted_proxies",
        ),
        (
            "[auth]\nmode = \"token\"\ntokens_file = \"/nonexistent/tokens\"\n".to_string(),
            "auth.tokens_file",
        ),
        ("[auth]\nnamespaces = [\"Not Valid\"]\n".to_string(), "auth.namespaces"),
        (
            "[server]\nframe_ancestors = [\"'self'; script-src *\"]\n".to_string(),
            "server.frame_ancestors",
        ),
    ];
    for (toml, key) in cases {
        let file = dir.path().join("kterm.toml");
        std::fs::write(&file, &toml).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kterm"))
            .args(["check-config", "--config"])
            .arg(&file)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{toml}: {err}");
        assert!(err.contains(key), "{toml}: the message should name {key}: {err}");
    }
}
