//! The small POSIX `sh` programs that do the file operations inside the sandbox, as the
//! sandbox's user, with the tools a busybox image has (`readlink -f`, `stat -c`, `cat`,
//! `head -c`, `mv`, `mkdir`, `rm`, `tar`) and that GNU coreutils have too (the local backend).
//!
//! Invariants:
//! - Paths are never pasted into script text: every script is a constant, run as
//!   `sh -c SCRIPT kterm-files WORKSPACE ARGS…`, so a path is only ever a quoted `"$n"`.
//! - Every path is resolved where the file is, with all symlinks followed (`readlink -f`), and
//!   refused (exit [`OUTSIDE`]) unless the result is the workspace or below it. Operations then
//!   use the resolved path. Delete and rename act on the entry itself (a symlink is removed or
//!   moved, not followed), so for them the parent directory is what is resolved and checked.
//! - The ETag of a file is `INODE-SIZE-MTIME.NANOS`, computed by `sig` here and nowhere else, so
//!   the write precondition compares like with like. A write replaces the file by renaming a
//!   new one over it: the inode, and so the ETag, changes at every write.

/// Exit codes of the scripts, mapped to HTTP errors in [`super::exit_error`].
pub const OUTSIDE: i32 = 10;
pub const MISSING: i32 = 11;
pub const NOT_DIR: i32 = 12;
pub const IS_DIR: i32 = 13;
pub const EXISTS: i32 = 14;
pub const PRECONDITION: i32 = 15;
pub const NOT_EMPTY: i32 = 16;
pub const SHORT_WRITE: i32 = 17;
pub const TOO_LARGE: i32 = 18;
pub const NOT_REGULAR: i32 = 19;
pub const FAILED: i32 = 20;
pub const NO_WORKSPACE: i32 = 21;

/// Shared by every script: `$1` is the workspace (then shifted away); defines `fail`,
/// `inside`, `resolve REL [new]` (sets `R`), `entry REL` (sets `E`, its parent checked) and
/// `sig FILE` (prints the ETag).
pub(crate) const PRELUDE: &str = r#"set -u
fail() { if [ $# -gt 1 ]; then printf '%s\n' "$2" >&2; fi; exit "$1"; }
W=$(cd -P -- "$1" 2>/dev/null && pwd -P) || fail 21
shift
inside() { case $1 in "$W"|"$W"/*) return 0;; esac; return 1; }
resolve() {
  R=$W
  if [ -z "$1" ]; then return 0; fi
  R=$(readlink -f "$W/$1") || fail 11
  [ -n "$R" ] || fail 11
  inside "$R" || fail 10
  [ -e "$R" ] || [ "${2-}" = new ] || fail 11
}
entry() {
  case $1 in */*) resolve "${1%/*}";; *) R=$W;; esac
  [ -d "$R" ] || fail 12
  E=$R/${1##*/}
}
sig() {
  s=$(stat -L -c '%i %s %Y %y' "$1") || return 1
  set -- $s
  case $5 in *.*) n=${5#*.};; *) n=0;; esac
  printf '%s-%s-%s.%s' "$1" "$2" "$3" "$n"
}
"#;

/// `REL`: NUL-terminated triples `NAME`, `MODEHEX SIZE MTIME`, `LINKTARGET` for each entry
/// (one `stat` for all of them; one per entry only if an entry vanished meanwhile).
const LIST: &str = r#"resolve "$1"
[ -d "$R" ] || fail 12
cd -P -- "$R" || fail 20
set --
for f in .* *; do
  case $f in .|..) continue;; esac
  if [ -e "$f" ] || [ -h "$f" ]; then set -- "$@" "$f"; fi
