//! Small helpers shared by the tasks.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _};

/// Environment that every cargo invocation of a task gets (e.g. the eBPF toolchain).
#[derive(Clone, Debug, Default)]
pub(crate) struct BuildEnv {
    pub(crate) vars: Vec<(String, String)>,
}

pub(crate) fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Runs `cargo ARGS` in the workspace, streaming its output.
pub(crate) fn cargo(env: &BuildEnv, args: &[&str]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(args).current_dir(workspace());
    for (k, v) in &env.vars {
        cmd.env(k, v);
    }
    let status = cmd.status().context("running cargo")?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Runs `cargo test ARGS`, echoing its output, then prints one summary line over every test
/// binary (`tests: N passed, N failed, N skipped`): cargo's own last line is that of the
/// last binary, often one with no tests at all.
pub(crate) fn cargo_test(env: &BuildEnv, args: &[&str]) -> anyhow::Result<()> {
    use std::io::BufRead as _;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(args).current_dir(workspace()).stdout(Stdio::piped());
    for (k, v) in &env.vars {
        cmd.env(k, v);
    }
    // Tests that skip (no root, no cgroup2) write why here; the summary counts them.
    let skip_log = workspace().join("target/skipped-tests.txt");
    let _ = std::fs::remove_file(&skip_log);
    cmd.env("TOLLGATE_SKIP_LOG", &skip_log);
    let mut child = cmd.spawn().context("running cargo test")?;
    let (mut passed, mut failed, mut ignored) = (0u64, 0u64, 0u64);
    for line in std::io::BufReader::new(child.stdout.take().context("stdout")?).lines() {
        let line = line?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            let count = |word: &str| -> u64 {
                rest.split(';')
                    .find_map(|part| part.trim().strip_suffix(word)?.trim().rsplit(' ').next()?.parse().ok())
                    .unwrap_or(0)
            };
            passed += count("passed");
            failed += count("failed");
            ignored += count("ignored");
        }
    }
    let status = child.wait()?;
    let skipped: Vec<String> = std::fs::read_to_string(&skip_log)
        .unwrap_or_default()
        .lines()
        .map(|l| l.replace('\t', ": "))
        .collect();
    for s in &skipped {
        println!("skipped {s}");
    }
    // A skipped test returned early and counted as passed: take it out of the passes.
    let passed = passed.saturating_sub(skipped.len() as u64);
    println!(
        "tests: {passed} passed, {failed} failed, {} skipped",
        ignored + skipped.len() as u64
    );
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    if !skipped.is_empty() && std::env::var_os("CI").is_some() {
        bail!(
            "{} tests skipped under CI=true: every test must run in CI",
            skipped.len()
        );
    }
    Ok(())
}

/// Runs a command, returning trimmed stdout when it succeeds.
pub(crate) fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).stderr(Stdio::null()).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The project's virtualenv Python (`target/pyvenv`, made by `cargo xtask setup`).
pub(crate) fn venv_python() -> String {
    workspace()
        .join("target/pyvenv/bin/python")
        .to_string_lossy()
        .into_owned()
}

/// `pip install` into the project's virtualenv.
pub(crate) fn pip_install(packages: &[&str]) -> anyhow::Result<()> {
    let mut args = vec!["-m", "pip", "install", "-q", "--disable-pip-version-check"];
    args.extend(packages);
    run(&venv_python(), &args)
}

/// Runs a command, failing with its name when it fails.
pub(crate) fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new(program)
        .args(args)
        .status()
        .with_context(|| format!("running {program}"))?;
    if !status.success() {
        bail!("{program} {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// The cgroup2 mount point.
pub(crate) fn cgroup2_root() -> anyhow::Result<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/mounts")?;
    mounts
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && f[2] == "cgroup2").then(|| PathBuf::from(f[1]))
        })
        .context("no cgroup2 mount in /proc/mounts")
}

/// A child cgroup removed on drop.
pub(crate) struct Cgroup(pub(crate) PathBuf);

impl Cgroup {
    pub(crate) fn create(name: &str) -> anyhow::Result<Cgroup> {
        let path = cgroup2_root()?.join(name);
        if path.exists() {
            let _ = std::fs::write(path.join("cgroup.kill"), "1");
            let _ = std::fs::remove_dir(&path);
        }
        std::fs::create_dir(&path).with_context(|| format!("mkdir {}", path.display()))?;
        Ok(Cgroup(path))
    }

    /// `sh -c` wrapper that joins the cgroup, then execs `program`.
    pub(crate) fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg("echo $$ > \"$0\"/cgroup.procs && exec \"$@\"")
            .arg(&self.0)
            .arg(program);
        cmd
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::write(self.0.join("cgroup.kill"), "1");
        for _ in 0..50 {
            if std::fs::remove_dir(&self.0).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// A child process stopped with SIGTERM (then waited for) on drop.
pub(crate) struct Daemon(pub(crate) std::process::Child);

impl Daemon {
    pub(crate) fn stop(&mut self) {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let _ = self.0.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            self.stop();
        }
    }
}

/// Starts `tollgate run` and waits for its ready file; returns the daemon and the ready JSON.
pub(crate) fn start_tollgate(
    bin: &Path,
    config: &Path,
    ready: &Path,
    log: &Path,
) -> anyhow::Result<(Daemon, serde_json::Value)> {
    let _ = std::fs::remove_file(ready);
    let logf = std::fs::File::create(log)?;
    let child = Command::new(bin)
        .args(["run", "--config"])
        .arg(config)
        .arg("--ready-file")
        .arg(ready)
        .stdout(logf.try_clone()?)
        .stderr(logf)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let mut daemon = Daemon(child);
    let start = std::time::Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(ready) {
            if let Ok(v) = serde_json::from_str(&text) {
                return Ok((daemon, v));
            }
        }
        if let Ok(Some(status)) = daemon.0.try_wait() {
            bail!(
                "tollgate exited ({status}):\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        if start.elapsed().as_secs() > 30 {
            daemon.stop();
            bail!(
                "tollgate not ready after 30s:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
