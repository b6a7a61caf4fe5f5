//! The one stage between validation and the pool, used by both passes over the manifest: what
//! to do with each row, given its verdict, `--limit` and what the journal holds for it. Pass 1
//! counts the steps (and `--dry-run` prints them); pass 2 settles the rows that need nothing
//! sent and hands the others to the pool. Both passes see the same rows in the same order, so
//! both plan the same steps.

use std::collections::HashMap;

use bytes::Bytes;

use crate::journal::{Leftovers, RowIdentity, State, Stored};
use crate::outcome::{End, Outcome};
use crate::validate::{CheckedRow, Problem, Verdict};

/// What to do with one part of the manifest.
#[derive(Debug)]
pub enum Step {
    /// A problem of the manifest as a whole (or a warning about it): not a row.
    Manifest(Problem),
    /// A row that cannot be sent; reported `invalid` with `--skip-invalid`.
    Invalid {
        line: u64,
        file: Option<String>,
        problems: Vec<Problem>,
    },
    /// A row of another shard (`--shard`): not in this run's report. Its problems are its
    /// fields' errors, which refuse the manifest unless `--skip-invalid`.
    OtherShard { problems: Vec<Problem> },
    /// A valid row past `--limit`: reported `not_attempted`.
    BeyondLimit { line: u64, file: String, limit: u64 },
    /// The journal says an earlier run uploaded this row: nothing is sent.
    AlreadyUploaded {
        row: CheckedRow,
        stored: Stored,
        notes: Vec<String>,
    },
    /// A row to send, with what the journal holds for it (a target to resume with, say).
    Send(ToSend),
}

/// A row the pool is to send.
#[derive(Debug)]
pub struct ToSend {
    pub row: CheckedRow,
    /// The exact bytes call 1 sends.
    pub body: Bytes,
    pub identity: RowIdentity,
    /// What the journal held for the row when it was planned.
    pub stored: Option<Stored>,
    /// Validation's warnings, and what earlier runs left for the row: first in its notes.
    pub notes: Vec<String>,
}

impl ToSend {
    /// The row's outcome when the run stopped before it could be handed out.
    pub fn unsent(self, seq: u64, why: String) -> Outcome {
        let mut notes = self.notes;
        notes.push(why);
        let end = End::NotAttempted { conversation: None };
        Outcome::new(seq, self.row.line, self.row.file, end).noting(notes)
    }
}

impl Step {
    /// The outcome of a row settled without sending anything; `None` for the manifest's own
    /// problems and for a row to send.
    pub fn settled(self, seq: u64) -> Option<Outcome> {
        Some(match self {
            Step::Manifest(_) | Step::OtherShard { .. } | Step::Send(_) => return None,
            Step::Invalid {
                line,
                file,
                problems,
            } => {
                let end = End::Invalid {
                    error: join_problems(&problems),
                };
                Outcome::new(seq, line, file.unwrap_or_default(), end).noting(warnings(&problems))
            }
            Step::BeyondLimit { line, file, limit } => {
                let end = End::NotAttempted { conversation: None };
                Outcome::new(seq, line, file, end).noting(vec![format!("beyond --limit {limit}")])
            }
            Step::AlreadyUploaded { row, stored, notes } => {
                let end = End::AlreadyUploaded {
                    conversation: stored.conversation_id,
                    bytes: stored.bytes,
                    sha256: stored.sha256,
                };
                Outcome::new(seq, row.line, row.file, end).noting(notes)
            }
        })
    }
}

/// Plans each verdict in manifest order. `lookup` reads the journal for a row (`None` when it
/// holds nothing, or when there is no journal yet).
pub struct Planner<L> {
    limit: Option<u64>,
    /// Valid rows seen so far.
    valid: u64,
    lookup: L,
    /// What earlier runs left without audio, by row identity (hex), for the rows' notes.
    leftovers: HashMap<String, Leftovers>,
}

impl<L: FnMut(&RowIdentity) -> Option<Stored>> Planner<L> {
    pub fn new(limit: Option<u64>, lookup: L, leftovers: HashMap<String, Leftovers>) -> Self {
        Planner {
            limit,
            valid: 0,
            lookup,
            leftovers,
        }
    }

    pub fn plan(&mut self, verdict: Verdict) -> Step {
        let (row, problems) = match verdict {
            Verdict::Manifest(problem) | Verdict::Empty(problem) => {
                return Step::Manifest(problem);
            }
            Verdict::Invalid {
                line,
                file,
                problems,
            } => {
                return Step::Invalid {
                    line,
                    file,
                    problems,
                };
            }
            // Not counted towards `--limit`, which applies within the shard.
            Verdict::OtherShard { problems, .. } => {
                let errors = problems.into_iter().filter(Problem::is_error).collect();
                return Step::OtherShard { problems: errors };
            }
            Verdict::Valid { row, warnings } => (row, warnings),
        };
        self.valid += 1;
        if let Some(limit) = self.limit.filter(|&limit| self.valid > limit) {
            return Step::BeyondLimit {
                line: row.line,
                file: row.file,
                limit,
            };
        }
        let body = body_bytes(&row);
        let (identity, stored) = self.find(&row, &body);
        let mut notes = warnings(&problems);
        if let Some(left) = self.leftovers.get(&identity.hex()) {
            notes.push(left.note());
        }
        match stored {
            Some(stored) if stored.state == State::Uploaded => {
                Step::AlreadyUploaded { row, stored, notes }
            }
            stored => Step::Send(ToSend {
                row,
                body,
                identity,
                stored,
                notes,
            }),
        }
    }
}