done
[ $# -eq 0 ] && exit 0
a=$(stat -c '%f %s %Y' -- "$@" 2>/dev/null) || a=
printf '%s\n' "$a" | {
  for f; do
    IFS= read -r l || l=
    if [ -z "$a" ]; then l=$(stat -c '%f %s %Y' -- "$f" 2>/dev/null) || continue; fi
    t=
    if [ -h "$f" ]; then t=$(readlink -- "$f") || t=; fi
    printf '%s\0%s\0%s\0' "$f" "$l" "$t"
  done
}
exit 0
"#;

/// `REL`: `MODEHEX SIZE MTIME`, `LINKTARGET` (when REL itself is a link), `ETAG`, each
/// NUL-terminated. Symlinks are followed.
const STAT: &str = r#"resolve "$1"
s=$(stat -c '%f %s %Y' "$R") || fail 11
t=
if [ -n "$1" ] && [ -h "$W/$1" ]; then t=$(readlink "$W/$1") || t=; fi
e=$(sig "$R") || fail 11
printf '%s\0%s\0%s\0' "$s" "$t" "$e"
"#;

/// `REL MAX`: the line `SIZE ETAG`, then the file's bytes. The file is opened once and the
/// size and ETag are those of the open file, so a write renamed over it meanwhile changes
/// nothing of what is sent.
const READ: &str = r#"resolve "$1"
[ -d "$R" ] && fail 13
[ -f "$R" ] || fail 19
exec 3< "$R" || fail 11
e=$(sig /proc/self/fd/3) || fail 11
s=${e#*-}; s=${s%%-*}
[ "$s" -le "$2" ] || fail 18 "$s"
printf '%s %s\n' "$s" "$e"
exec cat <&3 3<&-
"#;

/// `REL PRECONDITION TMPNAME LENGTH`, the content on stdin: its LENGTH bytes written to a new
/// file beside the target (read by count, not to the end of stdin: a Kubernetes exec over
/// `v4.channel.k8s.io` cannot close stdin), its length checked, the precondition checked (`""`
/// none, `*` exists, `!` absent, else an ETag), then renamed over the target. Prints the new
/// ETag.
const WRITE: &str = r#"resolve "$1" new
T=$R
D=${T%/*}
[ -d "$D" ] || fail 11
[ -d "$T" ] && fail 13
if [ -e "$T" ] && ! [ -f "$T" ]; then fail 19; fi
tmp=$D/$3
set -C
if ! head -c "$4" > "$tmp"; then rm -f "$tmp"; fail 20; fi
set +C
n=$(stat -c %s "$tmp") || n=
if [ "$n" != "$4" ]; then rm -f "$tmp"; fail 17; fi
if [ -e "$T" ]; then m=$(stat -c %a "$T") && chmod "$m" "$tmp"; fi
ok=1
case $2 in
  '') ;;
  '*') [ -e "$T" ] || ok= ;;
  '!') ! [ -e "$T" ] || ok= ;;
  *) if ! [ -e "$T" ] || [ "$(sig "$T")" != "$2" ]; then ok=; fi ;;
esac
if [ -z "$ok" ]; then rm -f "$tmp"; fail 15; fi
if ! mv -f "$tmp" "$T"; then rm -f "$tmp"; fail 20; fi
sig "$T"
"#;

/// `REL PARENTS`: makes the directory (and missing parents when PARENTS is non-empty).
const MKDIR: &str = r#"p=$1; rest=
while [ -n "$p" ] && ! [ -e "$W/$p" ] && ! [ -h "$W/$p" ]; do
  case $p in
    */*) rest=${p##*/}${rest:+/$rest}; p=${p%/*} ;;
    *) rest=$p${rest:+/$rest}; p= ;;
  esac
done
resolve "$p"
[ -n "$rest" ] || fail 14
[ -d "$R" ] || fail 12
case $rest in */*) [ -n "$2" ] || fail 11;; esac
mkdir -p "$R/$rest" || fail 20
"#;

/// `REL RECURSIVE`: removes a file, a link (not what it points to), an empty directory, or
/// with RECURSIVE non-empty a whole tree.
const DELETE: &str = r#"entry "$1"
[ -e "$E" ] || [ -h "$E" ] || fail 11
if [ -d "$E" ] && ! [ -h "$E" ]; then
  if [ -n "$2" ]; then rm -rf "$E" || fail 20; exit 0; fi
  [ -z "$(ls -A "$E")" ] || fail 16
  rmdir "$E" || fail 20
else
  rm -f "$E" || fail 20
fi
"#;

/// `FROM TO`: renames an entry (a link is moved, not followed); TO must not exist.
const RENAME: &str = r#"entry "$1"; F=$E
[ -e "$F" ] || [ -h "$F" ] || fail 11
entry "$2"; T=$E
if [ -e "$T" ] || [ -h "$T" ]; then fail 14; fi
mv "$F" "$T" || fail 20
"#;

/// `REL`: the line `ok`, then a tar stream of the directory (links archived as links).
const ARCHIVE: &str = r#"resolve "$1"
[ -d "$R" ] || fail 12
cd -P -- "$R" || fail 20
printf 'ok\n'
exec tar -cf - .
"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    List,
    Stat,
    Read,
    Write,
    Mkdir,
    Delete,
    Rename,
    Archive,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::List => "list",
            Op::Stat => "stat",
            Op::Read => "read",
            Op::Write => "write",
            Op::Mkdir => "mkdir",
            Op::Delete => "delete",
            Op::Rename => "rename",
            Op::Archive => "archive",
        }
    }

    fn body(self) -> &'static str {
        match self {
            Op::List => LIST,
            Op::Stat => STAT,
            Op::Read => READ,
            Op::Write => WRITE,
            Op::Mkdir => MKDIR,
            Op::Delete => DELETE,
            Op::Rename => RENAME,
            Op::Archive => ARCHIVE,
        }
    }

    /// The argv that runs this operation in a sandbox whose workspace is `workspace`.
    pub fn argv(self, workspace: &str, args: &[&str]) -> Vec<String> {
        let mut argv = vec![
            "sh".to_string(),
            "-c".to_string(),
            format!("{PRELUDE}{}", self.body()),
            "kterm-files".to_string(),
            workspace.to_string(),
        ];
        argv.extend(args.iter().map(|a| a.to_string()));
        argv
    }
}
