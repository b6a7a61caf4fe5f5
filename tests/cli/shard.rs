//! `upload --shard K/N|auto`: N copies of the tool splitting one manifest with no coordination,
//! against one spawned sandbox, their reports joined by `merge-reports`. The shard of a path is
//! computed here again from the documented formula, so the tests also check the formula.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::upload::{Corpus, Sandbox, read_report, sha256, stderr_of, wait_with_timeout};
use crate::util::{show, voyc};

/// The documented shard of a path that needs no normalising: SHA-256 over
/// `b"voyc-import shard v1\0"` and the path, the first 8 bytes big-endian, mod N, plus 1.
fn shard_of(path: &str, count: u64) -> u64 {
    let digest = Sha256::new()
        .chain_update(b"voyc-import shard v1\0")
        .chain_update(path.as_bytes())
        .finalize();
    u64::from_be_bytes(digest[..8].try_into().unwrap()) % count + 1
}

#[test]
fn four_shards_in_parallel_upload_every_row_once_and_their_reports_merge_into_the_whole() {
    let corpus = Corpus::new(60, |i| 1_000 + 37 * i);
    let sandbox = Sandbox::start(&["--upload-style", "put"]);
    // Four real processes at once, as four pods of an Indexed Job would run.
    let children: Vec<_> = (1..=4)
        .map(|k| {
            let shard = format!("{k}/4");
            let report = format!("shard-{k}.csv");
            let extra = ["--shard", shard.as_str(), "--report", report.as_str()];
            crate::run_edges::spawn(corpus.path(), "manifest.csv", &sandbox, &extra)
        })
        .collect();
    let outputs: Vec<_> = children
        .into_iter()
        .map(|child| wait_with_timeout(child, Duration::from_secs(120)))
        .collect();

    let mut reported = 0;
    for (k, out) in (1..=4).zip(&outputs) {
        assert_eq!(out.status.code(), Some(0), "shard {k}: {}", show(out));
        let rows = read_report(&corpus.path().join(format!("shard-{k}.csv")));
        let own = corpus
            .files
            .iter()
            .filter(|(file, _)| shard_of(file, 4) == k)
            .count();
        assert_eq!(rows.len(), own, "shard {k} reports its own rows only");
        for row in &rows {
            assert_eq!(shard_of(&row["file"], 4), k, "{row:?}");
            assert_eq!(row["status"], "uploaded", "{row:?}");
        }
        let stderr = stderr_of(out);
        assert!(
            stderr.contains(&format!("manifest.csv: shard {k}/4: {own} of 60 rows;")),
            "{stderr}"
        );
        reported += rows.len();
    }
    assert_eq!(reported, 60);

    // Every file arrived exactly once, whole.
    let conversations = sandbox.conversations();
    assert_eq!(conversations.len(), 60, "one call 1 a row");
    let held: HashSet<String> = conversations
        .values()
        .map(|c| {
            assert_eq!(c["uploads"], 1, "{c}");
            c["sha256"].as_str().unwrap().to_string()
        })
        .collect();
    let sent: HashSet<String> = corpus.files.iter().map(|(_, data)| sha256(data)).collect();
    assert_eq!(held, sent);

    let out = voyc(corpus.path())
        .args(["merge-reports", "shard-3.csv", "shard-1.csv", "shard-4.csv"])
        .args([
            "shard-2.csv",
            "--manifest",
            "manifest.csv",
            "--out",
            "all.csv",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let all = read_report(&corpus.path().join("all.csv"));
    let lines: Vec<&str> = all.iter().map(|row| row["line"].as_str()).collect();
    let expected: Vec<String> = (2..62).map(|line| line.to_string()).collect();
    assert_eq!(
        lines, expected,
        "every manifest row once, in manifest order"
    );
    let files: Vec<&str> = all.iter().map(|row| row["file"].as_str()).collect();
    let listed: Vec<&str> = corpus.files.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(files, listed);
}

/// Pass 1 of a dry run of `--shard` with `extra` in the corpus folder: (exit code, stdout, stderr).
fn dry_run(corpus: &Corpus, extra: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut cmd = voyc(corpus.path());
    cmd.args(["upload", "manifest.csv", "--sandbox", "--dry-run"])
        .args(extra)
        .env_remove("JOB_COMPLETION_INDEX")
        .env_remove("AWS_BATCH_JOB_ARRAY_INDEX")
        .env_remove("VOYC_SHARDS");
    for (name, value) in env {
        cmd.env(name, value);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The files a dry run would send, from its stdout (`manifest.csv:2: calls/0000.wav (...)`).
fn would_send(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|line| line.split(": ").nth(1))
        .filter_map(|rest| rest.split(" (").next())
        .filter(|file| file.starts_with("calls/"))
        .map(str::to_string)
        .collect()
}

#[test]
fn auto_takes_the_shard_from_the_job_index_counted_from_0() {
    let corpus = Corpus::new(20, |_| 100);
    let (code, by_hand, _) = dry_run(&corpus, &["--shard", "2/3"], &[]);
    assert_eq!(code, Some(0));
    for env in [
        [("JOB_COMPLETION_INDEX", "1"), ("VOYC_SHARDS", "3")],
        [("AWS_BATCH_JOB_ARRAY_INDEX", "1"), ("VOYC_SHARDS", "3")],
    ] {
        let (code, auto, stderr) = dry_run(&corpus, &["--shard", "auto"], &env);
        assert_eq!(code, Some(0), "{stderr}");
        assert_eq!(auto, by_hand, "{env:?}");
        assert!(stderr.contains("shard 2/3: "), "{stderr}");
    }
    let files = would_send(&by_hand);
    assert!(!files.is_empty());
    assert!(files.iter().all(|file| shard_of(file, 3) == 2), "{files:?}");
}

#[test]
fn a_shard_that_cannot_be_is_a_usage_error_that_says_why() {
    let corpus = Corpus::new(3, |_| 100);
    for (given, env, message) in [
        (
            "0/4",
            &[][..],
            "error: --shard 0/4: shards are counted from 1, so the first of 4 is 1/4",
        ),
        (
            "5/4",
            &[],
            "error: --shard 5/4: there is no shard 5 of 4; K runs from 1 to 4",
        ),
        (
            "1/0",
            &[],
            "error: --shard 1/0: there must be at least 1 shard",
        ),
        (
            "2of4",
            &[],
            "error: --shard \"2of4\": expected K/N (e.g. 2/4: the second of four shards) or auto",
        ),
        (
            "auto",
            &[("VOYC_SHARDS", "4")],
            "error: --shard auto: neither JOB_COMPLETION_INDEX",
        ),
        (
            "auto",
            &[("JOB_COMPLETION_INDEX", "0")],
            "error: --shard auto: VOYC_SHARDS is not set",
        ),
        (
            "auto",
            &[("JOB_COMPLETION_INDEX", "0"), ("VOYC_SHARDS", "x")],
            "error: --shard auto: VOYC_SHARDS is \"x\", not a whole number of shards",
        ),
    ] {
        let (code, stdout, stderr) = dry_run(&corpus, &["--shard", given], env);
        assert_eq!(code, Some(2), "{given} {env:?}: {stderr}");
        assert!(stderr.starts_with(message), "{given} {env:?}: {stderr}");
        assert!(stdout.is_empty(), "{stdout}");
    }
}

#[test]
fn a_bad_row_of_any_shard_refuses_every_shard_unless_rows_may_be_skipped() {
    let corpus = Corpus::new(12, |_| 100);
    // Row 5 (line 6) gets an impossible date.
    let manifest = corpus.path().join("manifest.csv");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let bad = "calls/0004.wav,support,2024-02-30,";
    let text = text.replacen("calls/0004.wav,support,2024-03-05,", bad, 1);
    assert!(text.contains(bad));
    std::fs::write(&manifest, text).unwrap();
    let owner = shard_of("calls/0004.wav", 3);
    for k in 1..=3 {
        let shard = format!("{k}/3");
        let (code, _, stderr) = dry_run(&corpus, &["--shard", &shard], &[]);
        assert_eq!(code, Some(2), "shard {k}: {stderr}");
        assert!(
            stderr.contains("manifest.csv:6: call_date \"2024-02-30\""),
            "shard {k}: {stderr}"
        );
        assert!(stderr.contains("nothing was sent"), "{stderr}");

        // With --skip-invalid the bad row is its own shard's alone, reported there.
        let report = format!("skip-{k}.csv");
        let out = voyc(corpus.path())
            .args([
                "upload",
                "manifest.csv",
                "--sandbox",
                "--skip-invalid",
                "--shard",
                &shard,
            ])
            .args(["--report", &report])
            .output()
            .unwrap();
        let rows = read_report(&corpus.path().join(&report));
        let statuses: HashMap<&str, &str> = rows
            .iter()
            .map(|row| (row["file"].as_str(), row["status"].as_str()))
            .collect();
        if k == owner {
            assert_eq!(out.status.code(), Some(1), "{}", show(&out));
            assert_eq!(statuses.get("calls/0004.wav"), Some(&"invalid"));
        } else {
            assert_eq!(out.status.code(), Some(0), "{}", show(&out));
            assert!(!stderr_of(&out).contains("2024-02-30"), "{}", show(&out));
            assert!(!statuses.contains_key("calls/0004.wav"));
        }
    }
}

#[test]
fn limit_takes_the_first_rows_of_the_shard() {
    let corpus = Corpus::new(30, |_| 100);
    let ours: Vec<String> = corpus
        .files
        .iter()
        .map(|(file, _)| file.clone())
        .filter(|file| shard_of(file, 2) == 1)
        .collect();
    assert!(ours.len() > 3);
    let (code, stdout, stderr) = dry_run(&corpus, &["--shard", "1/2", "--limit", "3"], &[]);
    assert_eq!(
        code,
        Some(1),
        "the rest of the shard is not attempted: {stderr}"
    );
    assert_eq!(would_send(&stdout), ours[..3]);
    assert!(
        stderr.contains(&format!(
            "shard 1/2: {} of 30 rows; {} rows valid; --limit takes the first 3",
            ours.len(),
            ours.len()
        )),
        "{stderr}"
    );
}

/// The value after `key:` on the first line of `text` that has it (after its indentation).
fn yaml_value<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .map(str::trim_start)
        .find_map(|line| line.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key}: in the sample"))
        .trim()
}

/// samples/kubernetes/job.yaml runs a command line this build takes, with one shard per pod:
/// its `args` (a flow sequence, which is also JSON) are run as pod 0 would run them, with the
/// archive and state volumes mapped to folders here.
#[test]
fn the_kubernetes_sample_runs_a_command_this_build_accepts() {
    let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/kubernetes");
    let job = std::fs::read_to_string(sample.join("job.yaml")).unwrap();
    let shards = yaml_value(&job, "completions");
    assert_eq!(yaml_value(&job, "parallelism"), shards);
    assert_eq!(yaml_value(&job, "completionMode"), "Indexed");
    let after_shards = job.split("- name: VOYC_SHARDS").nth(1).unwrap();
    assert_eq!(yaml_value(after_shards, "value"), format!("\"{shards}\""));
    assert!(
        job.contains("- name: VOYC_TOKEN\n              valueFrom:\n                secretKeyRef:")
    );
    let dockerfile = std::fs::read_to_string(sample.join("Dockerfile")).unwrap();
    assert!(dockerfile.contains("ENTRYPOINT [\"voyc-import\"]"));

    let args: Vec<String> = serde_json::from_str(yaml_value(&job, "args")).unwrap();
    assert_eq!(
        args[..4],
        ["upload", "/archive/manifest.csv", "--shard", "auto"]
    );
    let corpus = Corpus::new(8, |_| 100);
    let state = crate::util::Dir::new();
    let local: Vec<String> = args
        .iter()
        .map(|arg| {
            arg.replace("$(JOB_COMPLETION_INDEX)", "0")
                .replace("/archive/", &format!("{}/", corpus.path().display()))
                .replace("/state/", &format!("{}/", state.path().display()))
        })
        .collect();
    let out = voyc(corpus.path())
        .args(&local)
        .arg("--dry-run")
        .env("JOB_COMPLETION_INDEX", "0")
        .env("VOYC_SHARDS", shards)
        .env("VOYC_ORG_ID", "118")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        stderr_of(&out).contains(&format!("manifest.csv: shard 1/{shards}: ")),
        "{}",
        show(&out)
    );
}
