//! How each manifest row ended in a run. The plan settles the rows it need not send (invalid,
//! beyond `--limit`, already uploaded, or left when the run stopped); the pool's engine settles
//! the rows it took through the calls. The report alone turns outcomes into its rows.

use std::time::Duration;

use crate::target::ConversationId;

/// One settled row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The row's position among all manifest rows (0 for the first): its place in the report.
    pub seq: u64,
    /// The manifest line the row starts on.
    pub line: u64,
    /// The audio path as written in the manifest.
    pub file: String,
    pub end: End,
    /// Requests made for the row in this run: 1 when each call worked the first time, plus one
    /// per retry of either call and one for a renewed target; 0 when nothing was sent.
    pub attempts: u32,
    /// Time spent on the row in this run, when it was worked on.
    pub duration: Option<Duration>,
    /// What is worth knowing that is not an error, in order.
    pub notes: Vec<String>,
}

/// How a row ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// Both calls succeeded in this run.
    Uploaded {
        conversation: ConversationId,
        bytes: u64,
        sha256: String,
    },
    /// The journal says an earlier run uploaded it; nothing was sent.
    AlreadyUploaded {
        conversation: Option<ConversationId>,
        bytes: Option<u64>,
        sha256: Option<String>,
    },
    /// A permanent error, or retries ran out; `conversation` is the one call 1 created, if any.
    Failed {
        conversation: Option<ConversationId>,
        error: String,
    },
    /// Skipped by `--skip-invalid`; `error` lists its problems.
    Invalid { error: String },
    /// Not tried, or given up on before it finished (the journal keeps where it got to).
    NotAttempted {
        conversation: Option<ConversationId>,
    },
}

impl Outcome {
    /// A row settled without any request of this run.
    pub fn new(seq: u64, line: u64, file: impl Into<String>, end: End) -> Outcome {
        Outcome {
            seq,
            line,
            file: file.into(),
            end,
            attempts: 0,
            duration: None,
            notes: Vec::new(),
        }
    }

    /// With these notes.
    pub fn noting(mut self, notes: Vec<String>) -> Outcome {
        self.notes = notes;
        self
    }
}
