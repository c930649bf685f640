//! One exec over an upgraded WebSocket: a real process (on a PTY with `tty`, on pipes without)
//! bridged to the channels: an empty frame first on the lowest writable channel (stdout, else
//! stderr, else status), output on 1/2, stdin from 0, resizes from 4 (`{"Width","Height"}`),
//! channel 255 closing stdin only under v5 (v4 has no way to close stdin), then the exit
//! `Status` on 3 and a normal close (1000), as `05-exec-websocket.json` shows frame by frame.
//!
//! A client that goes away (or an API server pause) does not kill the process, as on a real
//! node: it keeps running with its stdin open and its output discarded until it exits.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use kterm::sandbox::pty::{self, PtyMaster};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use super::frames::{self, status_json, Outcome, Protocol};
use super::ExecSpec;

/// How long output may keep coming after a TTY process exits before the status is sent.
const TTY_DRAIN: Duration = Duration::from_millis(50);

/// The running process behind an exec.
struct Process {
    /// Output chunks by channel; closed when every output stream has ended.
    output: mpsc::Receiver<(u8, Vec<u8>)>,
    stdin: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    master: Option<PtyMaster>,
    exited: watch::Receiver<Option<i32>>,
}

pub async fn run(
    upgraded: Upgraded,
    protocol: Protocol,
    spec: ExecSpec,
    lose_short: Option<Duration>,
    cancel: CancellationToken,
) {
    let mut ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
    let first = if spec.stdout {
        frames::STDOUT
    } else if spec.stderr {
        frames::STDERR
    } else {
        frames::STATUS
    };
    if ws.send(protocol.encode(first, &[])).await.is_err() {
        return;
    }
    let process = match if spec.tty { spawn_tty(&spec) } else { spawn_pipes(&spec) } {
        Ok(p) => p,
        Err(error) => {
            let status = status_json(&spec.command, &Outcome::StartFailed(error));
            finish(&mut ws, protocol, &status).await;
            hang_up(ws).await;
            return;
        }
    };
    bridge(ws, protocol, spec, process, lose_short, cancel).await;
}

/// Whether the command can start at all (the runtime's own check), with its error.
fn start_error(spec: &ExecSpec) -> Option<String> {
    let program = spec.command.first()?;
    let path = spec
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or("/usr/bin:/bin");
    // Paths inside the pod's own directories are only visible in its namespace: let them run.
    if program.starts_with("/home") || program.starts_with("/tmp") {
        return None;
    }
    let found = if program.contains('/') {
        std::path::Path::new(program).is_file()
    } else {
        path.split(':').any(|dir| std::path::Path::new(dir).join(program).is_file())
    };
    let exec_id: String = uuid::Uuid::new_v4().simple().to_string().repeat(2);
    (!found).then(|| {
        format!(
            "failed to exec in container: failed to start exec \"{exec_id}\": OCI runtime exec failed: exec failed: unable to start container process: exec: \"{program}\": executable file not found in $PATH: unknown"
        )
    })
}

fn spawn_tty(spec: &ExecSpec) -> Result<Process, String> {
    if let Some(error) = start_error(spec) {
        return Err(error);
    }
    let child = pty::spawn(&spec.argv, &spec.env, std::path::Path::new("/"), 80, 24)
        .map_err(|e| e.to_string())?;
    let (tx, output) = mpsc::channel(64);
    tokio::spawn(pump(child.master.clone(), frames::STDOUT, tx));
    let stdin: Option<Box<dyn AsyncWrite + Send + Unpin>> = Some(Box::new(child.master.clone()));
    Ok(Process { output, stdin, master: Some(child.master), exited: child.exited })
}

fn spawn_pipes(spec: &ExecSpec) -> Result<Process, String> {
    if let Some(error) = start_error(spec) {
        return Err(error);
    }
    let (program, args) = spec.argv.split_first().ok_or("empty command")?;
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir("/")
        .stdin(if spec.stdin { Stdio::piped() } else { Stdio::null() })
        .stdout(if spec.stdout { Stdio::piped() } else { Stdio::null() })
        .stderr(if spec.stderr { Stdio::piped() } else { Stdio::null() })
        .kill_on_drop(false);
    // SAFETY: setsid is async-signal-safe; the exec'd process leads its own session, as a
    // container exec does.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().map_err(|e| e.to_string())?;
    let (tx, output) = mpsc::channel(64);
    if let Some(out) = child.stdout.take() {
        tokio::spawn(pump(out, frames::STDOUT, tx.clone()));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(pump(err, frames::STDERR, tx.clone()));
    }
    drop(tx);
    let stdin: Option<Box<dyn AsyncWrite + Send + Unpin>> =
        child.stdin.take().map(|s| Box::new(s) as _);
    let (exit_tx, exited) = watch::channel(None);
    tokio::spawn(async move {
        let code = match child.wait().await {
            Ok(status) => status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(255),
            Err(_) => 255,
        };
        let _ = exit_tx.send(Some(code));
    });
    Ok(Process { output, stdin, master: None, exited })
}

