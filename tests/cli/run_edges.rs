//! The edges of a run (issue 16): two runs sharing one journal, one file under two spellings
//! across runs, a report that cannot be written, a hang-up or a signal during validation, and
//! a database of another program given as the journal. Each against a spawned sandbox, checked
//! through its inspection endpoint.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::upload::{
    Corpus, Sandbox, read_report, sha256, signal, stderr_of, wait_for_conversations,
    wait_with_timeout,
};
use crate::util::show;

const TOKEN: &str = "sandbox-token";

/// `voyc-import upload MANIFEST --org 118 --base-url SANDBOX EXTRA` in `dir`, as a child the test
/// can signal.
pub(crate) fn spawn(dir: &Path, manifest: &str, sandbox: &Sandbox, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_voyc-import"))
        .current_dir(dir)
        .env_remove("VOYC_ORG_ID")
        .env_remove("VOYC_BASE_URL")
        .env("VOYC_TOKEN", TOKEN)
        .args([
            "upload",
            manifest,
            "--org",
            "118",
            "--base-url",
            &sandbox.url,
        ])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start voyc-import upload")
}

/// Writes `name` with the corpus manifest's header and its rows `rows` (0 for the first).
fn sub_manifest(corpus: &Corpus, name: &str, rows: std::ops::Range<usize>) {
    let all = std::fs::read_to_string(corpus.path().join("manifest.csv")).unwrap();
    let mut lines = all.lines();
    let mut out = format!("{}\n", lines.next().unwrap());
    for line in lines.skip(rows.start).take(rows.len()) {
        out.push_str(line);
        out.push('\n');
    }
    std::fs::write(corpus.path().join(name), out).unwrap();
}

