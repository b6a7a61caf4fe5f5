//! `voyc-import scan` end to end: a generated tree of recordings, some named as the pattern
//! says and some not; the manifest it writes, the line it prints for every other file, its exit
//! code, and that the manifest validates and uploads as it is.

use crate::upload::{read_report, wav};
use crate::util::{Dir, show, voyc};

const PATTERN: &str = "{call_date:%Y/%m/%d}/{call_time:%H%M%S}_{agent}_{direction}.wav";

/// A dated export under `tree/`: four recordings named as [`PATTERN`] says, and five files
/// that are not (a time that does not exist, a direction that is not one, a transcript, a
/// file outside the dated folders, a name without a direction).
fn export(dir: &Dir) {
    for (i, path) in [
        "tree/2024/03/05/091502_ann_inbound.wav",
        "tree/2024/03/05/094237_ann_outbound.wav",
        "tree/2024/03/06/140500_ben okafor_internal.wav",
        "tree/2025/12/31/235959_cara_Inbound.wav",
        "tree/2024/03/05/250000_ann_inbound.wav",
        "tree/2024/03/06/101010_ben_sideways.wav",
        "tree/2024/03/06/notes.txt",
        "tree/readme.wav",
        "tree/2024/03/07/111111_dev.wav",
    ]
    .into_iter()
    .enumerate()
    {
        dir.write(path, wav(i, 200 + i));
    }
}

const MATCHED: &str = "\
file,call_date,call_time,agent,direction,channel_id
tree/2024/03/05/091502_ann_inbound.wav,2024-03-05,09:15:02,ann,inbound,support
tree/2024/03/05/094237_ann_outbound.wav,2024-03-05,09:42:37,ann,outbound,support
tree/2024/03/06/140500_ben okafor_internal.wav,2024-03-06,14:05:00,ben okafor,internal,support
tree/2025/12/31/235959_cara_Inbound.wav,2025-12-31,23:59:59,cara,Inbound,support
";

fn unmatched(tree: &str) -> String {
    format!(
        "\
{tree}/2024/03/05/250000_ann_inbound.wav: call_time \"250000\": not a valid time of day for %H%M%S
{tree}/2024/03/06/101010_ben_sideways.wav: direction \"sideways\": expected one of inbound, outbound, internal
{tree}/2024/03/06/notes.txt: does not end with \".wav\"
{tree}/2024/03/07/111111_dev.wav: expected \"_\" after {{agent}} before the end of \"111111_dev.wav\"
{tree}/readme.wav: is 0 folders deep, but the pattern is 3 folders deep
"
    )
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8")
}

