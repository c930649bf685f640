//! Exec through kube's WebSocket client: TTY output, resize, an interactive shell, non-TTY
//! streams and exit codes, stdin that v4 cannot close (and v5 can), the errors of execs into
//! pods that do not run, and each pod's own `/tmp`, home and workspace.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, AttachParams, AttachedProcess, DeleteParams, PostParams, TerminalSize};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::common::kube_fake::ExecProtocols;
use super::*;

/// Reads from `reader` until the collected text contains `needle` (or the deadline passes).
async fn read_until(reader: &mut (impl AsyncRead + Unpin), needle: &str) -> String {
    let mut text = String::new();
    let deadline = Instant::now() + WAIT;
    let mut buffer = [0u8; 4096];
    while !text.contains(needle) {
        let read = tokio::time::timeout_at(deadline.into(), reader.read(&mut buffer)).await;
        match read {
            Ok(Ok(n)) if n > 0 => text.push_str(&String::from_utf8_lossy(&buffer[..n])),
            other => panic!("no {needle:?} in the output ({other:?}); got {text:?}"),
        }
    }
    text
}

/// Whatever arrives on `reader` until it has been quiet for `quiet`.
async fn read_for(reader: &mut (impl AsyncRead + Unpin), quiet: Duration) -> String {
    let mut text = String::new();
    let mut buffer = [0u8; 4096];
    while let Ok(Ok(n)) = tokio::time::timeout(quiet, reader.read(&mut buffer)).await {
        if n == 0 {
            break;
        }
        text.push_str(&String::from_utf8_lossy(&buffer[..n]));
    }
    text
}

/// Runs `command` to its end and returns (stdout, stderr, status) as kube reports them.
async fn run(
    pods: &Api<Pod>,
    pod: &str,
    command: &[&str],
    params: &AttachParams,
) -> (String, String, Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Status>) {
    let mut process: AttachedProcess =
        pods.exec(pod, command.to_vec(), params).await.expect("exec");
    let status = process.take_status().expect("a status future");
    let mut stdout = process.stdout();
    let mut stderr = process.stderr();
    let (mut out, mut err) = (String::new(), String::new());
    let read_out = async {
        if let Some(s) = stdout.as_mut() {
            let _ = s.read_to_string(&mut out).await;
        }
    };
    let read_err = async {
        if let Some(s) = stderr.as_mut() {
            let _ = s.read_to_string(&mut err).await;
        }
    };
    tokio::time::timeout(WAIT, async { tokio::join!(read_out, read_err) })
        .await
        .expect("the exec ends");
    let status = tokio::time::timeout(WAIT, status).await.expect("a status in time");
    (out, err, status)
}

fn tty() -> AttachParams {
    AttachParams::default().stdin(false).stdout(true).stderr(false).tty(true)
}

#[tokio::test]
async fn tty_exec_runs_resizes_and_takes_typed_input() {
    let Some(fake) = sample_cluster() else { return };
    let client = client(&fake).await;
    running_pod(&fake, &client, "tty").await;
    let pods: Api<Pod> = Api::namespaced(client, "samples");

    let (out, _, status) = run(&pods, "tty", &["sh", "-c", "echo hello; sleep 0.1"], &tty()).await;
    assert_eq!(out, "hello\r\n", "TTY output (with the TTY's CRLF)");
    assert_eq!(status.and_then(|s| s.status).as_deref(), Some("Success"));

    let mut shell = pods
        .exec("tty", vec!["sh"], &AttachParams::interactive_tty())
        .await
        .expect("an interactive shell");
    let status = shell.take_status().expect("a status future");
    let mut stdin = shell.stdin().expect("stdin");
    let mut stdout = shell.stdout().expect("stdout");
    let mut size = shell.terminal_size().expect("a terminal-size channel");
    futures_util::SinkExt::send(&mut size, TerminalSize { width: 100, height: 30 })
        .await
        .expect("resize");
    // The resize and the typed line travel on different channels; ask until the size shows.
    let deadline = Instant::now() + WAIT;
    let mut text = String::new();
    while !text.contains("30 100") {
        assert!(Instant::now() < deadline, "the resize never showed: {text:?}");
        stdin.write_all(b"stty size\n").await.expect("typing");
        text += &read_for(&mut stdout, Duration::from_millis(200)).await;
    }
    stdin.write_all(b"id -u; pwd; echo $HOME; exit 7\n").await.expect("typing");
    let text = read_until(&mut stdout, "/home/user\r\n").await;
    assert!(
        text.contains("1000\r\n") && text.contains("/home/user/workspace\r\n"),
        "runs as runAsUser in the workspace: {text:?}"
    );
    let status = tokio::time::timeout(WAIT, status).await.expect("status").expect("a status");
    assert_eq!(status.reason.as_deref(), Some("NonZeroExitCode"));
    let causes = status.details.and_then(|d| d.causes).unwrap_or_default();
    assert_eq!(causes[0].message.as_deref(), Some("7"));
}

