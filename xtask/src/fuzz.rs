//! `cargo xtask fuzz`: builds the cargo-fuzz targets of `fuzz/` (docs/fuzzing.md), runs each
//! for a while from its seed corpus, then replays the checked-in crash inputs of
//! `fuzz/regressions/<target>/`. Fails when any run fails, naming the target and the input.
//!
//! The checked-in corpus (`fuzz/corpus/<target>`) is only read: libFuzzer writes the inputs it
//! finds into the first corpus directory it is given, which is `fuzz/target/corpus/<target>`
//! (ignored by git, kept between local runs so they build on each other, fresh in CI).

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::{Command, ExitStatus},
};

use anyhow::{bail, Context as _};

use crate::util;

/// Every target in `fuzz/Cargo.toml`, with its libFuzzer dictionary (in `fuzz/dict/`), if any.
const TARGETS: [(&str, Option<&str>); 10] = [
    ("client_hello", None),
    ("request_body", Some("json.dict")),
    ("sse", None),
    ("eventstream", None),
    ("usage_meter", Some("json.dict")),
    ("translate_request", Some("json.dict")),
    ("translate_answer", Some("json.dict")),
    ("config", None),
    ("multipart", None),
    ("mcp", Some("json.dict")),
];

/// The toolchain cargo-fuzz needs (`-Zsanitizer`).
const TOOLCHAIN: &str = "+nightly";
/// An input slower than this counts as a failure (a hang), not a slow pass.
const TIMEOUT_SECONDS: u64 = 20;

/// How the targets are built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Optimised, with AddressSanitizer (`cargo xtask fuzz`): many inputs a second.
    Thorough,
    /// Unoptimised, no sanitizer (`cargo xtask test`): a cold build about half as long, and
    /// still every panic and overflow check (the gateway has no unsafe code to sanitise but a
    /// few syscall wrappers).
    Quick,
}

impl Mode {
    /// The cargo-fuzz options of this mode, for `build` and `run` alike.
    fn args(self) -> &'static [&'static str] {
        match self {
            Mode::Thorough => &[],
            Mode::Quick => &["--dev", "--sanitizer", "none"],
        }
    }
}

/// Fuzzes each target for `seconds_per_target` (0: only runs the seeds once), then replays
/// the regressions.
pub(crate) fn fuzz(seconds_per_target: u64, mode: Mode) -> anyhow::Result<()> {
    let root = util::workspace();
    let dir = root.join("fuzz");
    install_cargo_fuzz()?;
    check_targets(&root)?;
    let env = ebpf_object_env(&root)?;
    let started = std::time::Instant::now();
    // One build for every target (the runs below then find them fresh).
    let status = cargo_fuzz(&root, &env, mode, &["build".to_string()])?;
    if !status.success() {
        bail!("cargo {TOOLCHAIN} fuzz build failed ({status})");
    }
    println!("fuzz: built in {:.0?}", started.elapsed());

    let mut failures = Vec::new();
    let limits = ["-rss_limit_mb=2048".to_string(), format!("-timeout={TIMEOUT_SECONDS}")];
    for (target, dict) in TARGETS {
        let seeds = dir.join("corpus").join(target);
        let grown = dir.join("target/corpus").join(target);
        std::fs::create_dir_all(&grown).with_context(|| format!("mkdir {}", grown.display()))?;
        let mut args = vec![
            "run".to_string(),
            target.to_string(),
            grown.display().to_string(),
            seeds.display().to_string(),
            "--".to_string(),
        ];
        args.extend(limits.iter().cloned());
        if let Some(dict) = dict {
            args.push(format!("-dict={}", dir.join("dict").join(dict).display()));
        }
        if seconds_per_target == 0 {
            args.push("-runs=0".into()); // read and run the corpus once, nothing more
        } else {
            args.push(format!("-max_total_time={seconds_per_target}"));
        }
        let before = artifacts(&dir, target);
        let status = cargo_fuzz(&root, &env, mode, &args)?;
        if !status.success() {
            let found: Vec<String> = artifacts(&dir, target)
                .difference(&before)
                .map(|p| p.display().to_string())
                .collect();
            let inputs = if found.is_empty() {
                "no crashing input written (see the output above)".to_string()
            } else {
                found.join(", ")
            };
            failures.push(format!(
                "{target}: fuzzing failed ({status}): {inputs}\n  minimize with `cargo {TOOLCHAIN} fuzz tmin {target} <input>`, \
                 then keep it in fuzz/regressions/{target}/"
            ));
        }
    }

    // Each checked-in crash input, run once: it fails until the bug is fixed. One run per
    // target; when it fails, one per input to name the failing ones (libFuzzer stops at the
    // first crash).
    for (target, _) in TARGETS {
        let inputs = files(&dir.join("regressions").join(target));
        if inputs.is_empty() {
            continue;
        }
        let replay = |inputs: &[PathBuf]| -> anyhow::Result<ExitStatus> {
            let mut args = vec!["run".to_string(), target.to_string()];
            args.extend(inputs.iter().map(|p| p.display().to_string()));
            args.push("--".into());
            args.extend(limits.iter().cloned());
            cargo_fuzz(&root, &env, mode, &args)
        };
        if replay(&inputs)?.success() {
            continue;
        }
        for input in &inputs {
            let status = replay(std::slice::from_ref(input))?;
            if !status.success() {
                failures.push(format!("{target}: regression {} fails ({status})", input.display()));
            }
        }
    }

    println!("fuzz: {} targets in {:.0?}", TARGETS.len(), started.elapsed());
    if !failures.is_empty() {
        for f in &failures {
            eprintln!("fuzz: {f}");
        }
        bail!("{} fuzz run(s) failed", failures.len());
    }
    Ok(())
}

