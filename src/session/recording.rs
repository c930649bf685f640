//! Session recordings (`[recording]`, off by default): each session's output (and its input,
//! only with `audit.record_input`) goes to an asciicast v2 file, `<directory>/<session id>.cast`,
//! that asciinema's player plays back; `GET /api/v1/sessions/{id}/recording` serves it.
//!
//! Invariants:
//! - The terminal never waits for the recording: events go to a writer task through a bounded
//!   queue, and what does not fit is dropped (and counted in a final marker) rather than
//!   slowing the shell down.
//! - A recording stops growing at `recording.max_size`; files older than
//!   `recording.retention` are deleted by the housekeeping task.
//! - Output is written as UTF-8 text, as the format requires: a character split between two
//!   reads is joined, invalid bytes become U+FFFD.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

/// Events waiting for the writer, at most.
const QUEUE: usize = 4096;

/// Where recordings go and how big they may grow.
#[derive(Debug, Clone)]
pub struct Recordings {
    pub dir: PathBuf,
    pub max_size: u64,
    pub record_input: bool,
    pub retention: Duration,
}

enum Entry {
    Output(Vec<u8>),
    Input(Vec<u8>),
    Resize(u16, u16),
}

/// One session's recording: cheap to clone, never blocks.
#[derive(Clone)]
pub struct Recorder {
    events: mpsc::Sender<(Duration, Entry)>,
    started: Instant,
    record_input: bool,
    dropped: Arc<AtomicU64>,
}

impl Recorder {
    fn send(&self, entry: Entry) {
        if self.events.try_send((self.started.elapsed(), entry)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn output(&self, data: &[u8]) {
        self.send(Entry::Output(data.to_vec()));
    }

    /// Input is recorded only with `audit.record_input`.
    pub fn input(&self, data: &[u8]) {
        if self.record_input {
            self.send(Entry::Input(data.to_vec()));
        }
    }

    pub fn resize(&self, cols: u16, rows: u16) {
        self.send(Entry::Resize(cols, rows));
    }
}

/// Whether `id` can name a recording (a session id: letters, digits and `-`).
fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

impl Recordings {
    /// The file of session `id`'s recording (which may not exist).
    pub fn path(&self, id: &str) -> Option<PathBuf> {
        valid_id(id).then(|| self.dir.join(format!("{id}.cast")))
    }

    /// Starts recording session `id` on a `cols`x`rows` terminal; `None` (logged) when the
    /// file cannot be made: the session runs unrecorded.
    pub fn start(&self, id: &str, cols: u16, rows: u16) -> Option<Recorder> {
        let path = self.path(id)?;
        let file = match open_private(&self.dir, &path) {
            Ok(file) => file,
            Err(e) => {
                tracing::warn!(session = id, path = %path.display(), error = %e, "cannot record the session");
                return None;
            }
        };
        let (events, queue) = mpsc::channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let header = serde_json::json!({
            "version": 2,
            "width": cols,
            "height": rows,
            "timestamp": SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
            "env": {"TERM": "xterm-256color"},
            "title": format!("kterm session {id}"),
        });
        let writer = Writer {
            max: self.max_size,
            written: 0,
            pending: Vec::new(),
            dropped: dropped.clone(),
        };
        tokio::spawn(writer.run(tokio::fs::File::from_std(file), header.to_string(), queue));
        Some(Recorder { events, started: Instant::now(), record_input: self.record_input, dropped })
    }

    /// Deletes recordings older than `recording.retention`; returns how many.
    pub async fn prune(&self) -> usize {
        let (dir, retention) = (self.dir.clone(), self.retention);
        tokio::task::spawn_blocking(move || prune(&dir, retention)).await.unwrap_or(0)
    }
}

fn open_private(dir: &Path, path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)
}

fn prune(dir: &Path, retention: Duration) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let now = SystemTime::now();
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "cast") {
            continue;
        }
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age >= retention);
        if old && std::fs::remove_file(&path).is_ok() {
            removed += 1;
        }
    }
    removed
}

struct Writer {
    max: u64,
    written: u64,
    /// The start of a UTF-8 character whose rest has not come yet.
    pending: Vec<u8>,
    dropped: Arc<AtomicU64>,
}

impl Writer {
    async fn run(
        mut self,
        file: tokio::fs::File,
        header: String,
        mut queue: mpsc::Receiver<(Duration, Entry)>,
    ) {
        let mut out = tokio::io::BufWriter::new(file);
        let mut full = self.line(&mut out, header).await.is_err();
        while let Some((at, entry)) = queue.recv().await {
            if full {
                continue;
            }
            let t = at.as_secs_f64();
            let event = match entry {
                Entry::Output(data) => serde_json::json!([t, "o", self.text(&data)]),
                Entry::Input(data) => serde_json::json!([t, "i", String::from_utf8_lossy(&data)]),
                Entry::Resize(cols, rows) => serde_json::json!([t, "r", format!("{cols}x{rows}")]),
            };
            let line = event.to_string();
            if self.written + line.len() as u64 + 1 > self.max {
                full = true;
                let note =
                    serde_json::json!([t, "m", "kterm: the recording reached recording.max_size"]);
                let _ = out.write_all(format!("{note}\n").as_bytes()).await;
                let _ = out.flush().await;
                continue;
            }
            full = self.line(&mut out, line).await.is_err();
            if queue.is_empty() {
                let _ = out.flush().await;
            }
        }
        let dropped = self.dropped.load(Ordering::Relaxed);
        if dropped > 0 && !full {
            let note = serde_json::json!([
                0.0,
                "m",
                format!("kterm: {dropped} events were not recorded (the writer fell behind)")
            ]);
            let _ = out.write_all(format!("{note}\n").as_bytes()).await;
        }
        let _ = out.flush().await;
    }

    async fn line(
        &mut self,
        out: &mut tokio::io::BufWriter<tokio::fs::File>,
        line: String,
    ) -> std::io::Result<()> {
        self.written += line.len() as u64 + 1;
        out.write_all(line.as_bytes()).await?;
        out.write_all(b"\n").await
    }

    /// `data` as text, with a character cut at the end kept for the next output.
    fn text(&mut self, data: &[u8]) -> String {
        let mut bytes = std::mem::take(&mut self.pending);
        bytes.extend_from_slice(data);
        let mut text = String::with_capacity(bytes.len());
        let mut rest: &[u8] = &bytes;
        loop {
            match std::str::from_utf8(rest) {
                Ok(valid) => {
                    text.push_str(valid);
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    text.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        Some(bad) => {
                            text.push('\u{fffd}');
                            rest = &after[bad..];
                        }
                        None => {
                            self.pending = after.to_vec();
                            break;
                        }
                    }
                }
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_split_between_reads_are_joined_and_bad_bytes_replaced() {
        let mut writer =
            Writer { max: 1 << 20, written: 0, pending: Vec::new(), dropped: Arc::default() };
        let e_acute = "é".as_bytes();
        assert_eq!(writer.text(&[b'a', e_acute[0]]), "a");
        assert_eq!(writer.text(&[e_acute[1], 0xff, b'b']), "é\u{fffd}b");
    }

    #[test]
    fn only_session_ids_name_recordings() {
        let recordings = Recordings {
            dir: "/r".into(),
            max_size: 1,
            record_input: false,
            retention: Duration::ZERO,
        };
        assert!(recordings.path("3f2a-77").is_some());
        for bad in ["", "../x", "a/b", "a.b", "x\0"] {
            assert!(recordings.path(bad).is_none(), "{bad:?}");
        }
    }
}
