//! The `kterm` command line: serve, check the config, print the version.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kterm::config::{Config, ConfigError, LogFormat, Overrides};

#[derive(Parser)]
#[command(name = "kterm", version, about = "A self-hosted web terminal with real sandboxes")]
struct Cli {
    /// The TOML config file (see config.example.toml).
    #[arg(long, global = true, value_name = "FILE", env = "KTERM_CONFIG")]
    config: Option<PathBuf>,
    /// Address and port to serve on (server.listen).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// The SQLite state file (state.path).
    #[arg(long, value_name = "PATH")]
    state: Option<PathBuf>,
    /// Log format (log.format).
    #[arg(long, value_enum, value_name = "FORMAT")]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the configuration, print the effective config, and exit.
    CheckConfig,
    /// Sandbox images for the Docker backend.
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
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

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let overrides = Overrides {
        listen: cli.listen.clone(),
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
    match cli.command {
        Some(Command::CheckConfig) => {
            print!("{}", config.to_toml_masked());
            eprintln!("kterm: configuration is valid");
            ExitCode::SUCCESS
        }
        Some(Command::Image { command: ImageCommand::Build { tag, dockerfile, print } }) => {
            if print {
                print!("{}", kterm::sandbox::docker_image::SANDBOX_DOCKERFILE);
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
        None => (kterm::sandbox::docker_image::SANDBOX_DOCKERFILE.to_string(), None),
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(kterm::sandbox::docker_image::build(
        &config.docker.host,
        tag,
        &recipe,
        context.as_deref(),
        &mut std::io::stdout(),
    ))?;
    Ok(())
}

fn serve(config: Config) -> anyhow::Result<()> {
    init_tracing(&config);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let server = kterm::Server::start(config).await?;
        wait_for_signal().await?;
        server.shutdown().await;
        anyhow::Ok(())
    })
}

async fn wait_for_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    Ok(())
}
