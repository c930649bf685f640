//! Paths as clients give them: relative to the workspace, checked by string rules before
//! anything runs. This is only the first gate; where a path really leads (through symlinks) is
//! checked inside the sandbox by the scripts in [`super::scripts`].

use crate::error::{Error, Result};

/// Longer paths are refused (Linux's PATH_MAX).
const MAX_PATH: usize = 4096;

/// A normalised workspace-relative path: no leading `/`, no `.`, `..` or empty components, no
/// NUL. The empty path is the workspace itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelPath(String);

impl RelPath {
    pub fn parse(raw: &str) -> Result<RelPath> {
        if raw.contains('\0') {
            return Err(bad(raw, "contains a NUL byte"));
        }
        if raw.len() > MAX_PATH {
            return Err(bad(raw, "is too long"));
        }
        if raw.starts_with('/') {
            return Err(bad(raw, "is absolute; paths are relative to the workspace"));
        }
        let mut parts = Vec::new();
        for part in raw.split('/') {
            match part {
                "" | "." => {}
                ".." => return Err(bad(raw, "leaves the workspace (`..`)")),
                name if name.len() > 255 => return Err(bad(raw, "has a name over 255 bytes")),
                name => parts.push(name),
            }
        }
        Ok(RelPath(parts.join("/")))
    }

    /// A path that must name something inside the workspace, not the workspace itself.
    pub fn parse_entry(raw: &str) -> Result<RelPath> {
        let path = Self::parse(raw)?;
        if path.is_root() {
            return Err(Error::BadRequest("the path must name a file or directory inside the workspace, not the workspace itself".into()));
        }
        Ok(path)
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last component ("" for the workspace).
    pub fn name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or_default()
    }
}

impl std::fmt::Display for RelPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            f.write_str(".")
        } else {
            f.write_str(&self.0)
        }
    }
}

fn bad(raw: &str, why: &str) -> Error {
    let shown: String = raw.chars().take(200).collect();
    Error::BadRequest(format!("path {:?} {why}", shown.replace('\0', "\\0")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_harmless_forms() {
        assert_eq!(RelPath::parse("").unwrap().as_str(), "");
        assert_eq!(RelPath::parse(".").unwrap().as_str(), "");
        assert_eq!(RelPath::parse("./a//b/").unwrap().as_str(), "a/b");
        assert_eq!(RelPath::parse("a b/ünï cødé.txt").unwrap().name(), "ünï cødé.txt");
        assert_eq!(RelPath::parse("..%2f").unwrap().as_str(), "..%2f", "a literal name");
        assert_eq!(RelPath::parse("...").unwrap().as_str(), "...");
    }

    #[test]
    fn refuses_what_leaves_or_smuggles() {
        for raw in ["..", "../x", "a/../../x", "a/..", "/etc/passwd", "a\0b", &"x".repeat(5000)] {
            let err = RelPath::parse(raw).unwrap_err();
            assert!(matches!(err, Error::BadRequest(_)), "{raw:?}: {err}");
        }
        assert!(RelPath::parse_entry(".").is_err());
        assert!(RelPath::parse_entry("a").is_ok());
    }
}
