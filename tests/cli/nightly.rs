//! Nightly runs from cron, end to end against a spawned `voyc-import sandbox`: `--state-dir`
//! shared by the exports of several nights (overlapping, re-exported with a corrected field),
//! `--reupload-changed`, and `--token-command` fetching the token again after a 401.

use std::collections::HashMap;
use std::path::Path;

use crate::upload::{Sandbox, read_report, sha256, stderr_of, wav};
use crate::util::{Dir, show, voyc};

const TOKEN: &str = "sandbox-token";

/// `calls/000N.wav` for N in 0..6, each of its own size and content.
fn recordings(dir: &Dir) {
    for i in 0..6 {
        dir.write(format!("calls/{i:04}.wav"), wav(i, 1_000 + 10 * i));
    }
}

/// A night's export: one row per `(recording, agent)`.
fn export(dir: &Dir, name: &str, rows: &[(usize, &str)]) {
    let mut csv = String::from("file,channel_id,call_date,call_time,agent\n");
    for (i, agent) in rows {
        csv.push_str(&format!(
            "calls/{i:04}.wav,support,2024-03-0{},09:0{i}:00,{agent}\n",
            1 + i
        ));
    }
    dir.write(name, csv);
}

/// `upload MANIFEST` to the sandbox as organisation 118, with a report named after the night.
fn night(dir: &Dir, sandbox: &Sandbox, manifest: &str, report: &str) -> assert_cmd::Command {
    let mut cmd = voyc(dir.path());
    cmd.env("VOYC_TOKEN", TOKEN)
        .args([
            "upload",
            manifest,
            "--org",
            "118",
            "--base-url",
            &sandbox.url,
        ])
        .args(["--report", report])
        .timeout(std::time::Duration::from_secs(120));
    cmd
}

fn by_file(report: &Path) -> HashMap<String, HashMap<String, String>> {
    read_report(report)
        .into_iter()
        .map(|row| (row["file"].clone(), row))
        .collect()
}

/// Every conversation of the sandbox uploaded once, and how many there are of each file
/// (by SHA-256).
fn uploads_per_recording(sandbox: &Sandbox) -> HashMap<String, usize> {
    let mut per = HashMap::new();
    for conversation in sandbox.conversations().values() {
        assert_eq!(conversation["uploads"], 1, "{conversation}");
        let sha = conversation["sha256"].as_str().unwrap().to_string();
        *per.entry(sha).or_default() += 1;
    }
    per
}

