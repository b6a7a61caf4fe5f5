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
            Step::Manifest(_) | Step::Send(_) => return None,
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
        let identity = RowIdentity::new(&row.file, row.size, &body);
        let stored = (self.lookup)(&identity);
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