/// How many conversations hold each file's audio, by the file's SHA-256.
fn copies_by_sha(sandbox: &Sandbox) -> HashMap<String, usize> {
    let mut copies = HashMap::new();
    for conversation in sandbox.conversations().values() {
        if conversation["uploaded"] == true {
            *copies
                .entry(conversation["sha256"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    copies
}

fn assert_each_file_in_one_conversation(corpus: &Corpus, sandbox: &Sandbox) {
    let copies = copies_by_sha(sandbox);
    for (name, contents) in &corpus.files {
        assert_eq!(
            copies.get(&sha256(contents)).copied().unwrap_or(0),
            1,
            "{name}: {copies:?}"
        );
    }
}

#[test]
fn two_runs_sharing_a_journal_upload_each_overlapping_row_once_and_both_exit_0() {
    let sandbox = Sandbox::start(&["--latency-ms", "150"]);
    let corpus = Corpus::new(150, |i| 2_000 + i);
    sub_manifest(&corpus, "A.csv", 0..100);
    sub_manifest(&corpus, "B.csv", 50..150);
    let mut a = spawn(
        corpus.path(),
        "A.csv",
        &sandbox,
        &["--journal", "j", "--report", "rA.csv"],
    );
    wait_for_conversations(&sandbox, 1, &mut a);
    std::thread::sleep(Duration::from_millis(700));
    let b = spawn(
        corpus.path(),
        "B.csv",
        &sandbox,
        &["--journal", "j", "--report", "rB.csv"],
    );
    let (a, b) = (
        wait_with_timeout(a, Duration::from_secs(120)),
        wait_with_timeout(b, Duration::from_secs(120)),
    );
    assert_eq!(a.status.code(), Some(0), "A: {}", show(&a));
    assert_eq!(b.status.code(), Some(0), "B: {}", show(&b));
    assert_eq!(
        sandbox.conversations().len(),
        150,
        "one conversation a file"
    );
    assert_each_file_in_one_conversation(&corpus, &sandbox);

    let ra = read_report(&corpus.path().join("rA.csv"));
    let rb = read_report(&corpus.path().join("rB.csv"));
    let uploaded = |report: &[HashMap<String, String>]| {
        report.iter().filter(|r| r["status"] == "uploaded").count()
    };
    assert_eq!(
        uploaded(&ra) + uploaded(&rb),
        150,
        "each row uploaded by one run"
    );
    for row in ra.iter().chain(&rb) {
        assert!(
            row["status"] == "uploaded" || row["status"] == "already_uploaded",
            "{row:?}"
        );
        assert!(
            !row["notes"].contains("stopped during this row's call 1"),
            "{row:?}"
        );
        if row["status"] == "already_uploaded" && !row["notes"].is_empty() {
            assert!(
                row["notes"].contains("another run uploaded it at the same time"),
                "{row:?}"
            );
        }
    }
    // The rows both manifests hold: each reported with the one conversation that has it.
    let by_file = |report: &[HashMap<String, String>]| -> HashMap<String, String> {
        report
            .iter()
            .map(|r| (r["file"].clone(), r["conversation_id"].clone()))
            .collect()
    };
    let (fa, fb) = (by_file(&ra), by_file(&rb));
    for (name, _) in &corpus.files[50..100] {
        assert_eq!(fa[name], fb[name], "{name}");
    }
}

#[test]
fn a_run_sharing_the_journal_takes_over_the_rows_of_a_run_killed_with_kill_9() {
    let sandbox = Sandbox::start(&["--latency-ms", "400"]);
    let corpus = Corpus::new(24, |i| 2_000 + i);
    let mut a = spawn(
        corpus.path(),
        "manifest.csv",
        &sandbox,
        &["--journal", "j", "--report", "rA.csv", "--concurrency", "4"],
    );
    wait_for_conversations(&sandbox, 2, &mut a);
    let b = spawn(
        corpus.path(),
        "manifest.csv",
        &sandbox,
        &["--journal", "j", "--report", "rB.csv", "--concurrency", "4"],
    );
    std::thread::sleep(Duration::from_millis(1500));
    a.kill().unwrap();
    a.wait().unwrap();
    let b = wait_with_timeout(b, Duration::from_secs(120));
    assert_eq!(b.status.code(), Some(0), "B: {}", show(&b));
    assert_each_file_in_one_conversation(&corpus, &sandbox);
    let rb = read_report(&corpus.path().join("rB.csv"));
    assert_eq!(rb.len(), 24);
    assert!(
        rb.iter()
            .all(|r| r["status"] == "uploaded" || r["status"] == "already_uploaded"),
        "{rb:?}"
    );
}

#[test]
fn the_same_file_spelt_another_way_in_the_next_export_is_already_uploaded() {
    let sandbox = Sandbox::start(&[]);
    let corpus = Corpus::new(3, |i| 2_000 + i);
    let out = spawn(corpus.path(), "manifest.csv", &sandbox, &["--journal", "j"])
        .wait_with_output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let first = std::fs::read_to_string(corpus.path().join("manifest.csv")).unwrap();
    let respelt = first
        .replace("calls/0000.wav", "./calls/0000.wav")
        .replace("calls/0001.wav", "calls//0001.wav")
        .replace("calls/0002.wav", "x/../calls/0002.wav");
    std::fs::create_dir(corpus.path().join("x")).unwrap();
    std::fs::write(corpus.path().join("next.csv"), respelt).unwrap();
    let out = spawn(corpus.path(), "next.csv", &sandbox, &["--journal", "j"])
        .wait_with_output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let report = read_report(&corpus.path().join("next.report.csv"));
    assert!(
        report.iter().all(|r| r["status"] == "already_uploaded"),
        "{report:?}"
    );
    assert_eq!(sandbox.conversations().len(), 3);
}

#[test]
fn a_report_path_that_is_a_folder_is_refused_before_anything_is_sent() {
    let sandbox = Sandbox::start(&[]);
    let corpus = Corpus::new(3, |i| 2_000 + i);
    std::fs::create_dir(corpus.path().join("out.csv")).unwrap();
    let out = spawn(
        corpus.path(),
        "manifest.csv",
        &sandbox,
        &["--report", "out.csv"],
    )
    .wait_with_output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        stderr_of(&out).contains("error: cannot write the report out.csv: it is a folder"),
        "{}",
        show(&out)
    );
    assert_eq!(sandbox.conversations().len(), 0, "nothing sent");
}

#[test]
fn a_report_that_cannot_be_written_at_the_end_exits_1_with_the_summary_and_how_to_resume() {
    let sandbox = Sandbox::start(&["--latency-ms", "300"]);
    let corpus = Corpus::new(4, |i| 2_000 + i);
    let mut child = spawn(
        corpus.path(),
        "manifest.csv",
        &sandbox,
        &[
            "--report",
            "r/out.csv",
            "--journal",
            "j",
            "--concurrency",
            "1",
        ],
    );
    wait_for_conversations(&sandbox, 1, &mut child);
    // A folder where the report is to go: renaming the finished report over it fails.
    std::fs::create_dir(corpus.path().join("r/out.csv")).unwrap();
    let out = wait_with_timeout(child, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stderr = stderr_of(&out);
    assert!(stderr.contains("4 uploaded"), "{stderr}");
    assert!(
        stderr.contains("run the same command with --journal j"),
        "{stderr}"
    );
    let kept = std::fs::read_dir(corpus.path().join("r"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|name| name.starts_with(".out.csv.") && name.ends_with(".tmp"))
        .expect("the temporary report is kept");
    assert!(stderr.contains(&kept), "{stderr}");
    assert_eq!(read_report(&corpus.path().join("r").join(&kept)).len(), 4);

    let out = spawn(
        corpus.path(),
        "manifest.csv",
        &sandbox,
        &["--report", "r2.csv", "--journal", "j"],
    )
    .wait_with_output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let report = read_report(&corpus.path().join("r2.csv"));
    assert!(report.iter().all(|r| r["status"] == "already_uploaded"));
    assert_eq!(sandbox.conversations().len(), 4, "nothing uploaded twice");
}

#[test]
fn sighup_stops_like_sigterm_writes_the_report_and_exits_130() {
    let sandbox = Sandbox::start(&["--latency-ms", "800"]);
    let corpus = Corpus::new(6, |_| 2_000);
    let mut child = spawn(
        corpus.path(),
        "manifest.csv",
        &sandbox,
        &["--concurrency", "1"],
    );
    wait_for_conversations(&sandbox, 1, &mut child);
    signal(&child, "HUP");
    let out = wait_with_timeout(child, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(130), "{}", show(&out));
    let report = corpus.report();
    assert_eq!(report.len(), 6);
    assert_eq!(report[0]["status"], "uploaded");
    assert!(!corpus.path().join(".manifest.report.csv.lock").exists());
}

#[test]
fn a_signal_during_validation_exits_130_and_removes_the_lock() {
    let sandbox = Sandbox::start(&[]);
    let corpus = Corpus::new(1, |_| 2_000);
    // Enough rows (each naming a missing file) that validating them takes seconds.
    let mut manifest = String::from("file,channel_id,call_date,call_time,agent\n");
    for i in 0..400_000 {
        manifest.push_str(&format!("missing/{i}.wav,support,2024-03-01,09:00:00,A\n"));
    }
    std::fs::write(corpus.path().join("big.csv"), manifest).unwrap();
    let log = std::fs::File::create(corpus.path().join("stderr.log")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_voyc-import"))
        .current_dir(corpus.path())
        .env("VOYC_TOKEN", TOKEN)
        .args([
            "upload",
            "big.csv",
            "--org",
            "118",
            "--base-url",
            &sandbox.url,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let lock = corpus.path().join(".big.report.csv.lock");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !lock.exists() {
        assert!(Instant::now() < deadline, "the upload never started");
        assert!(
            child.try_wait().unwrap().is_none(),
            "ended before the signal"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    signal(&child, "TERM");
    let status = child.wait().unwrap();
    let stderr = std::fs::read_to_string(corpus.path().join("stderr.log")).unwrap();
    let last = stderr.lines().last().unwrap_or_default().to_string();
    assert_eq!(status.code(), Some(130), "{last}");
    assert!(!lock.exists(), "the lock is removed");
    assert!(last.contains("nothing was sent"), "{last}");
    assert_eq!(sandbox.conversations().len(), 0);
}

/// A database of another program, with a `rows` table (or without), as `--journal`.
fn foreign_database(path: &Path, table: &str) -> Vec<u8> {
    let db = rusqlite::Connection::open(path).unwrap();
    db.execute_batch(&format!(
        "CREATE TABLE {table} (id INTEGER PRIMARY KEY, body TEXT); INSERT INTO {table} (body) VALUES ('theirs');"
    ))
    .unwrap();
    drop(db);
    std::fs::read(path).unwrap()
}

#[test]
fn a_database_of_another_program_given_as_the_journal_is_refused_and_left_as_it_was() {
    let sandbox = Sandbox::start(&[]);
    let corpus = Corpus::new(2, |i| 2_000 + i);
    for table in ["rows", "notes"] {
        let path = corpus.path().join(format!("{table}.db"));
        let before = foreign_database(&path, table);
        let journal = format!("{table}.db");
        let out = spawn(
            corpus.path(),
            "manifest.csv",
            &sandbox,
            &["--journal", &journal],
        )
        .wait_with_output()
        .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", show(&out));
        assert!(
            stderr_of(&out).contains(&format!(
                "error: the journal {table}.db is an SQLite database of another program, not a voyc-import journal"
            )),
            "{}",
            show(&out)
        );
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "{table}.db untouched"
        );
        assert!(!corpus.path().join(format!("{table}.db-wal")).exists());
    }
    assert_eq!(sandbox.conversations().len(), 0);
}

#[cfg(target_os = "linux")]
#[test]
fn a_report_on_a_disk_that_fills_exits_1_naming_the_journal_to_rerun_with() {
    let sandbox = Sandbox::start(&[]);
    let corpus = Corpus::new(60, |i| 2_000 + i);
    std::fs::create_dir(corpus.path().join("full")).unwrap();
    // A private mount namespace is the only way to a full disk as root, whom modes do not stop.
    let probe = Command::new("unshare")
        .args(["-m", "sh", "-c", "mount -t tmpfs -o size=4k tmpfs /mnt"])
        .output();
    if !probe.is_ok_and(|out| out.status.success()) {
        eprintln!("skipped: needs unshare -m and mount (run as root, as CI does)");
        return;
    }
    // One page: the report's header fits, its 60 rows do not.
    let out = Command::new("unshare")
        .args([
            "-m",
            "sh",
            "-c",
            &format!(
                "mount -t tmpfs -o size=4k tmpfs full && exec \"$VOYC\" upload manifest.csv --org 118 --base-url {} --report full/r.csv --journal j",
                sandbox.url
            ),
        ])
        .current_dir(corpus.path())
        .env("VOYC", env!("CARGO_BIN_EXE_voyc-import"))
        .env("VOYC_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains("error: cannot write the report full/r.csv: No space left on device (os error 28); its rows are in the journal j"),
        "{stderr}"
    );
    assert!(
        stderr.contains("stopped: 60 uploaded; the report full/r.csv was not written"),
        "{stderr}"
    );
    assert!(
        stderr.contains("run the same command with --journal j"),
        "{stderr}"
    );

    let out = spawn(
        corpus.path(),
        "manifest.csv",
        &sandbox,
        &["--report", "r2.csv", "--journal", "j"],
    )
    .wait_with_output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(sandbox.conversations().len(), 60, "nothing uploaded twice");
}
