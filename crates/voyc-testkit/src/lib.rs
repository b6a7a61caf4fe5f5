//! What the tests of voyc-import share that knows nothing of voyc-import itself: scripted HTTP
//! servers on 127.0.0.1 (async for the unit tests, threaded for the end-to-end ones), temporary
//! folders, and a sandbox process stopped as a user would stop it. A dev-dependency only.

pub mod scripted;
pub mod threaded;

use std::path::{Path, PathBuf};
use std::process::Output;

/// A temporary folder for one test, removed when dropped.
pub struct Dir {
    tmp: tempfile::TempDir,
}

impl Default for Dir {
    fn default() -> Dir {
        Dir::new()
    }
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

/// Prints a command's whole output: used in assertion messages so a failure shows it.
pub fn show(out: &Output) -> String {
    format!(
        "status: {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A `voyc-import sandbox` process on a free port. Dropping it stops it as a user would, with
/// SIGTERM, so that it removes its upload folder; SIGKILL only if it has not exited in 5 s.
pub struct SandboxProcess {
    child: std::process::Child,
    stderr: Option<std::thread::JoinHandle<String>>,
    pub url: String,
}

impl SandboxProcess {
    /// Starts `BIN sandbox --listen 127.0.0.1:0 ARGS` (`BIN` is voyc-import) and reads its URL
    /// from stdout.
    pub fn start(bin: &Path, args: &[&str]) -> SandboxProcess {
        use std::io::{BufRead, BufReader, Read};
        use std::process::Stdio;
        let mut child = std::process::Command::new(bin)
            .args(["sandbox", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start voyc-import sandbox");
        // Both pipes are drained for the sandbox's whole life, so it never blocks writing.
        let mut err = child.stderr.take().expect("stderr");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text);
            text
        });
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut first = String::new();
        let _ = stdout.read_line(&mut first);
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        let mut process = SandboxProcess {
            child,
            stderr: Some(stderr),
            url: first.trim_end().to_string(),
        };
        if !first.starts_with("http://127.0.0.1:") {
            let (_, err) = process.stop("-KILL");
            panic!("the sandbox's first line is not its URL: {first:?}\nstderr: {err}");
        }
        process
    }

    /// Sends `signal` (`-INT`, `-TERM`, `-KILL`) and waits for the sandbox to exit (SIGKILL
    /// after 5 s); returns its exit code (None if a signal ended it) and everything on stderr.
    pub fn stop(&mut self, signal: &str) -> (Option<i32>, String) {
        let exited = |child: &mut std::process::Child| child.try_wait().ok().flatten();
        if exited(&mut self.child).is_none() {
            let _ = std::process::Command::new("kill")
                .args([signal, &self.child.id().to_string()])
                .status();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while exited(&mut self.child).is_none() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            let _ = self.child.kill();
        }
        let code = self.child.wait().ok().and_then(|status| status.code());
        let err = self
            .stderr
            .take()
            .and_then(|thread| thread.join().ok())
            .unwrap_or_default();
        (code, err)
    }
}

impl Drop for SandboxProcess {
    fn drop(&mut self) {
        self.stop("-TERM");
    }
}
