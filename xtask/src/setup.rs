//! `cargo xtask setup`: installs, idempotently and saying what it did, what building and
//! testing Tollgate needs on a fresh Debian machine as root.
//!
//! - Debian packages for the tests and demo (curl, iproute2, python3, util-linux,
//!   redis-server: the tests start their own servers on loopback; openssl makes throwaway RSA
//!   keys for the service-account tests; prometheus for `promtool`, which checks and unit-tests
//!   the alert rules, installed without starting its server; chromium loads the admin dashboard
//!   headless; dnsmasq-base is the DNS server the DNS-learning tests resolve through).
//! - A nightly toolchain whose LLVM is 22 (what bpf-linker 0.10.4 reads), with `rust-src` for
//!   `-Z build-std=core`. The machine's `nightly` is used when it qualifies; otherwise the
//!   pinned `nightly-2026-05-19` is installed and passed to the build through
//!   `TOLLGATE_EBPF_TOOLCHAIN`.
//! - bpf-linker 0.10.4 (`cargo install --locked`), which needs no system LLVM.
//! - A Python virtualenv in `target/pyvenv` with the official OpenAI and Anthropic SDKs from
//!   PyPI (pinned), used unmodified by the end-to-end tests.

use anyhow::{bail, Context as _};

use crate::util::{output, run, BuildEnv};

/// The nightly that was seen to work with bpf-linker 0.10.4 (LLVM 22).
const PINNED_NIGHTLY: &str = "nightly-2026-05-19";
const LLVM_MAJOR: &str = "22";
const BPF_LINKER: &str = "bpf-linker@0.10.4";
const BPF_LINKER_VERSION_PREFIX: &str = "bpf-linker 0.10.";
/// The SDKs the tests drive, pinned so that a new release cannot change a test's meaning.
const PYTHON_SDKS: [&str; 4] = [
    "openai==3.57.0",
    "anthropic==2.14.0",
    "jsonschema==4.26.0",
    "mcp==2.3.0",
];

/// (command or absolute path that must exist, Debian package that provides it)
const PACKAGES: [(&str, &str); 19] = [
    ("redis-server", "redis-server"),
    // promtool: `check rules` and `test rules` over deploy/prometheus (tests/tests/observability.rs).
    ("promtool", "prometheus"),
    ("openssl", "openssl"),
    ("curl", "curl"),
    ("ip", "iproute2"),
    ("python3", "python3"),
    ("unshare", "util-linux"),
    // The deployment tests: a real container runtime, images built without an engine, pod
    // networks, a workload image's userland, the CRI client's protobuf build, musl builds.
    ("containerd", "containerd"),
    ("runc", "runc"),
    ("umoci", "umoci"),
    ("/usr/lib/cni/ptp", "containernetworking-plugins"),
    ("/bin/busybox", "busybox-static"),
    ("protoc", "protobuf-compiler"),
    ("musl-gcc", "musl-tools"),
    ("update-ca-certificates", "ca-certificates"),
    ("systemd-analyze", "systemd"),
    ("logrotate", "logrotate"),
    // The admin dashboard's test loads `/ui` in a real headless browser and screenshots it.
    ("chromium", "chromium"),
    // The DNS-learning tests and bench resolve through a real DNS server (the binary only: no
    // service is started).
    ("dnsmasq", "dnsmasq-base"),
];

pub(crate) fn setup() -> anyhow::Result<BuildEnv> {
    println!("xtask setup: checking build and test dependencies");
    debian_packages()?;
    let toolchain = ebpf_toolchain()?;
    rust_src(&toolchain)?;
    bpf_linker()?;
    python_sdks()?;
    crate::deploy::tools()?;
    println!("xtask setup: done (eBPF toolchain {toolchain})");
    Ok(BuildEnv {
        vars: vec![("TOLLGATE_EBPF_TOOLCHAIN".into(), toolchain)],
    })
}

fn have(command: &str) -> bool {
    if command.starts_with('/') {
        return std::path::Path::new(command).exists();
    }
    output("sh", &["-c", &format!("command -v {command}")]).is_some()
}

fn debian_packages() -> anyhow::Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(cmd, _)| !have(cmd))
        .map(|(_, pkg)| *pkg)
        .collect();
    if missing.is_empty() {
        let names: Vec<&str> = PACKAGES.iter().map(|(_, pkg)| *pkg).collect();
        println!("  packages: {} present", names.join(", "));
        return Ok(());
    }
    if !have("apt-get") {
        bail!("missing {missing:?} and no apt-get: install them with your package manager");
    }
    println!("  packages: installing {missing:?} with apt-get");
    run("apt-get", &["update", "-q"])?;
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend(&missing);
    // Packages such as prometheus and redis-server start their daemon from postinst; the tests
    // start their own on loopback, so none is wanted. invoke-rc.d and deb-systemd-invoke ask
    // policy-rc.d first: exit 101 means "action forbidden" (Debian's invoke-rc.d(8)).
    let _no_daemons = NoDaemons::install()?;
    run("apt-get", &args).context("apt-get install (run as root)")
}

