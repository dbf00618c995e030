//! `tollgate`: the command line. Parses arguments and hands over to `app` or `config`.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use gateway::{app, config::Config, ebpf, telemetry};

/// Env-filter directive for logs (e.g. `info`, `gateway=debug`).
const ENV_LOG: &str = "TOLLGATE_LOG";

#[derive(Parser)]
#[command(
    name = "tollgate",
    version,
    about = "Node-level AI gateway: eBPF capture of LLM provider connections"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load the eBPF programs, attach them and run the proxy (needs root).
    Run {
        /// Configuration file (YAML).
        #[arg(long, short)]
        config: PathBuf,
        /// Write listener and admin addresses here (JSON) once ready.
        #[arg(long)]
        ready_file: Option<PathBuf>,
    },
    /// Check a configuration file without running anything.
    Validate {
        /// Configuration file (YAML).
        file: PathBuf,
    },
    /// Remove programs that a fail-closed instance left attached (pinned on bpffs).
    Detach {
        /// The `capture.pinPath` of that instance.
        #[arg(long, default_value = gateway::config::DEFAULT_PIN_PATH)]
        pin_path: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    telemetry::init_logging(std::env::var(ENV_LOG).ok());
    match cli.command {
        Command::Run { config, ready_file } => {
            let cfg = Config::load(&config).with_context(|| format!("invalid config {}", config.display()))?;
            app::run(cfg, config, ready_file)
        }
        Command::Validate { file } => {
            let cfg = Config::load(&file).with_context(|| format!("invalid config {}", file.display()))?;
            println!(
                "{}: ok ({} providers, fail mode {:?})",
                file.display(),
                cfg.providers.len(),
                cfg.capture.fail_mode
            );
            Ok(())
        }
        Command::Detach { pin_path } => {
            let n = ebpf::remove_pins(&pin_path)?;
            println!("removed {n} pinned programs from {}", pin_path.display());
            Ok(())
        }
    }
}
