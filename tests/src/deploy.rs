//! The deployment artifacts under test: the Helm chart rendered by the real helm, checked by
//! kubernetes-validate, and the image and package `cargo xtask test` builds before the suite
//! (`cargo xtask image`, `cargo xtask deb`).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;

use crate::{note_skip, workspace, TempDir};

fn target() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
}

/// The chart's directory.
pub fn chart_dir() -> PathBuf {
    workspace().join("deploy/helm/tollgate")
}

/// An artifact or tool `cargo xtask setup`/`test` puts under `target/`. `None` (a recorded
/// skip) when it is missing outside CI; under CI a missing one fails the test.
pub fn artifact(test: &str, relative: &str, made_by: &str) -> Option<PathBuf> {
    let path = target().join(relative);
    if path.exists() {
        return Some(path);
    }
    let why = format!("{} not found: run `{made_by}`", path.display());
    if std::env::var_os("CI").is_some() || std::env::var_os("TOLLGATE_REQUIRE_PRIVILEGED").is_some() {
        panic!("{test}: {why}");
    }
    eprintln!("SKIPPING {test}: {why}");
    note_skip(test, &why);
    None
}

/// The real helm (`target/tools/helm`, from `cargo xtask setup`).
pub fn helm(test: &str) -> Option<PathBuf> {
    artifact(test, "tools/helm", "cargo xtask setup")
}

/// The chart with `values` (YAML) rendered by `helm`: every object, as JSON values; or helm's
/// error text.
pub fn render(helm: &Path, values: &str) -> Result<Vec<Value>, String> {
    let dir = TempDir::new("helm-values");
    let file = dir.path("values.yaml");
    std::fs::write(&file, values).unwrap();
    let out = Command::new(helm)
        .args(["template", "tg", "--namespace", "tollgate", "-f"])
        .arg(&file)
        .arg(chart_dir())
        .output()
        .expect("run helm");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(documents(&String::from_utf8_lossy(&out.stdout)))
}

/// The objects of a multi-document YAML text.
pub fn documents(text: &str) -> Vec<Value> {
    use serde::Deserialize as _;
    serde_yaml_ng::Deserializer::from_str(text)
        .filter_map(|doc| {
            let v = Value::deserialize(doc).expect("helm printed valid YAML");
            (!v.is_null()).then_some(v)
        })
        .collect()
}

/// The object of `kind` (and `name`, when given) among `objects`.
pub fn object<'a>(objects: &'a [Value], kind: &str, name: Option<&str>) -> Option<&'a Value> {
    objects
        .iter()
        .find(|o| o["kind"] == kind && name.is_none_or(|n| o["metadata"]["name"] == n))
}

/// `kubernetes-validate --strict` against the Kubernetes 1.37 schemas: `Err` with its output
/// when an object fails.
pub fn kubernetes_validate(objects: &[Value]) -> Result<(), String> {
    let validate = target().join("pyvenv/bin/kubernetes-validate");
    assert!(validate.exists(), "{}: run `cargo xtask setup`", validate.display());
    let dir = TempDir::new("kubernetes-validate");
    let file = dir.path("objects.yaml");
    let text: Vec<String> = objects.iter().map(|o| serde_yaml_ng::to_string(o).unwrap()).collect();
    std::fs::write(&file, text.join("---\n")).unwrap();
    let out = Command::new(validate)
        .args(["-k", "1.37.0", "--strict", "--no-warn"])
        .arg(&file)
        .output()
        .expect("run kubernetes-validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && !text.contains("ERROR") {
        Ok(())
    } else {
        Err(text)
    }
}
