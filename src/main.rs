//! The `kterm` command line: serve, check the config, manage local users, print the version.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kterm::auth::users;
use kterm::config::{AuthMode, Config, ConfigError, LogFormat, Overrides};
use kterm::error::Error;
use kterm::store::Store;

#[derive(Parser)]
#[command(name = "kterm", version = kterm::VERSION, about = "A self-hosted web terminal with real sandboxes")]
struct Cli {
    /// The TOML config file (see config.example.toml).
    #[arg(long, global = true, value_name = "FILE", env = "KTERM_CONFIG")]
    config: Option<PathBuf>,
    /// Address and port to serve on (server.listen).
    #[arg(long, global = true, value_name = "ADDR")]
    listen: Option<String>,
    /// The SQLite state file (state.path).
    #[arg(long, global = true, value_name = "PATH")]
    state: Option<PathBuf>,
    /// Log format (log.format).
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the configuration, print the effective config, and exit.
    CheckConfig,
    /// Ask the running kterm's /healthz (at server.listen); exit 0 when it answers 200.
    Healthcheck,
    /// Write a consistent copy of the state store to FILE (safe while kterm serves from it).
    Backup {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Sandbox images for the Docker backend.
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
    /// Manage the local users of auth mode "local" (in the state file).
    #[command(subcommand)]
    User(UserCommand),
    /// Connect this terminal to a session (raw mode; Ctrl-] detaches, the shell keeps running).
    Attach {
        /// A session id, or a URL naming one (`http://host/api/v1/sessions/ID[/ws]`).
        #[arg(value_name = "SESSION_OR_URL")]
        session: String,
        #[command(flatten)]
        client: ClientArgs,
        /// The key that detaches, as `ctrl-X`.
        #[arg(long, value_name = "KEY", default_value = "ctrl-]")]
        detach_key: String,
    },
    /// Run a command in a session's sandbox and exit with its exit code (124: timed out; 125:
    /// kterm could not run it).
    Exec {
        #[arg(value_name = "SESSION_OR_URL")]
        session: String,
        #[command(flatten)]
        client: ClientArgs,
        /// Time limit such as `30s` (the server's `exec.timeout` when not given).
        #[arg(long, value_name = "DURATION")]
        timeout: Option<String>,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true, value_name = "CMD")]
        argv: Vec<String>,
    },
}

/// How `kterm attach` and `kterm exec` reach a server.
#[derive(clap::Args)]
struct ClientArgs {
    /// The server, e.g. `http://127.0.0.1:8080` (default: from the URL given, else that).
    #[arg(long, value_name = "URL", env = "KTERM_SERVER")]
    server: Option<String>,
    /// A file holding the bearer token (else `KTERM_TOKEN`).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Build the sandbox image through the Docker API (default: the recipe shipped in kterm,
    /// tagged as docker.image).
    Build {
        /// Image tag; default: docker.image from the config.
        #[arg(long)]
        tag: Option<String>,
        /// Build this Dockerfile instead (its directory is the build context).
        #[arg(long, value_name = "FILE")]
        dockerfile: Option<PathBuf>,
        /// Print the shipped recipe and exit.
        #[arg(long)]
        print: bool,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user; the password is read from standard input (asked twice on a terminal).
    Add { name: String },
    /// Set a user's password (standard input, as for add); their logins end.
    Passwd { name: String },
    /// Disable a user; their logins end at once.
    Disable { name: String },
    /// Enable a disabled user again.
    Enable { name: String },
    /// List the users.
    List,
}

/// `kterm attach` and `kterm exec`: clients of a server, which read no config.
fn run_client(cli: &Cli) -> Option<ExitCode> {
    use kterm::client::{attach, exec, Target};
    let (session, client) = match &cli.command {
        Some(Command::Attach { session, client, .. } | Command::Exec { session, client, .. }) => {
            (session, client)
        }
        _ => return None,
    };
    let token = std::env::var("KTERM_TOKEN").ok();
    let target = match Target::resolve(
        session,
        client.server.as_deref(),
        client.token_file.as_deref(),
        token,
    ) {
        Ok(target) => target,
        Err(e) => {
            eprintln!("kterm: {e}");
            return Some(ExitCode::from(2));
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("kterm: {e}");
            return Some(ExitCode::from(1));
        }
    };
    let result = match &cli.command {
        Some(Command::Attach { detach_key, .. }) => {
            let Some(key) = attach::parse_detach_key(detach_key) else {
                eprintln!("kterm: --detach-key {detach_key:?} is not ctrl-<letter> (or ctrl-])");
                return Some(ExitCode::from(2));
            };
            runtime.block_on(attach::run(&target, key))
        }
        Some(Command::Exec { argv, timeout, .. }) => {
            match runtime.block_on(exec::run(&target, argv.clone(), timeout.clone())) {
                Ok(code) => Ok(code),
                Err(e) => {
                    eprintln!("kterm: {e}");
                    Ok(exec::FAILED)
                }
            }
        }
        _ => return None,
    };
    Some(match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("kterm: {e}");
            ExitCode::from(1)
        }
    })
}

