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
