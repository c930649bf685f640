//! kterm under systemd: socket activation end to end with `systemd-socket-activate` (the first
//! request starts kterm, it exits when idle, the next request starts it again on the same
//! state and, with Docker, adopts the user's sandbox), `sd_notify` (READY, WATCHDOG, STOPPING),
//! journald's native format, and the shipped units checked by `systemd-analyze verify`.
//!
//! Without Debian's systemd tools these tests print SKIPPED and pass, unless
//! KTERM_REQUIRE_SYSTEMD=1 (CI sets it).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

const KTERM: &str = env!("CARGO_BIN_EXE_kterm");

/// Whether `tool` is there; if not, SKIPPED (or a failure under KTERM_REQUIRE_SYSTEMD=1).
fn have(tool: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var("KTERM_REQUIRE_SYSTEMD").as_deref() != Ok("1"),
            "{tool} is missing (apt-get install systemd) and KTERM_REQUIRE_SYSTEMD=1"
        );
        eprintln!("SKIPPED: {tool} is not installed (apt-get install systemd)");
    }
    found
}

/// One HTTP/1.1 GET over a fresh connection: the status code and the body.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    request(addr, "GET", path, "")
}

/// One HTTP/1.1 request (a JSON body when not empty) over a fresh connection.
fn request(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read the answer");
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// Waits for `child` to exit within `limit`; its exit code.
fn wait_exit(child: &mut Child, limit: Duration) -> Option<i32> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// What systemd does on a connection to kterm.socket: runs kterm with the socket, which the
/// test holds open the whole time (as systemd does), passed as descriptor 3 through
/// `systemd-socket-activate`, which execs kterm once a connection is waiting.
fn activate(socket: &TcpListener, config: &Path, log: &Path) -> Child {
    let fd = socket.as_raw_fd();
    let log = std::fs::File::create(log).unwrap();
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(
            "LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=http exec systemd-socket-activate \
             --fdname=http -E KTERM_CONFIG=\"$1\" -E RUST_LOG=info \"$0\"",
        )
        .arg(KTERM)
        .arg(config)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    // SAFETY: only async-signal-safe calls (dup2, fcntl) between fork and exec.
    unsafe {
        command.pre_exec(move || {
            if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0);
            } else if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.spawn().expect("start systemd-socket-activate")
}

fn instance_in(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap();
    let start =
        text.find("instance=\"").unwrap_or_else(|| panic!("no instance in the log:\n{text}"));
    text[start + 10..].split('"').next().unwrap().to_string()
}

#[test]
fn socket_activation_starts_kterm_on_demand_and_again_after_an_idle_exit() {
    if !have("systemd-socket-activate") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kterm.toml");
    let state = dir.path().join("kterm.db");
    std::fs::write(
        &config,
        format!(
            "[server]\nexit_when_idle = \"1s\"\n[backend]\nkind = \"local\"\n[pool]\nmin = 0\nmax = 0\n\
             [state]\npath = {:?}\n",
            state.to_str().unwrap()
        ),
    )
    .unwrap();
    let socket = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();

    // The first request: nothing runs yet; the connection waits in the socket's queue while
    // kterm starts.
    let first_log = dir.path().join("first.log");
    let mut first = activate(&socket, &config, &first_log);
    let (status, body) = get(addr, "/healthz");
    assert_eq!(status, 200, "{body}");
    let (status, body) = get(addr, "/api/v1/sessions");
    assert_eq!(status, 200, "{body}");
    let served = Instant::now();
    let code = wait_exit(&mut first, Duration::from_secs(30));
    let log = std::fs::read_to_string(&first_log).unwrap();
    assert_eq!(code, Some(0), "kterm did not exit 0 when idle:\n{log}");
    assert!(served.elapsed() >= Duration::from_millis(900), "exited before being idle 1s");
    assert!(log.contains("Received 1 descriptors"), "{log}");
    assert!(log.contains("server.exit_when_idle"), "{log}");

    // Nothing runs now, and the socket still accepts: the next request is queued, and the
    // activation it triggers serves it, with the same state (the same instance, whose
    // sandboxes it adopts).
    let second_log = dir.path().join("second.log");
    let waiting = std::thread::spawn(move || get(addr, "/healthz"));
    std::thread::sleep(Duration::from_millis(100));
    let mut second = activate(&socket, &config, &second_log);
    let (status, body) = waiting.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(instance_in(&first_log), instance_in(&second_log));
    let code = wait_exit(&mut second, Duration::from_secs(30));
    let log = std::fs::read_to_string(&second_log).unwrap();
    assert_eq!(code, Some(0), "{log}");
}

#[test]
fn systemd_is_told_ready_watchdog_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let notifications = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    notifications.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut kterm = Command::new(KTERM)
        .args(["--listen", "127.0.0.1:0", "--state"])
        .arg(dir.path().join("kterm.db"))
        .env("KTERM_BACKEND__KIND", "local")
        .env("KTERM_POOL__MAX", "0")
        .env("KTERM_POOL__MIN", "0")
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "200000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let next = || {
        let mut buf = [0u8; 256];
        let n = notifications.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let ready = next();
    assert!(ready.starts_with("READY=1\nSTATUS=serving on 127.0.0.1:"), "{ready}");
    let addr: SocketAddr = ready.rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(get(addr, "/healthz").0, 200);
    assert_eq!(next(), "WATCHDOG=1");
    assert_eq!(next(), "WATCHDOG=1");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(kterm.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let mut seen = next();
    while seen == "WATCHDOG=1" {
        seen = next();
    }
    assert_eq!(seen, "STOPPING=1");
    assert_eq!(wait_exit(&mut kterm, Duration::from_secs(30)), Some(0));
}

#[test]
fn the_shipped_units_pass_systemd_analyze_verify() {
    if !have("systemd-analyze") {
        return;
    }
    // verify wants ExecStart's program to exist: point it at the binary under test.
    let dir = tempfile::tempdir().unwrap();
    let units = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd");
    let service = std::fs::read_to_string(units.join("kterm.service")).unwrap();
    assert!(service.contains("ExecStart=/usr/local/bin/kterm "), "{service}");
    for (name, text) in [
        ("kterm.service", service.replace("/usr/local/bin/kterm", KTERM)),
        // The Docker variant: the commented group line switched on.
        (
            "kterm-docker.service",
            service
                .replace("/usr/local/bin/kterm", KTERM)
                .replace("#SupplementaryGroups=docker", "SupplementaryGroups=docker"),
        ),
        ("kterm.socket", std::fs::read_to_string(units.join("kterm.socket")).unwrap()),
    ] {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(["kterm.socket", "kterm.service", "kterm-docker.service"].map(|n| dir.path().join(n)))
        .output()
        .unwrap();
    // verify exits 0 on some problems (an unknown value is "ignored"): any message is a failure.
    let said =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify:\n{said}");
    for hardening in [
        "DynamicUser=yes",
        "StateDirectory=kterm",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "\nCapabilityBoundingSet=\n",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "SystemCallFilter=@system-service",
        "Restart=on-failure",
        "Type=notify",
    ] {
        assert!(service.contains(hardening), "kterm.service lacks {hardening:?}");
    }
}

/// Removes the stand-in journald socket however the test ends.
struct RemoveOnDrop(&'static Path);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0);
    }
}

#[test]
fn under_the_journal_records_go_to_journald_in_its_native_format() {
    // A stand-in for journald at its fixed address: only where no journald runs, and only as
    // root (CI); anything else skips.
    let socket = Path::new("/run/systemd/journal/socket");
    if socket.exists() {
        eprintln!("SKIPPED: a journald listens here; not replacing it");
        return;
    }
    let journal = std::fs::create_dir_all("/run/systemd/journal")
        .and_then(|()| std::os::unix::net::UnixDatagram::bind(socket));
    let journal = match journal {
        Ok(journal) => journal,
        Err(e) => {
            assert!(
                std::env::var("KTERM_REQUIRE_SYSTEMD").as_deref() != Ok("1"),
                "cannot stand in for journald ({e}) and KTERM_REQUIRE_SYSTEMD=1"
            );
            eprintln!("SKIPPED: cannot stand in for journald at {}: {e}", socket.display());
            return;
        }
    };
    let _remove = RemoveOnDrop(socket);
    journal.set_read_timeout(Some(Duration::from_secs(30))).unwrap();

    // Standard error is "the journal stream" when JOURNAL_STREAM names its device and inode.
    let dir = tempfile::tempdir().unwrap();
    let stderr_path = dir.path().join("stderr");
    let stderr = std::fs::File::create(&stderr_path).unwrap();
    let meta = {
        use std::os::unix::fs::MetadataExt;
        let m = stderr.metadata().unwrap();
        format!("{}:{}", m.dev(), m.ino())
    };
    let mut kterm = Command::new(KTERM)
        .args(["--listen", "127.0.0.1:0", "--state"])
        .arg(dir.path().join("kterm.db"))
        .env("KTERM_BACKEND__KIND", "local")
        .env("KTERM_POOL__MAX", "0")
        .env("KTERM_POOL__MIN", "0")
        .env("JOURNAL_STREAM", meta)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut serving = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    while serving.is_none() && Instant::now() < deadline {
        let mut buf = vec![0u8; 64 * 1024];
        let Ok(n) = journal.recv(&mut buf) else { break };
        let record = journal_fields(&buf[..n]);
        if record.get("MESSAGE").is_some_and(|m| m.contains("kterm is serving")) {
            serving = Some(record);
        }
    }
    let _ = kterm.kill();
    let _ = kterm.wait();
    let record = serving.expect("the start-up record reached the journal");
    let field = |name: &str| record.get(name).map(String::as_str).unwrap_or_default();
    assert!(matches!(field("PRIORITY"), "5" | "6"), "an info record: {record:?}");
    assert_eq!(field("SYSLOG_IDENTIFIER"), "kterm", "{record:?}");
    assert_eq!(field("TARGET"), "kterm::app", "{record:?}");
    assert!(field("F_ADDR").starts_with("127.0.0.1:"), "fields are journal fields: {record:?}");
    let text = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(!text.contains("kterm is serving"), "logged as text as well:\n{text}");
}

/// The fields of one record in journald's native protocol: `NAME=value\n`, or `NAME\n`, a
/// little-endian 64-bit length, the value and `\n` (for values that may hold newlines).
fn journal_fields(mut data: &[u8]) -> std::collections::BTreeMap<String, String> {
    let mut fields = std::collections::BTreeMap::new();
    while !data.is_empty() {
        let end = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
        let line = &data[..end];
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            let name = String::from_utf8_lossy(&line[..eq]).into_owned();
            fields.insert(name, String::from_utf8_lossy(&line[eq + 1..]).into_owned());
            data = &data[(end + 1).min(data.len())..];
        } else {
            let name = String::from_utf8_lossy(line).into_owned();
            let rest = &data[end + 1..];
            let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
            fields.insert(name, String::from_utf8_lossy(&rest[8..8 + len]).into_owned());
            data = &rest[(8 + len + 1).min(rest.len())..];
        }
    }
    fields
}

/// The `sandbox_id` of a session created with POST /api/v1/sessions.
fn create_session(addr: SocketAddr) -> String {
    let (status, body) = request(addr, "POST", "/api/v1/sessions", "{}");
    assert_eq!(status, 201, "{body}");
    let session: serde_json::Value = serde_json::from_str(&body).unwrap();
    session["sandbox_id"].as_str().unwrap_or_default().to_string()
}

#[test]
fn after_an_idle_exit_the_next_start_adopts_the_users_docker_sandbox() {
    if !have("systemd-socket-activate") || !common::docker::available() {
        return;
    }
    let cleanup = common::docker::Cleanup::new();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kterm.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nexit_when_idle = \"2s\"\n[backend]\nkind = \"docker\"\n\
             [docker]\nimage = {:?}\npull = \"never\"\nmemory = \"128m\"\npids_limit = 64\n\
             labels = {{ {:?} = {:?} }}\n[pool]\nmin = 0\nmax = 0\n[state]\npath = {:?}\n",
            common::docker::image(),
            common::docker::TEST_LABEL,
            cleanup.id,
            dir.path().join("kterm.db").to_str().unwrap()
        ),
    )
    .unwrap();
    let socket = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();

    let first_log = dir.path().join("first.log");
    let mut first = activate(&socket, &config, &first_log);
    let sandbox = create_session(addr);
    assert!(!sandbox.is_empty(), "a session in a sandbox");
    let code = wait_exit(&mut first, Duration::from_secs(60));
    let log = std::fs::read_to_string(&first_log).unwrap();
    assert_eq!(code, Some(0), "no idle exit:\n{log}");
    assert_eq!(cleanup.containers().len(), 1, "the sandbox stays while kterm is gone");

    // The user comes back: the next connection starts kterm, which adopts the sandbox, and the
    // user's next session lands in it.
    let second_log = dir.path().join("second.log");
    let waiting = std::thread::spawn(move || create_session(addr));
    std::thread::sleep(Duration::from_millis(100));
    let mut second = activate(&socket, &config, &second_log);
    let again = waiting.join().unwrap();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(second.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let code = wait_exit(&mut second, Duration::from_secs(60));
    let log = std::fs::read_to_string(&second_log).unwrap();
    assert_eq!(again, sandbox, "the same sandbox, adopted:\n{log}");
    assert_eq!(code, Some(0), "{log}");
}
