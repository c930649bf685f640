//! The files API's behaviour, written once and run on every backend (tests/files_local.rs,
//! tests/files_docker.rs): a [`Files`] client for one session, and the scenarios.

use std::collections::HashSet;

use kterm::files::{Precondition, Workspace};
use kterm::session::{Caller, CreateSession};
use serde_json::Value;

use super::TestServer;

/// The files API of one session, and its shell.
pub struct Files<'a> {
    pub server: &'a TestServer,
    pub id: String,
}

impl<'a> Files<'a> {
    pub fn new(server: &'a TestServer, id: &str) -> Files<'a> {
        Files { server, id: id.to_string() }
    }

    /// `…/files{endpoint}` with `query` appended as given (already encoded, or deliberately not).
    pub fn url(&self, endpoint: &str, query: &str) -> String {
        self.server.url(&format!("/api/v1/sessions/{}/files{endpoint}{query}", self.id))
    }

    pub async fn put(&self, path: &str, body: Vec<u8>, headers: &[(&str, &str)]) -> (u16, String) {
        let mut request =
            self.server.http.put(self.url("/content", "")).query(&[("path", path)]).body(body);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request.send().await.expect("PUT");
        let status = response.status().as_u16();
        let etag = header(&response, "etag");
        let text = response.text().await.unwrap_or_default();
        (status, if status == 204 { etag } else { text })
    }

    /// PUT with `Transfer-Encoding: chunked` (no Content-Length) of `count` chunks of `size`
    /// bytes `c`, over a raw connection; the status.
    pub async fn put_chunked(&self, path: &str, count: usize, size: usize) -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = self.server.base.trim_start_matches("http://").to_string();
        let mut tcp = tokio::net::TcpStream::connect(&addr).await.expect("connect");
        let head = format!(
            "PUT /api/v1/sessions/{}/files/content?path={} HTTP/1.1\r\nHost: {addr}\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            self.id,
            enc(path)
        );
        tcp.write_all(head.as_bytes()).await.unwrap();
        for _ in 0..count {
            let chunk = format!("{size:x}\r\n{}\r\n", "c".repeat(size));
            if tcp.write_all(chunk.as_bytes()).await.is_err() {
                break; // the server answered and closed early
            }
        }
        let _ = tcp.write_all(b"0\r\n\r\n").await;
        let mut answer = Vec::new();
        let _ = tcp.read_to_end(&mut answer).await;
        let answer = String::from_utf8_lossy(&answer);
        answer.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
    }

    /// GET content: status, ETag, body.
    pub async fn read(&self, path: &str) -> (u16, String, Vec<u8>) {
        let response = self
            .server
            .http
            .get(self.url("/content", ""))
            .query(&[("path", path)])
            .send()
            .await
            .expect("GET");
        let status = response.status().as_u16();
        let etag = header(&response, "etag");
        (status, etag, response.bytes().await.expect("body").to_vec())
    }

