//! The static bearer tokens of mode `token`: from `auth.tokens` and `auth.tokens_file`, kept
//! only as SHA-256 digests. A presented token is hashed and compared with every entry in
//! constant time, so neither timing nor early exit tells how much of it was right.

use std::path::Path;

use super::secret::{constant_time_eq, parse_sha256_hex, sha256};
use crate::config::{AuthConfig, ConfigError};

#[derive(Debug, Default)]
pub struct TokenTable {
    entries: Vec<(String, [u8; 32])>,
}

impl TokenTable {
    /// The tokens of the config and its tokens file. Errors name the key (and the file's line),
    /// never a token.
    pub fn load(config: &AuthConfig) -> Result<TokenTable, ConfigError> {
        let mut entries = Vec::new();
        for (i, entry) in config.tokens.iter().enumerate() {
            let digest = match (&entry.token, &entry.token_sha256) {
                (Some(token), _) => Some(sha256(token)),
                (None, Some(hex)) => parse_sha256_hex(hex),
                (None, None) => None,
            };
            let digest = digest.ok_or_else(|| {
                ConfigError(format!("config key `auth.tokens[{i}]`: no usable token"))
            })?;
            entries.push((entry.user.clone(), digest));
        }
        if !config.tokens_file.as_os_str().is_empty() {
            entries.extend(read_file(&config.tokens_file)?);
        }
        // One token for two users would make whoever holds it either of them.
        for (i, (user, digest)) in entries.iter().enumerate() {
            if let Some((other, _)) =
                entries[..i].iter().find(|(u, d)| u != user && constant_time_eq(d, digest))
            {
                return Err(ConfigError(format!(
                    "config key `auth.tokens` (or auth.tokens_file): the same token is given to \
                     {other:?} and {user:?}; each user needs a token of their own"
                )));
            }
        }
        Ok(TokenTable { entries })
    }

    /// The user whose token this is, and the token's digest.
    pub fn find(&self, token: &str) -> Option<(&str, [u8; 32])> {
        let digest = sha256(token);
        let mut found = None;
        for (user, entry) in &self.entries {
            if constant_time_eq(entry, &digest) && found.is_none() {
                found = Some(user.as_str());
            }
        }
        found.map(|user| (user, digest))
    }

    /// Whether `user` still has the token with this digest (a cookie from a token login dies
    /// with its token).
    pub fn still_has(&self, user: &str, digest: &[u8; 32]) -> bool {
        self.entries.iter().any(|(u, d)| u == user && constant_time_eq(d, digest))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Lines `USER:TOKEN` or `USER:sha256:HEX`; blank lines and `#` comments are skipped.
fn read_file(path: &Path) -> Result<Vec<(String, [u8; 32])>, ConfigError> {
    let key = "config key `auth.tokens_file`";
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("{key}: cannot read {}: {e}", path.display())))?;
    let mut entries = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad =
            |what: &str| ConfigError(format!("{key}: {} line {}: {what}", path.display(), n + 1));
        let (user, rest) = line.split_once(':').ok_or_else(|| bad("expected USER:TOKEN"))?;
        if user.trim().is_empty() {
            return Err(bad("the user name is empty"));
        }
        let digest = match rest.strip_prefix("sha256:") {
            Some(hex) => parse_sha256_hex(hex).ok_or_else(|| bad("sha256: needs 64 hex digits"))?,
            None if rest.len() >= 16 => sha256(rest),
            None => return Err(bad("a token must be at least 16 characters")),
        };
        entries.push((user.trim().to_string(), digest));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::secret::sha256_hex;
    use crate::config::TokenEntry;

    #[test]
    fn tokens_from_config_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tokens");
        let hashed = sha256_hex("carol-token-0123456789");
        std::fs::write(
            &file,
            format!("# team\nbob:bob-token-0123456789\n\ncarol:sha256:{hashed}\n"),
        )
        .unwrap();
        let config = AuthConfig {
            tokens: vec![TokenEntry {
                user: "alice".into(),
                token: Some("alice-token-0123456789".into()),
                token_sha256: None,
            }],
            tokens_file: file.clone(),
            ..AuthConfig::default()
        };
        let table = TokenTable::load(&config).unwrap();
        assert_eq!(table.len(), 3);
        assert_eq!(table.find("alice-token-0123456789").map(|f| f.0), Some("alice"));
        assert_eq!(table.find("bob-token-0123456789").map(|f| f.0), Some("bob"));
        assert_eq!(table.find("carol-token-0123456789").map(|f| f.0), Some("carol"));
        assert!(table.find("alice-token-012345678").is_none());
        let (_, digest) = table.find("bob-token-0123456789").unwrap();
        assert!(table.still_has("bob", &digest) && !table.still_has("alice", &digest));

        std::fs::write(&file, "dave:alice-token-0123456789\n").unwrap();
        let err = TokenTable::load(&config).unwrap_err();
        assert!(err.0.contains("\"alice\" and \"dave\""), "{err}");
        assert!(!err.0.contains("alice-token"), "errors never show a token: {err}");

        std::fs::write(&file, "dave:short\n").unwrap();
        let err = TokenTable::load(&config).unwrap_err();
        assert!(err.0.contains("auth.tokens_file") && err.0.contains("line 1"), "{err}");
        assert!(!err.0.contains("short"), "errors never show a token: {err}");
    }
}
