//! The Docker backend across trouble: a restart of kterm (adoption of known sandboxes, removal
//! of this instance's orphans, foreign containers untouched) and a daemon that goes away and
//! comes back (seen through a socket proxy the test cuts, so the real daemon keeps serving the
//! other tests).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::docker::{self, Cleanup};
use common::{eventually, TestServer};
use serde_json::json;
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinSet;

fn run_labelled(cleanup: &Cleanup, instance: &str) -> String {
    let out = Command::new("docker")
        .args(["run", "-d", "--network", "none", "--label", "kterm.io/managed=true", "--label"])
        .arg(format!("kterm.io/instance={instance}"))
        .arg("--label")
        .arg(cleanup.label())
        .args([docker::image(), "sleep", "600"])
        .output()
        .expect("docker run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim()[..12].to_string()
}

fn exists(id: &str) -> bool {
    Command::new("docker").args(["inspect", id]).output().is_ok_and(|o| o.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_adopts_known_sandboxes_and_removes_only_its_own_orphans() {
    if !docker::available() {
        return;
    }
    let cleanup = Cleanup::new();
    let server = TestServer::start_with(|c| docker::configure(c, &cleanup)).await;
    let instance = server.state().store.instance_id().to_string();
    let session = server.create(json!({})).await;
    let sandbox = session["sandbox_id"].as_str().unwrap().to_string();
    let mut term = server.attach(session["id"].as_str().unwrap()).await;
    term.send("echo kept-across-restart > notes.txt; echo written-$((1+1))\n").await;
    term.read_until("written-2").await;

    let orphan = run_labelled(&cleanup, &instance);
    let foreign = run_labelled(&cleanup, "some-other-kterm");
    let dir = server.stop_keeping_state().await;
    assert!(exists(&sandbox), "a graceful stop keeps the user's sandbox");

    let server = TestServer::start_in(dir, |c| docker::configure(c, &cleanup)).await;
    assert_eq!(server.state().store.instance_id(), instance);
    assert!(!exists(&orphan), "an orphan of this instance is removed at start");
    assert!(exists(&foreign), "another instance's container is never touched");
    let (_, old) =
        server.get(&format!("/api/v1/sessions/{}", session["id"].as_str().unwrap())).await;
    assert_eq!(old["status"], "terminated");

    let again = server.create(json!({})).await;
    assert_eq!(again["sandbox_id"], sandbox.as_str(), "the user's sandbox was adopted");
    let mut term = server.attach(again["id"].as_str().unwrap()).await;
    term.send("cat notes.txt\n").await;
    term.read_until("kept-across-restart\r\n").await;
    server.stop().await;
}

/// A unix socket that forwards to the real daemon until stopped; frozen, it holds every
/// connection and answers nothing, as a hung daemon would.
struct DaemonProxy {
    path: PathBuf,
    tasks: JoinSet<()>,
    frozen: tokio::sync::watch::Sender<bool>,
}

impl DaemonProxy {
    fn start(path: &Path) -> DaemonProxy {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).expect("bind the proxy socket");
        let mut tasks = JoinSet::new();
        let frozen = tokio::sync::watch::Sender::new(false);
        let freezes = frozen.subscribe();
        let (conn_tx, mut conn_rx) = tokio::sync::mpsc::unbounded_channel::<UnixStream>();
        tasks.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let _ = conn_tx.send(client);
            }
        });
        tasks.spawn(async move {
            let mut connections = JoinSet::new();
            while let Some(mut client) = conn_rx.recv().await {
                let mut frozen = freezes.clone();
                connections.spawn(async move {
                    let Ok(mut daemon) = UnixStream::connect("/var/run/docker.sock").await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut daemon) => {}
                        _ = async { let _ = frozen.wait_for(|f| *f).await; } => {
                            // Hold the connection and say nothing until the proxy stops.
                            std::future::pending::<()>().await;
                        }
                    }
                });
            }
        });
        DaemonProxy { path: path.to_path_buf(), tasks, frozen }
    }

    /// Stops answering without closing anything; new connections hang too.
    fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    /// Answers new connections again (the hung ones stay hung, as clients give them up).
    fn thaw(&self) {
        self.frozen.send_replace(false);
    }

    /// Cuts every connection and stops answering, as a daemon that died would.
    async fn stop(mut self) {
        self.tasks.shutdown().await;
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The real daemon behind a [`DaemonProxy`] on a socket of the test's own.
struct ProxiedDaemon {
    cleanup: Cleanup,
    proxy: DaemonProxy,
    sock: PathBuf,
    _dir: tempfile::TempDir,
}

impl ProxiedDaemon {
    /// `None` (with the reason printed) where there is no daemon to proxy.
    fn start() -> Option<ProxiedDaemon> {
        if !docker::available() {
            return None;
        }
        if !Path::new("/var/run/docker.sock").exists() {
            eprintln!("SKIPPED: the daemon is not at /var/run/docker.sock");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("docker.sock");
        let proxy = DaemonProxy::start(&sock);
        Some(ProxiedDaemon { cleanup: Cleanup::new(), proxy, sock, _dir: dir })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_going_away_is_reported_and_recovered_from_without_a_restart() {
    let Some(daemon) = ProxiedDaemon::start() else { return };
    let (cleanup, proxy, sock) = (daemon.cleanup, daemon.proxy, daemon.sock);
    let server = TestServer::start_with(|c| {
        docker::configure(c, &cleanup);
        c.docker.host = format!("unix://{}", sock.display());
    })
    .await;
    let session = server.create(json!({})).await;
    let mut term = server.attach(session["id"].as_str().unwrap()).await;
    term.send("echo before-$((3+4))\n").await;
    term.read_until("before-7").await;

    proxy.stop().await;
    let exit = term.next_control().await;
    assert_eq!(exit["type"], "exit", "{exit}");
    assert_eq!(exit["reason"], "backend_error", "{exit}");
    let ready = server.http.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let reason = ready.text().await.unwrap();
    assert!(reason.contains("Docker"), "{reason}");
    let (status, body) = server.post("/api/v1/sessions", json!({})).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "backend_unavailable");

    let _proxy = DaemonProxy::start(&sock);
    eventually("readiness after the daemon came back", || async {
        let ready = server.http.get(server.url("/readyz")).send().await.ok()?;
        (ready.status() == 200).then_some(())
    })
    .await;
    let again = server.create(json!({})).await;
    let mut term = server.attach(again["id"].as_str().unwrap()).await;
    term.send("echo after-$((4+4))\n").await;
    term.read_until("after-8").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_daemon_bounds_creates_deletes_and_readiness() {
    let Some(daemon) = ProxiedDaemon::start() else { return };
    let (cleanup, proxy, sock) = (daemon.cleanup, daemon.proxy, daemon.sock);
    let server = TestServer::start_with(|c| {
        docker::configure(c, &cleanup);
        c.docker.host = format!("unix://{}", sock.display());
        c.sessions.create_timeout = kterm::config::HumanDuration(std::time::Duration::from_secs(3));
    })
    .await;
    let session = server.create(json!({})).await;
    let id = session["id"].as_str().unwrap().to_string();

    proxy.freeze();
    let started = std::time::Instant::now();
    // Another namespace: a new sandbox, whose create hangs.
    let (status, body) = server.post("/api/v1/sessions", json!({"namespace": "elsewhere"})).await;
    assert_eq!(status, 503, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("create_timeout"), "{body}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "create took {:?}",
        started.elapsed()
    );

    let started = std::time::Instant::now();
    assert_eq!(server.delete(&format!("/api/v1/sessions/{id}")).await, 503);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "DELETE took {:?}",
        started.elapsed()
    );
    let ready = server.http.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);

    proxy.thaw();
    eventually("readiness once the daemon answers again", || async {
        let ready = server.http.get(server.url("/readyz")).send().await.ok()?;
        (ready.status() == 200).then_some(())
    })
    .await;
    let again = server.create(json!({"namespace": "again"})).await;
    let mut term = server.attach(again["id"].as_str().unwrap()).await;
    term.send("echo thawed-$((2+3))\n").await;
    term.read_until("thawed-5").await;
    server.stop().await;
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandboxes_recorded_by_name_before_an_upgrade_are_adopted() {
    if !docker::available() {
        return;
    }
    let cleanup = Cleanup::new();
    let server = TestServer::start_with(|c| docker::configure(c, &cleanup)).await;
    let instance = server.state().store.instance_id().to_string();
    // A sandbox as the previous version made and recorded it: known by its container name.
    let name = format!("kterm-{instance}-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let out = Command::new("docker")
        .args(["run", "-d", "--network", "none", "--name", &name, "--user", "1000:1000"])
        .args(["--tmpfs", "/tmp", "--tmpfs", "/home/user/workspace:uid=1000,gid=1000"])
        .args(["--label", "kterm.io/managed=true", "--label"])
        .arg(format!("kterm.io/instance={instance}"))
        .args(["--label", "kterm.io/namespace=default", "--label"])
        .arg(cleanup.label())
        .args([docker::image(), "sleep", "600"])
        .output()
        .expect("docker run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let record = kterm::store::SandboxRecord {
        id: name.clone(),
        backend: "docker".into(),
        user: Some("anonymous".into()),
        namespace: "default".into(),
        profile: "default".into(),
        status: kterm::store::SandboxStatus::Running,
        created_at: chrono::Utc::now(),
        expires_at: None,
    };
    server.state().store.insert_sandbox(&record).await.unwrap();
    let dir = server.stop_keeping_state().await;

    let server = TestServer::start_in(dir, |c| docker::configure(c, &cleanup)).await;
    let session = server.create(json!({})).await;
    assert_eq!(session["sandbox_id"], id.as_str(), "the old sandbox was adopted under its ID");
    server.stop().await;
}

/// dockerd removes its socket while it is stopped: kterm starts anyway, answers 503 (and
/// `/readyz` says why), and connects once the socket appears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_docker_socket_is_waited_for_not_fatal() {
    let Some(daemon) = ProxiedDaemon::start() else { return };
    let (cleanup, proxy, sock) = (daemon.cleanup, daemon.proxy, daemon.sock);
    proxy.stop().await;
    assert!(!sock.exists());
    let server = TestServer::start_with(|c| {
        docker::configure(c, &cleanup);
        c.docker.host = format!("unix://{}", sock.display());
    })
    .await;
    let ready = server.http.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let reason = ready.text().await.unwrap();
    assert!(reason.contains("does not exist"), "{reason}");
    let (status, body) = server.post("/api/v1/sessions", json!({})).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "backend_unavailable");

    let proxy = DaemonProxy::start(&sock);
    eventually("readiness once the socket appeared", || async {
        let ready = server.http.get(server.url("/readyz")).send().await.ok()?;
        (ready.status() == 200).then_some(())
    })
    .await;
    let session = server.create(json!({})).await;
    let mut term = server.attach(session["id"].as_str().unwrap()).await;
    term.send("echo socket-$((5+5))\n").await;
    term.read_until("socket-10").await;
    server.stop().await;
    proxy.stop().await;
}

/// The store's view of this server's sandboxes and the daemon's agree: every container of the
/// test is a live (not ending, not ended) record, and every live record has its container.
/// `Err` says what differs.
async fn store_matches_daemon(server: &TestServer, cleanup: &Cleanup) -> Result<(), String> {
    use kterm::store::SandboxStatus;
    let containers: std::collections::BTreeSet<String> = cleanup.containers().into_iter().collect();
    let records = server.state().store.live_sandboxes("docker").await.map_err(|e| e.to_string())?;
    let ending: Vec<_> =
        records.iter().filter(|r| r.status == SandboxStatus::Ending).map(|r| &r.id).collect();
    let live: std::collections::BTreeSet<String> = records
        .iter()
        .filter(|r| r.status != SandboxStatus::Ending)
        .map(|r| r.id.clone())
        .collect();
    if containers == live && ending.is_empty() {
        Ok(())
    } else {
        Err(format!("containers {containers:?}, live records {live:?}, ending {ending:?}"))
    }
}

/// A Docker outage while creates are in flight, sessions are attached and deletes happen
/// leaks nothing: once the daemon is back, the reconcile leaves no container the store does
/// not know or calls ended, and no record without its container.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_docker_outage_leaks_no_container_and_the_store_stays_true() {
    let Some(daemon) = ProxiedDaemon::start() else { return };
    let (cleanup, proxy, sock) = (daemon.cleanup, daemon.proxy, daemon.sock);
    let server = TestServer::start_with(|c| {
        docker::configure(c, &cleanup);
        c.docker.host = format!("unix://{}", sock.display());
        c.sessions.max_per_user = 20;
    })
    .await;
    let attached = server.create(json!({"namespace": "attached"})).await;
    let mut term = server.attach(attached["id"].as_str().unwrap()).await;
    term.send("echo up-$((1+2))\n").await;
    term.read_until("up-3").await;
    let deleted = server.create(json!({"namespace": "deleted"})).await;
    let before = cleanup.containers().len();
    assert_eq!(before, 2);

    // Eight creates of new sandboxes; the daemon goes away once some are under way.
    let creates =
        futures_util::future::join_all(
            (0..8).map(|i| {
                let server = &server;
                async move {
                    server.post("/api/v1/sessions", json!({"namespace": format!("c{i}")})).await
                }
            }),
        );
    let cut = async {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while cleanup.containers().len() < before + 2 && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        proxy.stop().await;
        // A delete during the outage.
        server.delete(&format!("/api/v1/sessions/{}", deleted["id"].as_str().unwrap())).await
    };
    let (answers, delete_status) = tokio::join!(creates, cut);
    let statuses: Vec<u16> = answers.iter().map(|(status, _)| *status).collect();
    assert!(statuses.iter().all(|s| [201, 503].contains(s)), "{statuses:?}");
    assert!([204, 503].contains(&delete_status), "{delete_status}");
    // The attached session's exec broke with the connection: it ended, and says why.
    let exit = term.next_control().await;
    assert_eq!(exit["type"], "exit", "{exit}");

    let proxy = DaemonProxy::start(&sock);
    eventually("the store and the daemon agree after the outage", || async {
        server.state().registry.reconcile().await;
        match store_matches_daemon(&server, &cleanup).await {
            Ok(()) => Some(()),
            Err(why) => {
                eprintln!("not yet: {why}");
                None
            }
        }
    })
    .await;
    // What the store calls running is usable; a new session works.
    let again = server.create(json!({"namespace": "attached"})).await;
    let mut term = server.attach(again["id"].as_str().unwrap()).await;
    term.send("echo after-$((2+2))\n").await;
    term.read_until("after-4").await;
    server.stop().await;
    proxy.stop().await;
}

/// A restart while the daemon is down cannot adopt the user's sandbox at start; once the
/// daemon is back, their next session lands in it (their files there), not in a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adoption_that_failed_at_start_is_retried() {
    let Some(daemon) = ProxiedDaemon::start() else { return };
    let (cleanup, proxy, sock) = (daemon.cleanup, daemon.proxy, daemon.sock);
    let host = format!("unix://{}", sock.display());
    let server = TestServer::start_with(|c| {
        docker::configure(c, &cleanup);
        c.docker.host = host.clone();
    })
    .await;
    let session = server.create(json!({})).await;
    let sandbox = session["sandbox_id"].as_str().unwrap().to_string();
    let mut term = server.attach(session["id"].as_str().unwrap()).await;
    term.send("echo kept > notes.txt; echo written-$((1+1))\n").await;
    term.read_until("written-2").await;
    let dir = server.stop_keeping_state().await;

    proxy.stop().await;
    let server = TestServer::start_in(dir, |c| {
        docker::configure(c, &cleanup);
        c.docker.host = host.clone();
    })
    .await;
    let proxy = DaemonProxy::start(&sock);
    let again = server.create(json!({})).await;
    assert_eq!(again["sandbox_id"], sandbox.as_str(), "the user's old sandbox, not a new one");
    let mut term = server.attach(again["id"].as_str().unwrap()).await;
    term.send("cat notes.txt\n").await;
    term.read_until("kept\r\n").await;
    assert_eq!(cleanup.containers().len(), 1);
    server.stop().await;
    proxy.stop().await;
}

