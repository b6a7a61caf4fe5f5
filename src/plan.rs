//! The one stage between validation and the pool, used by both passes over the manifest: what
//! to do with each row, given its verdict, `--limit` and what the journal holds for it. Pass 1
//! counts the steps (and `--dry-run` prints them); pass 2 settles the rows that need nothing
//! sent and hands the others to the pool. Both passes see the same rows in the same order, so
//! both plan the same steps.

use std::collections::HashMap;

use bytes::Bytes;

use crate::journal::{
    EarlierUpload, Journal, Leftovers, RowIdentity, State, Stored, identity_path,
};
use crate::outcome::{End, Outcome};
use crate::validate::{CheckedRow, Problem, Unread, Verdict};

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

/// What the planner asks the journal. A closure over row identities is one that knows no
/// earlier uploads by file.
pub trait Lookup {
    /// What the journal holds for a row (`None` when it holds nothing, or there is no journal
    /// yet).
    fn row(&mut self, identity: &RowIdentity) -> Option<Stored>;

    /// The latest row an earlier run uploaded to this destination whose file has this path
    /// (a row's key, [`RowIdentity::key`]: the folded path, or an object's URL) and size (see
    /// [`crate::journal::Journal::uploaded_file`]).
    fn uploaded_file(&mut self, _path: &str, _size: u64) -> Option<EarlierUpload> {
        None
    }
}

impl<F: FnMut(&RowIdentity) -> Option<Stored>> Lookup for F {
    fn row(&mut self, identity: &RowIdentity) -> Option<Stored> {
        self(identity)
    }
}

/// Plans each verdict in manifest order, asking `lookup` what the journal holds.
pub struct Planner<L> {
    limit: Option<u64>,
    /// Valid rows seen so far.
    valid: u64,
    lookup: L,
    /// What earlier runs left without audio, by row identity (hex), for the rows' notes.
    leftovers: HashMap<String, Leftovers>,
    /// `--reupload-changed`: a re-export of an uploaded file with other metadata is sent as a
    /// new conversation instead of being reported already uploaded.
    reupload_changed: bool,
}

impl<L: Lookup> Planner<L> {
    pub fn new(limit: Option<u64>, lookup: L, leftovers: HashMap<String, Leftovers>) -> Self {
        Planner {
            limit,
            valid: 0,
            lookup,
            leftovers,
            reupload_changed: false,
        }
    }

    /// `--reupload-changed`.
    pub fn reuploading_changed(mut self, reupload_changed: bool) -> Self {
        self.reupload_changed = reupload_changed;
        self
    }