#[tokio::test]
async fn non_tty_exec_separates_streams_and_reports_the_exit_code() {
    let Some(fake) = sample_cluster() else { return };
    let client = client(&fake).await;
    running_pod(&fake, &client, "pipes").await;
    let pods: Api<Pod> = Api::namespaced(client, "samples");
    let command = ["sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 7"];
    let (out, err, status) =
        run(&pods, "pipes", &command, &AttachParams::default().stdout(true).stderr(true)).await;
    assert_eq!((out.as_str(), err.as_str()), ("to-stdout\n", "to-stderr\n"));
    let recorded =
        &sample("05-exec-websocket.json")["exit7_notty_stderr"]["status_channel_json"][0];
    let status = serde_json::to_value(status.expect("a status")).unwrap();
    assert_eq!(status["message"], recorded["message"]);
    assert_eq!(status["reason"], recorded["reason"]);
    assert_eq!(status["details"], recorded["details"]);

    let (_, _, status) = run(&pods, "pipes", &["no-such-command"], &AttachParams::default()).await;
    let status = status.expect("a status");
    assert_eq!((status.reason.as_deref(), status.code), (Some("InternalError"), Some(500)));
    assert!(status.message.unwrap_or_default().contains("executable file not found in $PATH"));
}

#[tokio::test]
async fn v4_cannot_close_stdin_but_v5_can() {
    let Some(fake) = sample_cluster() else { return };
    let client = client(&fake).await;
    running_pod(&fake, &client, "stdin").await;
    let pods: Api<Pod> = Api::namespaced(client, "samples");
    let params = AttachParams::default().stdin(true).stdout(true).stderr(false);

    // v4 (what v1.24 speaks): dropping stdin makes kube close the WebSocket; `cat` never sees
    // EOF and keeps running, and its exit status never arrives.
    let mut cat = pods.exec("stdin", vec!["cat"], &params).await.expect("exec");
    let status = cat.take_status().expect("a status future");
    let mut stdin = cat.stdin().expect("stdin");
    let mut stdout = cat.stdout().expect("stdout");
    stdin.write_all(b"abc\n").await.expect("write");
    read_until(&mut stdout, "abc\n").await;
    // Dropping kube's stdin writer is not enough: only a shutdown ends its stdin.
    stdin.shutdown().await.expect("shutdown");
    assert_eq!(
        tokio::time::timeout(WAIT, status).await.expect("the stream ends"),
        None,
        "no status after kube closed the socket"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let running = fake.pod_processes("samples", "stdin");
    assert!(!running.is_empty(), "cat still runs without EOF");

    // v5 (a newer server): channel 255 closes stdin, cat ends, the status arrives.
    fake.set_exec_protocols(ExecProtocols::WithV5);
    let mut cat =
        pods.exec("stdin", vec!["sh", "-c", "cat; echo done"], &params).await.expect("exec");
    let status = cat.take_status().expect("a status future");
    let mut stdin = cat.stdin().expect("stdin");
    let mut stdout = cat.stdout().expect("stdout");
    stdin.write_all(b"xyz\n").await.expect("write");
    stdin.shutdown().await.expect("shutdown");
    read_until(&mut stdout, "xyz\ndone\n").await;
    let status =
        tokio::time::timeout(WAIT, status).await.expect("status in time").expect("a status");
    assert_eq!(status.status.as_deref(), Some("Success"));
}

#[tokio::test]
async fn exec_into_a_pod_that_does_not_run_fails_like_a_real_server() {
    let Some(fake) = sample_cluster() else { return };
    fake.set_unschedulable("samples", None);
    let client = client(&fake).await;
    create_pod(&client, "samples", &restricted_pod("nowhere")).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "samples");
    let err = pods.exec("nowhere", vec!["true"], &tty()).await.err().expect("unscheduled");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 400 && s.message == "pod nowhere does not have a host assigned"),
        "{err:?}"
    );

    fake.set_schedulable("samples");
    fake.fail_image_pull("k8s.local/busybox:1.35");
    fake.wait_pod("samples", "nowhere", WAIT, |p| !p["spec"]["nodeName"].is_null())
        .await
        .expect("scheduled");
    let err = pods.exec("nowhere", vec!["true"], &tty()).await.err().expect("not running");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 500 && s.message == "container not found (\"main\")"),
        "{err:?}"
    );
    let err = pods.exec("missing", vec!["true"], &tty()).await.err().expect("no such pod");
    assert!(matches!(err, kube::Error::Api(ref s) if s.code == 404), "{err:?}");
}

