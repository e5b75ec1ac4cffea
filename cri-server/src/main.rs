//! corrald: the Corral CRI daemon. Flags override the config file, which overrides the
//! embedded defaults; with neither it serves on /run/corral/corral.sock.

mod config;
mod config_cmd;
mod deadline;
mod instrument;
mod metrics;
mod server;
mod service;

use std::path::PathBuf;

use clap::Parser;
// The conversions and the error mapping live in the library half, for the fuzz targets.
use cri_server::{convert, status};
use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogFormat};

/// `corrald --version`: the release, the commit it was built from, the CRI it serves.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("CORRAL_COMMIT"),
    ", CRI v1)"
);

#[derive(Debug, Parser)]
#[command(name = "corrald", version = VERSION, about = "Corral: a Kubernetes CRI runtime")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Config file (TOML). Default: /etc/corral/config.toml when it exists.
    #[arg(long)]
    config: Option<PathBuf>,
    /// CRI socket path (or unix:///path).
    #[arg(long)]
    listen: Option<String>,
    /// Persistent data directory.
    #[arg(long)]
    root: Option<PathBuf>,
    /// Runtime state directory (tmpfs).
    #[arg(long)]
    state: Option<PathBuf>,
    /// Log filter, e.g. `info` or `debug`.
    #[arg(long)]
    log_level: Option<String>,
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
    /// Serve Prometheus metrics on this `host:port` (GET /metrics); empty turns them off.
    #[arg(long)]
    metrics_address: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Print configuration: the defaults, or what a start would use.
    Config {
        #[command(subcommand)]
        what: ConfigCommand,
    },
}

#[derive(Debug, clap::Subcommand)]
enum ConfigCommand {
    /// The embedded defaults as a commented file that corrald accepts as is.
    Default,
    /// The effective configuration: the file (--config or the default path), then the flags.
    Dump,
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The whole chain on one line, no backtrace: what an operator acts on.
            eprintln!("corrald: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Config {
        what: ConfigCommand::Default,
    }) = cli.command
    {
        print!("{}", config_cmd::DEFAULT_TOML);
        return Ok(());
    }
    let mut config = Config::load(cli.config.as_deref())?;
    if let Some(v) = cli.listen {
        config.listen = v;
    }
    if let Some(v) = cli.root {
        config.root = v;
    }
    if let Some(v) = cli.state {
        config.state = v;
    }
    if let Some(v) = cli.log_level {
        config.log_level = v;
    }
    if let Some(v) = cli.log_format {
        config.log_format = v;
    }
    if let Some(v) = cli.metrics_address {
        config.metrics_address = v;
    }
    if let Some(Command::Config {
        what: ConfigCommand::Dump,
    }) = cli.command
    {
        print!("{}", config_cmd::dump(&config)?);
        return Ok(());
    }
    init_logging(&config)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("corrald")
        .build()?;
    let result = rt.block_on(server::run(config));
    if let Err(e) = &result {
        tracing::error!(error = format!("{e:#}"), "corrald failed");
    }
    result
}

fn init_logging(config: &Config) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&config.log_level)
        .map_err(|e| anyhow::anyhow!("log_level {:?}: {e}", config.log_level))?;
    // Escape codes only for a person at a terminal: not in a file, a pipe or journald.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    Ok(())
}
