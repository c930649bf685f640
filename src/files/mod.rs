//! The files API's service: browse, read and write the workspace of a session's sandbox, on
//! any backend, through [`SandboxBackend::run`] (so it works on read-only roots and tmpfs
//! workspaces, as the sandbox's user, with the sandbox's own view of its files).
//!
//! Invariants:
//! - A [`Workspace`] exists only for a caller who may see the session (its owner or an admin);
//!   other users get the same 404 as for an unknown session.
//! - Every path passes [`RelPath`]'s string rules here and is then resolved and checked inside
//!   the sandbox (see [`scripts`]); nothing outside the workspace is read or written.
//! - Every write, delete, mkdir and rename goes to the audit log (see [`Workspace::audited`]).
//! - What is held in memory for a request (an upload's body, a listing read back from the
//!   sandbox) is taken from one [`MemoryBudget`] (`files.memory`) as it grows; when the
//!   requests in progress hold it all, the next is refused with 503 and Retry-After.

mod output;
mod path;
pub(crate) mod scripts;

use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use output::{check_exit, checked_stream, is_etag, parse_entry, Exit, Stdout};
pub use path::RelPath;
use scripts::Op;

use crate::audit::{Action, Audit, Event, Outcome};
use crate::config::FilesConfig;
use crate::error::{Error, Result};
use crate::sandbox::{ByteStream, Sandbox, SandboxBackend};
use crate::session::{Caller, SessionRegistry};

/// The largest directory listing read back from a sandbox.
const MAX_LISTING: u64 = 32 << 20;

/// One directory entry (the object of a listing, and of `stat` with `path` and `etag`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    /// `file`, `dir`, `symlink` or `other` (a fifo, socket or device).
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub size: u64,
    /// Modification time, in seconds since the Unix epoch.
    pub mtime: i64,
    /// Permission bits, e.g. `"0644"`.
    pub mode: String,
    /// For symlinks: what the link says (not resolved).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// A file being read: its size and ETag, then its bytes.
pub struct FileContent {
    pub size: u64,
    pub etag: String,
    pub body: ByteStream,
}

/// What a write requires of the file it replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    None,
    /// `If-Match: *`.
    Exists,
    /// `If-None-Match: *`: create only.
    Absent,
    /// `If-Match: "ETAG"`: the file is still the one the client read.
    ETag(String),
}

/// A session's workspace, opened for a caller who may use it.
/// The memory that uploads and listings in progress may hold together (`files.memory`).
#[derive(Clone)]
pub struct MemoryBudget {
    bytes: Arc<tokio::sync::Semaphore>,
    total: u64,
}

impl MemoryBudget {
    pub fn new(total: u64) -> MemoryBudget {
        let permits = usize::try_from(total).unwrap_or(usize::MAX);
        MemoryBudget {
            bytes: Arc::new(tokio::sync::Semaphore::new(
                permits.min(tokio::sync::Semaphore::MAX_PERMITS),
            )),
            total,
        }
    }

    /// `bytes` more of it, held until the permit is dropped; 503 with Retry-After when the
    /// requests in progress hold it all.
    pub fn reserve(&self, bytes: u64) -> Result<tokio::sync::OwnedSemaphorePermit> {
        let bytes = u32::try_from(bytes).unwrap_or(u32::MAX);
        self.bytes.clone().try_acquire_many_owned(bytes).map_err(|_| Error::Busy {
            message: format!(
                "uploads and listings in progress hold all of files.memory ({} bytes); try \
                 again shortly",
                self.total
            ),
            retry_after: std::time::Duration::from_secs(1),
        })
    }
}

pub struct Workspace {
    backend: Arc<dyn SandboxBackend>,
    sandbox: Sandbox,
    session_id: String,
    caller: String,
    config: FilesConfig,
    audit: Option<Audit>,
    memory: Option<MemoryBudget>,
}

impl Workspace {
    pub async fn open(
        registry: &SessionRegistry,
        caller: &Caller,
        session_id: &str,
        config: &FilesConfig,
    ) -> Result<Workspace> {
        let (session, sandbox) = registry.sandbox_of(caller, session_id).await?;
        Ok(Workspace {
            backend: registry.backend().clone(),
            sandbox,
            session_id: session.info.id.clone(),
            caller: caller.user.clone(),
            config: config.clone(),
            audit: None,
            memory: None,
        })
    }