    pub fn plan(&mut self, verdict: Verdict) -> Step {
        let (mut row, problems) = match verdict {
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
        let (body, first) = match row.prepared.take().map(|prepared| *prepared) {
            Some(Prepared { body, identity, .. }) => (body, Some(identity)),
            None => (body_bytes(&row.body), None),
        };
        let (identity, stored) = self.find(&row, &body, first);
        let mut notes = warnings(&problems);
        if let Some(left) = self.leftovers.get(&identity.hex()) {
            notes.push(left.note());
        }
        match stored {
            Some(stored) if stored.state == State::Uploaded => {
                Step::AlreadyUploaded { row, stored, notes }
            }
            // Nothing known of this row: the same recording may have been uploaded under other
            // metadata (a re-export with a corrected field), which is not sent again by default.
            None if let Some(earlier) = self.earlier_upload(&row, &identity) => {
                let changed = changed_note(&earlier, &body);
                let conversation = earlier
                    .stored
                    .conversation_id
                    .as_ref()
                    .map_or_else(|| "the earlier one".to_string(), |id| id.0.clone());
                if self.reupload_changed {
                    notes.push(format!(
                        "{changed}; sent as a new conversation (--reupload-changed); conversation {conversation} stays as it was: Voyc has no call to update or replace one"
                    ));
                    Step::Send(ToSend {
                        row,
                        body,
                        identity,
                        stored: None,
                        notes,
                    })
                } else {
                    notes.push(format!(
                        "{changed}; not sent again (--reupload-changed sends it as a new conversation)"
                    ));
                    Step::AlreadyUploaded {
                        row,
                        stored: earlier.stored,
                        notes,
                    }
                }
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

impl<L: Lookup> Planner<L> {
    /// The latest upload of the row's file ([`Lookup::uploaded_file`]), found by the row's key;
    /// an object's row journaled before schema 5 also by its path as written (what it was
    /// kept under then: an object under an object `--base-dir` is named by its relative path).
    fn earlier_upload(
        &mut self,
        row: &CheckedRow,
        identity: &RowIdentity,
    ) -> Option<EarlierUpload> {
        if let Some(earlier) = self.lookup.uploaded_file(identity.key(), row.size) {
            return Some(earlier);
        }
        let path = identity_path(&row.file);
        if path == identity.key() {
            return None;
        }
        self.lookup.uploaded_file(&path, row.size)
    }

    /// The row's identity and what the journal holds for it. A journal of voyc-import 0.1 keyed
    /// rows by the path as written: a row this version does not know under its normalised path
    /// (`./a.wav` is `a.wav`) is looked up under that one, and keeps it if found, so that a
    /// journal written before still resumes (its uploaded rows stay uploaded, its targets and
    /// leftovers stay the row's). Paths that need no folding have one identity in both.
    fn find(
        &mut self,
        row: &CheckedRow,
        body: &[u8],
        first: Option<RowIdentity>,
    ) -> (RowIdentity, Option<Stored>) {
        let identity = first.unwrap_or_else(|| identity_of(row, body));
        if row.object.is_some() {
            let stored = self.lookup.row(&identity);
            return (identity, stored);
        }
        if let Some(stored) = self.lookup.row(&identity) {
            return (identity, Some(stored));
        }
        let as_written = RowIdentity::new(&row.file, row.size, body);
        if as_written != identity
            && let Some(stored) = self.lookup.row(&as_written)
        {
            return (as_written, Some(stored));
        }
        (identity, None)
    }
}

/// A valid row's call-1 body as bytes, and the identity it is first looked up by, made once
/// before the row is planned (see [`prepare`]); and, if it was looked up then, what the
/// journal holds for it (see [`Prepared::unread`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Prepared {
    body: Bytes,
    identity: RowIdentity,
    found: Option<Option<Stored>>,
}

impl Prepared {
    /// The bodies and identities of rows whose files are not read yet, and what `journal`
    /// holds for each (all looked up at once); `None` for each if it cannot be read: their
    /// files are then read, and the error seen when the rows are planned.
    pub fn unread(journal: &Journal, rows: &[Unread<'_>]) -> Vec<Option<Prepared>> {
        use rayon::prelude::*;
        let made: Vec<(Bytes, RowIdentity)> = rows
            .par_iter()
            .map(|row| {
                let body = body_bytes(row.body);
                let identity = RowIdentity::of_row(row.file, row.size, &body);
                (body, identity)
            })
            .collect();
        let identities: Vec<RowIdentity> =
            made.iter().map(|(_, identity)| identity.clone()).collect();
        match journal.lookup_many(&identities) {
            Ok(answers) => made
                .into_iter()
                .zip(answers)
                .map(|((body, identity), found)| {
                    Some(Prepared {
                        body,
                        identity,
                        found: Some(found),
                    })
                })
                .collect(),
            Err(_) => rows.iter().map(|_| None).collect(),
        }
    }

    /// The journal has the row uploaded: it is not sent again, so its file need not be read.
    pub fn settled(&self) -> bool {
        matches!(&self.found, Some(Some(stored)) if stored.state == State::Uploaded)
    }

    /// What the journal held for the row when it was prepared, if it was asked then; the row
    /// keeps its body and identity.
    pub fn take_found(&mut self) -> Option<(RowIdentity, Option<Stored>)> {
        let found = self.found.take()?;
        Some((self.identity.clone(), found))
    }
}

/// The identity the planner first looks a valid row up by (an object's, or the normalised
/// path's), so that the journal can be asked for many rows at once before they are planned.
/// The row keeps it and its body's bytes, which the planner then takes instead of making them
/// again.
pub fn prepare(row: &mut CheckedRow) -> RowIdentity {
    let body = body_bytes(&row.body);
    let identity = identity_of(row, &body);
    row.prepared = Some(Box::new(Prepared {
        body,
        identity: identity.clone(),
        found: None,
    }));
    identity
}

fn identity_of(row: &CheckedRow, body: &[u8]) -> RowIdentity {
    match &row.object {
        Some(object) => RowIdentity::of_object(
            &object.url.to_string(),
            object.etag.as_deref(),
            row.size,
            body,
        ),
        None => RowIdentity::of_row(&row.file, row.size, body),
    }
}

/// What changed since `earlier` was uploaded, for the row's notes: `metadata changed since
/// conversation c-7 was uploaded: agent "Ann" → "Anne"; team (none) → "north"`.
fn changed_note(earlier: &EarlierUpload, body: &[u8]) -> String {
    let conversation = match &earlier.stored.conversation_id {
        Some(id) => format!("conversation {id}"),
        None => "a conversation".to_string(),
    };
    let Some(before) = earlier.body.as_deref() else {
        return format!(
            "this file (same path and size) was uploaded before as {conversation}, by a voyc-import that kept no metadata to compare, so which fields differ is not known"
        );
    };
    let parse = |text: &[u8]| {
        serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(text)
            .unwrap_or_default()
    };
    let (before, now) = (parse(before.as_bytes()), parse(body));
    let shown = |value: Option<&serde_json::Value>| match value {
        Some(value) => crate::human::one_line(&value.to_string()).into_owned(),
        None => "(none)".to_string(),
    };
    let differences: Vec<String> = now
        .keys()
        .chain(before.keys().filter(|key| !now.contains_key(*key)))
        .filter(|key| before.get(*key) != now.get(*key))
        .map(|key| format!("{key} {} → {}", shown(before.get(key)), shown(now.get(key))))
        .collect();
    match differences.is_empty() {
        true => format!(
            "this file (same path and size) was uploaded before as {conversation}, with the same metadata, from the path {}",
            crate::human::one_line(&earlier.file)
        ),
        false => format!(
            "metadata changed since {conversation} was uploaded: {}",
            differences.join("; ")
        ),
    }
}

/// The exact bytes call 1 sends for a row whose body is `body`.
fn body_bytes(body: &serde_json::Map<String, serde_json::Value>) -> Bytes {
    Bytes::from(serde_json::to_vec(body).expect("a JSON object serialises"))
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
                object: None,
                format: Some(AudioFormat::Wav),
                body,
                prepared: None,
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

    /// A journal that holds one row uploaded earlier, found by its file only.
    struct Earlier(Option<EarlierUpload>);

    impl Lookup for Earlier {
        fn row(&mut self, _: &RowIdentity) -> Option<Stored> {
            None
        }

        fn uploaded_file(&mut self, path: &str, size: u64) -> Option<EarlierUpload> {
            self.0
                .clone()
                .filter(|_| path == "calls/1.wav" && size == 10)
        }
    }

    fn earlier(body: Option<&str>) -> Earlier {
        Earlier(Some(EarlierUpload {
            stored: Stored {
                conversation_id: Some(crate::target::ConversationId("c-7".into())),
                sha256: Some("ab".into()),
                ..uploaded()
            },
            file: "./calls/1.wav".into(),
            body: body.map(str::to_string),
        }))
    }

    /// `verdict(file)` with these fields in its body.
    fn verdict_with(file: &str, fields: &[(&str, serde_json::Value)]) -> Verdict {
        let Verdict::Valid { mut row, warnings } = verdict(file) else {
            unreachable!()
        };
        row.body = fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        Verdict::Valid { row, warnings }
    }

    #[test]
    fn a_re_export_with_other_metadata_is_already_uploaded_naming_the_conversation_and_the_fields()
    {
        let before = r#"{"agent":"a","call_time":"09:00:00","team":"north","speakers":2}"#;
        let mut planner = Planner::new(None, earlier(Some(before)), HashMap::new());
        let now = verdict_with(
            "calls/1.wav",
            &[
                ("agent", "b".into()),
                ("call_time", "10:00:00".into()),
                ("speakers", 2.into()),
                ("language", "en".into()),
            ],
        );
        let Step::AlreadyUploaded { stored, notes, .. } = planner.plan(now) else {
            panic!("a re-export is not sent again");
        };
        assert_eq!(stored.conversation_id.unwrap().0, "c-7");
        assert_eq!(stored.sha256.as_deref(), Some("ab"));
        assert_eq!(
            notes,
            [
                r#"metadata changed since conversation c-7 was uploaded: agent "a" → "b"; call_time "09:00:00" → "10:00:00"; language (none) → "en"; team "north" → (none); not sent again (--reupload-changed sends it as a new conversation)"#
            ]
        );
        // Another file, or the same path at another size, is another recording.
        assert!(matches!(
            planner.plan(verdict_with("calls/2.wav", &[("agent", "b".into())])),
            Step::Send(_)
        ));
        let Verdict::Valid { mut row, warnings } = verdict("calls/1.wav") else {
            unreachable!()
        };
        row.size = 11;
        assert!(matches!(
            planner.plan(Verdict::Valid { row, warnings }),
            Step::Send(_)
        ));
    }

    #[test]
    fn reupload_changed_sends_a_re_export_as_a_new_conversation_and_says_so() {
        let mut planner = Planner::new(None, earlier(Some(r#"{"agent":"a"}"#)), HashMap::new())
            .reuploading_changed(true);
        let Step::Send(send) =
            planner.plan(verdict_with("./calls/1.wav", &[("agent", "b".into())]))
        else {
            panic!("--reupload-changed sends it");
        };
        assert_eq!(send.stored, None);
        assert_eq!(
            send.notes,
            [
                r#"metadata changed since conversation c-7 was uploaded: agent "a" → "b"; sent as a new conversation (--reupload-changed); conversation c-7 stays as it was: Voyc has no call to update or replace one"#
            ]
        );
    }

    #[test]
    fn a_re_export_of_a_row_journaled_without_its_body_says_the_fields_are_not_known() {
        let mut planner = Planner::new(None, earlier(None), HashMap::new());
        let Step::AlreadyUploaded { notes, .. } = planner.plan(verdict("calls/1.wav")) else {
            panic!("not sent again");
        };
        assert_eq!(
            notes,
            [
                "this file (same path and size) was uploaded before as conversation c-7, by a voyc-import that kept no metadata to compare, so which fields differ is not known; not sent again (--reupload-changed sends it as a new conversation)"
            ]
        );
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
