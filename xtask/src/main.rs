//! Developer tasks. `cargo xtask <task>`:
//! - `setup`: install what the build needs (nightly rust-src, bpf-linker, Debian packages).
//! - `demo`: show transparent capture of an unmodified curl, end to end.
//! - `test`: setup, build, fuzz briefly, and run the whole test suite (what CI runs).
//! - `fuzz`: run the fuzz targets of `fuzz/` (docs/fuzzing.md).
//! - `bench`: measure capture overhead against direct connections (`--peers`: beside nginx;
//!   `--scale`: open streams and growing configs; `--dns`: DNS learning's added latency; `--mcp`:
//!   an MCP tools/call's added latency);
//!   results in `bench/results/`.
//! - `image`, `deb`: the container image and the host-agent package (docs/kubernetes.md,
//!   docs/host-agent.md).

mod bench;
mod demo;
mod deploy;
mod fuzz;
mod setup;
mod util;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install the toolchain pieces and packages the build and tests need (idempotent).
    Setup,
    /// Run the end-to-end demo (root, no network needed).
    Demo,
    /// Run every test (root for the privileged ones; CI=true makes them mandatory).
    Test {
        /// Extra arguments passed to `cargo test` (after `--` for the test binaries).
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// Benchmark the capture path against direct connections.
    Bench {
        /// Iterations per latency measurement.
        #[arg(long, default_value_t = 20_000)]
        iterations: usize,
        /// Instead: Tollgate beside a bare relay and nginx, interleaved in one run
        /// (docs/benchmarks.md).
        #[arg(long)]
        peers: bool,
        /// Instead: streams held open (memory at `--connections`) and the cost growth curves
        /// of routes, endpoints, cgroups and limit buckets (docs/benchmarks.md).
        #[arg(long)]
        scale: bool,
        /// Instead: DNS query latency direct and through the DNS-learning forwarder
        /// (`--requests`: queries per run, default 1,000; `--rounds`).
        #[arg(long)]
        dns: bool,
        /// Instead: MCP tools/call latency direct and through Tollgate, with the official MCP
        /// SDK on both ends (`--requests`: calls per run, default 2,000; `--rounds`).
        #[arg(long)]
        mcp: bool,
        /// With `--peers` or `--scale`: requests per concurrency-16 run (a quarter of them at
        /// concurrency 1); default 20,000 (`--peers`), 10,000 per point (`--scale`).
        #[arg(long)]
        requests: Option<usize>,
        /// With `--scale`: open streams in the memory measurement.
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        /// With `--peers`: another Tollgate binary measured beside this tree's in the same run
        /// (`NAME=PATH`, repeatable), e.g. a build with another allocator; with `--scale`, in
        /// the memory part.
        #[arg(long = "variant")]
        variants: Vec<String>,
        /// With `--peers`: measure only these systems (comma-separated names, e.g.
        /// `tollgate,nginx`; the direct runs are always measured), for profiling loops. With
        /// `--scale`: only these parts (`memory`, `routes`, `endpoints`, `cgroups`, `limits`).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// With `--peers`: rounds (each figure is the median over rounds); with `--scale`:
        /// measurements per point.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// Fuzz every parser of workload and provider bytes, then replay fuzz/regressions (nightly).
    Fuzz {
        /// Seconds of fuzzing per target (0: only run the seed corpora once).
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Unoptimised targets without AddressSanitizer (what `cargo xtask test` runs).
        #[arg(long)]
        quick: bool,
    },
    /// Build the container image (static binary, OCI archive in target/image/).
    Image,
    /// Build the host-agent Debian package (target/debian/).
    Deb,
    /// Internal: the benchmark client, run inside the captured cgroup.
    #[command(hide = true)]
    BenchClient { args: Vec<String> },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Setup => setup::setup().map(|_| ()),
        Task::Demo => demo::demo(),
        Task::Test { args } => test(&args),
        Task::Bench {
            peers: true,
            requests,
            variants,
            only,
            rounds,
            ..
        } => bench::peers(&bench::PeersRun {
            requests: requests.unwrap_or(20_000),
            variants,
            only,
            rounds,
        }),
        Task::Bench {
            scale: true,
            requests,
            connections,
            variants,
            only,
            rounds,
            ..
        } => bench::scale(&bench::ScaleRun {
            requests: requests.unwrap_or(10_000),
            connections,
            variants,
            only,
            rounds,
        }),
        Task::Bench {
            dns: true,
            requests,
            rounds,
            ..
        } => bench::dns(&bench::DnsRun {
            queries: requests.unwrap_or(1_000),
            rounds,
        }),
        Task::Bench {
            mcp: true,
            requests,
            rounds,
            ..
        } => bench::mcp(&bench::McpRun {
            calls: requests.unwrap_or(2_000),
            rounds,
        }),
        Task::Bench { iterations, .. } => bench::bench(iterations),
        Task::Fuzz { seconds, quick } => {
            let mode = if quick { fuzz::Mode::Quick } else { fuzz::Mode::Thorough };
            fuzz::fuzz(seconds, mode)
        }
        Task::Image => deploy::image(&setup::setup()?).map(|_| ()),
        Task::Deb => deploy::deb(&setup::setup()?).map(|_| ()),
        Task::BenchClient { args } => bench::client(&args),
    }
}

/// Seconds each fuzz target runs in `cargo xtask test` (eight targets: about a minute).
const TEST_FUZZ_SECONDS: u64 = 7;

fn test(args: &[String]) -> anyhow::Result<()> {
    let env = setup::setup()?;
    util::cargo(&env, &["build", "-p", "gateway", "--bin", "tollgate"])?;
    // What the deployment tests install: the image (run by containerd) and the package.
    deploy::image(&env)?;
    deploy::deb(&env)?;
    // Briefly, and before the suite so that the suite's summary is the last line; a crash is
    // a failure with its input named (docs/fuzzing.md).
    fuzz::fuzz(TEST_FUZZ_SECONDS, fuzz::Mode::Quick)?;
    let mut test_args = vec!["test", "--workspace", "--exclude", "gateway-ebpf"];
    test_args.extend(args.iter().map(String::as_str));
    util::cargo_test(&env, &test_args)
}