    pub async fn list(&self, path: &str) -> (u16, Value) {
        let response = self.server.http.get(self.url("", "")).query(&[("path", path)]).send();
        let response = response.await.expect("GET list");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// The names in a listing.
    pub async fn names(&self, path: &str) -> HashSet<String> {
        let (status, body) = self.list(path).await;
        assert_eq!(status, 200, "{body}");
        body["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_string())
            .collect()
    }

    /// Any method on a raw URL tail such as `/content?path=..%2fx`: status and body.
    pub async fn raw(&self, method: &str, tail: &str, body: Option<Value>) -> (u16, String) {
        let url = self.url("", tail);
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.server.http.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        (response.status().as_u16(), response.text().await.unwrap_or_default())
    }

    /// Runs `command` in the session's shell; returns its output (between two markers that
    /// only the shell's arithmetic produces, so neither the echoed command line nor replayed
    /// scrollback can match them).
    pub async fn sh(&self, command: &str) -> String {
        let n = (uuid::Uuid::new_v4().as_u128() % 1_000_000_000) as u64;
        let (start, end) = (format!("S{}S", n + 1), format!("E{}E", n + 2));
        let mut term = self.server.attach(&self.id).await;
        term.send(&format!("echo S$(({n}+1))S; {command}; echo E$(({n}+2))E\n")).await;
        let out = term.read_until(&end).await;
        term.close().await;
        let from = out.rfind(&start).map(|i| i + start.len()).unwrap_or(0);
        let to = out.rfind(&end).unwrap_or(out.len()).max(from);
        out[from..to].to_string()
    }
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
}

/// Text and binary files (every byte value, names with spaces and Unicode) come back as
/// written, with a fitting Content-Type, and downloads carry a Content-Disposition.
pub async fn round_trip(files: &Files<'_>) {
    let dir = "dir with spaces ünïcødé";
    let (status, _) = files.raw("POST", &format!("/mkdir?path={}", enc(dir)), None).await;
    assert_eq!(status, 201);
    let text_path = format!("{dir}/notes — ✓.txt");
    let text = "héllo wörld\nline 2\n".as_bytes().to_vec();
    let (status, etag) = files.put(&text_path, text.clone(), &[]).await;
    assert_eq!(status, 204, "{etag}");
    assert!(etag.starts_with('"'), "PUT answers the new ETag: {etag:?}");
    let (status, read_etag, body) = files.read(&text_path).await;
    assert_eq!((status, &body), (200, &text));
    assert_eq!(read_etag, etag);

    let every_byte: Vec<u8> = (0..=255u8).cycle().take(256 * 40 + 7).collect();
    let bin_path = "all bytes \u{1F600}.bin";
    assert_eq!(files.put(bin_path, every_byte.clone(), &[]).await.0, 204);
    assert_eq!(files.read(bin_path).await.2, every_byte);
    let empty = "empty";
    assert_eq!(files.put(empty, Vec::new(), &[]).await.0, 204);
    let (status, _, body) = files.read(empty).await;
    assert_eq!((status, body.len()), (200, 0));

    let download = files
        .server
        .http
        .get(files.url("/content", ""))
        .query(&[("path", text_path.as_str()), ("download", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(header(&download, "content-type"), "text/plain; charset=utf-8");
    let disposition = header(&download, "content-disposition");
    assert!(disposition.starts_with("attachment;"), "{disposition}");
    assert!(
        disposition.contains("filename*=UTF-8''notes%20%E2%80%94%20%E2%9C%93.txt"),
        "{disposition}"
    );
    assert!(header(&download, "content-security-policy").starts_with("sandbox"));

    let (status, listing) = files.list(dir).await;
    assert_eq!(status, 200, "{listing}");
    assert_eq!(listing["path"], dir);
    let entry = &listing["entries"][0];
    assert_eq!(entry["name"], "notes — ✓.txt");
    assert_eq!(
        (entry["type"].as_str(), entry["size"].as_u64()),
        (Some("file"), Some(text.len() as u64))
    );
    assert!(entry["mtime"].as_i64().unwrap() > 1_600_000_000, "{entry}");
    let root = files.names("").await;
    assert!(root.contains(dir) && root.contains(bin_path), "{root:?}");

    let (status, stat) = files.raw("GET", &format!("/stat?path={}", enc(bin_path)), None).await;
    let stat: Value = serde_json::from_str(&stat).unwrap();
    assert_eq!(status, 200, "{stat}");
    assert_eq!(
        (stat["type"].as_str(), stat["size"].as_u64()),
        (Some("file"), Some(every_byte.len() as u64))
    );

    // The shell sees the same bytes.
    let out = files.sh(&format!("wc -c < '{text_path}'; wc -c < '{bin_path}'")).await;
    assert!(out.contains(&text.len().to_string()), "{out}");
    assert!(out.contains(&every_byte.len().to_string()), "{out}");
}

/// Listings follow what the shell does, and the shell sees what the API does.
pub async fn shell_and_api_agree(files: &Files<'_>) {
    files.sh("mkdir -p made/deep && echo hi > made/f.txt && ln -s f.txt made/link && ln -s /etc made/out").await;
    let (status, listing) = files.list("made").await;
    assert_eq!(status, 200, "{listing}");
    let entries = listing["entries"].as_array().unwrap();
    let kind = |name: &str| {
        entries.iter().find(|e| e["name"] == name).map(|e| e["type"].as_str().unwrap().to_string())
    };
    assert_eq!(kind("deep").as_deref(), Some("dir"));
    assert_eq!(kind("f.txt").as_deref(), Some("file"));
    assert_eq!(kind("link").as_deref(), Some("symlink"));
    let out = entries.iter().find(|e| e["name"] == "out").unwrap();
    assert_eq!(out["target"], "/etc", "a link is listed with its target, never followed");
    // Inside the workspace, links are followed for reads.
    assert_eq!(files.read("made/link").await.2, b"hi\n");

    files.sh("rm made/f.txt && touch made/.hidden").await;
    let names = files.names("made").await;
    assert!(!names.contains("f.txt") && names.contains(".hidden"), "{names:?}");

    assert_eq!(files.raw("POST", "/mkdir?path=api%2Fa%2Fb&parents=1", None).await.0, 201);
    assert_eq!(files.raw("POST", "/mkdir?path=api", None).await.0, 409, "exists");
    assert_eq!(files.raw("POST", "/mkdir?path=nope%2Fx", None).await.0, 404, "no parent");
    assert_eq!(files.put("api/a/b/x.txt", b"x".to_vec(), &[]).await.0, 204);
    let moved = serde_json::json!({"from": "api/a/b/x.txt", "to": "api/y.txt"});
    assert_eq!(files.raw("POST", "/rename", Some(moved)).await.0, 204);
    let onto = serde_json::json!({"from": "api/y.txt", "to": "made/deep"});
    assert_eq!(files.raw("POST", "/rename", Some(onto)).await.0, 409, "never onto an entry");
    assert_eq!(files.raw("DELETE", "?path=api%2Fa", None).await.0, 409, "not empty");
    assert_eq!(files.raw("DELETE", "?path=api%2Fa&recursive=1", None).await.0, 204);
    assert_eq!(files.raw("DELETE", "?path=made%2Fout", None).await.0, 204, "the link only");
    assert_eq!(files.raw("DELETE", "?path=gone", None).await.0, 404);
    assert_eq!(files.raw("DELETE", "?path=", None).await.0, 400, "never the workspace");
    let out = files
        .sh("cat api/y.txt; [ -e api/a ] && echo has-a; [ -h made/out ] && echo has-out; [ -d /etc ] && echo etc-ok")
        .await;
    assert!(out.contains('x') && out.contains("etc-ok"), "{out}");
    assert!(!out.contains("has-a") && !out.contains("has-out"), "{out}");

    // A directory as a tar stream.
    let response = files.server.http.get(files.url("/archive", "?path=made")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), "application/x-tar");
    let tar = response.bytes().await.unwrap();
    let mut archive = tar::Archive::new(&tar[..]);
    let names: HashSet<String> = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().trim_start_matches("./").to_string())
        .collect();
    assert!(names.contains("deep/") || names.contains("deep"), "{names:?}");
    assert!(names.contains("link") && names.contains(".hidden"), "{names:?}");
    assert_eq!(
        files.raw("GET", "/archive?path=made%2F.hidden", None).await.0,
        400,
        "not a directory"
    );
}

/// Readers racing a writer see the old or the new file, never a mix.
pub async fn atomic_write_under_readers(files: &Files<'_>) {
    let a = vec![b'a'; 512 * 1024];
    let b = vec![b'b'; 300 * 1024 + 11];
    assert_eq!(files.put("race.bin", a.clone(), &[]).await.0, 204);
    let writer = async {
        for i in 0..12 {
            let body = if i % 2 == 0 { b.clone() } else { a.clone() };
            assert_eq!(files.put("race.bin", body, &[]).await.0, 204);
        }
    };
    let reader = async {
        let mut seen = HashSet::new();
        for _ in 0..24 {
            let (status, _, body) = files.read("race.bin").await;
            assert_eq!(status, 200);
            assert!(body == a || body == b, "a torn read: {} bytes", body.len());
            seen.insert(body.len());
        }
        seen
    };
    let ((), _seen) = tokio::join!(writer, reader);
    let names = files.names("").await;
    assert!(!names.iter().any(|n| n.starts_with(".kterm-write-")), "temp files left: {names:?}");
}

/// A stale editor gets 409 instead of overwriting newer content.
pub async fn precondition_conflicts(files: &Files<'_>) {
    assert_eq!(files.put("doc.txt", b"v1".to_vec(), &[]).await.0, 204);
    let (_, v1, _) = files.read("doc.txt").await;
    let (status, v2) = files.put("doc.txt", b"v2".to_vec(), &[("If-Match", &v1)]).await;
    assert_eq!(status, 204);
    assert_ne!(v1, v2, "every write changes the ETag, even within one second");
    let (status, body) = files.put("doc.txt", b"stale".to_vec(), &[("If-Match", &v1)]).await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("\"conflict\""), "{body}");
    assert_eq!(files.read("doc.txt").await.2, b"v2");

    // Changed from the shell, in place: still detected.
    files.sh("printf v3 > doc.txt").await;
    let (status, _) = files.put("doc.txt", b"stale".to_vec(), &[("If-Match", &v2)]).await;
    assert_eq!(status, 409);
    assert_eq!(files.read("doc.txt").await.2, b"v3");

    let (status, _) = files.put("doc.txt", b"x".to_vec(), &[("If-None-Match", "*")]).await;
    assert_eq!(status, 409, "create-only on an existing file");
    assert_eq!(files.put("new.txt", b"x".to_vec(), &[("If-Match", "*")]).await.0, 409);
    assert_eq!(files.put("new.txt", b"x".to_vec(), &[("If-None-Match", "*")]).await.0, 204);
    assert_eq!(files.put("doc.txt", b"x".to_vec(), &[("If-Match", "\"garbage\"")]).await.0, 409);
    assert_eq!(files.put("nodir/x.txt", b"x".to_vec(), &[]).await.0, 404);
    assert_eq!(files.put("made-dir", Vec::new(), &[]).await.0, 204);
    files.sh("rm made-dir; mkdir made-dir").await;
    assert_eq!(files.put("made-dir", b"x".to_vec(), &[]).await.0, 400, "a directory");
}

/// `max_write` and `max_read` (set to 64 KiB by the callers) answer 413.
pub async fn size_caps(files: &Files<'_>) {
    let max = 64 * 1024;
    assert_eq!(files.put("cap.bin", vec![7; max], &[]).await.0, 204);
    let (status, body) = files.put("cap.bin", vec![7; max + 1], &[]).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(files.read("cap.bin").await.2.len(), max, "the refused write changed nothing");
    files.sh("head -c 70000 /dev/zero > big.bin").await;
    let (status, _, body) = files.read("big.bin").await;
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&body));
    // Chunked uploads (no Content-Length) are capped too.
    assert_eq!(files.put_chunked("chunked.bin", 70, 1024).await, 413);
    assert_eq!(files.put_chunked("chunked.bin", 8, 1024).await, 204);
    assert_eq!(files.read("chunked.bin").await.2, vec![b'c'; 8 * 1024]);
}