    /// Takes what answers read back from the sandbox hold from `memory` from now on.
    pub fn limited(mut self, memory: MemoryBudget) -> Workspace {
        self.memory = Some(memory);
        self
    }

    /// Records every write and delete in `audit` (the audit log) from now on.
    pub fn audited(mut self, audit: Audit) -> Workspace {
        self.audit = Some(audit);
        self
    }

    pub async fn list(&self, raw: &str) -> Result<Vec<Entry>> {
        let path = RelPath::parse(raw)?;
        let out = self.call(Op::List, &path, &[path.as_str()], None).await?;
        let fields: Vec<&[u8]> = out.split(|b| *b == 0).collect();
        let mut entries: Vec<Entry> = fields
            .chunks_exact(3)
            .filter_map(|f| parse_entry(&String::from_utf8_lossy(f[0]), f[1], f[2]))
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// The entry at `raw` (symlinks followed) and its ETag.
    pub async fn stat(&self, raw: &str) -> Result<(Entry, String)> {
        let path = RelPath::parse(raw)?;
        let out = self.call(Op::Stat, &path, &[path.as_str()], None).await?;
        let fields: Vec<&[u8]> = out.split(|b| *b == 0).collect();
        let parsed = match fields.as_slice() {
            [attrs, target, etag, ..] => parse_entry(path.name(), attrs, target)
                .map(|e| (e, String::from_utf8_lossy(etag).into_owned())),
            _ => None,
        };
        parsed.ok_or_else(|| Error::Internal(format!("unexpected stat output for {path}")))
    }

    /// Starts reading a regular file; 413 when it is larger than `files.max_read`.
    pub async fn read(&self, raw: &str) -> Result<FileContent> {
        let path = RelPath::parse_entry(raw)?;
        let max = self.config.max_read.0.to_string();
        let (header, stdout, exit) =
            self.start(Op::Read, &path, &[path.as_str(), &max], None).await?;
        let (size, etag) = header
            .split_once(' ')
            .and_then(|(size, etag)| Some((size.parse::<u64>().ok()?, etag.to_string())))
            .ok_or_else(|| Error::Internal(format!("unexpected read header for {path}")))?;
        let body = checked_stream(stdout, exit, Some(size), format!("reading {path}"));
        Ok(FileContent { size, etag, body })
    }

    /// Replaces (or creates) a file atomically; returns its new ETag.
    pub async fn write(&self, raw: &str, content: Bytes, when: Precondition) -> Result<String> {
        let path = RelPath::parse_entry(raw)?;
        if content.len() as u64 > self.config.max_write.0 {
            return Err(too_large_write(self.config.max_write.0));
        }
        let expected = match &when {
            Precondition::None => String::new(),
            Precondition::Exists => "*".into(),
            Precondition::Absent => "!".into(),
            Precondition::ETag(tag) if is_etag(tag) => tag.clone(),
            Precondition::ETag(tag) => {
                return Err(Error::Conflict(format!(
                    "{path} does not have ETag {tag:?} (If-Match); reload it"
                )))
            }
        };
        let temp = format!(".kterm-write-{}", uuid::Uuid::new_v4().simple());
        let length = content.len().to_string();
        let stdin: ByteStream = Box::pin(futures_util::stream::iter([Ok(content)]));
        let args = [path.as_str(), &expected, &temp, &length];
        let out = self.call(Op::Write, &path, &args, Some(stdin)).await?;
        self.audit("write", &path, &format!("{length} bytes"));
        Ok(String::from_utf8_lossy(&out).trim().to_string())
    }

    pub async fn mkdir(&self, raw: &str, parents: bool) -> Result<()> {
        let path = RelPath::parse_entry(raw)?;
        let flag = if parents { "1" } else { "" };
        self.call(Op::Mkdir, &path, &[path.as_str(), flag], None).await?;
        self.audit("mkdir", &path, "");
        Ok(())
    }

    pub async fn delete(&self, raw: &str, recursive: bool) -> Result<()> {
        let path = RelPath::parse_entry(raw)?;
        let flag = if recursive { "1" } else { "" };
        self.call(Op::Delete, &path, &[path.as_str(), flag], None).await?;
        self.audit("delete", &path, if recursive { "recursive" } else { "" });
        Ok(())
    }

    pub async fn rename(&self, from: &str, to: &str) -> Result<()> {
        let from = RelPath::parse_entry(from)?;
        let to = RelPath::parse_entry(to)?;
        self.call(Op::Rename, &from, &[from.as_str(), to.as_str()], None).await?;
        self.audit("rename", &from, &format!("to {to}"));
        Ok(())
    }

    /// A tar stream of the directory `raw` (no size cap; it streams).
    pub async fn archive(&self, raw: &str) -> Result<ByteStream> {
        let path = RelPath::parse(raw)?;
        let (_, stdout, exit) = self.start(Op::Archive, &path, &[path.as_str()], None).await?;
        Ok(checked_stream(stdout, exit, None, format!("archiving {path}")))
    }

    /// Runs `op` to its end within `files.timeout`; its stdout on success.
    async fn call(
        &self,
        op: Op,
        path: &RelPath,
        args: &[&str],
        stdin: Option<ByteStream>,
    ) -> Result<Vec<u8>> {
        let run = async {
            let argv = op.argv(&self.workspace_dir(), args);
            let command = self.backend.run(&self.sandbox, &argv, stdin).await?;
            let mut out = Vec::new();
            let mut held = self.memory.as_ref().map(|m| m.reserve(0)).transpose()?;
            let mut stdout = command.stdout.take(MAX_LISTING + 1);
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                let n = stdout
                    .read(&mut chunk)
                    .await
                    .map_err(|e| Error::io(format!("{} {path}", op.name()), e))?;
                if n == 0 {
                    break;
                }
                if let (Some(memory), Some(held)) = (&self.memory, held.as_mut()) {
                    held.merge(memory.reserve(n as u64)?);
                }
                out.extend_from_slice(&chunk[..n]);
            }
            drop(stdout);
            if out.len() as u64 > MAX_LISTING {
                return Err(Error::TooLarge(format!("the answer for {path} is too large")));
            }
            let exit = command.exit.await;
            check_exit(op, path, &exit, self.config.max_read.0)?;
            Ok(out)
        };
        tokio::time::timeout(self.config.timeout.0, run).await.map_err(|_| {
            Error::BackendUnavailable(format!(
                "{} {path} did not finish within {:?} (files.timeout)",
                op.name(),
                self.config.timeout.0
            ))
        })?
    }

