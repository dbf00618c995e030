//! Builds `gateway-ebpf` for `bpfel-unknown-none` with aya-build and leaves the object in
//! `OUT_DIR`, where `src/ebpf/mod.rs` embeds it.
//!
//! Escape hatch: with `TOLLGATE_EBPF_OBJECT=/path/to/object` the build copies that object
//! instead of building one (for lanes without nightly rust-src or bpf-linker). Nothing is
//! skipped silently: without either, the build fails with a hint.
use std::{env, fs, path::PathBuf};

use anyhow::{anyhow, Context as _};
use aya_build::Toolchain;

const ENV_EBPF_OBJECT: &str = "TOLLGATE_EBPF_OBJECT";
const ENV_EBPF_TOOLCHAIN: &str = "TOLLGATE_EBPF_TOOLCHAIN";
/// The nightly whose LLVM (22) bpf-linker 0.10.4 reads.
const DEFAULT_EBPF_TOOLCHAIN: &str = "nightly";

fn main() -> anyhow::Result<()> {
    revision();
    println!("cargo:rerun-if-env-changed={ENV_EBPF_OBJECT}");
    println!("cargo:rerun-if-env-changed={ENV_EBPF_TOOLCHAIN}");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    if let Some(object) = env::var_os(ENV_EBPF_OBJECT) {
        let object = PathBuf::from(object);
        println!("cargo:rerun-if-changed={}", object.display());
        fs::copy(&object, out_dir.join("tollgate"))
            .with_context(|| format!("{ENV_EBPF_OBJECT}={}: cannot copy", object.display()))?;
        return Ok(());
    }
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let package = metadata
        .packages
        .into_iter()
        .find(|p| p.name == "gateway-ebpf")
        .ok_or_else(|| anyhow!("gateway-ebpf package not found in the workspace"))?;
    let root_dir = package
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("gateway-ebpf manifest has no parent"))?
        .to_string();
    let package = aya_build::Package {
        name: "gateway-ebpf",
        root_dir: &root_dir,
        ..Default::default()
    };
    let toolchain = env::var(ENV_EBPF_TOOLCHAIN).unwrap_or_else(|_| DEFAULT_EBPF_TOOLCHAIN.into());
    let toolchain = if toolchain == "nightly" {
        Toolchain::Nightly
    } else {
        Toolchain::Custom(Box::leak(toolchain.into_boxed_str()))
    };
    aya_build::build_ebpf([package], toolchain)
        .context("building the eBPF programs failed: run `cargo xtask setup` first")
}

/// `TOLLGATE_REVISION` for the binary (the audit record's `gateway.build`): the source's git
/// commit, or `TOLLGATE_REVISION` from the environment (a build outside a git checkout), or
/// `unknown`. Rebuilt when HEAD moves.
fn revision() {
    println!("cargo:rerun-if-env-changed=TOLLGATE_REVISION");
    let rev = env::var("TOLLGATE_REVISION").ok().or_else(|| {
        let git = |args: &[&str]| {
            std::process::Command::new("git")
                .args(args)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        };
        let git_dir = git(&["rev-parse", "--absolute-git-dir"])?;
        // Only paths that exist: a missing one would rerun this script on every build.
        let head_ref = git(&["symbolic-ref", "-q", "HEAD"]);
        let watched = ["HEAD".to_string(), "packed-refs".to_string()]
            .into_iter()
            .chain(head_ref);
        for path in watched.map(|p| PathBuf::from(&git_dir).join(p)).filter(|p| p.exists()) {
            println!("cargo:rerun-if-changed={}", path.display());
        }
        git(&["rev-parse", "--short=12", "HEAD"])
    });
    println!(
        "cargo:rustc-env=TOLLGATE_REVISION={}",
        rev.unwrap_or_else(|| "unknown".into())
    );
}