fn main() -> ExitCode {
    // Before any thread starts: systemd's variables are read and removed here.
    let inherited = match kterm::systemd::adopt_environment() {
        Ok(addr) => addr,
        Err(ConfigError(message)) => {
            eprintln!("kterm: bad socket activation: {message}");
            return ExitCode::from(2);
        }
    };
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    if let Some(code) = run_client(&cli) {
        return code;
    }
    let overrides = Overrides {
        // A socket from systemd is where kterm serves: its address is the effective listen
        // address, so every check of it (auth on a non-loopback address ...) applies.
        listen: inherited.map(|addr| addr.to_string()).or_else(|| cli.listen.clone()),
        state: cli.state.clone(),
        log_format: cli.log_format,
    };
    let config = match Config::load(cli.config.as_deref(), &overrides) {
        Ok(config) => config,
        Err(ConfigError(message)) => {
            eprintln!("kterm: bad configuration: {message}");
            return ExitCode::from(2);
        }
    };
    let warnings = match kterm::preflight::preflight(&config) {
        Ok(warnings) => warnings,
        Err(ConfigError(message)) => {
            eprintln!("kterm: bad configuration: {message}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        // Clients: run by `run_client` above, before any config is read.
        Some(Command::Attach { .. } | Command::Exec { .. }) => ExitCode::from(1),
        Some(Command::User(command)) => user_command(&config, command),
        Some(Command::Backup { file }) => match kterm::store::backup(&config.state.path, &file) {
            Ok(pages) => {
                eprintln!(
                    "kterm: backed up {} to {} ({pages} pages)",
                    config.state.path.display(),
                    file.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("kterm: backup failed: {e}");
                ExitCode::from(1)
            }
        },
        Some(Command::CheckConfig) => {
            print!("{}", config.to_toml_masked());
            for warning in &warnings {
                eprintln!("kterm: warning: {warning}");
            }
            eprintln!("kterm: configuration is valid");
            ExitCode::SUCCESS
        }
        Some(Command::Healthcheck) => {
            let result = kterm::healthcheck::target(&config)
                .and_then(|addr| kterm::healthcheck::check(addr, config.tls.enabled()));
            match result {
                Ok(seen) => {
                    println!("kterm: healthy: {seen}");
                    ExitCode::SUCCESS
                }
                Err(why) => {
                    eprintln!("kterm: unhealthy: {why}");
                    ExitCode::from(1)
                }
            }
        }
        Some(Command::Image { command: ImageCommand::Build { tag, dockerfile, print } }) => {
            if print {
                print!("{}", kterm::sandbox::docker::image::SANDBOX_DOCKERFILE);
                return ExitCode::SUCCESS;
            }
            let tag = tag.unwrap_or_else(|| config.docker.image.clone());
            match build_image(&config, &tag, dockerfile.as_deref()) {
                Ok(()) => {
                    eprintln!("kterm: built {tag}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("kterm: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
        None => match serve(config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                // A configuration refused at start (e.g. a backend it cannot use) is exit 2.
                if let Some(Error::Config(ConfigError(message))) = e.downcast_ref::<Error>() {
                    eprintln!("kterm: bad configuration: {message}");
                    return ExitCode::from(2);
                }
                eprintln!("kterm: {e:#}");
                ExitCode::from(1)
            }
        },
    }
}

fn init_tracing(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log.level));
    // Under systemd (stderr is the journal), records go to journald natively: fields and
    // priorities, not text lines; unless log.format = "json" asks for JSON lines.
    if config.log.format == LogFormat::Human && kterm::systemd::stderr_is_journal() {
        if let Ok(journald) = tracing_journald::layer() {
            use tracing_subscriber::layer::SubscriberExt;
            use tracing_subscriber::util::SubscriberInitExt;
            let journald = journald.with_syslog_identifier("kterm".into());
            tracing_subscriber::registry().with(filter).with(journald).init();
            return;
        }
    }
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Human => builder.init(),
    }
}

fn build_image(
    config: &Config,
    tag: &str,
    dockerfile: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let (recipe, context) = match dockerfile {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            (
                text,
                path.parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .map(std::path::Path::to_path_buf),
            )
        }
        None => (kterm::sandbox::docker::image::SANDBOX_DOCKERFILE.to_string(), None),
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(kterm::sandbox::docker::image::build(
        &config.docker.host,
        tag,
        &recipe,
        context.as_deref(),
        &mut std::io::stdout(),
    ))?;
    Ok(())
}

/// The most threads the server's blocking work runs on at once.
const BLOCKING_THREADS: usize = 16;
/// How long an idle blocking thread stays for more work.
const BLOCKING_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(2);

fn serve(config: Config) -> anyhow::Result<()> {
    init_tracing(&config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Blocking work (the store, password hashes, workspace directories) is brief and mostly
        // serialised on the store's one connection: a burst of it must not leave hundreds of
        // idle threads behind, and those it starts go soon after it.
        .max_blocking_threads(BLOCKING_THREADS)
        .thread_keep_alive(BLOCKING_KEEP_ALIVE)
        .build()?;
    runtime.block_on(async {
        let server = kterm::Server::start(config).await?;
        kterm::systemd::notify(&format!("READY=1\nSTATUS=serving on {}", server.addr()));
        if let Some(every) = kterm::systemd::watchdog_interval() {
            // The runtime's liveness: a wedged runtime stops the pings and systemd restarts us.
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tick.tick().await;
                    kterm::systemd::notify("WATCHDOG=1");
                }
            });
        }
        wait_for_signal(&server).await?;
        kterm::systemd::notify("STOPPING=1");
        server.shutdown().await;
        anyhow::Ok(())
    })
}

/// Waits for SIGTERM or SIGINT (or `server.exit_when_idle`); SIGHUP meanwhile reloads the TLS
/// certificate.
async fn wait_for_signal(server: &kterm::Server) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let idle = server.idle_exit();
    tokio::pin!(idle);
    loop {
        let stop = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
            _ = &mut idle => return Ok(()),
            _ = hup.recv() => {
                match server.reload_tls() {
                    Ok(()) => tracing::info!("SIGHUP: reloaded the TLS certificate and key"),
                    Err(e) => tracing::error!(error = %e, "SIGHUP: kept the old TLS certificate"),
                }
                continue;
            }
        };
        tracing::info!("{stop} received");
        return Ok(());
    }
}