/// A target added to `fuzz/Cargo.toml` but not to [`TARGETS`] would never run: refuse.
fn check_targets(root: &Path) -> anyhow::Result<()> {
    let out = Command::new("cargo")
        .args([TOOLCHAIN, "fuzz", "list"])
        .current_dir(root)
        .output()
        .context("running cargo fuzz list")?;
    if !out.status.success() {
        bail!(
            "cargo {TOOLCHAIN} fuzz list failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let listed = String::from_utf8_lossy(&out.stdout);
    let missing: Vec<&str> = listed
        .split_whitespace()
        .filter(|t| !TARGETS.iter().any(|(name, _)| name == t))
        .collect();
    if !missing.is_empty() {
        bail!(
            "fuzz targets missing from TARGETS in xtask/src/fuzz.rs: {}",
            missing.join(", ")
        );
    }
    Ok(())
}

fn install_cargo_fuzz() -> anyhow::Result<()> {
    if util::output("cargo", &[TOOLCHAIN, "fuzz", "--version"]).is_some() {
        return Ok(());
    }
    util::run("cargo", &["install", "--locked", "cargo-fuzz"])
}

/// `TOLLGATE_EBPF_OBJECT` for the fuzz build: gateway/build.rs then copies an eBPF object
/// already built by the main workspace instead of building its own under the fuzz build's
/// sanitizer flags. The newest such object is copied to a fixed path (only when its bytes
/// changed), so the variable, and with it the gateway build, stay the same from run to run.
/// None built yet (or the variable already set): the build does what the environment says.
fn ebpf_object_env(root: &Path) -> anyhow::Result<Vec<(String, String)>> {
    const VAR: &str = "TOLLGATE_EBPF_OBJECT";
    if std::env::var_os(VAR).is_some() {
        return Ok(Vec::new());
    }
    let newest = std::fs::read_dir(root.join("target/debug/build"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("gateway-"))
        .map(|e| e.path().join("out/tollgate"))
        .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p)))
        .max();
    let Some((_, object)) = newest else {
        println!("fuzz: no eBPF object under target/debug/build/gateway-*/out: the fuzz build builds one");
        return Ok(Vec::new());
    };
    let fixed = root.join("fuzz/target/tollgate-ebpf.o");
    let bytes = std::fs::read(&object).with_context(|| format!("reading {}", object.display()))?;
    if std::fs::read(&fixed).ok().as_deref() != Some(&bytes[..]) {
        std::fs::create_dir_all(root.join("fuzz/target"))?;
        std::fs::write(&fixed, &bytes).with_context(|| format!("writing {}", fixed.display()))?;
    }
    Ok(vec![(VAR.to_string(), fixed.display().to_string())])
}

/// `cargo +nightly fuzz ARGS` in the workspace (cargo-fuzz finds `fuzz/` there). The rustup
/// proxy `cargo` is run, not `$CARGO`: only the proxy understands `+nightly`.
fn cargo_fuzz(root: &Path, env: &[(String, String)], mode: Mode, args: &[String]) -> anyhow::Result<ExitStatus> {
    let (command, rest) = args.split_first().context("a cargo fuzz subcommand")?;
    println!(
        "fuzz: cargo {TOOLCHAIN} fuzz {command} {} {}",
        mode.args().join(" "),
        rest.join(" ")
    );
    Command::new("cargo")
        .arg(TOOLCHAIN)
        .arg("fuzz")
        .arg(command)
        .args(mode.args())
        .args(rest)
        .current_dir(root)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .status()
        .context("running cargo fuzz")
}

/// Crash, timeout and out-of-memory inputs libFuzzer has written for `target`.
fn artifacts(dir: &Path, target: &str) -> BTreeSet<PathBuf> {
    files(&dir.join("artifacts").join(target)).into_iter().collect()
}

/// The files in `dir` but dotfiles, sorted (none when it does not exist).
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}