#[test]
fn a_row_uploaded_from_one_manifest_is_already_uploaded_from_another_under_the_same_state_dir() {
    let sandbox = Sandbox::start(&[]);
    let dir = Dir::new();
    recordings(&dir);
    export(&dir, "night-1.csv", &[(0, "Ann"), (1, "Ben"), (2, "Cara")]);
    // Night 2 lists 1 again as it was, 2 again with a corrected agent, and 3 for the first time.
    export(&dir, "night-2.csv", &[(1, "Ben"), (2, "Carla"), (3, "Dan")]);

    let out = night(&dir, &sandbox, "night-1.csv", "logs/1.report.csv")
        .args(["--state-dir", "state"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let first = by_file(&dir.join("logs/1.report.csv"));
    assert!(first.values().all(|row| row["status"] == "uploaded"));

    // One journal, named after the destination; no journal beside the report.
    let names: Vec<String> = std::fs::read_dir(dir.join("state"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".journal"))
        .collect();
    let port = sandbox
        .url
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/');
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(
        names[0].starts_with(&format!("127.0.0.1_{port}-org-118-")),
        "{names:?}"
    );
    assert!(!dir.join("logs/1.report.csv.journal").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("state"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "the state folder is private");
    }

    // Night 2, another manifest and another report, the state folder from the environment.
    let out = night(&dir, &sandbox, "night-2.csv", "logs/2.report.csv")
        .env("VOYC_STATE_DIR", "state")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let second = by_file(&dir.join("logs/2.report.csv"));
    let same = &second["calls/0001.wav"];
    assert_eq!(same["status"], "already_uploaded", "{same:?}");
    assert_eq!(
        same["conversation_id"],
        first["calls/0001.wav"]["conversation_id"]
    );
    let changed = &second["calls/0002.wav"];
    let earlier = &first["calls/0002.wav"]["conversation_id"];
    assert_eq!(changed["status"], "already_uploaded", "{changed:?}");
    assert_eq!(&changed["conversation_id"], earlier);
    assert_eq!(changed["sha256"], first["calls/0002.wav"]["sha256"]);
    assert_eq!(
        changed["notes"],
        format!(
            r#"metadata changed since conversation {earlier} was uploaded: agent "Cara" → "Carla"; not sent again (--reupload-changed sends it as a new conversation)"#
        )
    );
    assert_eq!(second["calls/0003.wav"]["status"], "uploaded");
    assert!(
        stderr_of(&out).contains("done: 1 uploaded, 2 already uploaded"),
        "{}",
        show(&out)
    );
    // Each recording once.
    let per = uploads_per_recording(&sandbox);
    assert_eq!(per.len(), 4);
    assert!(per.values().all(|&n| n == 1), "{per:?}");

    // A dry run says so too, and writes nothing.
    let out = night(&dir, &sandbox, "night-2.csv", "logs/dry.report.csv")
        .args(["--state-dir", "state", "--dry-run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "night-2.csv:3: calls/0002.wav: already uploaded (metadata changed since conversation {earlier} was uploaded: agent"
        )),
        "{stdout}"
    );
    assert!(stdout.contains("dry run: 0 rows"), "{stdout}");
    assert!(!dir.join("logs/dry.report.csv").exists());

    // --reupload-changed: the corrected row goes as a new conversation; the others stay.
    let out = night(&dir, &sandbox, "night-2.csv", "logs/2b.report.csv")
        .args(["--state-dir", "state", "--reupload-changed"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let again = by_file(&dir.join("logs/2b.report.csv"));
    let resent = &again["calls/0002.wav"];
    assert_eq!(resent["status"], "uploaded", "{resent:?}");
    assert_ne!(&resent["conversation_id"], earlier);
    assert!(
        resent["notes"].ends_with(&format!(
            "sent as a new conversation (--reupload-changed); conversation {earlier} stays as it was: Voyc has no call to update or replace one"
        )),
        "{resent:?}"
    );
    assert_eq!(again["calls/0001.wav"]["status"], "already_uploaded");
    assert_eq!(again["calls/0003.wav"]["status"], "already_uploaded");
    let conversations = sandbox.conversations();
    assert_eq!(conversations.len(), 5);
    assert_eq!(
        conversations[&resent["conversation_id"]]["metadata"]["agent"],
        "Carla"
    );
    // And once sent, the corrected row is itself already uploaded.
    let out = night(&dir, &sandbox, "night-2.csv", "logs/2c.report.csv")
        .args(["--state-dir", "state"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let last = by_file(&dir.join("logs/2c.report.csv"));
    assert_eq!(
        last["calls/0002.wav"]["conversation_id"],
        resent["conversation_id"]
    );
    assert_eq!(last["calls/0002.wav"]["notes"], "");
    assert_eq!(sandbox.conversations().len(), 5);
}

#[test]
fn four_nights_of_overlapping_exports_upload_each_recording_once() {
    let sandbox = Sandbox::start(&["--fail-rate", "0.2", "--seed", "7"]);
    let dir = Dir::new();
    recordings(&dir);
    // Each night the day's calls and some of the day before's; night 3 corrects an agent.
    let nights: [&[(usize, &str)]; 4] = [
        &[(0, "A"), (1, "B")],
        &[(1, "B"), (2, "C"), (3, "D")],
        &[(3, "Dee"), (4, "E")],
        &[(4, "E"), (5, "F"), (0, "A")],
    ];
    for (n, rows) in nights.iter().enumerate() {
        let manifest = format!("export-{n}.csv");
        export(&dir, &manifest, rows);
        let out = night(&dir, &sandbox, &manifest, &format!("logs/{n}.report.csv"))
            .args(["--state-dir", "state", "--retries", "10"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "night {n}: {}", show(&out));
    }
    let per = uploads_per_recording(&sandbox);
    for i in 0..6 {
        let sha = sha256(&wav(i, 1_000 + 10 * i));
        assert_eq!(per.get(&sha), Some(&1), "recording {i}: {per:?}");
    }
}

/// `--token-command` as a vault's CLI: counts its runs in `runs`, prints `tokens[run - 1]` (the
/// last one for every later run), and says something on stderr.
fn token_command(dir: &Dir, tokens: &[&str]) -> String {
    let mut script = String::from(
        "n=$(cat runs 2>/dev/null || echo 0); n=$((n + 1)); echo $n > runs\necho \"vault: token $n\" >&2\n",
    );
    for (i, token) in tokens.iter().enumerate() {
        script.push_str(&format!(
            "if [ $n -le {} ]; then echo {token}; exit 0; fi\n",
            i + 1
        ));
    }
    script.push_str(&format!("echo {}\n", tokens.last().unwrap()));
    dir.write("vault.sh", script);
    "sh vault.sh".to_string()
}

/// `upload calls.csv` to `sandbox`, the token from `command`.
fn with_token_command(dir: &Dir, sandbox: &Sandbox, command: &str) -> assert_cmd::Command {
    let mut cmd = voyc(dir.path());
    cmd.args([
        "upload",
        "calls.csv",
        "--org",
        "118",
        "--base-url",
        &sandbox.url,
    ])
    .args(["--token-command", command]);
    cmd
}

fn runs(dir: &Dir) -> String {
    std::fs::read_to_string(dir.join("runs"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[cfg(unix)]
#[test]
fn token_command_is_run_again_after_a_401_and_every_row_is_uploaded() {
    let sandbox = Sandbox::start(&[]);
    let dir = Dir::new();
    recordings(&dir);
    export(
        &dir,
        "calls.csv",
        &[(0, "A"), (1, "B"), (2, "C"), (3, "D"), (4, "E"), (5, "F")],
    );
    // The first token has expired (the sandbox refuses it: 401); the second is good.
    let command = token_command(&dir, &["expired-token-value", TOKEN]);
    let out = with_token_command(&dir, &sandbox, &command)
        .args(["--concurrency", "4"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(runs(&dir), "2", "at start, then once for every row refused");
    let report = read_report(&dir.join("calls.report.csv"));
    assert!(
        report.iter().all(|r| r["status"] == "uploaded"),
        "{report:?}"
    );
    assert_eq!(sandbox.conversations().len(), 6);
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains("vault: token 1") && stderr.contains("vault: token 2"),
        "{stderr}"
    );
    let everything = format!(
        "{}{stderr}{}",
        String::from_utf8_lossy(&out.stdout),
        std::fs::read_to_string(dir.join("calls.report.csv")).unwrap()
    );
    assert!(!everything.contains(TOKEN) && !everything.contains("expired-token-value"));
}

#[cfg(unix)]
#[test]
fn a_fresh_token_from_token_command_refused_too_stops_the_run_as_a_wrong_token_does() {
    let sandbox = Sandbox::start(&[]);
    let dir = Dir::new();
    recordings(&dir);
    export(&dir, "calls.csv", &[(0, "A"), (1, "B"), (2, "C")]);
    let command = token_command(&dir, &["wrong-token-value"]);
    let out = with_token_command(&dir, &sandbox, &command)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert_eq!(runs(&dir), "2");
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains("(also with a fresh token from --token-command); the token was refused (wrong, expired or revoked): check --token-command"),
        "{stderr}"
    );
    assert!(!stderr.contains("wrong-token-value"), "{stderr}");
    assert!(sandbox.conversations().is_empty());
}

#[cfg(unix)]
#[test]
fn a_token_command_that_fails_is_a_usage_error_naming_its_exit_status_never_its_output() {
    let dir = Dir::new();
    recordings(&dir);
    export(&dir, "calls.csv", &[(0, "A")]);
    let out = voyc(dir.path())
        .args(["upload", "calls.csv", "--org", "118"])
        .args([
            "--token-command",
            "echo 'vault: sealed' >&2; echo s3cr3t-part; exit 3",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains("vault: sealed"),
        "its stderr passes: {stderr}"
    );
    assert!(
        stderr.contains("error: --token-command failed with exit status 3"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cr3t-part"), "{stderr}");
    assert!(!dir.join("calls.report.csv").exists(), "nothing written");

    // VOYC_TOKEN as well: which one is meant is not guessed.
    let out = voyc(dir.path())
        .env("VOYC_TOKEN", TOKEN)
        .args([
            "upload",
            "calls.csv",
            "--org",
            "118",
            "--token-command",
            "echo t",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        stderr_of(&out).contains("--token-command and VOYC_TOKEN both give the token"),
        "{}",
        show(&out)
    );
}

#[test]
fn voyc_state_dir_set_for_the_nights_leaves_a_sandbox_rehearsal_and_a_named_journal_alone() {
    let dir = Dir::new();
    recordings(&dir);
    export(&dir, "night-1.csv", &[(0, "Ana"), (1, "Ben")]);
    // The README's first command, in a shell where the nights' variable is exported.
    let out = voyc(dir.path())
        .env("VOYC_STATE_DIR", "state")
        .args([
            "upload",
            "night-1.csv",
            "--sandbox",
            "--report",
            "rehearsal.csv",
        ])
        .timeout(std::time::Duration::from_secs(120))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        !dir.path().join("state").exists(),
        "a rehearsal keeps nothing"
    );
    // A run given --journal uses that journal, not the state folder.
    let sandbox = Sandbox::start(&[]);
    let out = night(&dir, &sandbox, "night-1.csv", "one-off.csv")
        .env("VOYC_STATE_DIR", "state")
        .args(["--journal", "one-off.journal"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(dir.path().join("one-off.journal").exists());
    assert!(!dir.path().join("state").exists());
    // --state-dir given with them is still a contradiction.
    let out = voyc(dir.path())
        .args(["upload", "night-1.csv", "--sandbox", "--state-dir", "state"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(stderr_of(&out).contains("--state-dir cannot be used with --sandbox"));
}