/// `..`, `..%2f`, absolute paths, NUL bytes, a link to /etc, a link chain and a dangling link
/// leading out: all 400, and nothing outside the workspace is read or written. `outside` is a
/// writable directory outside the workspace, as the sandbox sees it, holding `secret.txt`.
pub async fn traversal_is_refused(files: &Files<'_>, outside: &str) {
    files
        .sh(&format!(
            "ln -s /etc etc-link; ln -s {outside} out-link; ln -s out-link chain1; ln -s chain1 chain2; \
             ln -s {outside}/planted dangling-out; ln -s ../../../../../../.. up-link; echo ok > ok.txt"
        ))
        .await;
    let corpus: &[(&str, &str, Option<Value>)] = &[
        ("GET", "?path=..", None),
        ("GET", "?path=../", None),
        ("GET", "?path=..%2f", None),
        ("GET", "?path=%2e%2e%2f%2e%2e", None),
        ("GET", "?path=a%2f..%2f..%2f", None),
        ("GET", "?path=%2fetc", None),
        ("GET", "?path=etc-link", None),
        ("GET", "?path=chain2", None),
        ("GET", "?path=up-link", None),
        ("GET", "/content?path=..%2f..%2fetc%2fpasswd", None),
        ("GET", "/content?path=/etc/passwd", None),
        ("GET", "/content?path=etc-link%2fpasswd", None),
        ("GET", "/content?path=chain2%2fsecret.txt", None),
        ("GET", "/content?path=out-link%2fsecret.txt", None),
        ("GET", "/content?path=ok.txt%00.png", None),
        ("GET", "/content?path=up-link%2fetc%2fpasswd", None),
        ("GET", "/stat?path=etc-link", None),
        ("GET", "/stat?path=out-link%2fsecret.txt", None),
        ("GET", "/archive?path=out-link", None),
        ("GET", "/archive?path=..", None),
        ("PUT", "/content?path=..%2fevil", None),
        ("PUT", "/content?path=%2ftmp%2fevil", None),
        ("PUT", "/content?path=out-link%2fevil", None),
        ("PUT", "/content?path=chain2%2fevil", None),
        ("PUT", "/content?path=dangling-out", None),
        ("PUT", "/content?path=out-link%2fsecret.txt", None),
        ("PUT", "/content?path=ev%00il", None),
        ("POST", "/mkdir?path=out-link%2fnewdir", None),
        ("POST", "/mkdir?path=chain2%2fa%2fb&parents=1", None),
        ("POST", "/mkdir?path=..%2fnewdir", None),
        ("DELETE", "?path=out-link%2fsecret.txt", None),
        ("DELETE", "?path=chain1%2fsecret.txt&recursive=1", None),
        ("DELETE", "?path=..%2f..", None),
        (
            "POST",
            "/rename",
            Some(serde_json::json!({"from": "out-link/secret.txt", "to": "stolen.txt"})),
        ),
        (
            "POST",
            "/rename",
            Some(serde_json::json!({"from": "ok.txt", "to": "out-link/moved.txt"})),
        ),
        ("POST", "/rename", Some(serde_json::json!({"from": "ok.txt", "to": "../moved.txt"}))),
    ];
    for (method, tail, body) in corpus {
        let (status, text) = files.raw(method, tail, body.clone()).await;
        assert_eq!(status, 400, "{method} {tail} {body:?}: {text}");
        assert!(text.contains("\"bad_request\""), "{method} {tail}: {text}");
        assert!(!text.contains("root:") && !text.contains("secret-content"), "{tail}: {text}");
    }
    // A large body refused before it is read changes nothing either.
    let (status, _) = files.put("out-link/big.bin", vec![0; 4 << 20], &[]).await;
    assert_eq!(status, 400);
    let out = files.sh(&format!("ls -A {outside}; cat {outside}/secret.txt; ls -A; echo")).await;
    assert!(out.contains("secret-content"), "the outside file is intact: {out}");
    for planted in ["evil", "newdir", "moved.txt", "planted", "stolen.txt", "big.bin"] {
        assert!(!out.contains(planted), "{planted} appeared: {out}");
    }
    assert!(out.contains("ok.txt"), "{out}");
}

