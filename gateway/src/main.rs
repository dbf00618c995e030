//! `tollgate`: the command line. Parses arguments and hands over to `app` or `config`.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use gateway::{app, config::Config, ebpf, telemetry};

/// With the `mimalloc` feature (the static musl build of the image and the package), mimalloc
/// instead of the C library's allocator: musl's costs the L7 path over a third more CPU
/// (docs/benchmarks.md). glibc builds keep glibc's, which measured the same as mimalloc.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        /// Also print the effective configuration as `/config` shows it (JSON): catalog
        /// entries expanded, defaults applied, credentials by name, kind and source.
        #[arg(long)]
        show: bool,
    },
    /// The built-in provider catalog: hostnames, client API, default backend, auth kind, price
    /// names and source of each entry (`providers: [{catalog: NAME}]`, `catalog: [NAME…]`).
    Catalog {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Requests, tokens and cost per workload, model, route or provider, from the audit log.
    Usage {
        /// The audit log (its rotated files `.1`, `.2`, … are read too). Default: the
        /// `audit.path` of `--config`, else /var/log/tollgate/audit.jsonl.
        #[arg(long)]
        audit_log: Option<PathBuf>,
        /// The configuration whose `audit.path` to read.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// How far back to look, e.g. `1h`, `30m`, `7d`.
        #[arg(long, default_value = "24h")]
        since: humantime::Duration,
        /// What rows are.
        #[arg(long, value_enum, default_value = "workload")]
        by: gateway::accounting::report::GroupBy,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Add the node CA to this host's system trust store (creating the CA if it does not
    /// exist yet), or remove it: host workloads then accept intercepted TLS.
    Trust {
        #[command(subcommand)]
        action: TrustAction,
        /// The configuration whose `tls.caCert`/`tls.caKey` to use.
        #[arg(long, short, global = true, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// The audit log's tamper evidence: verify its hash chain and signed checkpoints, or print
    /// the public key that signs them.
    Audit {
        #[command(subcommand)]
        action: AuditAction,
    },
    /// What the configuration would do with a request (provider, route, backends in fallback
    /// order, credentials, timeouts, limits, prices), without sending anything.
    Explain(Box<gateway::explain::Args>),
    /// One screen about a running instance, from its admin port: attached or not, fail mode,
    /// endpoints, connections and requests per second, errors by side, ejected backends,
    /// limit store, spend today by workload.
    Status {
        #[command(flatten)]
        admin: AdminArgs,
        /// Print `/api/status` as JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// The same screen, live: refreshed each second, sorted by spend, requests or errors
    /// (keys `s`, `r`, `e`); `q` quits.
    Top {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Convert another gateway's configuration into a Tollgate config. Exit status: 0 complete,
    /// 1 written but incomplete (what was not converted is listed on stderr), 2 error.
    Import {
        #[command(subcommand)]
        from: ImportFrom,
    },
    /// Remove programs that a fail-closed instance left attached (pinned on bpffs).
    Detach {
        /// The `capture.pinPath` of that instance.
        #[arg(long, default_value = gateway::config::DEFAULT_PIN_PATH)]
        pin_path: PathBuf,
    },
}

/// Where the host agent package puts the configuration.
const DEFAULT_CONFIG: &str = "/etc/tollgate/tollgate.yaml";

/// How `status` and `top` find the admin port.
#[derive(clap::Args)]
struct AdminArgs {
    /// The admin address (`HOST:PORT`, or a port on 127.0.0.1).
    #[arg(long, conflicts_with = "config")]
    admin: Option<String>,
    /// The configuration whose `admin.address` to use. Default: /etc/tollgate/tollgate.yaml
    /// when it exists, else 127.0.0.1:15000.
    #[arg(long, short)]
    config: Option<PathBuf>,
}

impl AdminArgs {
    fn address(&self) -> anyhow::Result<std::net::SocketAddr> {
        use gateway::console;
        if let Some(a) = &self.admin {
            return Ok(console::parse_admin(a)?);
        }
        let file = match &self.config {
            Some(f) => f.clone(),
            None if std::path::Path::new(DEFAULT_CONFIG).exists() => PathBuf::from(DEFAULT_CONFIG),
            None => return Ok(gateway::config::DEFAULT_ADMIN),
        };
        let cfg = Config::load(&file).with_context(|| format!("invalid config {}", file.display()))?;
        if cfg.admin_address.port() == 0 {
            anyhow::bail!(
                "{}: admin.address has port 0 (chosen at start): pass the port it got with --admin \
                 (the --ready-file of `tollgate run` holds it)",
                file.display()
            );
        }
        Ok(console::reachable(cfg.admin_address))
    }
}

#[derive(Subcommand)]
enum ImportFrom {
    /// Envoy AI Gateway's Kubernetes YAML: AIGatewayRoute, AIServiceBackend,
    /// BackendSecurityPolicy, Backend, BackendTLSPolicy, BackendTrafficPolicy (v1alpha1 and
    /// v1beta1). Other kinds are listed as skipped.
    EnvoyAiGateway {
        /// YAML files (multi-document); `-` reads stdin.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Write the config here instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Where Secrets are mounted: `<dir>/<credential>/<key>` (the chart's layout).
        #[arg(long, default_value = gateway::import::DEFAULT_SECRETS_DIR)]
        secrets_dir: PathBuf,
        /// Where CA ConfigMaps are mounted: `<dir>/<configmap>/ca.crt`.
        #[arg(long, default_value = gateway::import::DEFAULT_CONFIG_MAPS_DIR)]
        config_maps_dir: PathBuf,
    },
}

/// `tollgate import`: exits 0 (complete), 1 (incomplete) or 2 (error).
fn import(from: ImportFrom) -> ! {
    use gateway::import;
    let ImportFrom::EnvoyAiGateway {
        files,
        output,
        secrets_dir,
        config_maps_dir,
    } = from;
    let run = || -> Result<import::Imported, import::Error> {
        let mut inputs = Vec::new();
        for path in &files {
            let read = match path.as_os_str() == "-" {
                true => std::io::read_to_string(std::io::stdin()),
                false => std::fs::read_to_string(path),
            };
            let text = read.map_err(|source| import::Error::Read {
                path: path.clone(),
                source,
            })?;
            inputs.push((path.display().to_string(), text));
        }
        let opts = import::Options {
            secrets_dir,
            config_maps_dir,
        };
        import::envoy_ai_gateway::import(&inputs, &opts)
    };
    let imported = match run() {
        Ok(i) => i,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let written = match &output {
        Some(path) => std::fs::write(path, &imported.yaml).map_err(|e| format!("cannot write {}: {e}", path.display())),
        None => {
            print!("{}", imported.yaml);
            Ok(())
        }
    };
    if let Err(e) = written {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
    eprint!("{}", imported.report.render());
    std::process::exit(imported.report.exit_code())
}

#[derive(Subcommand)]
enum TrustAction {
    /// Add the CA certificate to the system store.
    Install,
    /// Remove it from the system store.
    Remove,
}

#[derive(Subcommand)]
enum AuditAction {
    /// Check the hash chain and every checkpoint signature; name the first line changed,
    /// removed, reordered or inserted. Exit status: 0 intact, 1 broken, 2 intact but with lines
    /// after the last checkpoint (unsealed).
    Verify {
        /// Files to check, oldest first. Default: the `audit.path` of `--config` (else
        /// /var/log/tollgate/audit.jsonl) with its rotated files `.N` … `.1` before it.
        files: Vec<PathBuf>,
        /// The configuration whose `audit.path` to read.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// A public key file (as `tollgate audit pubkey` prints it) the checkpoints must be
        /// signed with; repeat for a key that was replaced. Without it, the key of the first
        /// checkpoint is trusted (and the report says so).
        #[arg(long)]
        key: Vec<PathBuf>,
    },
    /// Print the public key that signs the checkpoints (creating the key pair if it does not
    /// exist yet), to pin it with `verify --key`.
    Pubkey {
        /// The configuration whose `audit.signingKey` to use.
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
}

fn audit(action: AuditAction) -> anyhow::Result<()> {
    use gateway::telemetry::chain::{self, verify, PublicKey};
    match action {
        AuditAction::Verify { files, config, key } => {
            let files = match (files.is_empty(), config) {
                (false, _) => files,
                (true, Some(file)) => {
                    let cfg = Config::load(&file).with_context(|| format!("invalid config {}", file.display()))?;
                    let path = cfg
                        .audit
                        .path
                        .context("audit.path is stdout (\"-\"): nothing to verify")?;
                    verify::log_files(&path)
                }
                (true, None) => verify::log_files(std::path::Path::new(gateway::config::DEFAULT_AUDIT_PATH)),
            };
            let pinned = key
                .iter()
                .map(|path| {
                    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                    PublicKey::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let report = verify::verify(&files, &pinned).context("reading the audit log")?;
            print!("{}", report.render());
            std::process::exit(report.verdict().exit_code());
        }
        AuditAction::Pubkey { config } => {
            let cfg = Config::load(&config).with_context(|| format!("invalid config {}", config.display()))?;
            let policy = cfg
                .audit
                .chain
                .context("the audit log is not chained (audit.path is stdout)")?;
            let key = chain::NodeKey::load_or_create(&policy.signing_key)?;
            println!(
                "# tollgate audit signing key {} ({})",
                key.public(),
                policy.signing_key.display()
            );
            println!("{}", key.public().to_base64());
            Ok(())
        }
    }
}

fn trust(action: TrustAction, config: &std::path::Path) -> anyhow::Result<()> {
    use gateway::truststore::Store;
    let store = Store::detect()?;
    match action {
        TrustAction::Install => {
            let cfg = Config::load(config).with_context(|| format!("invalid config {}", config.display()))?;
            gateway::capture::tls::NodeCa::load_or_create(&cfg.tls.ca_cert, &cfg.tls.ca_key)?;
            let anchor = store.install(&cfg.tls.ca_cert)?;
            println!(
                "{} is trusted by this host: installed as {}",
                cfg.tls.ca_cert.display(),
                anchor.display()
            );
        }
        TrustAction::Remove => match store.remove()? {
            true => println!("removed the Tollgate CA from {}", store.anchors.display()),
            false => println!("the Tollgate CA was not in {}", store.anchors.display()),
        },
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    telemetry::init_logging(std::env::var(ENV_LOG).ok());
    match cli.command {
        Command::Run { config, ready_file } => {
            let cfg = Config::load(&config).with_context(|| format!("invalid config {}", config.display()))?;
            app::run(cfg, config, ready_file)
        }
        Command::Validate { file, show } => {
            let cfg = Config::load(&file).with_context(|| format!("invalid config {}", file.display()))?;
            println!(
                "{}: ok ({} providers, fail mode {:?})",
                file.display(),
                cfg.providers.len(),
                cfg.capture.fail_mode
            );
            if show {
                println!("{}", serde_json::to_string_pretty(&cfg)?);
            }
            Ok(())
        }
        Command::Catalog { json } => {
            use gateway::config::catalog;
            match json {
                true => println!("{}", catalog::render_json()),
                false => print!("{}", catalog::render_table()),
            }
            Ok(())
        }
        Command::Usage {
            audit_log,
            config,
            since,
            by,
            json,
        } => {
            use gateway::accounting::report;
            let audit_log = match (audit_log, config) {
                (Some(path), _) => path,
                (None, Some(file)) => {
                    let cfg = Config::load(&file).with_context(|| format!("invalid config {}", file.display()))?;
                    cfg.audit
                        .path
                        .context("audit.path is stdout (\"-\"): pass --audit-log")?
                }
                (None, None) => PathBuf::from(gateway::config::DEFAULT_AUDIT_PATH),
            };
            let since = std::time::SystemTime::now() - *since;
            let records =
                report::read(&audit_log, since).with_context(|| format!("reading {}", audit_log.display()))?;
            let rows = report::summarize(&records, by);
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print!("{}", report::table(&rows, by));
            }
            Ok(())
        }
        Command::Status { admin, json } => {
            use gateway::console;
            let addr = admin.address()?;
            let status = console::fetch(addr, gateway::accounting::recent::SortBy::Spend, 10)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", console::status::render(&status, addr));
            }
            Ok(())
        }
        Command::Top { admin } => Ok(gateway::console::top::run(admin.address()?)?),
        Command::Trust { action, config } => trust(action, &config),
        Command::Audit { action } => audit(action),
        Command::Explain(args) => {
            let cfg =
                Config::load(&args.config).with_context(|| format!("invalid config {}", args.config.display()))?;
            let out = gateway::explain::explain(&cfg, &args.query(), &|var| std::env::var(var).ok())?;
            match args.json {
                true => println!("{}", serde_json::to_string_pretty(&out)?),
                false => print!("{}", out.to_text()),
            }
            Ok(())
        }
        Command::Import { from } => import(from),
        Command::Detach { pin_path } => {
            let n = ebpf::remove_pins(&pin_path)?;
            println!("removed {n} pinned programs from {}", pin_path.display());
            Ok(())
        }
    }
}
