//! Fails early with a hint when bpf-linker is missing, and rebuilds when it changes.
use which::which;

fn main() {
    let bpf_linker = which("bpf-linker")
        .expect("bpf-linker not found on PATH: run `cargo xtask setup` (installs bpf-linker 0.10.4)");
    println!("cargo:rerun-if-changed={}", bpf_linker.display());
}