/// Copies a stream into the output channel until it ends (or nobody takes output any more).
async fn pump(mut reader: impl AsyncRead + Unpin, channel: u8, tx: mpsc::Sender<(u8, Vec<u8>)>) {
    let mut buffer = vec![0u8; 32 * 1024];
    loop {
        match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if tx.send((channel, buffer[..n].to_vec())).await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn bridge(
    ws: WebSocketStream<TokioIo<Upgraded>>,
    protocol: Protocol,
    spec: ExecSpec,
    mut process: Process,
    lose_short: Option<Duration>,
    cancel: CancellationToken,
) {
    let (mut sink, mut incoming) = ws.split();
    let started = tokio::time::Instant::now();
    // Output held back while a short TTY exec might still lose it (opt-in race).
    let mut held: Option<Vec<(u8, Vec<u8>)>> = lose_short.filter(|_| spec.tty).map(|_| Vec::new());
    let hold_until = started + lose_short.unwrap_or_default();
    let mut exited = process.exited.clone();
    let mut output_open = true;
    let code = loop {
        if let Some(code) = *exited.borrow_and_update() {
            break code;
        }
        tokio::select! {
            _ = cancel.cancelled() => return detach(process),
            _ = exited.changed() => {}
            _ = tokio::time::sleep_until(hold_until), if held.is_some() => {
                for (channel, data) in held.take().unwrap_or_default() {
                    if sink.send(protocol.encode(channel, &data)).await.is_err() {
                        return detach(process);
                    }
                }
            }
            message = incoming.next() => match message {
                // A client close (kube's only way to end stdin under v4): answer it and go.
                Some(Ok(Message::Close(_))) => {
                    let _ = sink.close().await;
                    if let Ok(ws) = sink.reunite(incoming) {
                        hang_up(ws).await;
                    }
                    return detach(process);
                }
                Some(Ok(message)) => handle_client(&mut process, protocol, &spec, &message).await,
                // The client closed or vanished: the process lives on without it.
                _ => return detach(process),
            },
            chunk = process.output.recv(), if output_open => match chunk {
                Some((channel, data)) => match held.as_mut() {
                    Some(held) => held.push((channel, data)),
                    None => {
                        if sink.send(protocol.encode(channel, &data)).await.is_err() {
                            return detach(process);
                        }
                    }
                },
                None => output_open = false,
            },
        }
    };
    let lost = held.is_some() && started.elapsed() < lose_short.unwrap_or_default();
    // The rest of the output: until the streams end (pipes, as the runtime waits for them), or
    // a short quiet spell on a TTY (its slave may be held open by a background process).
    let mut rest = Vec::new();
    let tty_deadline = tokio::time::Instant::now() + TTY_DRAIN * 20;
    while output_open {
        let next = if spec.tty {
            let quiet = (tokio::time::Instant::now() + TTY_DRAIN).min(tty_deadline);
            tokio::time::timeout_at(quiet, process.output.recv()).await.unwrap_or_default()
        } else {
            tokio::select! {
                _ = cancel.cancelled() => return,
                chunk = process.output.recv() => chunk,
            }
        };
        match next {
            Some(chunk) => rest.push(chunk),
            None => output_open = false,
        }
    }
    if !lost {
        let pending: Vec<(u8, Vec<u8>)> =
            held.unwrap_or_default().into_iter().chain(rest).collect();
        for (channel, data) in pending {
            if sink.send(protocol.encode(channel, &data)).await.is_err() {
                return;
            }
        }
    }
    // The PTY closes with the exec, as the runtime's console does.
    drop(process.master.take());
    drop(process.stdin.take());
    let status = status_json(&spec.command, &Outcome::Exited(code));
    if let Ok(mut ws) = sink.reunite(incoming) {
        finish(&mut ws, protocol, &status).await;
        hang_up(ws).await;
    }
}

async fn handle_client(
    process: &mut Process,
    protocol: Protocol,
    spec: &ExecSpec,
    message: &Message,
) {
    let Some((channel, data)) = protocol.decode(message) else { return };
    match channel {
        frames::STDIN if spec.stdin => {
            if let Some(stdin) = process.stdin.as_mut() {
                if stdin.write_all(&data).await.is_err() {
                    process.stdin = None;
                }
                let _ = stdin_flush(process).await;
            }
        }
        frames::RESIZE if spec.tty => {
            let size: serde_json::Value = serde_json::from_slice(&data).unwrap_or_default();
            let (cols, rows) =
                (size["Width"].as_u64().unwrap_or(0), size["Height"].as_u64().unwrap_or(0));
            if let Some(master) = &process.master {
                let _ = master
                    .resize(cols.min(u16::MAX as u64) as u16, rows.min(u16::MAX as u64) as u16);
            }
        }
        // Only v5 can close a stream; on a TTY closing stdin reaches nothing (as with a runtime
        // console).
        frames::CLOSE
            if protocol == Protocol::V5 && data.first() == Some(&frames::STDIN) && !spec.tty =>
        {
            process.stdin = None;
        }
        _ => {}
    }
}

async fn stdin_flush(process: &mut Process) -> std::io::Result<()> {
    match process.stdin.as_mut() {
        Some(stdin) => stdin.flush().await,
        None => Ok(()),
    }
}

/// Sends the status and a normal close, then waits briefly for the client's close.
async fn finish(ws: &mut WebSocketStream<TokioIo<Upgraded>>, protocol: Protocol, status: &str) {
    if ws.send(protocol.encode(frames::STATUS, status.as_bytes())).await.is_err() {
        return;
    }
    let close = CloseFrame { code: CloseCode::Normal, reason: "".into() };
    if ws.send(Message::Close(Some(close))).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

/// Ends the connection as a Go server's `Close` does: TLS close_notify, then the socket.
async fn hang_up(mut ws: WebSocketStream<TokioIo<Upgraded>>) {
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.get_mut().shutdown()).await;
}

/// The client is gone: keep the process's stdin open and discard its output until it exits.
fn detach(mut process: Process) {
    tokio::spawn(async move {
        let mut exited = process.exited.clone();
        let mut output_open = true;
        while exited.borrow_and_update().is_none() {
            tokio::select! {
                chunk = process.output.recv(), if output_open => output_open = chunk.is_some(),
                changed = exited.changed() => if changed.is_err() { break },
            }
        }
        drop(process);
    });
}