    /// Starts a streaming `op`: waits (within `files.timeout`) for its first line, which the
    /// script prints once its checks passed, and hands back the line and the rest.
    async fn start(
        &self,
        op: Op,
        path: &RelPath,
        args: &[&str],
        stdin: Option<ByteStream>,
    ) -> Result<(String, Stdout, Exit)> {
        let run = async {
            let argv = op.argv(&self.workspace_dir(), args);
            let command = self.backend.run(&self.sandbox, &argv, stdin).await?;
            let mut stdout = BufReader::new(command.stdout);
            let mut header = Vec::new();
            (&mut stdout)
                .take(1024)
                .read_until(b'\n', &mut header)
                .await
                .map_err(|e| Error::io(format!("{} {path}", op.name()), e))?;
            if header.last() != Some(&b'\n') {
                // No header: the checks failed; the exit code says which.
                drop(stdout);
                let exit = command.exit.await;
                check_exit(op, path, &exit, self.config.max_read.0)?;
                return Err(Error::Internal(format!("{} {path}: no header", op.name())));
            }
            let header = String::from_utf8_lossy(&header).trim_end().to_string();
            Ok((header, Box::pin(stdout) as Stdout, command.exit))
        };
        tokio::time::timeout(self.config.timeout.0, run).await.map_err(|_| {
            Error::BackendUnavailable(format!("{} {path} did not start in time", op.name()))
        })?
    }

    fn workspace_dir(&self) -> String {
        self.sandbox.workspace.to_string_lossy().into_owned()
    }

    /// One audit row per change (or a log line when no audit log was given).
    fn audit(&self, action: &str, path: &RelPath, detail: &str) {
        let kind = if action == "delete" { Action::FileDelete } else { Action::FileWrite };
        let event = Event::new(kind, Outcome::Ok)
            .user(self.caller.clone())
            .session(self.session_id.clone())
            .detail(format!("{action} {path} {detail}").trim_end().to_string());
        match &self.audit {
            Some(audit) => audit.record_later(event),
            None => tracing::info!(
                target: "kterm::audit",
                user = %self.caller,
                session = %self.session_id,
                sandbox = %self.sandbox.id,
                action = %format!("files.{action}"),
                path = %path,
                detail,
                "file changed"
            ),
        }
    }
}

pub fn too_large_write(max: u64) -> Error {
    Error::TooLarge(format!("the file is larger than files.max_write ({max} bytes)"))
}
