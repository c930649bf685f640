//! Password hashing with argon2id (the crate's defaults: OWASP's m=19 MiB, t=2, p=1), stored as
//! PHC strings. Hashing is slow on purpose and takes 19 MiB each time.
//!
//! Invariant: the server checks passwords only through a [`PasswordChecker`]: a few threads of
//! its own, each owning one argon2 memory area that it reuses for every check (so the memory of
//! password checks is allocated once, whatever the number of logins), and a short queue; beyond
//! it a check is refused at once ([`Busy`]) instead of waiting, so a flood of logins costs
//! neither unbounded memory nor unbounded waiting. A stored hash asking for more than
//! [`MAX_MEMORY_BLOCKS`] is never computed (it matches nothing). The CLI (`kterm user`) hashes
//! directly.

use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

/// The most argon2 memory a stored hash may ask for: 64 MiB (the default is 19 MiB).
pub const MAX_MEMORY_BLOCKS: usize = 64 * 1024;

use crate::error::{Error, Result};

pub const MIN_PASSWORD: usize = 8;
pub const MAX_PASSWORD: usize = 1024;

/// The PHC string of `password` with a fresh salt.
pub fn hash(password: &str) -> Result<String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt)
        .map_err(|e| Error::Internal(format!("the OS gave no randomness: {e}")))?;
    let salt = SaltString::encode_b64(&salt)
        .map_err(|e| Error::Internal(format!("encoding a salt: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Internal(format!("hashing a password: {e}")))
}

/// Whether `password` matches the PHC string `stored`. A malformed `stored` matches nothing.
pub fn verify(password: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// Spends the time of one verification, for unknown users, so that timing does not tell
/// which user names exist.
pub fn verify_nothing(password: &str) {
    let _ = verify(password, dummy_hash());
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash("kterm-dummy-password").unwrap_or_default())
}

/// [`verify`] computing in `memory` (grown as needed, never shrunk): no allocation of the
/// argon2 memory per check.
pub fn verify_in(password: &str, stored: &str, memory: &mut Vec<Block>) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else { return false };
    let (Ok(algorithm), Some(salt), Some(expected)) =
        (Algorithm::try_from(parsed.algorithm), parsed.salt, parsed.hash)
    else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from).transpose() {
        Ok(version) => version.unwrap_or_default(),
        Err(_) => return false,
    };
    let Ok(params) = Params::try_from(&parsed) else { return false };
    let blocks = params.block_count();
    if blocks > MAX_MEMORY_BLOCKS {
        return false;
    }
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else { return false };
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    let hashed = Argon2::new(algorithm, version, params).hash_password_into_with_memory(
        password.as_bytes(),
        salt,
        &mut out,
        &mut memory[..],
    );
    hashed.is_ok() && crate::auth::secret::constant_time_eq(&out, expected.as_bytes())
}

/// Every password checker is busy and the queue is full: try again after [`Busy::RETRY_AFTER`].
#[derive(Debug)]
pub struct Busy;

impl Busy {
    pub const RETRY_AFTER: Duration = Duration::from_secs(1);
}

/// A check, given its worker's argon2 memory.
type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// Checks passwords on a few dedicated threads; see the module's invariant.
pub struct PasswordChecker {
    jobs: SyncSender<Job>,
}

impl PasswordChecker {
    /// `workers` threads (at least one) and room for `queue` checks waiting. The threads end
    /// when the checker is dropped.
    pub fn new(workers: usize, queue: usize) -> Result<PasswordChecker> {
        let (jobs, waiting) = sync_channel::<Job>(queue);
        let waiting = Arc::new(Mutex::new(waiting));
        for n in 0..workers.max(1) {
            let waiting = waiting.clone();
            std::thread::Builder::new()
                .name(format!("kterm-password-{n}"))
                .spawn(move || {
                    let mut memory = Vec::new();
                    loop {
                        let job = waiting.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        match job {
                            Ok(job) => job(&mut memory),
                            Err(_) => return,
                        }
                    }
                })
                .map_err(|e| Error::io("starting a password-checking thread", e))?;
        }
        Ok(PasswordChecker { jobs })
    }

    /// One worker per CPU (up to 4), and a queue of four checks per worker.
    pub fn for_this_machine() -> Result<PasswordChecker> {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4);
        PasswordChecker::new(cpus, 4 * cpus)
    }

    /// Whether `password` matches `stored`; with no stored hash (an unknown or disabled user,
    /// an oversized password) it spends the same time and answers `false`.
    pub async fn verify(
        &self,
        password: String,
        stored: Option<String>,
    ) -> std::result::Result<bool, Busy> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |memory| {
            let matches = match stored {
                Some(stored) => verify_in(&password, &stored, memory),
                None => {
                    verify_in(&password, dummy_hash(), memory);
                    false
                }
            };
            let _ = answer.send(matches);
        });
        match self.jobs.try_send(job) {
            Ok(()) => answered.await.map_err(|_| Busy),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => Err(Busy),
        }
    }
}

/// Why a new password is not acceptable, if it is not.
pub fn check_policy(password: &str) -> Result<()> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD {
        return Err(Error::BadRequest(format!(
            "the password must be at least {MIN_PASSWORD} characters"
        )));
    }
    if password.len() > MAX_PASSWORD {
        return Err(Error::BadRequest(format!(
            "the password must be at most {MAX_PASSWORD} bytes"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_are_argon2id() {
        let stored = hash("correct horse").unwrap();
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        assert!(verify("correct horse", &stored));
        assert!(!verify("correct horsE", &stored));
        assert!(!verify("correct horse", "not a hash"));
        assert_ne!(stored, hash("correct horse").unwrap(), "salted");
        assert!(check_policy("short").is_err());
        let mut memory = Vec::new();
        assert!(verify_in("correct horse", &stored, &mut memory));
        assert!(!verify_in("correct horsE", &stored, &mut memory));
        assert!(!verify_in("correct horse", "not a hash", &mut memory));
        assert_eq!(memory.len(), 19 * 1024, "one area, the default's 19 MiB");
        let greedy = stored.replace("m=19456", "m=1048576");
        assert!(!verify_in("correct horse", &greedy, &mut memory), "4 GiB is never computed");
        assert_eq!(memory.len(), 19 * 1024);
    }

    #[tokio::test]
    async fn the_checker_refuses_beyond_its_queue() {
        let checker = Arc::new(PasswordChecker::new(1, 1).unwrap());
        let stored = hash("correct horse").unwrap();
        assert!(checker.verify("correct horse".into(), Some(stored.clone())).await.unwrap());
        let checks: Vec<_> = (0..8)
            .map(|_| {
                let checker = checker.clone();
                let stored = stored.clone();
                tokio::spawn(async move { checker.verify("wrong".into(), Some(stored)).await })
            })
            .collect();
        let mut busy = 0;
        for check in checks {
            match check.await.unwrap() {
                Ok(matches) => assert!(!matches),
                Err(Busy) => busy += 1,
            }
        }
        assert!(busy >= 1, "one running and one waiting at most: the rest are refused");
    }
}
