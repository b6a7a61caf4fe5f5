//! Shard reports joined into one: every row in manifest order (by its `line`), each line once,
//! and — given the manifest — every manifest row accounted for. What does not add up is named
//! row by row: a line two reports both hold, a manifest row no report holds, a report row the
//! manifest does not have.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::report::ReportRow;

/// A line that more than one report (or one report twice) holds. The first one read is kept.
#[derive(Debug, PartialEq, Eq)]
pub struct Repeated {
    pub line: u64,
    pub file: String,
    /// Every report that holds it, in the order given (a report that holds it twice, twice).
    pub reports: Vec<PathBuf>,
}

/// The merge, and what does not add up.
#[derive(Debug, Default)]
pub struct Merged {
    /// One row per line, in manifest order.
    pub rows: Vec<ReportRow>,
    pub repeated: Vec<Repeated>,
    /// Manifest rows (their lines) that no report holds.
    pub missing: Vec<u64>,
    /// Rows (line, file) that no manifest row starts on: a report of another manifest.
    pub unknown: Vec<(u64, String)>,
}

impl Merged {
    /// Every row once, and with a manifest, every manifest row and only those.
    pub fn is_complete(&self) -> bool {
        self.repeated.is_empty() && self.missing.is_empty() && self.unknown.is_empty()
    }
}

/// Joins `reports` (each with its rows, in the order given); `manifest_lines` are the lines the
/// manifest's rows start on, when the manifest is given.
pub fn merge(reports: Vec<(PathBuf, Vec<ReportRow>)>, manifest_lines: Option<&[u64]>) -> Merged {
    let mut by_line: BTreeMap<u64, (ReportRow, Vec<PathBuf>)> = BTreeMap::new();
    for (path, rows) in reports {
        for row in rows {
            match by_line.get_mut(&row.line) {
                Some((_, holders)) => holders.push(path.clone()),
                None => {
                    by_line.insert(row.line, (row, vec![path.clone()]));
                }
            }
        }
    }
    let mut merged = Merged::default();
    if let Some(lines) = manifest_lines {
        merged.missing = lines
            .iter()
            .copied()
            .filter(|line| !by_line.contains_key(line))
            .collect();
        let known: std::collections::HashSet<u64> = lines.iter().copied().collect();
        merged.unknown = by_line
            .values()
            .filter(|(row, _)| !known.contains(&row.line))
            .map(|(row, _)| (row.line, row.file.clone()))
            .collect();
    }
    for (line, (row, holders)) in by_line {
        if holders.len() > 1 {
            merged.repeated.push(Repeated {
                line,
                file: row.file.clone(),
                reports: holders,
            });
        }
        merged.rows.push(row);
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::RowStatus;

    fn rows(lines: &[u64]) -> Vec<ReportRow> {
        lines
            .iter()
            .map(|&line| ReportRow::new(line, format!("calls/{line}.wav"), RowStatus::Uploaded))
            .collect()
    }

    fn report(name: &str, lines: &[u64]) -> (PathBuf, Vec<ReportRow>) {
        (PathBuf::from(name), rows(lines))
    }

    #[test]
    fn shards_interleave_back_into_manifest_order() {
        let merged = merge(
            vec![report("s2.csv", &[3, 6]), report("s1.csv", &[2, 5, 4])],
            Some(&[2, 3, 4, 5, 6]),
        );
        let lines: Vec<u64> = merged.rows.iter().map(|r| r.line).collect();
        assert_eq!(lines, [2, 3, 4, 5, 6]);
        assert!(merged.is_complete(), "{merged:?}");
    }

    #[test]
    fn a_missing_a_repeated_and_an_unknown_row_are_each_named() {
        let merged = merge(
            vec![report("s1.csv", &[2, 4]), report("s2.csv", &[4, 9])],
            Some(&[2, 3, 4]),
        );
        assert_eq!(merged.missing, [3]);
        assert_eq!(
            merged.repeated,
            [Repeated {
                line: 4,
                file: "calls/4.wav".into(),
                reports: vec!["s1.csv".into(), "s2.csv".into()],
            }]
        );
        assert_eq!(merged.unknown, [(9, "calls/9.wav".to_string())]);
        assert_eq!(merged.rows.len(), 3, "a repeated line is kept once");
        assert!(!merged.is_complete());
    }

    #[test]
    fn without_the_manifest_only_repeats_can_be_found() {
        let merged = merge(vec![report("a.csv", &[2, 2])], None);
        assert_eq!(merged.repeated[0].reports, vec![PathBuf::from("a.csv"); 2]);
        assert!(merged.missing.is_empty() && merged.unknown.is_empty());
    }
}
