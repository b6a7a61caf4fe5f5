//! `--state-dir DIR`: one journal per destination in a folder of its own, so that runs on any
//! manifest (a nightly export, a re-export, a backfill) share what was uploaded, without a
//! hand-made `--journal`. The file's name says whose journal it is (`ls DIR` explains itself):
//! the API's host (and port), the organisation, and a short hash of the whole destination, which
//! tells two base URLs on one host apart.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

use crate::journal::Destination;

/// The journal of `destination` in `dir`: `api.app.voyc.ai-org-118-1f3c2b9a.journal`.
pub fn journal_in(dir: &Path, destination: &Destination) -> PathBuf {
    dir.join(file_name(destination))
}

fn file_name(destination: &Destination) -> String {
    let host = reqwest::Url::parse(&destination.base_url)
        .ok()
        .and_then(|url| {
            let host = url.host_str()?.trim_matches(['[', ']']).to_string();
            Some(match url.port() {
                Some(port) => format!("{host}_{port}"),
                None => host,
            })
        })
        .unwrap_or_else(|| "voyc".to_string());
    let hash = hex::encode(&Sha256::digest(destination.label.as_bytes())[..4]);
    format!(
        "{}-org-{}-{hash}.journal",
        plain(&host),
        plain(&destination.organisation)
    )
}

/// Only what every file system takes in a name: letters, digits, `.`, `-` and `_`.
fn plain(text: &str) -> String {
    text.chars()
        .map(
            |c| match c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                true => c,
                false => '_',
            },
        )
        .collect()
}

/// Creates the folder if missing, readable by its owner only (mode 0700 on Unix: its journals
/// hold presigned upload targets); an existing folder is left as it is.
pub fn create(dir: &Path) -> anyhow::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if dir.exists() {
        bail!(
            "--state-dir {} is not a folder; give a folder (it is created if missing)",
            dir.display()
        );
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .with_context(|| format!("cannot create the --state-dir {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journal_is_named_after_its_host_and_organisation() {
        let name = |url: &str, org: &str| file_name(&Destination::voyc(url, org));
        let voyc = name("https://api.app.voyc.ai/", "118");
        assert!(voyc.starts_with("api.app.voyc.ai-org-118-"), "{voyc}");
        assert!(voyc.ends_with(".journal"), "{voyc}");
        assert_eq!(voyc.len(), "api.app.voyc.ai-org-118-".len() + 8 + 8);
        assert_eq!(
            voyc,
            name("https://api.app.voyc.ai", "118"),
            "one destination"
        );
        assert_ne!(voyc, name("https://api.app.voyc.ai", "119"));
        assert!(name("http://127.0.0.1:8787", "1").starts_with("127.0.0.1_8787-org-1-"));
        assert!(name("http://[::1]:9/", "1").starts_with("__1_9-org-1-"));
        // Two APIs on one host differ by their hash.
        let (a, b) = (
            name("https://eu.example.com/a", "1"),
            name("https://eu.example.com/b", "1"),
        );
        assert_ne!(a, b);
        assert_eq!(a[..a.len() - 17], b[..b.len() - 17]);
    }

    #[test]
    fn the_folder_is_created_private_and_a_file_in_its_place_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("a/state");
        create(&state).unwrap();
        assert!(state.is_dir());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&state).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        create(&state).unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        let err = create(&file).unwrap_err().to_string();
        assert!(err.contains("is not a folder"), "{err}");
    }
}
