//! Reading what the scripts of [`super::scripts`] answer: their exit codes as the API's errors,
//! their stat fields as entries, and a streaming command's stdout as a checked byte stream.

use std::future::Future;
use std::pin::Pin;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::scripts::{self, Op};
use super::{Entry, RelPath};
use crate::error::{Error, Result};
use crate::sandbox::{ByteStream, CommandExit};

pub type Stdout = Pin<Box<dyn AsyncRead + Send>>;
pub type Exit = Pin<Box<dyn Future<Output = CommandExit> + Send>>;

/// The bytes of a streaming command; ends with an error (so the client sees a broken
/// transfer, not a short file) when the command fails or the length differs from `expected`.
pub fn checked_stream(
    stdout: Stdout,
    exit: Exit,
    expected: Option<u64>,
    what: String,
) -> ByteStream {
    struct State {
        stdout: Stdout,
        exit: Option<Exit>,
        finished: bool,
        sent: u64,
        expected: Option<u64>,
        what: String,
    }
    let state = State { stdout, exit: Some(exit), finished: false, sent: 0, expected, what };
    Box::pin(futures_util::stream::unfold(state, |mut st| async move {
        if st.finished {
            return None;
        }
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let problem = match st.stdout.read_buf(&mut buf).await {
            Ok(0) => {
                st.finished = true;
                let exit = st.exit.take()?.await;
                match (exit.code, st.expected) {
                    (Some(0), Some(n)) if n != st.sent => {
                        format!("{}: the file changed while it was read", st.what)
                    }
                    (Some(0), _) => return None,
                    (code, _) => {
                        let stderr = String::from_utf8_lossy(&exit.stderr);
                        format!("{}: ended with {code:?}: {}", st.what, stderr.trim())
                    }
                }
            }
            Ok(n) => {
                st.sent += n as u64;
                if st.expected.is_some_and(|e| st.sent > e) {
                    format!("{}: the file changed while it was read", st.what)
                } else {
                    return Some((Ok(buf.freeze()), st));
                }
            }
            Err(e) => format!("{}: {e}", st.what),
        };
        tracing::warn!(problem, "file transfer broken off");
        st.finished = true;
        Some((Err(std::io::Error::other(problem)), st))
    }))
}

/// Maps a script's exit to the API's errors.
pub fn check_exit(op: Op, path: &RelPath, exit: &CommandExit, max_read: u64) -> Result<()> {
    let stderr = String::from_utf8_lossy(&exit.stderr);
    let last_line = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
    Err(match exit.code {
        Some(0) => return Ok(()),
        Some(scripts::OUTSIDE) => Error::BadRequest(format!("path {path} leaves the workspace")),
        Some(scripts::MISSING) => Error::NotFound(format!("{path} does not exist")),
        Some(scripts::NOT_DIR) => Error::BadRequest(format!("{path} is not a directory")),
        Some(scripts::IS_DIR) => Error::BadRequest(format!("{path} is a directory")),
        Some(scripts::NOT_REGULAR) => Error::BadRequest(format!("{path} is not a regular file")),
        Some(scripts::EXISTS) => Error::Conflict(format!("{path} already exists")),
        Some(scripts::PRECONDITION) => Error::Conflict(format!(
            "{path} changed since it was read (If-Match/If-None-Match); reload it"
        )),
        Some(scripts::NOT_EMPTY) => {
            Error::Conflict(format!("directory {path} is not empty (delete with recursive=1)"))
        }
        Some(scripts::TOO_LARGE) => Error::TooLarge(format!(
            "{path} is {last_line} bytes; files.max_read allows {max_read}; download its \
             directory as an archive instead"
        )),
        Some(scripts::FAILED) => {
            Error::Conflict(format!("{} {path} failed: {last_line}", op.name()))
        }
        Some(scripts::SHORT_WRITE) => {
            Error::Internal(format!("write {path}: the sandbox received a short body"))
        }
        Some(scripts::NO_WORKSPACE) => {
            Error::SandboxGone(format!("the workspace of the sandbox is not there ({path})"))
        }
        code => Error::Internal(format!(
            "{} {path}: the sandbox command ended with {code:?}: {stderr}",
            op.name()
        )),
    })
}

/// An entry from the scripts' `MODEHEX SIZE MTIME` and link target fields.
pub fn parse_entry(name: &str, attrs: &[u8], target: &[u8]) -> Option<Entry> {
    let attrs = String::from_utf8_lossy(attrs);
    let mut parts = attrs.split_whitespace();
    let mode = u32::from_str_radix(parts.next()?, 16).ok()?;
    let size = parts.next()?.parse().ok()?;
    let mtime = parts.next()?.parse().ok()?;
    let kind = match mode & 0o170000 {
        0o100000 => "file",
        0o040000 => "dir",
        0o120000 => "symlink",
        _ => "other",
    };
    let target = (kind == "symlink" || !target.is_empty()).then(|| {
        let t = String::from_utf8_lossy(target);
        t.strip_suffix('\n').unwrap_or(&t).to_string()
    });
    Some(Entry {
        name: name.to_string(),
        kind,
        size,
        mtime,
        mode: format!("{:04o}", mode & 0o7777),
        target,
    })
}

/// Whether `tag` has the form of this API's ETags (`INODE-SIZE-MTIME.NANOS`).
pub fn is_etag(tag: &str) -> bool {
    let mut parts = tag.splitn(3, '-');
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some(ino), Some(size), Some(time))
            if digits(ino) && digits(size)
                && time.split_once('.').is_some_and(|(s, n)| digits(s) && digits(n))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_from_stat_fields() {
        let e = parse_entry("a b", b"81a4 12 1700000000", b"").unwrap();
        assert_eq!((e.kind, e.size, e.mtime, e.mode.as_str()), ("file", 12, 1700000000, "0644"));
        assert_eq!(e.target, None);
        let l = parse_entry("l", b"a1ff 4 1", b"/etc\n").unwrap();
        assert_eq!((l.kind, l.target.as_deref()), ("symlink", Some("/etc")));
        assert_eq!(parse_entry("d", b"41ed 4096 1", b"").unwrap().kind, "dir");
        assert!(parse_entry("x", b"", b"").is_none());
    }

    #[test]
    fn etags_have_one_form() {
        assert!(is_etag("123-45-1700000000.123456789"));
        assert!(!is_etag("*"));
        assert!(!is_etag("1-2-3"));
        assert!(!is_etag("1-2-3.4-5"));
        assert!(!is_etag("a-2-3.4"));
    }
}