impl<L: FnMut(&RowIdentity) -> Option<Stored>> Planner<L> {
    /// The row's identity and what the journal holds for it. A journal of voyc-import 0.1 keyed
    /// rows by the path as written: a row this version does not know under its normalised path
    /// (`./a.wav` is `a.wav`) is looked up under that one, and keeps it if found, so that a
    /// journal written before still resumes (its uploaded rows stay uploaded, its targets and
    /// leftovers stay the row's). Paths that need no folding have one identity in both.
    fn find(&mut self, row: &CheckedRow, body: &[u8]) -> (RowIdentity, Option<Stored>) {
        let identity = RowIdentity::of_row(&row.file, row.size, body);
        if let Some(stored) = (self.lookup)(&identity) {
            return (identity, Some(stored));
        }
        let as_written = RowIdentity::new(&row.file, row.size, body);
        if as_written != identity
            && let Some(stored) = (self.lookup)(&as_written)
        {
            return (as_written, Some(stored));
        }
        (identity, None)
    }
}

/// The exact bytes call 1 sends for a row.
fn body_bytes(row: &CheckedRow) -> Bytes {
    Bytes::from(serde_json::to_vec(&row.body).expect("a JSON object serialises"))
}

/// `call_date "2024-13-01": not a valid date, ...; agent: required, but missing`.
fn join_problems(problems: &[Problem]) -> String {
    problems
        .iter()
        .filter(|p| p.is_error())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Warnings go to the row's notes.
fn warnings(problems: &[Problem]) -> Vec<String> {
    problems
        .iter()
        .filter(|p| !p.is_error())
        .map(ToString::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::State;
    use crate::validate::sniff::AudioFormat;

    fn verdict(file: &str) -> Verdict {
        let mut body = serde_json::Map::new();
        body.insert("agent".into(), "A".into());
        Verdict::Valid {
            row: CheckedRow {
                line: 2,
                file: file.into(),
                path: file.into(),
                size: 10,
                modified: None,
                format: AudioFormat::Wav,
                body,
            },
            warnings: Vec::new(),
        }
    }

    fn uploaded() -> Stored {
        Stored {
            state: State::Uploaded,
            conversation_id: None,
            target: None,
            expires_at: None,
            bytes: Some(10),
            sha256: None,
            error: None,
        }
    }

    #[test]
    fn a_row_journaled_under_another_spelling_of_its_path_is_already_uploaded() {
        let body = br#"{"agent":"A"}"#;
        let journaled = RowIdentity::of_row("calls/1.wav", 10, body);
        let mut planner = Planner::new(
            None,
            |identity: &RowIdentity| (*identity == journaled).then(uploaded),
            HashMap::new(),
        );
        for file in [
            "calls/1.wav",
            "./calls/1.wav",
            "calls//1.wav",
            "x/../calls/1.wav",
        ] {
            assert!(
                matches!(planner.plan(verdict(file)), Step::AlreadyUploaded { .. }),
                "{file}"
            );
        }
        assert!(matches!(
            planner.plan(verdict("calls/2.wav")),
            Step::Send(_)
        ));
    }

    #[test]
    fn a_row_an_earlier_version_journaled_under_the_path_as_written_still_resumes() {
        let body = br#"{"agent":"A"}"#;
        // voyc-import 0.1 keyed the row by "./calls/1.wav" exactly.
        let old = RowIdentity::new("./calls/1.wav", 10, body);
        assert_ne!(old, RowIdentity::of_row("./calls/1.wav", 10, body));
        let mut planner = Planner::new(
            None,
            |identity: &RowIdentity| (*identity == old).then(uploaded),
            HashMap::new(),
        );
        assert!(matches!(
            planner.plan(verdict("./calls/1.wav")),
            Step::AlreadyUploaded { .. }
        ));
        let mut planner = Planner::new(
            None,
            |identity: &RowIdentity| {
                (*identity == old).then(|| Stored {
                    state: State::Failed,
                    ..uploaded()
                })
            },
            HashMap::new(),
        );
        let Step::Send(send) = planner.plan(verdict("./calls/1.wav")) else {
            panic!("a failed row is sent again");
        };
        assert_eq!(
            send.identity, old,
            "it keeps the identity its journal rows have"
        );
    }
}
