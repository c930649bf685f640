//! `kterm backup FILE`: a consistent copy of the state store, made with SQLite's online backup
//! while a server may be serving from it.
//!
//! The copy is taken in one step, inside one read transaction: in WAL mode that blocks no
//! writer, and nothing written meanwhile can make the backup start over (a stepwise backup
//! restarts whenever another connection writes, and under steady writes may never finish). It
//! goes to a temporary file beside `FILE`, is checked, synced, and then renamed over `FILE`, so
//! `FILE` is always either the old backup or a whole new one.

use std::path::Path;
use std::time::Duration;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use crate::error::{Error, Result};

/// How often a backup step that found the store busy is tried again.
const BUSY_ATTEMPTS: u32 = 100;

/// Copies the store at `state` to `to`; returns the number of pages copied.
pub fn backup(state: &Path, to: &Path) -> Result<u64> {
    if !state.is_file() {
        return Err(Error::Internal(format!(
            "there is no state store at {} (state.path)",
            state.display()
        )));
    }
    let source = Connection::open_with_flags(
        state,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    source.busy_timeout(Duration::from_secs(5))?;
    let name = to.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let partial = to.with_file_name(format!(".{name}.partial-{}", std::process::id()));
    let _ = std::fs::remove_file(&partial);
    let result = copy(&source, &partial).and_then(|pages| {
        std::fs::rename(&partial, to)
            .map_err(|e| Error::io(format!("renaming the backup to {}", to.display()), e))?;
        Ok(pages)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

fn copy(source: &Connection, partial: &Path) -> Result<u64> {
    use std::os::unix::fs::OpenOptionsExt;
    // The copy holds what the store holds (password hashes, the audit log): private.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(partial)
        .map_err(|e| Error::io(format!("creating {}", partial.display()), e))?;
    let mut target = Connection::open(partial)?;
    let pages = {
        let backup = Backup::new(source, &mut target)?;
        let mut attempts = 0;
        loop {
            match backup.step(-1)? {
                StepResult::Done => break,
                StepResult::More => {}
                StepResult::Busy | StepResult::Locked if attempts < BUSY_ATTEMPTS => {
                    attempts += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                StepResult::Busy | StepResult::Locked => {
                    return Err(Error::Internal(
                        "the state store stayed locked; no backup was made".into(),
                    ))
                }
                _ => {}
            }
        }
        backup.progress().pagecount
    };
    let check: String = target.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    if check != "ok" {
        return Err(Error::Internal(format!("the copy failed its check: {check}")));
    }
    drop(target);
    std::fs::File::open(partial)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(format!("syncing {}", partial.display()), e))?;
    Ok(u64::try_from(pages).unwrap_or_default())
}