#[tokio::test]
async fn each_pod_has_its_own_tmp_home_and_workspace_and_a_claim_outlives_its_pod() {
    let Some(fake) = sample_cluster() else { return };
    let client = client(&fake).await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "samples");
    let claim: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": "ws-alice"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    }))
    .unwrap();
    claims.create(&PostParams::default(), &claim).await.expect("a claim");
    let with_claim = |name: &str| {
        let mut pod = restricted_pod(name);
        pod["spec"]["volumes"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "ws", "persistentVolumeClaim": {"claimName": "ws-alice"}}));
        pod["spec"]["containers"][0]["volumeMounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "ws", "mountPath": "/home/user/workspace"}));
        pod
    };
    create_pod(&client, "samples", &with_claim("a")).await;
    running_pod(&fake, &client, "b").await;
    fake.wait_pod("samples", "a", WAIT, |p| phase(p) == "Running").await.expect("a runs");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "samples");
    let pipes = AttachParams::default().stdout(true).stderr(true);
    let script = "mkdir -p /tmp/.kterm && echo $$ > /tmp/.kterm/s1 && echo kept > /home/user/workspace/f && echo mine > /home/user/.profile && touch /etc/kube-fake-probe";
    let (_, err, status) = run(&pods, "a", &["sh", "-c", script], &pipes).await;
    assert!(err.contains("Read-only file system"), "readOnlyRootFilesystem holds: {err:?}");
    assert_eq!(status.and_then(|s| s.reason).as_deref(), Some("NonZeroExitCode"));
    assert!(!std::path::Path::new("/etc/kube-fake-probe").exists());

    let look = "ls -A /tmp; echo --; ls -A /home/user/workspace; echo --; cat /home/user/.profile 2>/dev/null; true";
    let (out, _, _) = run(&pods, "b", &["sh", "-c", look], &pipes).await;
    assert_eq!(out, "--\n--\n", "b sees nothing of a's /tmp, workspace or home");
    // Nor anything else of the host's or the fake's: the host is read-only, /dev/shm is the
    // pod's own, and the directory holding every pod's files is hidden.
    let base = fake.kubeconfig_path().parent().unwrap().to_string_lossy().into_owned();
    let probe = format!(
        "ls -A {base}; echo x > /dev/shm/kube-fake-probe && echo shm; touch /var/kube-fake-probe 2>&1"
    );
    let mut root_pod = restricted_pod("root");
    root_pod["spec"]["securityContext"] = json!({"runAsUser": 0});
    root_pod["spec"]["containers"][0]["securityContext"] = json!({});
    create_pod(&client, "default", &root_pod).await;
    fake.wait_pod("default", "root", WAIT, |p| phase(p) == "Running").await.expect("root runs");
    let as_root: Api<Pod> = Api::namespaced(client.clone(), "default");
    let (out, _, _) = run(&as_root, "root", &["sh", "-c", &probe], &pipes).await;
    assert!(out.starts_with("shm\n") && out.contains("Read-only file system"), "{out:?}");
    assert!(!std::path::Path::new("/dev/shm/kube-fake-probe").exists());
    assert!(!std::path::Path::new("/var/kube-fake-probe").exists());

    let host = fake.host_path("samples", "a", "/tmp/.kterm/s1").expect("a's /tmp on the host");
    assert!(host.exists() && !host.starts_with("/tmp/.kterm"), "{host:?}");

    let pid = std::fs::read_to_string(&host).unwrap();
    assert!(!pid.trim().is_empty());
    pods.delete("a", &DeleteParams::default()).await.expect("delete a");
    fake.wait_gone("samples", "a", WAIT).await.expect("a is gone");
    assert!(!host.exists(), "a's own directories went with it");
    assert_eq!(
        std::fs::read_to_string(fake.pvc_dir("samples", "ws-alice").join("f")).unwrap(),
        "kept\n"
    );

    create_pod(&client, "samples", &with_claim("a2")).await;
    fake.wait_pod("samples", "a2", WAIT, |p| phase(p) == "Running").await.expect("a2 runs");
    let (out, _, _) = run(&pods, "a2", &["cat", "/home/user/workspace/f"], &pipes).await;
    assert_eq!(out, "kept\n", "the claim's workspace outlived the pod");
}

#[tokio::test]
async fn kube_join_under_v4_closes_the_stream_before_the_command_ends() {
    let Some(fake) = sample_cluster() else { return };
    let client = client(&fake).await;
    running_pod(&fake, &client, "join").await;
    let pods: Api<Pod> = Api::namespaced(client, "samples");
    // No stdin requested, yet join() shuts kube's internal stdin pipe, and under v4 kube's only
    // answer to that is closing the WebSocket: the output and status still to come are lost.
    let params = AttachParams::default().stdout(true).stderr(false);
    let mut process = pods
        .exec("join", vec!["sh", "-c", "sleep 0.3; echo late; touch /tmp/ran"], &params)
        .await
        .expect("exec");
    let status = process.take_status().expect("a status future");
    tokio::time::timeout(WAIT, process.join()).await.expect("join returns").expect("join");
    assert_eq!(tokio::time::timeout(WAIT, status).await.expect("resolved"), None, "no status");
    // The command itself was not stopped.
    let ran = fake.host_path("samples", "join", "/tmp/ran").expect("the pod's /tmp");
    let deadline = Instant::now() + WAIT;
    while !ran.exists() {
        assert!(Instant::now() < deadline, "the command kept running after the stream closed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