/// Another user's session: invisible through the service (404) for a non-admin, usable by its
/// owner, and each user's workspace is their own.
pub async fn other_users_files_are_out_of_reach(server: &TestServer, own_session: &str) {
    let state = server.state();
    let registry = &state.registry;
    let config = &state.config.files;
    let bob_session =
        registry.create(&Caller::user("bob"), CreateSession::default()).await.expect("bob").id;
    let alice = Caller::user("alice");
    let bob = Caller::user("bob");
    for session in [&bob_session, &own_session.to_string()] {
        let err = Workspace::open(registry, &alice, session, config).await.err().expect("refused");
        assert!(matches!(err, kterm::error::Error::NotFound(_)), "{err}");
    }
    assert!(Workspace::open(registry, &bob, own_session, config).await.is_err());
    let bobs = Workspace::open(registry, &bob, &bob_session, config).await.expect("bob's own");
    bobs.write("bob.txt", "from bob".into(), Precondition::None).await.expect("bob writes");
    assert!(bobs.list("").await.unwrap().iter().any(|e| e.name == "bob.txt"));

    let mine = Files::new(server, own_session);
    assert_eq!(mine.put("mine.txt", b"mine".to_vec(), &[]).await.0, 204);
    assert!(!bobs.list("").await.unwrap().iter().any(|e| e.name == "mine.txt"));
    assert!(!mine.names("").await.contains("bob.txt"));
    // Unknown sessions are 404 over HTTP too.
    let stranger = Files::new(server, "00000000-0000-0000-0000-000000000000");
    assert_eq!(stranger.list("").await.0, 404);
}

/// Percent-encodes a query value.
pub fn enc(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