/// `kterm user ...`: exit 2 for bad arguments (name, password), 1 for anything else.
fn user_command(config: &Config, command: UserCommand) -> ExitCode {
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting a runtime", e))
        .and_then(|runtime| runtime.block_on(run_user_command(config, command)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kterm: {e}");
            ExitCode::from(if matches!(e, Error::BadRequest(_)) { 2 } else { 1 })
        }
    }
}

async fn run_user_command(config: &Config, command: UserCommand) -> Result<(), Error> {
    if config.auth.mode != AuthMode::Local {
        eprintln!("kterm: note: auth.mode is not \"local\"; these users log in only in that mode");
    }
    let store = Store::open(&config.state.path)?;
    match command {
        UserCommand::Add { name } => {
            users::validate_name(&name)?;
            users::add(&store, &name, &read_password(&name)?).await?;
            eprintln!("kterm: added user {name}");
        }
        UserCommand::Passwd { name } => {
            users::passwd(&store, &name, &read_password(&name)?).await?;
            eprintln!("kterm: changed the password of {name}");
        }
        UserCommand::Disable { name } => {
            users::set_disabled(&store, &name, true).await?;
            eprintln!("kterm: disabled {name}");
        }
        UserCommand::Enable { name } => {
            users::set_disabled(&store, &name, false).await?;
            eprintln!("kterm: enabled {name}");
        }
        UserCommand::List => {
            println!("{:<32} {:<9} {:<25} LAST LOGIN", "NAME", "STATE", "CREATED");
            for user in users::list(&store).await? {
                let state = if user.disabled { "disabled" } else { "enabled" };
                let last = user.last_login.map(|t| t.to_rfc3339()).unwrap_or_else(|| "-".into());
                println!(
                    "{:<32} {state:<9} {:<25} {last}",
                    user.name,
                    user.created_at.to_rfc3339()
                );
            }
        }
    }
    Ok(())
}

/// A password from standard input: asked twice without echo on a terminal, else the first line.
fn read_password(name: &str) -> Result<String, Error> {
    use std::io::{BufRead, IsTerminal};
    let stdin = std::io::stdin();
    let read_line = || -> Result<String, Error> {
        let mut line = String::new();
        stdin.lock().read_line(&mut line).map_err(|e| Error::io("reading the password", e))?;
        Ok(line.trim_end_matches(['\n', '\r']).to_string())
    };
    if !stdin.is_terminal() {
        return read_line();
    }
    let ask = |prompt: &str| -> Result<String, Error> {
        use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
        eprint!("{prompt}");
        let saved = tcgetattr(&stdin).map_err(|e| Error::io("reading the terminal", e.into()))?;
        let mut quiet = saved.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &quiet);
        let line = read_line();
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
        eprintln!();
        line
    };
    let first = ask(&format!("Password for {name}: "))?;
    if ask("Again: ")? != first {
        return Err(Error::BadRequest("the passwords differ".into()));
    }
    Ok(first)
}
