//! Helpers shared by the end-to-end tests: temporary folders and running the binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;

/// A temporary folder for one test, removed when dropped.
pub struct Dir {
    tmp: tempfile::TempDir,
}

impl Dir {
    pub fn new() -> Dir {
        Dir {
            tmp: tempfile::Builder::new()
                .prefix("voyc-test-")
                .tempdir()
                .expect("create a temporary folder"),
        }
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// Writes a file (creating folders), returning its path.
    pub fn write(&self, name: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create folders");
        }
        std::fs::write(&path, contents).expect("write a file");
        path
    }
}

/// The binary under test, run in `cwd`.
pub fn voyc(cwd: &Path) -> Command {
    let mut cmd = Command::cargo_bin("voyc-import").expect("the voyc-import binary");
    cmd.current_dir(cwd);
    cmd.env_remove("VOYC_TOKEN")
        .env_remove("VOYC_ORG_ID")
        .env_remove("VOYC_BASE_URL");
    cmd
}

/// The folder holding the committed samples.
pub fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("samples")
}

/// Prints a command's whole output: used in assertion messages so a failure shows it.
pub fn show(out: &Output) -> String {
    format!(
        "status: {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