#[test]
fn scan_writes_the_matching_files_and_names_every_other_one_with_its_reason() {
    let dir = Dir::new();
    export(&dir);
    let out = voyc(dir.path())
        .args(["scan", "tree", "--pattern", PATTERN])
        .args(["--set", "channel_id=support", "--out", "manifest.csv"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert_eq!(text(&out.stdout), "", "the manifest goes to --out only");
    assert_eq!(
        text(&out.stderr),
        format!(
            "{}scanned 9 files (1.8 KiB) in tree: 4 matched, 5 did not; 4 rows written to manifest.csv\n",
            unmatched("tree")
        )
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("manifest.csv")).unwrap(),
        MATCHED
    );
}

#[test]
fn the_manifest_scan_writes_uploads_every_matching_file_as_it_is() {
    let dir = Dir::new();
    export(&dir);
    let scanned = voyc(dir.path())
        .args(["scan", "tree", "--pattern", PATTERN])
        .args([
            "--set",
            "channel_id=support",
            "--out",
            "manifest.csv",
            "--quiet",
        ])
        .output()
        .unwrap();
    assert_eq!(scanned.status.code(), Some(1), "{}", show(&scanned));

    let upload = voyc(dir.path())
        .args(["upload", "manifest.csv", "--sandbox", "--quiet"])
        .output()
        .unwrap();
    assert_eq!(upload.status.code(), Some(0), "{}", show(&upload));
    let report = read_report(&dir.join("manifest.report.csv"));
    let uploaded: Vec<(&str, &str, u64)> = report
        .iter()
        .map(|row| {
            let size = std::fs::metadata(dir.join(&row["file"])).unwrap().len();
            (row["file"].as_str(), row["status"].as_str(), size)
        })
        .collect();
    let expected: Vec<&str> = MATCHED
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(
        uploaded
            .iter()
            .map(|(file, _, _)| *file)
            .collect::<Vec<_>>(),
        expected
    );
    for (row, (file, status, size)) in report.iter().zip(&uploaded) {
        assert_eq!(*status, "uploaded", "{file}: {row:?}");
        assert_eq!(
            row["bytes"],
            size.to_string(),
            "{file}: every byte was sent"
        );
    }
}

#[test]
fn written_to_stdout_the_paths_are_absolute_so_the_manifest_validates_wherever_it_is_saved() {
    let dir = Dir::new();
    export(&dir);
    let out = voyc(dir.path())
        .args([
            "scan",
            "tree",
            "--pattern",
            PATTERN,
            "--set",
            "channel_id=7",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let manifest = text(&out.stdout);
    let root = dir.path().canonicalize().unwrap().join("tree");
    let first = manifest.lines().nth(1).unwrap();
    assert_eq!(
        first,
        format!(
            "{},2024-03-05,09:15:02,ann,inbound,7",
            root.join("2024/03/05/091502_ann_inbound.wav").display()
        )
    );
    assert!(
        text(&out.stderr).ends_with("4 rows written to standard output\n"),
        "{}",
        show(&out)
    );

    // Saved in a folder of its own, far from the recordings.
    let elsewhere = Dir::new();
    elsewhere.write("nightly/export.csv", &out.stdout);
    let validated = voyc(elsewhere.path())
        .args(["validate", "nightly/export.csv"])
        .output()
        .unwrap();
    assert_eq!(validated.status.code(), Some(0), "{}", show(&validated));
    assert_eq!(
        text(&validated.stdout),
        "4 rows checked: all valid, 0 warnings\n"
    );
}

#[test]
fn a_manifest_written_into_the_folder_scanned_has_paths_relative_to_it_and_is_not_listed_itself() {
    let dir = Dir::new();
    export(&dir);
    for _ in 0..2 {
        let out = voyc(dir.path())
            .args([
                "scan",
                "tree",
                "--pattern",
                PATTERN,
                "--set",
                "channel_id=support",
            ])
            .args(["--out", "tree/manifest.csv"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", show(&out));
        // The second run sees the first's manifest, and leaves it out.
        assert!(
            text(&out.stderr).contains("scanned 9 files"),
            "{}",
            show(&out)
        );
    }
    let manifest = std::fs::read_to_string(dir.join("tree/manifest.csv")).unwrap();
    assert_eq!(manifest, MATCHED.replace("\ntree/", "\n"));
    let leftovers: Vec<_> = std::fs::read_dir(dir.join("tree"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".voyc-scan"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn when_every_file_matches_it_exits_0_and_quiet_prints_nothing() {
    let dir = Dir::new();
    dir.write("calls/20240305_091502_ann_inbound.wav", wav(1, 100));
    dir.write("calls/20240305_101502_ben_outbound.wav", wav(2, 100));
    let pattern = "{call_date:%Y%m%d}_{call_time:%H%M%S}_{agent}_{direction}.wav";
    let scan = |quiet: bool| {
        let mut cmd = voyc(dir.path());
        cmd.args(["scan", "calls", "--pattern", pattern]).args([
            "--set",
            "channel_id=9",
            "--out",
            "calls.csv",
        ]);
        if quiet {
            cmd.arg("--quiet");
        }
        cmd.output().unwrap()
    };
    let out = scan(false);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(
        text(&out.stderr),
        "scanned 2 files (200 B) in calls: 2 matched, 0 did not; 2 rows written to calls.csv\n"
    );
    let quiet = scan(true);
    assert_eq!(quiet.status.code(), Some(0), "{}", show(&quiet));
    assert_eq!(text(&quiet.stderr), "");
    assert_eq!(
        std::fs::read_to_string(dir.join("calls.csv")).unwrap(),
        "file,call_date,call_time,agent,direction,channel_id\n\
         calls/20240305_091502_ann_inbound.wav,2024-03-05,09:15:02,ann,inbound,9\n\
         calls/20240305_101502_ben_outbound.wav,2024-03-05,10:15:02,ben,outbound,9\n"
    );
}

#[test]
fn a_missing_required_column_is_warned_about_before_the_scan() {
    let dir = Dir::new();
    dir.write("calls/ann.wav", wav(1, 100));
    let out = voyc(dir.path())
        .args([
            "scan",
            "calls",
            "--pattern",
            "{agent}.wav",
            "--out",
            "m.csv",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(
        text(&out.stderr).lines().next().unwrap(),
        "warning: the manifest will have no channel_id, call_date, call_time columns, which upload requires; read them from the paths or pass --set KEY=VALUE (to scan, or later to upload)"
    );
}

#[test]
fn a_bad_pattern_is_a_usage_error_that_points_at_its_column() {
    let dir = Dir::new();
    std::fs::create_dir(dir.join("calls")).unwrap();
    let out = voyc(dir.path())
        .args(["scan", "calls", "--pattern", "{call_date:%Y%m%d}_{agent"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert_eq!(
        text(&out.stderr),
        "error: --pattern, column 20: this { is never closed (a literal brace is written {{)\n  {call_date:%Y%m%d}_{agent\n                     ^\n"
    );
    assert_eq!(text(&out.stdout), "");
}

#[test]
fn usage_errors_name_the_flag_at_fault() {
    let dir = Dir::new();
    std::fs::create_dir(dir.join("calls")).unwrap();
    let error = |args: &[&str]| {
        let out = voyc(dir.path()).arg("scan").args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", show(&out));
        text(&out.stderr)
    };
    assert_eq!(
        error(&["https://example.com/exports/", "--pattern", "{agent}.wav"]),
        "error: https://example.com/exports/: https:// is not supported: only s3:// (Amazon S3 and S3-compatible stores), gs:// (Google Cloud Storage) and az:// (Azure Blob Storage) are; copy the recordings to one of them or to a local folder\n"
    );
    assert_eq!(
        error(&["s3://bucket//exports/", "--pattern", "{agent}.wav"]),
        "error: s3://bucket//exports/: an object key with an empty, . or .. segment (//, /./, /../) cannot be read here\n"
    );
    assert!(
        error(&[
            "s3://bucket/exports/",
            "--pattern",
            "{agent}.wav",
            "--source-endpoint",
            "http://minio.example.com:9000"
        ])
        .starts_with("error: --source-endpoint \"http://minio.example.com:9000\": plain http is allowed only to a loopback address"),
    );
    assert!(
        error(&["missing", "--pattern", "{agent}.wav"])
            .starts_with("error: cannot read the folder missing: No such file or directory"),
    );
    assert_eq!(
        error(&["calls", "--pattern", "{agent}.wav", "--set", "agent=ann"]),
        "error: --set agent=…: the pattern already reads agent from every path; keep one of the two\n"
    );
    assert_eq!(
        error(&[
            "calls",
            "--pattern",
            "{agent}.wav",
            "--set",
            "call_date=2024-13-01"
        ]),
        "error: --set \"call_date=2024-13-01\": call_date \"2024-13-01\": not a valid date, expected YYYY-MM-DD\n"
    );
    assert_eq!(
        error(&["calls", "--pattern", "{agent}.wav", "--out", "m.jsonl"]),
        "error: --out m.jsonl: scan writes a CSV manifest; give the file a .csv name\n"
    );
}

#[test]
fn an_object_store_that_does_not_answer_is_one_sentence_and_no_manifest() {
    let dir = Dir::new();
    // A port nothing listens on (bound, then freed).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = voyc(dir.path())
        .args(["scan", "s3://recordings/connect/", "--pattern", PATTERN])
        .args(["--set", "channel_id=1", "--out", "manifest.csv"])
        .args(["--source-endpoint", &format!("http://127.0.0.1:{port}")])
        .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", "scan-test-secret-0123456789")
        .timeout(std::time::Duration::from_secs(120))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("error: cannot list s3://recordings/connect/: cannot connect: "),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(!stderr.contains("scan-test-secret"), "{stderr}");
    assert!(!dir.join("manifest.csv").exists(), "no manifest is written");
}

#[test]
fn scan_has_a_man_page_and_completions() {
    let dir = Dir::new();
    let out = voyc(dir.path()).args(["man", "scan"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let page = text(&out.stdout);
    assert!(page.contains(".TH voyc-import-scan 1"), "{page}");
    assert!(page.contains("\\-\\-pattern"), "{page}");
    let out = voyc(dir.path())
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(text(&out.stdout).contains("--pattern"));
}

#[cfg(unix)]
#[test]
fn names_with_commas_quotes_and_line_breaks_are_quoted_so_the_manifest_still_validates() {
    let dir = Dir::new();
    for (i, agent) in ["ann, the boss", "ben \"b\" okafor", "cara\nline two"]
        .into_iter()
        .enumerate()
    {
        dir.write(format!("calls/20240305_{agent}.wav"), wav(i, 100));
    }
    let out = voyc(dir.path())
        .args([
            "scan",
            "calls",
            "--pattern",
            "{call_date:%Y%m%d}_{agent}.wav",
        ])
        .args(["--set", "channel_id=1", "--set", "call_time=09:00:00"])
        .args(["--out", "m.csv", "--quiet"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let validated = voyc(dir.path())
        .args(["validate", "m.csv"])
        .output()
        .unwrap();
    assert_eq!(
        text(&validated.stdout),
        "3 rows checked: all valid, 0 warnings\n",
        "{}",
        show(&validated)
    );
    let mut agents: Vec<String> = csv::Reader::from_path(dir.join("m.csv"))
        .unwrap()
        .records()
        .map(|r| r.unwrap()[2].to_string())
        .collect();
    agents.sort();
    assert_eq!(
        agents,
        ["ann, the boss", "ben \"b\" okafor", "cara\nline two"]
    );

    // A file that does not match is named on one line, its line break escaped.
    dir.write("calls/cara\nthree.wav", wav(9, 100));
    let out = voyc(dir.path())
        .args([
            "scan",
            "calls",
            "--pattern",
            "{call_date:%Y%m%d}_{agent}.wav",
            "--quiet",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        text(&out.stderr).starts_with(
            "calls/cara\\nthree.wav: call_date: expected a date as %Y%m%d (like \"20261128\"), found \"cara\\nthree.wav\"\n"
        ),
        "{}",
        show(&out)
    );
}

#[test]
fn an_empty_folder_is_warned_about_even_with_quiet() {
    let dir = Dir::new();
    std::fs::create_dir(dir.join("tree")).unwrap();
    let out = voyc(dir.path())
        .args([
            "scan",
            "tree",
            "--pattern",
            PATTERN,
            "--out",
            "manifest.csv",
            "--quiet",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(
        text(&out.stderr),
        "warning: tree holds no files: if recordings were expected, check the folder\n"
    );
    assert!(text(&std::fs::read(dir.join("manifest.csv")).unwrap()).starts_with("file,"));
}
