//! What is generated from the command line's definitions: shell completions and man pages.

use crate::util::{Dir, show, voyc};

#[test]
fn completions_for_each_shell_name_the_commands_and_the_upload_flags() {
    let dir = Dir::new();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = voyc(dir.path())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", show(&out));
        let script = String::from_utf8(out.stdout).unwrap();
        for word in [
            "upload",
            "validate",
            "sandbox",
            "concurrency",
            "skip-invalid",
        ] {
            assert!(script.contains(word), "{shell} completions lack {word}");
        }
    }
    let out = voyc(dir.path())
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("possible values: bash"));
}

#[test]
fn the_man_pages_are_roff_with_every_flag_of_their_command() {
    let dir = Dir::new();
    let page = |args: &[&str]| {
        let out = voyc(dir.path()).arg("man").args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", show(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    let top = page(&[]);
    assert!(top.contains(".TH voyc-import 1"), "{top}");
    assert!(
        top.contains("voyc\\-import\\-upload(1)"),
        "the top page lists the commands"
    );
    let upload = page(&["upload"]);
    assert!(upload.contains(".TH voyc-import-upload 1"), "{upload}");
    for flag in ["concurrency", "journal", "skip\\-invalid", "token\\-file"] {
        assert!(
            upload.contains(&format!("\\-\\-{flag}")),
            "upload's page lacks --{flag}"
        );
    }
    assert!(page(&["sandbox"]).contains("\\-\\-fail\\-rate"));
}