/// A connection hiccup breaks a session's exec stream, not its shell: kterm ends the shell
/// before it reports the session ended, so nothing runs on that the store calls ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_exec_stream_ends_its_shell_before_the_session_is_reported_ended() {
    let Some(daemon) = ProxiedDaemon::start() else { return };
    let (cleanup, proxy, sock) = (daemon.cleanup, daemon.proxy, daemon.sock);
    let server = TestServer::start_with(|c| {
        docker::configure(c, &cleanup);
        c.docker.host = format!("unix://{}", sock.display());
    })
    .await;
    let session = server.create(json!({})).await;
    let id = session["id"].as_str().unwrap().to_string();
    let sandbox = session["sandbox_id"].as_str().unwrap().to_string();
    let mut term = server.attach(&id).await;
    term.send("echo \"p\"\"id=$$=x\"\n").await;
    let out = term.read_until("=x\r\n").await;
    let pid: String =
        out.rsplit("pid=").next().unwrap().chars().take_while(char::is_ascii_digit).collect();
    assert!(!pid.is_empty(), "{out}");
    let alive = |pid: &str| {
        Command::new("docker")
            .args(["exec", &sandbox, "kill", "-0", pid])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    assert!(alive(&pid));

    // Every connection cut, and the daemon reachable again at once.
    proxy.stop().await;
    let proxy = DaemonProxy::start(&sock);
    let exit = term.next_control().await;
    assert_eq!(exit["type"], "exit", "{exit}");
    assert!(!alive(&pid), "the shell was reported ended but runs on");
    server.stop().await;
    proxy.stop().await;
}
