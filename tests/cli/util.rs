//! Helpers shared by the end-to-end tests that know this binary: running it, its samples, and
//! a sandbox process of it. The generic ones (temporary folders, stand-in servers, showing an
//! output) are in `voyc-testkit`.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
pub use voyc_testkit::{Dir, SandboxProcess, show};

/// The binary under test, run in `cwd`.
pub fn voyc(cwd: &Path) -> Command {
    let mut cmd = Command::cargo_bin("voyc-import").expect("the voyc-import binary");
    cmd.current_dir(cwd);
    cmd.env_remove("VOYC_TOKEN")
        .env_remove("VOYC_ORG_ID")
        .env_remove("VOYC_BASE_URL")
        .env_remove("VOYC_STATE_DIR");
    cmd
}

/// The folder holding the committed samples.
pub fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("samples")
}

/// `voyc-import sandbox --listen 127.0.0.1:0 ARGS`, stopped with SIGTERM when dropped.
pub fn sandbox_process(args: &[&str]) -> SandboxProcess {
    SandboxProcess::start(Path::new(env!("CARGO_BIN_EXE_voyc-import")), args)
}
