//! Helpers shared by the end-to-end tests that know this binary: running it, its samples, and
//! a sandbox process of it. The generic ones (temporary folders, stand-in servers, showing an
//! output) are in `voyc-testkit`.

use std::path::{Path, PathBuf};
use std::process::Output;

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

/// `upload`'s stderr without the timestamp that starts each of its lines when stderr is not a
/// terminal (`2026-12-03T11:52:07Z `), for tests about what the lines say; tests/cli/logs.rs
/// checks the timestamps themselves.
pub fn untimed(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr)
        .split_inclusive('\n')
        .map(|line| match timestamp_of(line) {
            Some(stamp) => &line[stamp.len() + 1..],
            None => line,
        })
        .collect()
}

/// The RFC 3339 UTC timestamp to the second that starts `line`, followed by a space.
pub fn timestamp_of(line: &str) -> Option<&str> {
    let stamp = line.get(..20)?;
    let shape = stamp.bytes().enumerate().all(|(i, b)| match i {
        4 | 7 => b == b'-',
        10 => b == b'T',
        13 | 16 => b == b':',
        19 => b == b'Z',
        _ => b.is_ascii_digit(),
    });
    (shape && line[20..].starts_with(' ')).then_some(stamp)
}