/// Where invoke-rc.d looks for the local policy.
const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

/// A `policy-rc.d` that forbids starting services, for the time of an install; one that was
/// already there is left alone.
struct NoDaemons(bool);

impl NoDaemons {
    fn install() -> anyhow::Result<NoDaemons> {
        use std::os::unix::fs::PermissionsExt as _;
        let path = std::path::Path::new(POLICY_RC_D);
        if path.exists() {
            return Ok(NoDaemons(false));
        }
        std::fs::write(
            path,
            "#!/bin/sh\n# cargo xtask setup: no daemon starts during the install\nexit 101\n",
        )
        .with_context(|| format!("writing {POLICY_RC_D}"))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
        Ok(NoDaemons(true))
    }
}

impl Drop for NoDaemons {
    fn drop(&mut self) {
        if self.0 {
            let _ = std::fs::remove_file(POLICY_RC_D);
        }
    }
}

fn llvm_major(toolchain: &str) -> Option<String> {
    let vv = output("rustup", &["run", toolchain, "rustc", "-vV"])?;
    let line = vv.lines().find(|l| l.starts_with("LLVM version:"))?;
    Some(
        line.trim_start_matches("LLVM version:")
            .trim()
            .split('.')
            .next()?
            .to_string(),
    )
}

fn ebpf_toolchain() -> anyhow::Result<String> {
    if !have("rustup") {
        bail!("rustup not found: the eBPF build needs a rustup-managed nightly");
    }
    for candidate in ["nightly", PINNED_NIGHTLY] {
        if llvm_major(candidate).as_deref() == Some(LLVM_MAJOR) {
            println!("  toolchain: {candidate} (LLVM {LLVM_MAJOR}) present");
            return Ok(candidate.to_string());
        }
    }
    println!("  toolchain: installing {PINNED_NIGHTLY} (no nightly with LLVM {LLVM_MAJOR} found)");
    run(
        "rustup",
        &[
            "toolchain",
            "install",
            PINNED_NIGHTLY,
            "--profile",
            "minimal",
            "--component",
            "rust-src",
        ],
    )?;
    Ok(PINNED_NIGHTLY.to_string())
}

fn rust_src(toolchain: &str) -> anyhow::Result<()> {
    let installed = output(
        "rustup",
        &["component", "list", "--toolchain", toolchain, "--installed"],
    )
    .unwrap_or_default();
    if installed.lines().any(|l| l.starts_with("rust-src")) {
        println!("  rust-src: present for {toolchain}");
        return Ok(());
    }
    println!("  rust-src: adding to {toolchain}");
    run("rustup", &["component", "add", "rust-src", "--toolchain", toolchain])
}

fn bpf_linker() -> anyhow::Result<()> {
    if let Some(v) = output("bpf-linker", &["--version"]) {
        if v.starts_with(BPF_LINKER_VERSION_PREFIX) {
            println!("  bpf-linker: {v} present");
            return Ok(());
        }
        println!("  bpf-linker: {v} found, but {BPF_LINKER} is needed (LLVM {LLVM_MAJOR})");
    }
    println!("  bpf-linker: cargo install --locked {BPF_LINKER} (about two minutes)");
    run("cargo", &["install", "--locked", BPF_LINKER])
}

fn python_sdks() -> anyhow::Result<()> {
    let venv = crate::util::workspace().join("target/pyvenv");
    let python = venv.join("bin/python");
    let py = python.to_string_lossy().to_string();
    let check = "import importlib.metadata as m, sys; sys.exit(0 if [m.version(p) for p in ('openai','anthropic','jsonschema','mcp')] == sys.argv[1:] else 1)";
    let wanted: Vec<&str> = PYTHON_SDKS.iter().map(|p| p.split("==").nth(1).unwrap_or("")).collect();
    let mut args = vec!["-c", check];
    args.extend(&wanted);
    if python.exists() && output(&py, &args).is_some() {
        println!(
            "  python SDKs: {} present in {}",
            PYTHON_SDKS.join(", "),
            venv.display()
        );
        return Ok(());
    }
    if !python.exists() {
        if output("python3", &["-c", "import venv, ensurepip"]).is_none() {
            println!("  python SDKs: installing python3-venv with apt-get");
            run(
                "apt-get",
                &["install", "-y", "-q", "--no-install-recommends", "python3-venv"],
            )?;
        }
        println!("  python SDKs: creating {}", venv.display());
        run("python3", &["-m", "venv", &venv.to_string_lossy()])?;
    }
    println!("  python SDKs: pip install {}", PYTHON_SDKS.join(" "));
    crate::util::pip_install(&PYTHON_SDKS)
}
