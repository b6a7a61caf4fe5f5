//! `merge-reports`: the reports of a manifest's shards joined back into one.

use std::path::Path;

use crate::util::{Dir, samples, show, voyc};

/// A real report of the samples (7 rows, uploaded to an in-process sandbox), as its lines.
fn sample_report(dir: &Dir) -> Vec<String> {
    let out = voyc(dir.path())
        .args(["upload", "--sandbox", "--quiet", "--report", "all.csv"])
        .arg(samples().join("manifest.csv"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    std::fs::read_to_string(dir.join("all.csv"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// A report of `rows` (lines of `sample_report` after its header).
fn write_report(path: &Path, header: &str, rows: &[&String]) {
    let mut text = format!("{header}\n");
    for row in rows {
        text.push_str(row);
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

#[test]
fn shard_reports_merge_back_into_the_whole_report_in_manifest_order() {
    let dir = Dir::new();
    let lines = sample_report(&dir);
    let (header, rows) = (&lines[0], &lines[1..]);
    let odd: Vec<&String> = rows.iter().step_by(2).collect();
    let even: Vec<&String> = rows.iter().skip(1).step_by(2).collect();
    write_report(&dir.join("shard-2.csv"), header, &even);
    write_report(&dir.join("shard-1.csv"), header, &odd);
    let out = voyc(dir.path())
        .args([
            "merge-reports",
            "shard-2.csv",
            "shard-1.csv",
            "--out",
            "merged.csv",
        ])
        .arg("--manifest")
        .arg(samples().join("manifest.csv"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let merged = std::fs::read_to_string(dir.join("merged.csv")).unwrap();
    assert_eq!(
        merged,
        lines.join("\n") + "\n",
        "the same report, byte for byte"
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim_end(),
        "merged 2 reports into merged.csv: 7 rows: 7 uploaded"
    );

    // The same as JSONL, read back by the same reader.
    let out = voyc(dir.path())
        .args(["merge-reports", "merged.csv", "--out", "merged.jsonl"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let again = voyc(dir.path())
        .args(["merge-reports", "merged.jsonl", "--out", "again.csv"])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(0), "{}", show(&again));
    assert_eq!(
        std::fs::read_to_string(dir.join("again.csv")).unwrap(),
        merged
    );
}

#[test]
fn a_missing_and_a_repeated_row_are_named_and_exit_1() {
    let dir = Dir::new();
    let lines = sample_report(&dir);
    let (header, rows) = (&lines[0], &lines[1..]);
    // Shard 1 lost the row of line 3; shard 2 holds line 5 as well.
    let one: Vec<&String> = rows.iter().filter(|r| !r.starts_with("3,")).collect();
    let two: Vec<&String> = rows.iter().filter(|r| r.starts_with("5,")).collect();
    write_report(&dir.join("one.csv"), header, &one);
    write_report(&dir.join("two.csv"), header, &two);
    let out = voyc(dir.path())
        .args(["merge-reports", "one.csv", "two.csv", "--out", "m.csv"])
        .arg("--manifest")
        .arg(samples().join("manifest.csv"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let manifest = samples().join("manifest.csv");
    assert!(
        stderr.contains(
            "line 5 (calls/0004.opus): in 2 reports: one.csv, two.csv; the first is kept"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{}:3: this row is in no report",
            manifest.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr
            .trim_end()
            .ends_with("6 rows: 6 uploaded; 1 repeated, 1 missing"),
        "{stderr}"
    );
}

#[test]
fn a_file_that_is_not_a_report_is_a_usage_error_naming_it() {
    let dir = Dir::new();
    dir.write("r.csv", "file,status\ncalls/1.wav,uploaded\n");
    let out = voyc(dir.path())
        .args(["merge-reports", "r.csv", "--out", "m.csv"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with(
            "error: r.csv: not a report of voyc-import: its header is not line,file,status,"
        ),
        "{}",
        show(&out)
    );
    assert!(!dir.join("m.csv").exists());
}
