//! The README's commands and configuration stay true: every `kterm …` command in its shell
//! blocks names a subcommand and flags the binary has (checked by running it with `--help`
//! after them, which the parser accepts only when everything before it parses), `kterm
//! --version` prints what the README shows, and every TOML block is a configuration that
//! `kterm check-config` accepts. The blocks that need a VM, systemd, Docker or a cluster are
//! run for real elsewhere (tests/systemd.rs, tests/deploy.rs, the Docker tests).

use std::path::Path;
use std::process::Command;

fn readme() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The fenced blocks of `lang`, each with the line it starts on.
fn blocks(text: &str, lang: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        if let Some(fence) = line.strip_prefix("```") {
            match current.take() {
                Some(block) => out.push(block),
                None if fence.trim() == lang => current = Some((i + 1, String::new())),
                None => current = Some((i + 1, "\u{0}skip".into())),
            }
            continue;
        }
        if let Some((_, body)) = &mut current {
            body.push_str(line);
            body.push('\n');
        }
    }
    out.retain(|(_, body)| !body.starts_with('\u{0}'));
    out
}

/// The words of each `kterm` command in a shell block (a line that runs kterm, also after
/// `sudo`, a pipe or `docker exec NAME`): comments and `[optional]` parts dropped, lines
/// joined at a trailing backslash, the command cut at `&` or `;`.
fn kterm_commands(block: &str) -> Vec<Vec<String>> {
    let joined = block.replace("\\\n", " ");
    let mut out = Vec::new();
    for line in joined.lines() {
        let line = line.split(" #").next().unwrap_or("").trim();
        // The kterm part of `echo … | kterm …` or `docker exec kterm kterm …`.
        let segment = line.rsplit('|').next().unwrap_or("").trim();
        let is_kterm = |w: &str| w.rsplit('/').next() == Some("kterm");
        let mut words: Vec<&str> = segment.split_whitespace().collect();
        // What runs: after `sudo` and variable assignments, or inside `docker exec NAME`.
        while words.first().is_some_and(|w| *w == "sudo" || w.contains('=')) {
            words.remove(0);
        }
        let at = match words.as_slice() {
            [first, ..] if is_kterm(first) => 0,
            ["docker", "exec", rest @ ..] => {
                let Some(name) = rest.iter().position(|w| !w.starts_with('-')) else { continue };
                match rest.get(name + 1) {
                    Some(w) if is_kterm(w) => name + 3,
                    _ => continue,
                }
            }
            _ => continue,
        };
        words.drain(..=at);
        let mut command = Vec::new();
        let mut optional = 0;
        for word in words {
            if word == "&" || word == "&&" || word == ";" {
                break;
            }
            let opens = word.matches('[').count();
            let closes = word.matches(']').count();
            if optional == 0 && opens == 0 {
                command.push(word.to_string());
            }
            optional = (optional + opens).saturating_sub(closes);
        }
        out.push(command);
    }
    out
}

fn kterm(args: &[String]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kterm")).args(args).output().expect("run kterm");
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

#[test]
fn every_kterm_command_in_the_readme_parses() {
    let text = readme();
    let mut checked = 0;
    for (line, block) in blocks(&text, "sh") {
        for words in kterm_commands(&block) {
            if words.iter().any(|w| w == "--version") {
                let (code, out) = kterm(&words);
                assert_eq!(code, Some(0), "README line {line}: kterm {words:?}: {out}");
                assert!(out.starts_with("kterm 0."), "README line {line}: {out}");
                checked += 1;
                continue;
            }
            // Before a `--`: what follows it is the remote command's, not kterm's.
            let mut args = words.clone();
            let at = args.iter().position(|w| w == "--").unwrap_or(args.len());
            args.insert(at, "--help".into());
            let (code, out) = kterm(&args);
            assert_eq!(
                code,
                Some(0),
                "README line {line}: `kterm {}` is not a command the binary has:\n{out}",
                words.join(" ")
            );
            checked += 1;
        }
    }
    // The README names serving, check-config, --version, user, image build, backup at least.
    assert!(checked >= 10, "only {checked} kterm commands found in the README's shell blocks");
}

#[test]
fn every_toml_block_in_the_readme_is_a_valid_configuration() {
    let text = readme();
    let dir = tempfile::tempdir().expect("temp dir");
    let found = blocks(&text, "toml");
    assert!(!found.is_empty(), "no TOML blocks in the README");
    for (line, block) in found {
        let file = dir.path().join(format!("readme-{line}.toml"));
        std::fs::write(&file, &block).expect("write");
        let args = [
            "check-config".to_string(),
            "--config".into(),
            file.display().to_string(),
            "--state".into(),
            dir.path().join("k.db").display().to_string(),
        ];
        let (code, out) = kterm(&args);
        assert_eq!(code, Some(0), "README line {line}: check-config refused\n{block}\n{out}");
    }
}

#[test]
fn the_command_reader_finds_what_a_reader_would_type() {
    let block = "./kterm image build [--tag T] [--dockerfile F]   # build\n\
                 echo \"$PW\" | kterm user passwd alice\n\
                 docker exec kterm kterm image build\n\
                 docker build -t kterm .\n\
                 sudo install -m 0755 target/release/kterm /usr/local/bin/kterm\n\
                 kterm backup /var/backups/kterm.db \\\n  --config /etc/kterm.toml\n";
    let commands = kterm_commands(block);
    assert_eq!(
        commands,
        vec![
            vec!["image", "build"],
            vec!["user", "passwd", "alice"],
            vec!["image", "build"],
            vec!["backup", "/var/backups/kterm.db", "--config", "/etc/kterm.toml"],
        ]
    );
}
