//! The project's virtualenv (moto, cargo-lambda, the AWS CLI), created on
//! first use, and the environment its tools run in.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;

/// The project's virtualenv (override with `MWAA_STOP_VENV`).
pub fn venv() -> PathBuf {
    std::env::var_os("MWAA_STOP_VENV").map(PathBuf::from).unwrap_or_else(|| project_dir().join(".venv"))
}

/// A tool of the virtualenv. Plain `cargo test` on a fresh clone creates the
/// project's virtualenv itself (`make venv`, under a file lock so test
/// processes run side by side install it once); an `MWAA_STOP_VENV` given by
/// the caller is used as it is.
pub fn venv_bin(name: &str) -> PathBuf {
    let path = venv().join("bin").join(name);
    if std::env::var_os("MWAA_STOP_VENV").is_none() {
        ensure_venv(&venv(), "venv");
    }
    assert!(
        path.exists(),
        "{} is missing: run `make venv` (or `make test`, which does) to install the local AWS stand-ins",
        path.display()
    );
    path
}

/// The Python of `.venv-airflow`, Apache Airflow with its Amazon provider
/// (mk/airflow.mk), created with `make airflow-venv` on first use as
/// [`venv_bin`] creates the project's.
pub fn airflow_python() -> PathBuf {
    let dir = project_dir().join(".venv-airflow");
    ensure_venv(&dir, "airflow-venv");
    dir.join("bin/python")
}

/// `make <target>` creates the virtualenv `dir` unless its stamp is there:
/// the make targets touch `.installed` only after every package is installed
/// (its `python` exists long before that). Under a file lock, so test
/// processes run side by side install it once.
fn ensure_venv(dir: &Path, target: &str) {
    static ONCE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let installed = || dir.join(".installed").exists();
    if installed() {
        return;
    }
    let _in_process = ONCE.lock().unwrap_or_else(|e| e.into_inner());
    std::fs::create_dir_all(project_dir().join("target")).expect("create target/");
    let lock = std::fs::File::create(project_dir().join(format!("target/.{target}-install.lock")))
        .expect("create the virtualenv's lock");
    lock.lock().expect("lock the virtualenv's install");
    if installed() {
        return; // another thread or test process finished it while this one waited
    }
    eprintln!("creating {} with `make {target}` (first time only)", dir.display());
    let status = Command::new("make")
        .args(["--no-print-directory", target])
        .current_dir(project_dir())
        .status()
        .expect("run make (GNU make is needed to create the test tools' virtualenvs)");
    assert!(status.success(), "`make {target}` failed: see its message above");
}

/// `cmd` with the environment of a developer's shell rather than of a test
/// process. `cargo test` hands its tests the package's build-time variables
/// (`CARGO_MANIFEST_DIR`, `CARGO_PKG_*`, ...). A `cargo build` started under
/// them (by `cargo lambda watch`) sees the build scripts that track those
/// variables (ring's, rustls') as changed and rebuilds most of the dependency
/// tree again, in every test binary that starts it: minutes of CPU on a
/// clean run, for a build that is not the one a user gets.
pub fn as_from_a_shell(cmd: &mut Command) -> &mut Command {
    const SET_BY_CARGO_FOR_A_RUN: [&str; 8] = [
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_CRATE_NAME",
        "CARGO_BIN_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "CARGO_RUSTC_CURRENT_DIR",
        "OUT_DIR",
    ];
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if SET_BY_CARGO_FOR_A_RUN.contains(&name)
            || name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_BIN_EXE_")
            || name.starts_with("CARGO_CFG_")
        {
            cmd.env_remove(name);
        }
    }
    cmd
}
