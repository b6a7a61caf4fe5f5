//! The crash-safe record of what each row has reached; it is how a rerun resumes.
//!
//! A SQLite database (WAL, `synchronous=FULL`, so a commit survives kill -9 and power loss;
//! mode 0600). Rows are keyed by the destination (base URL and organisation; an in-process
//! sandbox is a new destination every run) and by a [`RowIdentity`] built from the path
//! (normalised: `./a.wav` is `a.wav`), the file's size and the exact call-1 body — so moving the
//! whole archive keeps identities, and changing a row's metadata makes it a new row. A row an
//! earlier version journaled under the path as written is still found by that identity. Rows
//! are found by their path (an object's URL) and identity, one index in the order of the paths
//! ([`RowIdentity::key`]), so the new rows of a sorted manifest share its pages. An uploaded
//! row also keeps its size and body, so that a re-export of the same recording with other
//! metadata is found by path and size ([`Journal::uploaded_file`]). A row's upload target is
//! kept apart (`targets`), and deleted once the row is uploaded.
//!
//! Every state change is committed before the step that relies on it: "call 1 started"
//! before call 1 is sent (a kill during call 1 stays explainable), "call 1 done" with the
//! conversation id and target before the upload can complete (the upload holds back its last
//! byte until then), "uploaded" before the row is reported.
//! One writer thread owns the connection and commits whatever is pending in one transaction
//! (group commit), so 32 workers share each fsync instead of queueing for their own.
//!
//! Runs may share a journal (shards, `--state-dir`, two exports that overlap): a row is
//! *claimed* before anything is sent for it, atomically, by the run that will send it
//! (`rows.claimed_by`). Each run is a row of `runs` and holds an exclusive lock on its own file
//! beside the journal (`JOURNAL-run-XXXX.lock`), which the kernel releases however the run ends,
//! kill -9 included: a claim counts while its run's lock is held, and a run whose lock is free is
//! dead, so its rows may be claimed by another. A claim is released when the row is uploaded or
//! has failed, and when the run ends. Another run's live claim is never taken over: the row is
//! left to it, and the run that found it waits and reports it as the holder left it.
//!
//! Tables (see docs/journal.md for queries): `destinations`, `rows`, `targets`,
//! `conversations`, `unknown_conversations`, `runs`, `meta`. The last two together account for every conversation
//! without audio a run may leave: those whose id call 1 returned, and one line for each call 1
//! that may have created a conversation whose id never reached us (an ambiguous failure, an
//! answer that could not be used, a run that stopped during call 1). Reports are written at the
//! end of a run, so a kill -9 loses that run's notes; these tables keep what the notes said.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

use crate::target::{ConversationId, UploadTarget};

/// 2: `runs`, and the claim columns of `rows` (`claimed_by`, `run`). A journal of schema 1 is
/// brought to 2 when first opened; voyc-import 0.1 then refuses it, which is what keeps a run
/// that knows nothing of claims from sharing a journal with one that does.
/// 3: what an uploaded row was uploaded as (`rows.path`, `size`, `body`), indexed by path and
/// size, so that a re-export of the same file with other metadata is found (see
/// [`Journal::uploaded_file`]). A journal of schema 1 or 2 is brought to 3 when first opened
/// for a run: its uploaded rows get their path and size (not their body, which it never kept).
/// 4: `rows` keeps its rows in the order they were first journaled (a rowid table, found by
/// identity through a unique index), so that the rows in flight together share pages and each
/// change rewrites a few pages near the end of the table instead of a random one of all of them;
/// and `conversations` holds only the conversations a row has replaced. A journal of schema 3
/// or before has its `rows` rebuilt in that order (one transaction) when first opened for a run.
/// 5: rows are found by destination, key and identity (`rows_key`, see [`RowIdentity::key`]):
/// every row has its `path` (the key), and a new row lands in the index beside the rows of the
/// paths next to its own, so the rows in flight together share its pages too (a hash-ordered
/// index took one random page a row, which the commit and the checkpoint each wrote again).
/// The key of a row journaled before cannot always be told from its file (an object under an
/// object `--base-dir`): such rows have `keyed` NULL and are found by identity alone
/// (`rows_before_5`, which holds only them) until their next change gives them their key.
/// A row's target is kept in `targets` (see `drop_target`); one journaled before stays in
/// `rows.target`. Nothing is rewritten when a journal of schema 4 is brought to 5.
const SCHEMA_VERSION: &str = "5";

/// `PRAGMA application_id` of every journal: "Voyc" in ASCII. With `user_version` (the schema
/// version), it tells our journals from any other SQLite database, so that a mistyped
/// `--journal` naming another program's database is refused before anything is written to it.
const APPLICATION_ID: i32 = 0x566f_7963;

/// The tables a journal holds: a database without marks (a journal of an earlier version)
/// counts as ours only if it has no other, and has `meta`.
const TABLES: [&str; 7] = [
    "conversations",
    "destinations",
    "meta",
    "rows",
    "runs",
    "targets",
    "unknown_conversations",
];

/// `rows` of schema 4: `id` in the order rows are first journaled.
const ROWS_COLUMNS: &str = "
    id                INTEGER PRIMARY KEY,
    destination       INTEGER NOT NULL REFERENCES destinations(id),
    identity          TEXT NOT NULL,
    file              TEXT NOT NULL,
    line              INTEGER NOT NULL,
    state             TEXT NOT NULL
                      CHECK (state IN ('call1_started', 'call1_done', 'uploaded', 'failed')),
    conversation_id   TEXT,
    target            TEXT,
    target_expires_at TEXT,
    bytes             INTEGER,
    sha256            TEXT,
    error             TEXT,
    updated_at        TEXT NOT NULL,
    claimed_by        INTEGER,
    run               INTEGER,
    path              TEXT,
    size              INTEGER,
    body              TEXT,
    keyed             INTEGER,
    target_id         INTEGER
";

/// The columns `rows` had before schema 4 (and has since, after `id`).
const ROWS_DATA: &str = "destination, identity, file, line, state, conversation_id, target,
    target_expires_at, bytes, sha256, error, updated_at, claimed_by, run, path, size, body";

const SCHEMA_TEMPLATE: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS destinations (
    id           INTEGER PRIMARY KEY,
    label        TEXT NOT NULL UNIQUE,
    base_url     TEXT NOT NULL,
    organisation TEXT NOT NULL,
    created_at   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rows (ROWS_COLUMNS);
CREATE TABLE IF NOT EXISTS conversations (
    destination     INTEGER NOT NULL REFERENCES destinations(id),
    conversation_id TEXT NOT NULL,
    identity        TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    path            TEXT,
    PRIMARY KEY (destination, conversation_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS unknown_conversations (
    destination INTEGER NOT NULL REFERENCES destinations(id),
    identity    TEXT NOT NULL,
    reason      TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS targets (
    id     INTEGER PRIMARY KEY,
    target TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    lock       TEXT NOT NULL,
    pid        INTEGER NOT NULL,
    report     TEXT NOT NULL,
    started_at TEXT NOT NULL
);
";

fn schema() -> String {
    SCHEMA_TEMPLATE.replace("ROWS_COLUMNS", ROWS_COLUMNS)
}

/// After the columns exist (a journal of schema 1 or 2 gains them first).
/// An uploaded row of this destination with this path and size, the latest first.
// INDEXED BY: without statistics SQLite prefers the primary key's prefix (`destination`), a
// scan of every row of the destination for each lookup, which made a run slower with every row
// its journal held (100,000 rows: from 760 to 70 files a second).
const UPLOADED_FILE: &str =
    "SELECT conversation_id, bytes, sha256, file, body FROM rows INDEXED BY rows_key
     WHERE destination = ?1 AND path = ?2 AND size = ?3 AND state = 'uploaded'
       AND updated_at <= ?4
     ORDER BY updated_at DESC LIMIT 1";

/// [`UPLOADED_FILE`] in a journal of schema 3 or 4 (a `--dry-run` does not bring it up to date).
const UPLOADED_FILE_BEFORE_5: &str =
    "SELECT conversation_id, bytes, sha256, file, body FROM rows INDEXED BY rows_uploaded_file
     WHERE destination = ?1 AND path = ?2 AND size = ?3 AND state = 'uploaded'
       AND updated_at <= ?4
     ORDER BY updated_at DESC LIMIT 1";

/// The rows of a destination from a rowid on, as [`Journal::lookup_on`] reads each (see
/// [`Journal::read_neighbours`]).
// NOT INDEXED: SQLite would rather read the whole destination from the identity index and
// sort it by rowid, for every batch.
const NEXT_ROWS: &str = "SELECT id, identity, state, conversation_id, TARGET,
            target_expires_at, bytes, sha256, error
     FROM rows NOT INDEXED WHERE id >= ?1 AND destination = ?2 ORDER BY id LIMIT ?3";

/// A row's target as [`Journal::lookup_on`] reads it: none once uploaded (of no more use, and
/// not parsed); a row of schema 5 keeps it in `targets`, one before in `rows.target`.
fn target_column(keys: Keys) -> &'static str {
    match keys {
        Keys::Before5 => "CASE WHEN state = 'uploaded' THEN NULL ELSE target END",
        Keys::Mixed | Keys::Keyed => {
            "CASE WHEN state = 'uploaded' THEN NULL
                  ELSE coalesce(target, (SELECT t.target FROM targets t WHERE t.id = target_id)) END"
        }
    }
}

/// Made after the table is filled (a journal of schema 4 or before brought up to date): sorted,
/// not row by row. The two `_before_5` indexes hold only what was journaled before schema 5.
const CLAIM_INDEX: &str = "CREATE UNIQUE INDEX IF NOT EXISTS rows_key ON rows (destination, path, identity);
     CREATE UNIQUE INDEX IF NOT EXISTS rows_before_5 ON rows (destination, identity) WHERE keyed IS NULL;
     CREATE INDEX IF NOT EXISTS rows_claimed ON rows (claimed_by) WHERE claimed_by IS NOT NULL;
     CREATE INDEX IF NOT EXISTS conversations_before_5 ON conversations (destination, identity) WHERE path IS NULL;";

/// The most operations one transaction commits.
const MAX_BATCH: usize = 4096;

/// How long the writer holds a commit open for more changes while other rows are in flight,
/// so that the rows moving together share one fsync and each page they share is written once
/// a commit, until it holds one and a half changes a row in flight. Once it holds a change a
/// row waits on ([`Change::is_waited_on`]: call 1 is sent, or the upload's last byte, only once
/// it is committed), 5 ms at most from then, well under one round trip to Voyc; changes nobody
/// waits on (claims of rows still queued, rows uploaded) wait up to 10 ms for company.
/// `scripts/journal-io.sh --rows 20000` at concurrency 32: 3.9 KB written a row, against 5.2 KB
/// when every commit waited 2 ms at most for one change a row (BENCHMARKS.md).
#[derive(Clone, Copy, Debug)]
struct Grouping {
    waited_on: Duration,
    otherwise: Duration,
}

const GROUPING: Grouping = Grouping {
    waited_on: Duration::from_millis(5),
    otherwise: Duration::from_millis(10),
};

/// Who rows are uploaded to: the same manifest sent to two organisations is two sets of rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    /// The key: `https://api.app.voyc.ai org 118`, or `sandbox <instance id>`.
    pub label: String,
    pub base_url: String,
    pub organisation: String,
}

impl Destination {
    pub fn voyc(base_url: &str, organisation: &str) -> Destination {
        let base_url = base_url.trim_end_matches('/').to_string();
        Destination {
            label: format!("{base_url} org {organisation}"),
            base_url,
            organisation: organisation.to_string(),
        }
    }

    /// An in-process sandbox: a new destination every run, even if its port repeats.
    pub fn fresh_sandbox(base_url: &str, organisation: &str) -> Destination {
        let instance = format!("{:016x}{:08x}", fastrand::u64(..), std::process::id());
        Destination {
            label: format!("sandbox {instance}"),
            base_url: base_url.trim_end_matches('/').to_string(),
            organisation: organisation.to_string(),
        }
    }
}

/// A row's identity: SHA-256 over its path (see [`identity_path`]), the file's size and the
/// exact call-1 body (each length-prefixed, so no two inputs run together). It keeps the path
/// it was made from (an object's URL), which orders the journal's rows ([`RowIdentity::key`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RowIdentity {
    hash: [u8; 32],
    key: Arc<str>,
}

/// The path a row's identity is built from: the manifest's path with `.`, empty components
/// (`a//b`) and `a/..` folded away and `/` between the parts, so that `calls/0001.wav`,
/// `./calls/0001.wav` and `calls//0001.wav` in two exports are one row. Relative paths stay
/// relative to the base folder, so moving the whole archive keeps identities. `..` is folded
/// by name, as a user reads the path (a symlinked folder is not followed).
pub fn identity_path(file: &str) -> String {
    use std::path::Component;
    let mut root = String::new();
    let mut parts: Vec<&str> = Vec::new();
    for component in Path::new(file).components() {
        match component {
            Component::Prefix(prefix) => root.push_str(&prefix.as_os_str().to_string_lossy()),
            Component::RootDir => root.push('/'),
            Component::CurDir => {}
            Component::ParentDir => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                // `/..` is `/`; a leading `..` leaves the base folder and is kept.
                _ if !root.is_empty() => {}
                _ => parts.push(".."),
            },
            Component::Normal(name) => parts.push(name.to_str().unwrap_or_default()),
        }
    }
    root + &parts.join("/")
}

impl RowIdentity {
    /// The identity of a row whose path is `file` as the manifest writes it.
    pub fn of_row(file: &str, size: u64, body: &[u8]) -> RowIdentity {
        let path = identity_path(file);
        RowIdentity::hashed(&path, path.clone(), size, body)
    }

    /// The identity of a row whose audio is an object in a store: its URL, its ETag (a
    /// replaced object is another recording) and its size. No local path's identity can be
    /// the same: the URL and ETag are joined by a NUL, which no path holds.
    pub fn of_object(url: &str, etag: Option<&str>, size: u64, body: &[u8]) -> RowIdentity {
        let name = format!("{url}\0etag {}", etag.unwrap_or(""));
        RowIdentity::hashed(&name, url.to_string(), size, body)
    }

    /// Over `file` exactly as given: what voyc-import 0.1 keyed every row by, and still the
    /// identity of a row whose path needs no folding.
    pub fn new(file_as_written: &str, size: u64, body: &[u8]) -> RowIdentity {
        RowIdentity::hashed(file_as_written, identity_path(file_as_written), size, body)
    }

    /// `key` must follow from `name` alone: one identity is always journaled under one key.
    fn hashed(name: &str, key: String, size: u64, body: &[u8]) -> RowIdentity {
        let mut hasher = Sha256::new();
        hasher.update(b"voyc-import row v1\0");
        hasher.update((name.len() as u64).to_le_bytes());
        hasher.update(name.as_bytes());
        hasher.update(size.to_le_bytes());
        hasher.update((body.len() as u64).to_le_bytes());
        hasher.update(body);
        RowIdentity {
            hash: hasher.finalize().into(),
            key: key.into(),
        }
    }

    pub fn hex(&self) -> String {
        hex::encode(self.hash)
    }

    /// What the journal keeps its rows in order of (`rows.path`, before the identity in its
    /// unique index): the folded path, or an object's URL. A manifest sorted by path (as `scan`
    /// writes it) then adds its new rows side by side in the index, not on a random page each.
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// How far a row got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Call 1 was sent (or about to be) and no answer was recorded: a conversation may exist.
    Call1Started,
    /// Call 1 answered; the upload target is recorded.
    Call1Done,
    /// Both calls succeeded.
    Uploaded,
    /// The last attempt failed; `error` says why.
    Failed,
}

impl State {
    fn parse(text: &str) -> Option<State> {
        Some(match text {
            "call1_started" => State::Call1Started,
            "call1_done" => State::Call1Done,
            "uploaded" => State::Uploaded,
            "failed" => State::Failed,
            _ => return None,
        })
    }
}

/// What the journal holds for a row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub state: State,
    pub conversation_id: Option<ConversationId>,
    /// The upload target while it may still be used (cleared once uploaded).
    pub target: Option<UploadTarget>,
    pub expires_at: Option<DateTime<Utc>>,
    pub bytes: Option<u64>,
    pub sha256: Option<String>,
    pub error: Option<String>,
}

/// One state change for one row.
#[derive(Clone, Debug)]
pub enum Change {
    /// About to send call 1: forgets any earlier target (its conversation stays in
    /// `conversations`).
    Call1Started,
    Call1Done {
        conversation_id: ConversationId,
        target: UploadTarget,
    },
    /// `body`: the exact call-1 body, kept so that a re-export of the file with other metadata
    /// can say which fields differ.
    Uploaded {
        bytes: u64,
        sha256: String,
        body: bytes::Bytes,
    },
    /// Keeps the conversation and target, so a rerun can still use a valid target.
    Failed { error: String },
    /// Call 1 may have created a conversation whose id we never learned; `reason` says how.
    /// Leaves the row's state as it is.
    MaybeConversation { reason: String },
    /// Takes back a claim that created the row (see [`Change::Claim`]) when its call 1 was
    /// then never sent (the run stopped first): the row is as if never seen.
    NotStarted,
    /// Claims the row for this run, unless it is uploaded or another live run holds it; see
    /// [`Journal::claim_state`] for whether it was taken. A row the journal does not hold yet is
    /// created at `call1_started`, so that a new row's claim is also its "call 1 started".
    Claim,
}

impl Change {
    /// Whether the row's next step waits for this change to be committed: call 1 is sent only
    /// once "call 1 started" is (and a possible conversation noted), the upload's last byte only
    /// once "call 1 done" is. A claim is sent while its row is still queued, and a worker goes
    /// on to its next row while its row's last change is committed.
    fn is_waited_on(&self) -> bool {
        matches!(
            self,
            Change::Call1Started | Change::Call1Done { .. } | Change::MaybeConversation { .. }
        )
    }
}

struct Op {
    /// The run making the change (`runs.id`).
    run: i64,
    identity: RowIdentity,
    file: String,
    line: u64,
    change: Change,
    done: Reply,
}

/// Where an operation's result goes once its transaction is committed.
struct Reply(tokio::sync::oneshot::Sender<Result<(), String>>);

impl Reply {
    fn send(self, result: Result<(), String>) {
        // The waiting side may have gone (a run aborted); the commit stands either way.
        drop(self.0.send(result));
    }
}

/// A change on its way to disk.
#[derive(Debug)]
pub struct Pending {
    rx: tokio::sync::oneshot::Receiver<Result<(), String>>,
    path: PathBuf,
}

impl Pending {
    /// A change already known to be committed (a claim that was read back).
    pub fn committed_already(path: &Path) -> Pending {
        let (tx, rx) = tokio::sync::oneshot::channel();
        drop(tx.send(Ok(())));
        Pending {
            rx,
            path: path.to_path_buf(),
        }
    }

    /// Waits until the change is committed.
    pub async fn committed(self) -> anyhow::Result<()> {
        let result = self
            .rx
            .await
            .map_err(|_| anyhow::anyhow!("the journal's writer stopped"))?;
        result.map_err(|err| {
            anyhow::anyhow!("cannot write the journal {}: {err}", self.path.display())
        })
    }
}

/// A batch of fewer rows is only looked up by the index (see [`Journal::read_neighbours`]).
const NEIGHBOURS_AT_LEAST: usize = 256;
/// How many of a batch's first rows the index is asked for, to find where to read.
const NEIGHBOURS_ANCHORS: usize = 4;
/// How far before where a batch is expected it is read: rows in flight together are
/// journaled a little out of order.
const NEIGHBOURS_SLACK: i64 = 128;
/// After this many batches in a row found mostly elsewhere, rows are looked up only by the
/// index: the manifest is in another order than its journal.
const NEIGHBOURS_GIVE_UP: u32 = 4;

#[derive(Default)]
struct Neighbours {
    /// The id (rowid) the next batch's rows are read from; `None`: found again by the index.
    next: Option<i64>,
    misses: u32,
}

/// A row's columns as [`Journal::lookup_on`] selects them: state, conversation id, target
/// (none once uploaded), when it expires, bytes, SHA-256, error.
struct StoredColumns(
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
);

impl StoredColumns {
    fn from_row(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<StoredColumns> {
        Ok(StoredColumns(
            row.get(first)?,
            row.get(first + 1)?,
            row.get(first + 2)?,
            row.get(first + 3)?,
            row.get(first + 4)?,
            row.get(first + 5)?,
            row.get(first + 6)?,
        ))
    }
}

/// The open journal: lookups on a reading connection, changes through the writer thread.
pub struct Journal {
    path: PathBuf,
    destination_id: i64,
    reader: Mutex<Connection>,
    /// More connections for [`Journal::lookup_many`], opened when first needed.
    spare_readers: Mutex<Vec<Connection>>,
    /// Where [`Journal::read_neighbours`] reads the next batch's rows.
    neighbours: Mutex<Neighbours>,
    writer: Mutex<Option<mpsc::Sender<Op>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// This run, while the journal is open for writing.
    run: Mutex<Option<Run>>,
    /// 0 when opened only for lookups.
    run_id: i64,
    /// Rows in flight (see [`Journal::row_in_flight`]): how many changes may be a moment away.
    in_flight: Arc<AtomicUsize>,
    /// When it was opened: [`Journal::uploaded_file`] sees only rows uploaded before, so that
    /// both passes over a manifest plan the same.
    opened_at: String,
    keys: Keys,
}

/// How a journal's rows are found by identity (see schema 5 at [`SCHEMA_VERSION`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Keys {
    /// A journal of schema 4 or before, opened for a dry run's lookups: by identity.
    Before5,
    /// By key and identity, then among the rows journaled before schema 5 by identity.
    Mixed,
    /// By key and identity: every row has its key.
    Keyed,
}

fn keys_of(connection: &Connection) -> rusqlite::Result<Keys> {
    let version: i64 = connection.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version < 5 {
        return Ok(Keys::Before5);
    }
    let before: bool = connection.query_row(
        "SELECT EXISTS (SELECT 1 FROM rows WHERE keyed IS NULL)",
        [],
        |r| r.get(0),
    )?;
    Ok(if before { Keys::Mixed } else { Keys::Keyed })
}

/// A row an earlier run uploaded, found by its file: see [`Journal::uploaded_file`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EarlierUpload {
    pub stored: Stored,
    /// The path as that row's manifest wrote it.
    pub file: String,
    /// The call-1 body it was uploaded with; `None` for a row journaled by a voyc-import that
    /// did not keep it.
    pub body: Option<String>,
}

/// This run's row of `runs` and the lock that says it is alive.
struct Run {
    id: i64,
    lock_path: PathBuf,
    lock: std::fs::File,
}

/// Who holds a row's claim, read back after [`Change::Claim`] was committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Holder {
    /// This run. `fresh`: its claim created the row (nothing was known of it before).
    Me { fresh: bool },
    /// Another run, alive when it last looked (see [`Journal::is_alive`]).
    Other(OtherRun),
    /// Nobody.
    Nobody,
}

/// A run that holds a claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtherRun {
    pub id: i64,
    pub pid: Option<i64>,
    pub report: Option<String>,
    lock: Option<PathBuf>,
}

impl OtherRun {
    /// `another run (pid 4242, report rA.csv)`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(pid) = self.pid {
            parts.push(format!("pid {pid}"));
        }
        if let Some(report) = self.report.as_deref().filter(|r| !r.is_empty()) {
            parts.push(format!("report {report}"));
        }
        match parts.is_empty() {
            true => "another run".to_string(),
            false => format!("another run ({})", parts.join(", ")),
        }
    }
}

/// A row as the journal holds it now, and who holds its claim.
#[derive(Clone, Debug)]
pub struct ClaimState {
    pub stored: Option<Stored>,
    pub holder: Holder,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("path", &self.path).finish()
    }
}

impl Journal {
    /// Opens (creating it with mode 0600 if needed) the journal at `path` for `destination`.
    #[cfg(test)]
    pub fn open(path: &Path, destination: &Destination) -> anyhow::Result<Journal> {
        Journal::open_for_run(path, destination, Path::new(""))
    }

    /// Opens (creating it with mode 0600 if needed) the journal at `path` for `destination`, as
    /// a run that writes `report` (named to other runs that find its claims).
    pub fn open_for_run(
        path: &Path,
        destination: &Destination,
        report: &Path,
    ) -> anyhow::Result<Journal> {
        let opened_at = now();
        refuse_foreign(path)?;
        create_private(path)
            .with_context(|| format!("cannot create the journal {}", path.display()))?;
        let mut writer = connect(path)?;
        let (lock_path, lock) = run_lock(path)?;
        // SQLite's own errors (a full disk) say nothing of which file: name it.
        let set_up = set_up(&mut writer, path, destination, &lock_path, report).map_err(|err| {
            match err.is::<rusqlite::Error>() {
                true => err.context(format!("cannot set up the journal {}", path.display())),
                false => err,
            }
        });
        let (destination_id, run_id) = match set_up {
            Ok(ids) => ids,
            Err(err) => {
                drop(lock);
                let _ = std::fs::remove_file(&lock_path);
                return Err(err);
            }
        };

        let keys = keys_of(&writer)
            .with_context(|| format!("cannot read the journal {}", path.display()))?;
        let reader = connect(path)?;
        let (tx, rx) = mpsc::channel();
        let in_flight = Arc::new(AtomicUsize::new(0));
        let rows = in_flight.clone();
        let mixed = keys == Keys::Mixed;
        let thread = std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || write_loop(writer, destination_id, mixed, rx, &rows))
            .context("cannot start the journal's writer thread")?;
        Ok(Journal {
            path: path.to_path_buf(),
            destination_id,
            reader: Mutex::new(reader),
            spare_readers: Mutex::new(Vec::new()),
            neighbours: Mutex::new(Neighbours::default()),
            writer: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            run: Mutex::new(Some(Run {
                id: run_id,
                lock_path,
                lock,
            })),
            run_id,
            in_flight,
            opened_at,
            keys,
        })
    }

    /// Opens an existing journal only to look rows up, writing nothing (not even the
    /// destination). `None` when there is no journal, or it has never seen this destination.
    pub fn open_for_lookups(
        path: &Path,
        destination: &Destination,
    ) -> anyhow::Result<Option<Journal>> {
        if !path.is_file() {
            return Ok(None);
        }
        refuse_foreign(path)?;
        let reader = connect(path)?;
        let known: Option<i64> = reader
            .query_row(
                "SELECT id FROM destinations WHERE label = ?1",
                [&destination.label],
                |r| r.get(0),
            )
            .optional()
            .or_else(|err| match err {
                // A file with no tables yet (an import stopped at once): nothing is known.
                rusqlite::Error::SqliteFailure(_, Some(ref message))
                    if message.starts_with("no such table") =>
                {
                    Ok(None)
                }
                other => Err(other),
            })
            .with_context(|| format!("cannot read the journal {}", path.display()))?;
        let keys = match known {
            Some(_) => keys_of(&reader)
                .with_context(|| format!("cannot read the journal {}", path.display()))?,
            None => Keys::Keyed,
        };
        Ok(known.map(|destination_id| Journal {
            path: path.to_path_buf(),
            destination_id,
            reader: Mutex::new(reader),
            spare_readers: Mutex::new(Vec::new()),
            neighbours: Mutex::new(Neighbours::default()),
            writer: Mutex::new(None),
            thread: Mutex::new(None),
            run: Mutex::new(None),
            run_id: 0,
            in_flight: Arc::new(AtomicUsize::new(0)),
            opened_at: now(),
            keys,
        }))
    }

    /// Brings a journal of an earlier schema up to this one (one transaction), so that the
    /// first pass over a manifest can already use what it adds; a missing journal is left
    /// missing. Called before a run's first pass, never for `--dry-run` (which writes nothing).
    pub fn bring_up_to_date(path: &Path) -> anyhow::Result<()> {
        if !path.is_file() {
            return Ok(());
        }
        refuse_foreign(path)?;
        let mut connection = connect(path)?;
        upgrade(&mut connection, path)
            .with_context(|| format!("cannot bring the journal {} up to date", path.display()))
    }

    /// The latest row uploaded to this destination, before this journal was opened, whose file
    /// has this path (its key, [`RowIdentity::key`]) and this size: the same recording, which a
    /// re-export may list again with other metadata. `None` also for a journal of schema 1 or 2
    /// not yet brought up to date (a `--dry-run`).
    pub fn uploaded_file(&self, path: &str, size: u64) -> anyhow::Result<Option<EarlierUpload>> {
        let reader = self.reader.lock().expect("journal reader");
        let statement = reader.prepare_cached(match self.keys {
            Keys::Before5 => UPLOADED_FILE_BEFORE_5,
            Keys::Mixed | Keys::Keyed => UPLOADED_FILE,
        });
        let mut statement = match statement {
            Ok(statement) => statement,
            // A journal of schema 1 or 2 (opened for a dry run's lookups): nothing is known.
            Err(err)
                if err.to_string().starts_with("no such column")
                    || err.to_string().starts_with("no such index") =>
            {
                return Ok(None);
            }
            Err(err) => {
                return Err(err)
                    .with_context(|| format!("cannot read the journal {}", self.path.display()));
            }
        };
        let size = i64::try_from(size).unwrap_or(i64::MAX);
        let row = statement
            .query_row(
                params![self.destination_id, path, size, self.opened_at],
                |r| {
                    Ok((
                        r.get::<_, Option<String>>(0)?,
                        r.get::<_, Option<i64>>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, Option<String>>(4)?,
                    ))
                },
            )
            .optional()
            .with_context(|| format!("cannot read the journal {}", self.path.display()))?;
        Ok(row.map(
            |(conversation_id, bytes, sha256, file, body)| EarlierUpload {
                stored: Stored {
                    state: State::Uploaded,
                    conversation_id: conversation_id.map(ConversationId),
                    target: None,
                    expires_at: None,
                    bytes: bytes.and_then(|b| u64::try_from(b).ok()),
                    sha256,
                    error: None,
                },
                file,
                body,
            },
        ))
    }

    /// The row as the journal holds it now and who holds its claim: read after a
    /// [`Change::Claim`] is committed, to learn whether it was taken, and while waiting for
    /// another run's row.
    pub fn claim_state(&self, identity: &RowIdentity) -> anyhow::Result<ClaimState> {
        let reader = self.reader.lock().expect("journal reader");
        // Both reads see one state of the journal (one read transaction): another run sharing
        // it could otherwise move the row on between them.
        let read = reader
            .unchecked_transaction()
            .with_context(|| format!("cannot read the journal {}", self.path.display()))?;
        let stored = self.lookup_on(&read, identity)?;
        let claim = self
            .find(
                &read,
                "SELECT r.claimed_by, r.run, runs.id, runs.pid, runs.report, runs.lock
                 FROM rows r LEFT JOIN runs ON runs.id = r.claimed_by",
                identity,
                |r| {
                    Ok((
                        r.get::<_, Option<i64>>(0)?,
                        r.get::<_, Option<i64>>(1)?,
                        r.get::<_, Option<i64>>(2)?,
                        r.get::<_, Option<i64>>(3)?,
                        r.get::<_, Option<String>>(4)?,
                        r.get::<_, Option<String>>(5)?,
                    ))
                },
            )
            .with_context(|| format!("cannot read the journal {}", self.path.display()))?;
        let holder = match claim {
            Some((Some(by), run, _, _, _, _)) if by == self.run_id && self.run_id != 0 => {
                let fresh = run == Some(self.run_id)
                    && stored
                        .as_ref()
                        .is_some_and(|s| s.state == State::Call1Started);
                Holder::Me { fresh }
            }
            // A claim whose run has ended (its row of `runs` is gone) holds nothing.
            Some((Some(_), _, Some(id), pid, report, lock)) => Holder::Other(OtherRun {
                id,
                pid,
                report,
                lock: lock.map(PathBuf::from),
            }),
            _ => Holder::Nobody,
        };
        Ok(ClaimState { stored, holder })
    }

    /// Whether another run is still alive: its lock is held. A run found dead is removed from
    /// `runs`, so that its claims may be taken.
    pub fn is_alive(&self, other: &OtherRun) -> bool {
        if other.lock.as_deref().is_some_and(lock_is_held) {
            return true;
        }
        let reader = self.reader.lock().expect("journal reader");
        if reader
            .execute("DELETE FROM runs WHERE id = ?1", [other.id])
            .is_ok()
            && let Some(lock) = &other.lock
        {
            let _ = std::fs::remove_file(lock);
        }
        false
    }

    /// What the journal holds for a row at this destination.
    pub fn lookup(&self, identity: &RowIdentity) -> anyhow::Result<Option<Stored>> {
        let reader = self.reader.lock().expect("journal reader");
        if self.keys != Keys::Mixed {
            return self.lookup_on(&reader, identity);
        }
        // Both of `find`'s reads in one state of the journal: another run may give the row its
        // key between them.
        let read = reader
            .unchecked_transaction()
            .with_context(|| format!("cannot read the journal {}", self.path.display()))?;
        self.lookup_on(&read, identity)
    }

    /// What the journal holds for each of many rows, in their order. As [`Journal::lookup`]
    /// would answer each one, but first from one read, in order, of the rows journaled where
    /// the last batch's were found ([`Journal::read_neighbours`]): a manifest that is read
    /// again is mostly in the order its rows were first journaled. The rest are looked up in
    /// parallel (one connection for each of rayon's threads, kept for the next call), each
    /// share in one read transaction, in the order of the identities.
    pub fn lookup_many(&self, identities: &[RowIdentity]) -> anyhow::Result<Vec<Option<Stored>>> {
        use rayon::prelude::*;
        let mut answers = vec![None; identities.len()];
        if identities.len() >= NEIGHBOURS_AT_LEAST {
            let reader = self.reader.lock().expect("journal reader");
            self.read_neighbours(&reader, identities, &mut answers)
                .with_context(|| format!("cannot read the journal {}", self.path.display()))?;
        }
        // The read answers only rows it found: the rest are asked of the index.
        let mut order: Vec<usize> = (0..identities.len())
            .filter(|&i| answers[i].is_none())
            .collect();
        if order.is_empty() {
            return Ok(answers);
        }
        order.sort_unstable_by(|&a, &b| {
            let (a, b) = (&identities[a], &identities[b]);
            (a.key(), a.hash).cmp(&(b.key(), b.hash))
        });
        let shares = rayon::current_num_threads().clamp(1, 4);
        let share = order.len().div_ceil(shares).max(64);
        let found = order
            .par_chunks(share)
            .map(|chunk| {
                let spare = self.spare_readers.lock().expect("journal readers").pop();
                let reader = match spare {
                    Some(reader) => reader,
                    // Random pages of a large table: a small cache holds the upper levels.
                    None => {
                        let reader = connect(&self.path)?;
                        reader.execute_batch("PRAGMA cache_size = -2048;")?;
                        reader
                    }
                };
                let looked = (|| {
                    reader.execute_batch("BEGIN")?;
                    let looked = chunk
                        .iter()
                        .map(|&i| Ok((i, self.lookup_on(&reader, &identities[i])?)))
                        .collect::<anyhow::Result<Vec<_>>>();
                    reader.execute_batch("COMMIT")?;
                    looked
                })();
                self.spare_readers
                    .lock()
                    .expect("journal readers")
                    .push(reader);
                looked.with_context(|| format!("cannot read the journal {}", self.path.display()))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        for (i, stored) in found.into_iter().flatten() {
            answers[i] = stored;
        }
        Ok(answers)
    }

    /// Answers the rows of `identities` that are among the next rows of the table, in one read
    /// of consecutive pages (about three rows a page) instead of a search of the identity
    /// index and a table page, at random, for each. Where to read is where the last batch's
    /// rows ended, or, for the first batch (and after a batch found mostly elsewhere), where
    /// the first of its rows that the index finds is. A row it does not find is left to the
    /// index: this only decides how a row is found, never whether.
    fn read_neighbours(
        &self,
        reader: &Connection,
        identities: &[RowIdentity],
        answers: &mut [Option<Stored>],
    ) -> anyhow::Result<()> {
        let mut place = self.neighbours.lock().expect("journal neighbours");
        if place.misses >= NEIGHBOURS_GIVE_UP {
            return Ok(());
        }
        let from = match place.next {
            Some(id) => id,
            None => {
                let mut first = None;
                for identity in identities.iter().take(NEIGHBOURS_ANCHORS) {
                    first = self.find(reader, "SELECT r.id FROM rows r", identity, |r| {
                        r.get::<_, i64>(0)
                    })?;
                    if first.is_some() {
                        break;
                    }
                }
                match first {
                    Some(id) => id.saturating_sub(NEIGHBOURS_SLACK),
                    // New rows: nothing to read in order.
                    None => return Ok(()),
                }
            }
        };
        let wanted: std::collections::HashMap<[u8; 32], usize> = identities
            .iter()
            .enumerate()
            .map(|(i, identity)| (identity.hash, i))
            .collect();
        let mut found: std::collections::HashMap<[u8; 32], Stored> =
            std::collections::HashMap::new();
        let mut last = None;
        let limit = i64::try_from(identities.len()).unwrap_or(i64::MAX) + 2 * NEIGHBOURS_SLACK;
        // One statement: one read transaction of its own.
        let mut statement =
            reader.prepare_cached(&NEXT_ROWS.replace("TARGET", target_column(self.keys)))?;
        let mut rows = statement.query(params![from, self.destination_id, limit])?;
        while let Some(row) = rows.next()? {
            let mut identity = [0u8; 32];
            let hex = row.get_ref(1)?.as_str()?;
            if hex::decode_to_slice(hex, &mut identity).is_err() || !wanted.contains_key(&identity)
            {
                continue;
            }
            let id: i64 = row.get(0)?;
            last = Some(last.map_or(id, |last: i64| last.max(id)));
            found.insert(identity, self.stored(StoredColumns::from_row(row, 2)?)?);
        }
        for (i, identity) in identities.iter().enumerate() {
            if let Some(stored) = found.get(&identity.hash) {
                answers[i] = Some(stored.clone());
            }
        }
        // Mostly found: the next batch is read from where this one ended.
        if found.len() * 2 >= wanted.len() {
            place.next = last.map(|last| (last + 1).saturating_sub(NEIGHBOURS_SLACK));
            place.misses = 0;
        } else {
            place.next = None;
            place.misses += 1;
        }
        Ok(())
    }

    fn lookup_on(
        &self,
        reader: &Connection,
        identity: &RowIdentity,
    ) -> anyhow::Result<Option<Stored>> {
        let select = format!(
            "SELECT state, conversation_id, {}, target_expires_at, bytes, sha256, error
             FROM rows r",
            target_column(self.keys)
        );
        let row = self
            .find(reader, &select, identity, |r| StoredColumns::from_row(r, 0))
            .with_context(|| format!("cannot read the journal {}", self.path.display()))?;
        match row {
            Some(columns) => Ok(Some(self.stored(columns)?)),
            None => Ok(None),
        }
    }

    /// The row of `identity`: `select` (`SELECT … FROM rows r`) with the row's condition
    /// added. By key and identity, and (for a journal with rows journaled before schema 5,
    /// which the caller reads in one transaction) by identity among those.
    fn find<T>(
        &self,
        reader: &Connection,
        select: &str,
        identity: &RowIdentity,
        map: impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<Option<T>> {
        let hex = identity.hex();
        if self.keys != Keys::Before5 {
            let found = reader
                .prepare_cached(&format!(
                    "{select} WHERE r.destination = ?1 AND r.path = ?2 AND r.identity = ?3"
                ))?
                .query_row(params![self.destination_id, identity.key(), hex], &map)
                .optional()?;
            if found.is_some() || self.keys == Keys::Keyed {
                return Ok(found);
            }
        }
        let before_5 = match self.keys {
            Keys::Before5 => "",
            Keys::Mixed | Keys::Keyed => " AND r.keyed IS NULL",
        };
        reader
            .prepare_cached(&format!(
                "{select} WHERE r.destination = ?1 AND r.identity = ?2{before_5}"
            ))?
            .query_row(params![self.destination_id, hex], &map)
            .optional()
    }

    fn stored(&self, columns: StoredColumns) -> anyhow::Result<Stored> {
        let StoredColumns(state, conversation_id, target, expires_at, bytes, sha256, error) =
            columns;
        let state = State::parse(&state).with_context(|| {
            format!(
                "the journal {} holds an unknown state {state:?}",
                self.path.display()
            )
        })?;
        Ok(Stored {
            state,
            conversation_id: conversation_id.map(ConversationId),
            // A target that does not parse is as good as none: call 1 is made again.
            target: target.and_then(|json| serde_json::from_str(&json).ok()),
            expires_at: expires_at
                .and_then(|text| DateTime::parse_from_rfc3339(&text).ok())
                .map(|at| at.with_timezone(&Utc)),
            bytes: bytes.and_then(|b| u64::try_from(b).ok()),
            sha256,
            error,
        })
    }

    /// Why call 1 may have left conversations whose ids we never learned for this row, oldest
    /// first (see `unknown_conversations`).
    #[cfg(test)]
    pub fn unknown_conversations(&self, identity: &RowIdentity) -> anyhow::Result<Vec<String>> {
        let reader = self.reader.lock().expect("journal reader");
        let mut statement = reader.prepare_cached(
            "SELECT reason FROM unknown_conversations
             WHERE destination = ?1 AND identity = ?2 ORDER BY rowid",
        )?;
        let reasons = statement
            .query_map(params![self.destination_id, identity.hex()], |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()
            .with_context(|| format!("cannot read the journal {}", self.path.display()))?;
        Ok(reasons)
    }

    /// What earlier runs left without audio, by row identity (hex): conversations whose ids the
    /// journal holds but that are not the row's own, and how many calls 1 may have left one we
    /// never learned. Read once before a run, so that its report can say it again: the report
    /// of the run that finishes an import is the one kept, and it must not forget them.
    pub fn leftovers(&self) -> anyhow::Result<std::collections::HashMap<String, Leftovers>> {
        let reader = self.reader.lock().expect("journal reader");
        let mut by_row: std::collections::HashMap<String, Leftovers> =
            std::collections::HashMap::new();
        // A conversation is the row's own when the row holds it: the row is found by its key,
        // or, for a conversation journaled before schema 5 (no `path`), among the rows of then.
        let mut statement = reader.prepare(match self.keys {
            Keys::Before5 => {
                "SELECT c.identity, c.conversation_id FROM conversations c
                 LEFT JOIN rows r ON r.destination = c.destination AND r.identity = c.identity
                 WHERE c.destination = ?1
                   AND (r.conversation_id IS NULL OR r.conversation_id <> c.conversation_id)
                 ORDER BY c.created_at"
            }
            Keys::Mixed | Keys::Keyed => {
                "SELECT c.identity, c.conversation_id FROM conversations c
                 WHERE c.destination = ?1
                   AND NOT (c.path IS NOT NULL AND EXISTS (
                     SELECT 1 FROM rows r WHERE r.destination = c.destination
                       AND r.path = c.path AND r.identity = c.identity
                       AND r.conversation_id = c.conversation_id))
                   AND NOT (c.path IS NULL AND EXISTS (
                     SELECT 1 FROM rows r WHERE r.destination = c.destination
                       AND r.identity = c.identity AND r.keyed IS NULL
                       AND r.conversation_id = c.conversation_id))
                 ORDER BY c.created_at"
            }
        })?;
        let known = statement.query_map([self.destination_id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        for row in known {
            let (identity, conversation) = row?;
            by_row
                .entry(identity)
                .or_default()
                .without_audio
                .push(conversation);
        }
        let mut statement = reader.prepare(
            "SELECT identity, count(*) FROM unknown_conversations
             WHERE destination = ?1 GROUP BY identity",
        )?;
        let unknown = statement.query_map([self.destination_id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })?;
        for row in unknown {
            let (identity, count) = row?;
            by_row.entry(identity).or_default().unknown = u64::try_from(count).unwrap_or(0);
        }
        Ok(by_row)
    }

    /// Records a change and waits until it is committed to disk.
    pub async fn record(
        &self,
        identity: &RowIdentity,
        file: &str,
        line: u64,
        change: Change,
    ) -> anyhow::Result<()> {
        self.begin(identity, file, line, change)?.committed().await
    }

    /// Hands a change to the writer at once; await [`Pending::committed`] to know it is on
    /// disk. Lets a worker start its next row while its last change is being committed.
    pub fn begin(
        &self,
        identity: &RowIdentity,
        file: &str,
        line: u64,
        change: Change,
    ) -> anyhow::Result<Pending> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(identity, file, line, change, Reply(tx))?;
        Ok(Pending {
            rx,
            path: self.path.clone(),
        })
    }

    fn submit(
        &self,
        identity: &RowIdentity,
        file: &str,
        line: u64,
        change: Change,
        done: Reply,
    ) -> anyhow::Result<()> {
        let writer = self.writer.lock().expect("journal writer");
        let Some(writer) = writer.as_ref() else {
            bail!("the journal {} is closed", self.path.display());
        };
        writer
            .send(Op {
                run: self.run_id,
                identity: identity.clone(),
                file: file.to_string(),
                line,
                change,
                done,
            })
            .map_err(|_| anyhow::anyhow!("the journal's writer stopped"))
    }

    /// Counts a row as in flight until the guard is dropped. The writer waits (10 ms at most,
    /// see [`Grouping`]) for more changes only while fewer are in hand than one and a half a
    /// row in flight: alone, a row's change is committed at once.
    pub fn row_in_flight(&self) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.in_flight.clone())
    }

    /// Waits for every pending change to be committed, then stops the writer, releases this
    /// run's claims and ends it in `runs` (if that cannot be written, its lock, released when
    /// the process ends, tells other runs all the same).
    pub fn close(&self) {
        drop(self.writer.lock().expect("journal writer").take());
        if let Some(thread) = self.thread.lock().expect("journal thread").take() {
            let _ = thread.join();
        }
        if let Some(run) = self.run.lock().expect("journal run").take() {
            let reader = self.reader.lock().expect("journal reader");
            let _ = reader.execute_batch(&format!(
                "BEGIN IMMEDIATE;
                 UPDATE rows SET claimed_by = NULL WHERE claimed_by = {id};
                 DELETE FROM runs WHERE id = {id};
                 COMMIT;",
                id = run.id
            ));
            // Unlocked before it is removed, which Windows requires.
            drop(run.lock);
            let _ = std::fs::remove_file(&run.lock_path);
        }
    }

    /// Ends as kill -9 would: the lock released, nothing else.
    #[cfg(test)]
    fn die(self) {
        drop(self.writer.lock().expect("journal writer").take());
        if let Some(thread) = self.thread.lock().expect("journal thread").take() {
            let _ = thread.join();
        }
        drop(self.run.lock().expect("journal run").take());
    }
}

/// A row in flight, for the writer's grouping of commits: see [`Journal::row_in_flight`].
#[derive(Debug)]
pub struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What earlier runs left for one row: see [`Journal::leftovers`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Leftovers {
    /// Conversations call 1 created for the row that hold no audio (a renewed target, say).
    pub without_audio: Vec<String>,
    /// Calls 1 that may have created a conversation whose id never reached us.
    pub unknown: u64,
}

impl Leftovers {
    /// The row's note: what an earlier run's report said, for the report of this one.
    pub fn note(&self) -> String {
        let mut parts = Vec::new();
        match self.without_audio.as_slice() {
            [] => {}
            [one] => parts.push(format!("conversation {one} holds no audio")),
            many => parts.push(format!("conversations {} hold no audio", many.join(", "))),
        }
        match self.unknown {
            0 => {}
            1 => parts.push(
                "Voyc may hold a conversation without audio whose id never reached us".to_string(),
            ),
            n => parts.push(format!(
                "Voyc may hold up to {n} conversations without audio whose ids never reached us"
            )),
        }
        format!(
            "earlier runs for this row: {} (the journal's conversations and unknown_conversations tables)",
            parts.join("; ")
        )
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.close();
    }
}

/// Creates the tables if needed, checks the schema version and registers the destination;
/// its id back.
/// Creates the tables if need be, checks the schema version and records the destination, in one
/// transaction, so one commit (one fsync) sets up a new journal.
fn set_up(
    connection: &mut Connection,
    path: &Path,
    destination: &Destination,
    lock: &Path,
    report: &Path,
) -> anyhow::Result<(i64, i64)> {
    let writer = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    writer.execute_batch(&schema())?;
    let version: Option<String> = writer
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    match version.as_deref() {
        None => {
            writer.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)",
                [SCHEMA_VERSION],
            )?;
        }
        Some(SCHEMA_VERSION) => {}
        Some(old) => migrate(&writer, path, Some(old))?,
    }
    // Marks a new journal, and adopts one of an earlier version (which had none).
    writer.execute_batch(&format!(
        "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {SCHEMA_VERSION}; {CLAIM_INDEX}"
    ))?;
    // Runs that died (their lock is free) are forgotten, so their claims may be taken; then
    // this one is recorded, its lock already held.
    let dead: Vec<(i64, String)> = writer
        .prepare("SELECT id, lock FROM runs")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .filter(|(_, lock): &(i64, String)| !lock_is_held(Path::new(lock)))
        .collect();
    for (id, lock) in &dead {
        writer.execute("DELETE FROM runs WHERE id = ?1", [id])?;
        let _ = std::fs::remove_file(lock);
    }
    remove_stale_locks(path, lock);
    // Absolute: a run started in another folder (`--journal ../j`) must find the same file, or
    // it would count this run dead.
    let lock = std::path::absolute(lock).unwrap_or_else(|_| lock.to_path_buf());
    writer.execute(
        "INSERT INTO runs (lock, pid, report, started_at) VALUES (?1, ?2, ?3, ?4)",
        params![
            lock.to_string_lossy(),
            std::process::id(),
            report.to_string_lossy(),
            now()
        ],
    )?;
    let run = writer.last_insert_rowid();
    writer.execute(
        "INSERT INTO destinations (label, base_url, organisation, created_at)
         VALUES (?1, ?2, ?3, ?4) ON CONFLICT (label) DO NOTHING",
        params![
            destination.label,
            destination.base_url,
            destination.organisation,
            now()
        ],
    )?;
    let id = writer.query_row(
        "SELECT id FROM destinations WHERE label = ?1",
        [&destination.label],
        |r| r.get(0),
    )?;
    writer.commit()?;
    Ok((id, run))
}

/// [`Journal::bring_up_to_date`]: a journal with no tables yet is left to the run that creates them.
fn upgrade(connection: &mut Connection, path: &Path) -> anyhow::Result<()> {
    let tx = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let has_meta: bool = tx.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
        [],
        |r| r.get(0),
    )?;
    if !has_meta {
        return Ok(());
    }
    let version: Option<String> = tx
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if matches!(version.as_deref(), Some("1" | "2" | "3" | "4")) {
        tx.execute_batch(&schema())?;
        migrate(&tx, path, version.as_deref())?;
        tx.execute_batch(&format!(
            "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {SCHEMA_VERSION}; {CLAIM_INDEX}"
        ))?;
    }
    tx.commit()?;
    Ok(())
}

/// Brings the tables of a journal of schema `version` (1 to 4) to this one, within the caller's
/// transaction; refuses a version this voyc-import does not know. Rows keep their states; the
/// uploaded ones get the path and size they were uploaded with (their body was never kept,
/// before schema 3), `rows` is rebuilt in the order of schema 4 (from 3 or before), and every
/// row is found by identity until its next change gives it its key (schema 5).
fn migrate(
    tx: &rusqlite::Transaction<'_>,
    path: &Path,
    version: Option<&str>,
) -> anyhow::Result<()> {
    match version {
        // voyc-import 0.1: the claim columns are added.
        Some("1") => {
            tx.execute_batch(
                "ALTER TABLE rows ADD COLUMN claimed_by INTEGER;
                 ALTER TABLE rows ADD COLUMN run INTEGER;",
            )?;
            add_what_was_uploaded(tx)?;
        }
        Some("2") => add_what_was_uploaded(tx)?,
        Some("3" | "4") => {}
        Some(SCHEMA_VERSION) | None => return Ok(()),
        Some(other) => bail!(
            "the journal {} has schema version {other}, which this voyc-import ({}) does not know; use a newer voyc-import or another --journal",
            path.display(),
            env!("CARGO_PKG_VERSION")
        ),
    }
    // Schema 5: no row has its key yet (`keyed` NULL), and the identity's index gives way
    // to the key's (ALTER TABLE writes no row: the old ones read the column as NULL).
    tx.execute_batch(
        "ALTER TABLE conversations ADD COLUMN path TEXT;
         DROP INDEX IF EXISTS rows_identity;
         DROP INDEX IF EXISTS rows_uploaded_file;",
    )?;
    if version == Some("4") {
        tx.execute_batch(&format!(
            "ALTER TABLE rows ADD COLUMN keyed INTEGER;
             ALTER TABLE rows ADD COLUMN target_id INTEGER;
             {CLAIM_INDEX}"
        ))?;
    } else {
        // In the order of the old key (sorting them by time would cost more than it saves:
        // these rows are settled). Dropping the table drops its indexes, made again after.
        // `conversations` keeps only those no row holds.
        tx.execute_batch(&format!(
            "CREATE TABLE rows_v4 ({ROWS_COLUMNS});
             INSERT INTO rows_v4 ({ROWS_DATA}) SELECT {ROWS_DATA} FROM rows;
             DROP TABLE rows;
             ALTER TABLE rows_v4 RENAME TO rows;
             {CLAIM_INDEX}
             DELETE FROM conversations WHERE EXISTS (
               SELECT 1 FROM rows r WHERE r.destination = conversations.destination
                 AND r.identity = conversations.identity AND r.keyed IS NULL
                 AND r.conversation_id = conversations.conversation_id);"
        ))?;
    }
    tx.execute(
        "UPDATE meta SET value = ?1 WHERE key = 'schema_version'",
        [SCHEMA_VERSION],
    )?;
    Ok(())
}

/// Schema 3's columns, for a journal of schema 1 or 2: what each uploaded row was uploaded as.
fn add_what_was_uploaded(tx: &rusqlite::Transaction<'_>) -> anyhow::Result<()> {
    tx.execute_batch(
        "ALTER TABLE rows ADD COLUMN path TEXT;
         ALTER TABLE rows ADD COLUMN size INTEGER;
         ALTER TABLE rows ADD COLUMN body TEXT;",
    )?;
    let uploaded: Vec<(i64, String, String, Option<i64>)> = tx
        .prepare("SELECT destination, identity, file, bytes FROM rows WHERE state = 'uploaded'")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    let mut update = tx
        .prepare("UPDATE rows SET path = ?3, size = ?4 WHERE destination = ?1 AND identity = ?2")?;
    for (destination, identity, file, bytes) in uploaded {
        update.execute(params![destination, identity, identity_path(&file), bytes])?;
    }
    Ok(())
}

/// This run's lock: a new file beside the journal, `JOURNAL-run-XXXXXXXXXXXXXXXX.lock`, locked
/// exclusively for as long as the run lives (the kernel releases it when the process ends,
/// however it ends).
fn run_lock(journal: &Path) -> anyhow::Result<(PathBuf, std::fs::File)> {
    let mut name = journal.as_os_str().to_owned();
    name.push(format!("-run-{:016x}.lock", fastrand::u64(..)));
    let path = PathBuf::from(name);
    let mut options = std::fs::OpenOptions::new();
    options.create_new(true).write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options
        .open(&path)
        .with_context(|| format!("cannot create the run's lock {}", path.display()))?;
    file.try_lock()
        .with_context(|| format!("cannot lock {}", path.display()))?;
    Ok((path, file))
}

/// Removes the lock files of runs killed before they were recorded in `runs` (between
/// creating their lock and committing their set-up), which nobody else would. Only files a
/// minute old: a run that has just created its lock may not have locked it yet.
fn remove_stale_locks(journal: &Path, mine: &Path) {
    let (Some(folder), Some(name)) = (journal.parent(), journal.file_name()) else {
        return;
    };
    let folder = match folder.as_os_str().is_empty() {
        true => Path::new("."),
        false => folder,
    };
    let prefix = format!("{}-run-", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(folder) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let file_name = file_name.to_string_lossy();
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|at| at.elapsed().is_ok_and(|age| age.as_secs() >= 60));
        if file_name.starts_with(&prefix)
            && file_name.ends_with(".lock")
            && entry.path().file_name() != mine.file_name()
            && old
            && !lock_is_held(&entry.path())
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Whether a run's lock is held (by a live run); false if it is gone or free.
fn lock_is_held(path: &Path) -> bool {
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    match file.try_lock() {
        // Ours for a moment: nobody held it. Dropping the file releases it.
        Ok(()) => false,
        Err(std::fs::TryLockError::WouldBlock) => true,
        // Cannot tell (a file system without locks): counted alive, so nothing is taken over.
        Err(std::fs::TryLockError::Error(_)) => true,
    }
}

/// Refuses a database that is not a journal, reading it only: one marked by another program,
/// or one without marks that holds tables a journal does not (or lacks `meta`). A missing or
/// empty database is a new journal.
fn refuse_foreign(path: &Path) -> anyhow::Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let cannot_read = || format!("cannot open the journal {}", path.display());
    // Neither created nor put in WAL mode: nothing is written until the database is known.
    let connection = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(cannot_read)?;
    let application_id: i32 = connection
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .with_context(cannot_read)?;
    let tables: Vec<String> = connection
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )
        .and_then(|mut statement| {
            statement
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()
        })
        .with_context(cannot_read)?;
    let ours = match application_id {
        APPLICATION_ID => true,
        0 => {
            tables.is_empty()
                || (tables.iter().all(|t| TABLES.contains(&t.as_str()))
                    && tables.iter().any(|t| t == "meta"))
        }
        _ => false,
    };
    if ours {
        return Ok(());
    }
    let mut shown: Vec<&str> = tables.iter().take(5).map(String::as_str).collect();
    if tables.len() > shown.len() {
        shown.push("…");
    }
    let held = match shown.as_slice() {
        [] => "no tables".to_string(),
        _ => format!("tables {}", shown.join(", ")),
    };
    bail!(
        "the journal {} is an SQLite database of another program, not a voyc-import journal ({held}, application id {application_id:#x}); nothing was written to it: give --journal a file of its own",
        path.display()
    )
}

fn connect(path: &Path) -> anyhow::Result<Connection> {
    let connection = Connection::open(path)
        .with_context(|| format!("cannot open the journal {}", path.display()))?;
    connection
        .busy_timeout(std::time::Duration::from_secs(60))
        .context("cannot configure the journal")?;
    // For a new journal only (an existing one keeps its page size): every change rewrites
    // whole pages in the WAL, so smaller pages are fewer bytes written. 1 KiB: targets are kept
    // apart from their rows (see `drop_target`), so a row fits a page with its neighbours
    // (scripts/journal-io.sh, 20,000 rows at concurrency 32: 5.2 KB written a row, 6.3 KB with
    // 2 KiB pages).
    connection
        .execute_batch("PRAGMA page_size = 1024;")
        .context("cannot configure the journal")?;
    // WAL so lookups never wait for the writer; FULL so a committed change survives power loss.
    let mode: String = connection
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .with_context(|| format!("cannot put the journal {} in WAL mode", path.display()))?;
    if !mode.eq_ignore_ascii_case("wal") {
        bail!(
            "the journal {} cannot use WAL mode (got {mode}); put it on a local disk",
            path.display()
        );
    }
    // An 8 MiB page cache and 16,000 pages of WAL between checkpoints (32 MiB at 2 KiB): fewer
    // random page reads, and a page changed many times between two checkpoints is copied into
    // the database once (scripts/journal-io.sh measures it; see BENCHMARKS.md).
    connection
        .execute_batch(
            "PRAGMA synchronous = FULL; PRAGMA cache_size = -8192; PRAGMA wal_autocheckpoint = 16000;",
        )
        .context("cannot configure the journal")?;
    Ok(connection)
}

/// Creates the file readable by its owner only (it holds presigned targets); tightens an
/// existing one that is wider.
fn create_private(path: &Path) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        let file = options.open(path)?;
        let mode = file.metadata()?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
    }
    // Elsewhere the file inherits the folder's ACL: keep the journal in a private folder.
    #[cfg(not(unix))]
    options.open(path)?;
    Ok(())
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The writer thread (group commit): gather the changes that arrive together, commit them as
/// one transaction (one fsync), and only then answer each, so that no waiter hears "committed"
/// before its change is on disk.
/// `mixed`: the journal holds rows of before schema 5 (see [`Keys::Mixed`]).
fn write_loop(
    mut connection: Connection,
    destination: i64,
    mixed: bool,
    rx: mpsc::Receiver<Op>,
    in_flight: &AtomicUsize,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        gather(&rx, &mut batch, in_flight, GROUPING);
        let result =
            commit(&mut connection, destination, mixed, &batch).map_err(|err| format!("{err:#}"));
        for op in batch.drain(..) {
            op.done.send(result.clone());
        }
    }
}

/// Adds to `batch` what is pending; then, while it holds fewer changes than the rows in flight
/// may send (the others' changes may be a moment away), what arrives before its deadline (see
/// [`Grouping`]). With one row in flight it never waits: nobody else would share the commit.
fn gather(
    rx: &mpsc::Receiver<Op>,
    batch: &mut Vec<Op>,
    in_flight: &AtomicUsize,
    grouping: Grouping,
) {
    let mut deadline = Instant::now() + grouping.otherwise;
    let mut seen = 0;
    loop {
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        if batch[seen..].iter().any(|op| op.change.is_waited_on()) {
            deadline = deadline.min(Instant::now() + grouping.waited_on);
        }
        seen = batch.len();
        let rows = in_flight.load(Ordering::Relaxed);
        let expected = match rows {
            0 | 1 => 1,
            rows => rows + rows / 2,
        }
        .min(MAX_BATCH);
        let left = deadline.saturating_duration_since(Instant::now());
        if batch.len() >= expected || left.is_zero() {
            return;
        }
        match rx.recv_timeout(left) {
            Ok(op) => batch.push(op),
            Err(_) => return,
        }
    }
}

fn commit(
    connection: &mut Connection,
    destination: i64,
    mixed: bool,
    batch: &[Op],
) -> anyhow::Result<()> {
    let tx = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let at = now();
    for op in batch {
        if mixed {
            give_key(&tx, destination, &op.identity)?;
        }
        apply(&tx, destination, op, &at)?;
    }
    tx.commit()?;
    Ok(())
}

/// Before a change that replaces or clears a row's target: the old one is deleted from
/// `targets`. Targets live apart from their rows so that a row holding one (a presigned form of
/// about a kilobyte) does not split the page it shares with the rows in flight beside it, and
/// the rows of a journal stay small once uploaded (a page keeps the room a row once took).
fn drop_target(
    tx: &rusqlite::Transaction<'_>,
    destination: i64,
    identity: &RowIdentity,
) -> anyhow::Result<()> {
    tx.prepare_cached(
        "DELETE FROM targets WHERE id = (SELECT target_id FROM rows
           WHERE destination = ?1 AND path = ?2 AND identity = ?3)",
    )?
    .execute(params![destination, identity.key(), identity.hex()])?;
    Ok(())
}

/// A row journaled before schema 5 gets its key (and its replaced conversations the row's
/// key) before its first change since: from then on it is found, and changed, by key.
fn give_key(
    tx: &rusqlite::Transaction<'_>,
    destination: i64,
    identity: &RowIdentity,
) -> anyhow::Result<()> {
    let hex = identity.hex();
    tx.prepare_cached(
        "UPDATE rows SET path = ?3, keyed = 1
         WHERE destination = ?1 AND identity = ?2 AND keyed IS NULL",
    )?
    .execute(params![destination, hex, identity.key()])?;
    tx.prepare_cached(
        "UPDATE conversations SET path = ?3
         WHERE destination = ?1 AND identity = ?2 AND path IS NULL",
    )?
    .execute(params![destination, hex, identity.key()])?;
    Ok(())
}

// Every row written has its key (`path`) and `keyed` = 1; the conflicts are on `rows_key`.
fn apply(
    tx: &rusqlite::Transaction<'_>,
    destination: i64,
    op: &Op,
    at: &str,
) -> anyhow::Result<()> {
    let identity = op.identity.hex();
    let key = op.identity.key();
    let line = i64::try_from(op.line).unwrap_or(i64::MAX);
    match &op.change {
        Change::Call1Started => {
            keep_replaced_conversation(tx, destination, &op.identity, None, at)?;
            drop_target(tx, destination, &op.identity)?;
            tx.prepare_cached(
                "INSERT INTO rows (destination, identity, file, line, state, updated_at, path, keyed)
                 VALUES (?1, ?2, ?3, ?4, 'call1_started', ?5, ?6, 1)
                 ON CONFLICT (destination, path, identity) DO UPDATE SET
                   file = excluded.file, line = excluded.line, state = 'call1_started',
                   conversation_id = NULL, target = NULL, target_id = NULL, target_expires_at = NULL,
                   bytes = NULL, sha256 = NULL, error = NULL, updated_at = excluded.updated_at",
            )?
            .execute(params![destination, identity, op.file, line, at, key])?;
        }
        Change::Call1Done {
            conversation_id,
            target,
        } => {
            let expires_at = target
                .expires_at()
                .map(|at| at.to_rfc3339_opts(SecondsFormat::Secs, true));
            keep_replaced_conversation(tx, destination, &op.identity, Some(conversation_id), at)?;
            drop_target(tx, destination, &op.identity)?;
            tx.prepare_cached("INSERT INTO targets (target) VALUES (?1)")?
                .execute([serde_json::to_string(target)?])?;
            let target_id = tx.last_insert_rowid();
            tx.prepare_cached(
                "INSERT INTO rows (destination, identity, file, line, state, conversation_id,
                                   target_id, target_expires_at, updated_at, path, keyed)
                 VALUES (?1, ?2, ?3, ?4, 'call1_done', ?5, ?6, ?7, ?8, ?9, 1)
                 ON CONFLICT (destination, path, identity) DO UPDATE SET
                   file = excluded.file, line = excluded.line, state = 'call1_done',
                   conversation_id = excluded.conversation_id, target = NULL,
                   target_id = excluded.target_id, target_expires_at = excluded.target_expires_at,
                   bytes = NULL, sha256 = NULL, error = NULL, updated_at = excluded.updated_at",
            )?
            .execute(params![
                destination,
                identity,
                op.file,
                line,
                conversation_id.0,
                target_id,
                expires_at,
                at,
                key
            ])?;
        }
        Change::Uploaded {
            bytes,
            sha256,
            body,
        } => {
            drop_target(tx, destination, &op.identity)?;
            tx.prepare_cached(
                "INSERT INTO rows (destination, identity, file, line, state, bytes, sha256, updated_at,
                                   path, size, body, keyed)
                 VALUES (?1, ?2, ?3, ?4, 'uploaded', ?5, ?6, ?7, ?8, ?5, ?9, 1)
                 ON CONFLICT (destination, path, identity) DO UPDATE SET
                   file = excluded.file, line = excluded.line, state = 'uploaded',
                   target = NULL, target_id = NULL, target_expires_at = NULL,
                   bytes = excluded.bytes, sha256 = excluded.sha256, error = NULL,
                   updated_at = excluded.updated_at, claimed_by = NULL,
                   size = excluded.size, body = excluded.body",
            )?
            .execute(params![
                destination,
                identity,
                op.file,
                line,
                i64::try_from(*bytes).unwrap_or(i64::MAX),
                sha256,
                at,
                key,
                String::from_utf8_lossy(body),
            ])?;
        }
        Change::Failed { error } => {
            tx.prepare_cached(
                "INSERT INTO rows (destination, identity, file, line, state, error, updated_at, path, keyed)
                 VALUES (?1, ?2, ?3, ?4, 'failed', ?5, ?6, ?7, 1)
                 ON CONFLICT (destination, path, identity) DO UPDATE SET
                   file = excluded.file, line = excluded.line, state = 'failed',
                   error = excluded.error, updated_at = excluded.updated_at, claimed_by = NULL",
            )?
            .execute(params![destination, identity, op.file, line, error, at, key])?;
        }
        Change::MaybeConversation { reason } => {
            tx.prepare_cached(
                "INSERT INTO unknown_conversations (destination, identity, reason, created_at)
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![destination, identity, reason, at])?;
        }
        // Only a row this run's claim created, and nothing has happened to since.
        Change::NotStarted => {
            tx.prepare_cached(
                "DELETE FROM rows
                 WHERE destination = ?1 AND path = ?4 AND identity = ?2 AND state = 'call1_started'
                   AND run = ?3 AND claimed_by = ?3",
            )?
            .execute(params![destination, identity, op.run, key])?;
        }
        // Taken if nobody holds the row, or this run does, or a run that has ended (its row of
        // `runs` is gone, see `Journal::is_alive`); never an uploaded row.
        Change::Claim => {
            tx.prepare_cached(
                "INSERT INTO rows (destination, identity, file, line, state, updated_at, claimed_by, run,
                                   path, keyed)
                 VALUES (?1, ?2, ?3, ?4, 'call1_started', ?5, ?6, ?6, ?7, 1)
                 ON CONFLICT (destination, path, identity) DO UPDATE SET claimed_by = excluded.claimed_by
                 WHERE rows.state <> 'uploaded'
                   AND (rows.claimed_by IS NULL OR rows.claimed_by = excluded.claimed_by
                        OR rows.claimed_by NOT IN (SELECT id FROM runs))",
            )?
            .execute(params![destination, identity, op.file, line, at, op.run, key])?;
        }
    }
    Ok(())
}

/// Before a change that replaces or clears a row's conversation (call 1 made again, or done
/// with another id): the conversation it held goes to `conversations`, which keeps every
/// conversation call 1 created that is no row's own (a row's own is `rows.conversation_id`).
/// Kept there only once replaced, so that a row uploaded at the first try writes nothing there:
/// one random page of a large table less for every row.
fn keep_replaced_conversation(
    tx: &rusqlite::Transaction<'_>,
    destination: i64,
    identity: &RowIdentity,
    new: Option<&ConversationId>,
    at: &str,
) -> anyhow::Result<()> {
    tx.prepare_cached(
        "INSERT OR REPLACE INTO conversations (destination, conversation_id, identity, created_at, path)
         SELECT destination, conversation_id, identity, ?4, path FROM rows
         WHERE destination = ?1 AND path = ?5 AND identity = ?2 AND conversation_id IS NOT NULL
           AND conversation_id IS NOT ?3",
    )?
    .execute(params![
        destination,
        identity.hex(),
        new.map(|id| &id.0),
        at,
        identity.key()
    ])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use reqwest::Url;

    use super::*;

    fn destination() -> Destination {
        Destination::voyc("https://api.app.voyc.ai/", "118")
    }

    /// "Call 1 done" for `conversation`, with the test target.
    fn done(conversation: &str) -> Change {
        Change::Call1Done {
            conversation_id: ConversationId(conversation.into()),
            target: target(),
        }
    }

    fn target() -> UploadTarget {
        UploadTarget::Put {
            url: Url::parse("https://s3.test/b/k?X-Amz-Date=20240501T120000Z&X-Amz-Expires=600")
                .unwrap(),
        }
    }

    #[tokio::test]
    async fn leftovers_are_the_conversations_that_are_not_a_rows_own_and_the_unknown_ones() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&dir.path().join("j"), &destination()).unwrap();
        for conversation in ["c-1", "c-2"] {
            journal
                .record(&id(1), "f", 2, done(conversation))
                .await
                .unwrap();
        }
        let uploaded = Change::Uploaded {
            bytes: 1,
            sha256: "x".into(),
            body: bytes::Bytes::new(),
        };
        journal.record(&id(1), "f", 2, uploaded).await.unwrap();
        for _ in 0..2 {
            let maybe = Change::MaybeConversation {
                reason: "call 1 failed after it was sent".into(),
            };
            journal.record(&id(2), "g", 3, maybe).await.unwrap();
        }
        let still_uploading = done("c-3");
        journal
            .record(&id(3), "h", 4, still_uploading)
            .await
            .unwrap();

        let left = journal.leftovers().unwrap();
        assert_eq!(left.len(), 2, "{left:?}");
        assert_eq!(
            left[&id(1).hex()],
            Leftovers {
                without_audio: vec!["c-1".into()],
                unknown: 0
            }
        );
        assert_eq!(
            left[&id(1).hex()].note(),
            "earlier runs for this row: conversation c-1 holds no audio (the journal's conversations and unknown_conversations tables)"
        );
        assert_eq!(
            left[&id(2).hex()].note(),
            "earlier runs for this row: Voyc may hold up to 2 conversations without audio whose ids never reached us (the journal's conversations and unknown_conversations tables)"
        );
    }

    /// [`Journal::record`] from a plain thread, as a second process would write.
    fn record_now(
        journal: &Journal,
        identity: RowIdentity,
        file: &str,
        line: u64,
        change: Change,
    ) -> anyhow::Result<()> {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(journal.record(&identity, file, line, change))
    }

    fn id(n: u64) -> RowIdentity {
        RowIdentity::new(&format!("calls/{n}.wav"), n, b"{}")
    }

    #[test]
    fn a_row_identity_depends_on_path_size_and_body_only() {
        let a = RowIdentity::new("calls/1.wav", 10, br#"{"agent":"a"}"#);
        assert_eq!(a, RowIdentity::new("calls/1.wav", 10, br#"{"agent":"a"}"#));
        assert_ne!(a, RowIdentity::new("calls/2.wav", 10, br#"{"agent":"a"}"#));
        assert_ne!(a, RowIdentity::new("calls/1.wav", 11, br#"{"agent":"a"}"#));
        assert_ne!(a, RowIdentity::new("calls/1.wav", 10, br#"{"agent":"b"}"#));
        // Length prefixes keep the parts apart.
        assert_ne!(
            RowIdentity::new("ab", 1, b"c"),
            RowIdentity::new("a", 1, b"bc")
        );
        assert_eq!(a.hex().len(), 64);
    }

    #[test]
    fn an_objects_identity_is_its_url_etag_and_size_and_no_local_paths() {
        let a = RowIdentity::of_object("s3://b/calls/1.wav", Some("\"e1\""), 10, b"{}");
        assert_ne!(
            a,
            RowIdentity::of_object("s3://b/calls/1.wav", Some("\"e2\""), 10, b"{}")
        );
        assert_ne!(
            a,
            RowIdentity::of_object("s3://b/calls/1.wav", Some("\"e1\""), 11, b"{}")
        );
        assert_ne!(
            a,
            RowIdentity::of_object("s3://c/calls/1.wav", Some("\"e1\""), 10, b"{}")
        );
        assert_ne!(a, RowIdentity::of_row("s3://b/calls/1.wav", 10, b"{}"));
    }

    #[test]
    fn the_identity_path_folds_the_spellings_of_one_path() {
        for (written, path) in [
            ("calls/0001.wav", "calls/0001.wav"),
            ("./calls/0001.wav", "calls/0001.wav"),
            ("calls//0001.wav", "calls/0001.wav"),
            ("calls/./0001.wav", "calls/0001.wav"),
            ("x/../calls/0001.wav", "calls/0001.wav"),
            ("../archive/0001.wav", "../archive/0001.wav"),
            ("a/../../b.wav", "../b.wav"),
            ("/data//calls/../0001.wav", "/data/0001.wav"),
            ("/../0001.wav", "/0001.wav"),
        ] {
            assert_eq!(identity_path(written), path, "{written}");
        }
        assert_eq!(
            RowIdentity::of_row("./calls/1.wav", 10, b"{}"),
            RowIdentity::new("calls/1.wav", 10, b"{}"),
            "a path that needs no folding keeps the identity earlier versions gave it"
        );
    }

    #[tokio::test]
    async fn each_state_change_is_read_back_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.journal");
        {
            let journal = Journal::open(&path, &destination()).unwrap();
            assert_eq!(journal.lookup(&id(1)).unwrap(), None);
            journal
                .record(&id(1), "calls/1.wav", 2, Change::Call1Started)
                .await
                .unwrap();
            journal
                .record(&id(2), "calls/2.wav", 3, Change::Call1Started)
                .await
                .unwrap();
            journal
                .record(&id(2), "calls/2.wav", 3, done("c-2"))
                .await
                .unwrap();
            journal
                .record(&id(3), "calls/3.wav", 4, Change::Call1Started)
                .await
                .unwrap();
            journal
                .record(&id(3), "calls/3.wav", 4, done("c-3"))
                .await
                .unwrap();
            journal
                .record(
                    &id(3),
                    "calls/3.wav",
                    4,
                    Change::Uploaded {
                        bytes: 3,
                        sha256: "ab".into(),
                        body: bytes::Bytes::new(),
                    },
                )
                .await
                .unwrap();
            journal
                .record(
                    &id(4),
                    "calls/4.wav",
                    5,
                    Change::Failed {
                        error: "call 1: HTTP 400: bad".into(),
                    },
                )
                .await
                .unwrap();
        }
        let journal = Journal::open(&path, &destination()).unwrap();
        assert_eq!(
            journal.lookup(&id(1)).unwrap().unwrap().state,
            State::Call1Started
        );
        let two = journal.lookup(&id(2)).unwrap().unwrap();
        assert_eq!(two.state, State::Call1Done);
        assert_eq!(two.conversation_id, Some(ConversationId("c-2".into())));
        assert_eq!(two.target, Some(target()));
        assert_eq!(
            two.expires_at.unwrap().to_rfc3339(),
            "2024-05-01T12:10:00+00:00"
        );
        let three = journal.lookup(&id(3)).unwrap().unwrap();
        assert_eq!(three.state, State::Uploaded);
        assert_eq!(three.conversation_id, Some(ConversationId("c-3".into())));
        assert_eq!(three.target, None, "a used target is not kept");
        assert_eq!(
            (three.bytes, three.sha256.as_deref()),
            (Some(3), Some("ab"))
        );
        let four = journal.lookup(&id(4)).unwrap().unwrap();
        assert_eq!(four.state, State::Failed);
        assert_eq!(four.error.as_deref(), Some("call 1: HTTP 400: bad"));
    }

    #[tokio::test]
    async fn a_journal_opened_for_lookups_sees_rows_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        assert!(
            Journal::open_for_lookups(&path, &destination())
                .unwrap()
                .is_none()
        );
        assert!(!path.exists(), "nothing created");
        {
            let journal = Journal::open(&path, &destination()).unwrap();
            journal
                .record(
                    &id(1),
                    "f",
                    2,
                    Change::Uploaded {
                        bytes: 1,
                        sha256: "a".into(),
                        body: bytes::Bytes::new(),
                    },
                )
                .await
                .unwrap();
        }
        let lookups = Journal::open_for_lookups(&path, &destination())
            .unwrap()
            .unwrap();
        assert_eq!(
            lookups.lookup(&id(1)).unwrap().unwrap().state,
            State::Uploaded
        );
        assert!(
            lookups
                .record(&id(2), "f", 3, Change::Call1Started)
                .await
                .is_err()
        );
        let other = Destination::voyc("https://api.app.voyc.ai", "7");
        assert!(Journal::open_for_lookups(&path, &other).unwrap().is_none());
        drop(lookups);
        let db = Connection::open(&path).unwrap();
        let destinations: i64 = db
            .query_row("SELECT count(*) FROM destinations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(destinations, 1, "looking up another destination adds none");
    }

    #[tokio::test]
    async fn a_call_1_never_sent_is_taken_back() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&dir.path().join("j"), &destination()).unwrap();
        journal.record(&id(1), "f", 2, Change::Claim).await.unwrap();
        journal
            .record(&id(1), "f", 2, Change::NotStarted)
            .await
            .unwrap();
        assert_eq!(journal.lookup(&id(1)).unwrap(), None);
        // Only a row still at call1_started is taken back.
        journal
            .record(&id(2), "f", 3, Change::Failed { error: "x".into() })
            .await
            .unwrap();
        journal
            .record(&id(2), "f", 3, Change::NotStarted)
            .await
            .unwrap();
        assert_eq!(
            journal.lookup(&id(2)).unwrap().unwrap().state,
            State::Failed
        );
    }

    #[tokio::test]
    async fn another_destination_does_not_see_the_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.journal");
        let journal = Journal::open(&path, &destination()).unwrap();
        journal
            .record(&id(1), "calls/1.wav", 2, Change::Call1Started)
            .await
            .unwrap();
        let other =
            Journal::open(&path, &Destination::voyc("https://api.app.voyc.ai", "119")).unwrap();
        assert_eq!(other.lookup(&id(1)).unwrap(), None);
        let sandbox = Journal::open(
            &path,
            &Destination::fresh_sandbox("http://127.0.0.1:1", "1"),
        )
        .unwrap();
        assert_eq!(sandbox.lookup(&id(1)).unwrap(), None);
        assert_ne!(
            Destination::fresh_sandbox("http://127.0.0.1:1", "1"),
            Destination::fresh_sandbox("http://127.0.0.1:1", "1")
        );
        let same =
            Journal::open(&path, &Destination::voyc("https://api.app.voyc.ai", "118")).unwrap();
        assert!(
            same.lookup(&id(1)).unwrap().is_some(),
            "trailing slash ignored"
        );
    }

    #[tokio::test]
    async fn a_new_call_1_forgets_the_old_target_but_keeps_its_conversation() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&dir.path().join("j"), &destination()).unwrap();
        for conversation in ["old", "new"] {
            journal
                .record(&id(1), "calls/1.wav", 2, Change::Call1Started)
                .await
                .unwrap();
            assert_eq!(journal.lookup(&id(1)).unwrap().unwrap().target, None);
            journal
                .record(
                    &id(1),
                    "calls/1.wav",
                    2,
                    Change::Call1Done {
                        conversation_id: ConversationId(conversation.into()),
                        target: target(),
                    },
                )
                .await
                .unwrap();
        }
        journal
            .record(
                &id(1),
                "calls/1.wav",
                2,
                Change::Failed {
                    error: "upload: HTTP 400".into(),
                },
            )
            .await
            .unwrap();
        let stored = journal.lookup(&id(1)).unwrap().unwrap();
        assert_eq!(stored.state, State::Failed);
        assert_eq!(stored.conversation_id, Some(ConversationId("new".into())));
        assert_eq!(
            stored.target,
            Some(target()),
            "a failed row keeps its target"
        );
        journal.close();
        let db = Connection::open(dir.path().join("j")).unwrap();
        let conversations: Vec<String> = column(
            &db,
            "SELECT conversation_id FROM conversations ORDER BY conversation_id",
        );
        // The row's own is in `rows`; the one it replaced is kept in `conversations`.
        assert_eq!(conversations, ["old"]);
        let targets: Vec<String> = column(&db, "SELECT target FROM targets");
        assert_eq!(targets.len(), 1, "the replaced target is gone: {targets:?}");
    }

    #[tokio::test]
    async fn a_target_is_kept_apart_from_its_row_and_deleted_once_the_row_is_uploaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let journal = Journal::open(&path, &destination()).unwrap();
        journal
            .record(&id(1), "calls/1.wav", 2, done("c-1"))
            .await
            .unwrap();
        let count = |sql: &str| -> i64 {
            Connection::open(&path)
                .unwrap()
                .query_row(sql, [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(count("SELECT count(*) FROM targets"), 1);
        assert_eq!(
            count("SELECT count(*) FROM rows WHERE target IS NOT NULL"),
            0
        );
        let uploaded = Change::Uploaded {
            bytes: 1,
            sha256: "a".into(),
            body: bytes::Bytes::from_static(b"{}"),
        };
        journal
            .record(&id(1), "calls/1.wav", 2, uploaded)
            .await
            .unwrap();
        assert_eq!(journal.lookup(&id(1)).unwrap().unwrap().target, None);
        assert_eq!(
            count("SELECT count(*) FROM targets"),
            0,
            "an uploaded row's presigned target is not kept"
        );
    }

    /// A change for `gather`, and where its answer would go.
    fn op(n: u64) -> (Op, tokio::sync::oneshot::Receiver<Result<(), String>>) {
        op_of(n, Change::Call1Started)
    }

    fn op_of(n: u64, change: Change) -> (Op, tokio::sync::oneshot::Receiver<Result<(), String>>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let op = Op {
            run: 1,
            identity: id(n),
            file: "f".into(),
            line: n,
            change,
            done: Reply(tx),
        };
        (op, rx)
    }

    const FOREVER: Grouping = Grouping {
        waited_on: Duration::from_secs(60),
        otherwise: Duration::from_secs(60),
    };

    #[test]
    fn a_row_alone_is_committed_without_waiting_for_others() {
        let (tx, rx) = mpsc::channel();
        let in_flight = AtomicUsize::new(1);
        let mut batch = vec![op(1).0];
        let started = Instant::now();
        gather(&rx, &mut batch, &in_flight, FOREVER);
        assert!(started.elapsed() < Duration::from_secs(30));
        assert_eq!(batch.len(), 1);
        drop(tx);
    }

    #[test]
    fn changes_of_the_rows_in_flight_share_one_commit() {
        let (tx, rx) = mpsc::channel();
        let in_flight = AtomicUsize::new(2);
        let mut batch = vec![op(1).0];
        let late = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            tx.send(op(2).0).unwrap();
            tx.send(op(3).0).unwrap();
            std::thread::sleep(Duration::from_millis(20));
            tx.send(op(4).0).unwrap();
        });
        let started = Instant::now();
        gather(&rx, &mut batch, &in_flight, FOREVER);
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "it stops at one and a half changes a row in flight"
        );
        let lines: Vec<u64> = batch.iter().map(|op| op.line).collect();
        assert_eq!(lines, [1, 2, 3], "in the order they came");
        late.join().unwrap();
    }

    #[test]
    fn a_change_a_row_waits_on_is_held_only_for_the_short_window() {
        let (tx, rx) = mpsc::channel();
        let in_flight = AtomicUsize::new(32);
        let mut batch = vec![op(1).0];
        tx.send(op(2).0).unwrap();
        let started = Instant::now();
        let grouping = Grouping {
            waited_on: Duration::from_millis(30),
            otherwise: Duration::from_secs(60),
        };
        gather(&rx, &mut batch, &in_flight, grouping);
        assert!(started.elapsed() >= Duration::from_millis(30));
        assert!(started.elapsed() < Duration::from_secs(30));
        assert_eq!(batch.len(), 2, "what was pending is taken");
    }

    #[test]
    fn changes_nobody_waits_on_wait_longer_until_one_that_a_row_waits_on_comes() {
        let claim = || op_of(1, Change::Claim).0;
        let in_flight = AtomicUsize::new(32);
        // Claims alone are held for the longer window.
        let (tx, rx) = mpsc::channel();
        let mut batch = vec![claim()];
        tx.send(claim()).unwrap();
        let long = Grouping {
            waited_on: Duration::from_secs(60),
            otherwise: Duration::from_millis(40),
        };
        let started = Instant::now();
        gather(&rx, &mut batch, &in_flight, long);
        assert!(started.elapsed() >= Duration::from_millis(40));
        assert!(started.elapsed() < Duration::from_secs(30));
        assert_eq!(batch.len(), 2);
        // A failure does not end the wait; a call 1 done coming after 10 ms ends it soon after.
        let mut batch = vec![claim()];
        let late = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(10));
            let failed = Change::Failed {
                error: "413".into(),
            };
            tx.send(op_of(2, failed).0).unwrap();
            tx.send(op_of(3, done("c-3")).0).unwrap();
            tx
        });
        let short = Grouping {
            waited_on: Duration::from_millis(5),
            otherwise: Duration::from_secs(60),
        };
        let started = Instant::now();
        gather(&rx, &mut batch, &in_flight, short);
        let _tx = late.join().unwrap();
        assert!(started.elapsed() >= Duration::from_millis(10));
        assert!(started.elapsed() < Duration::from_secs(30));
        let lines: Vec<u64> = batch.iter().map(|op| op.line).collect();
        assert_eq!(lines, [1, 2, 3]);
    }

    #[test]
    fn a_closed_journal_commits_what_it_holds_without_waiting() {
        let (tx, rx) = mpsc::channel();
        let in_flight = AtomicUsize::new(32);
        let mut batch = vec![op(1).0];
        tx.send(op(2).0).unwrap();
        drop(tx);
        let started = Instant::now();
        gather(&rx, &mut batch, &in_flight, FOREVER);
        assert!(started.elapsed() < Duration::from_secs(30));
        assert_eq!(batch.len(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_grouped_change_is_answered_only_once_it_is_committed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let journal = Journal::open(&path, &destination()).unwrap();
        // Others in flight that add nothing: the writer waits its window, then commits.
        let _others: Vec<InFlight> = (0..8).map(|_| journal.row_in_flight()).collect();
        let pending = journal.begin(&id(1), "f", 2, Change::Call1Started).unwrap();
        pending.committed().await.unwrap();
        let db = Connection::open(&path).unwrap();
        let state: String = db
            .query_row("SELECT state FROM rows", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            state, "call1_started",
            "another connection sees it once answered"
        );
    }

    #[test]
    fn a_new_journal_has_small_pages_and_an_old_one_keeps_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("new");
        drop(Journal::open(&fresh, &destination()).unwrap());
        let page_size = |path: &Path| -> i64 {
            Connection::open(path)
                .unwrap()
                .query_row("PRAGMA page_size", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(page_size(&fresh), 1024);
        let old = dir.path().join("old");
        let db = Connection::open(&old).unwrap();
        db.execute_batch("PRAGMA page_size = 4096; PRAGMA journal_mode = WAL; CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);")
            .unwrap();
        drop(db);
        let journal = Journal::open(&old, &destination()).unwrap();
        record_now(&journal, id(1), "f", 1, Change::Call1Started).unwrap();
        drop(journal);
        assert_eq!(page_size(&old), 4096);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn many_concurrent_writers_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Arc::new(Journal::open(&dir.path().join("j"), &destination()).unwrap());
        let tasks: Vec<_> = (0..32u64)
            .map(|worker| {
                let journal = journal.clone();
                tokio::spawn(async move {
                    let _in_flight = journal.row_in_flight();
                    for n in 0..50 {
                        let row = worker * 1000 + n;
                        journal
                            .record(&id(row), "f", row, Change::Call1Started)
                            .await
                            .unwrap();
                        journal
                            .record(
                                &id(row),
                                "f",
                                row,
                                Change::Uploaded {
                                    bytes: row,
                                    sha256: "x".into(),
                                    body: bytes::Bytes::new(),
                                },
                            )
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        for worker in 0..32u64 {
            for n in 0..50 {
                let row = worker * 1000 + n;
                let stored = journal.lookup(&id(row)).unwrap().unwrap();
                assert_eq!((stored.state, stored.bytes), (State::Uploaded, Some(row)));
            }
        }
    }

    #[test]
    fn two_processes_worth_of_journals_share_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let a = Journal::open(&path, &destination()).unwrap();
        let b = Journal::open(&path, &destination()).unwrap();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                for n in 0..200 {
                    record_now(&a, id(n), "f", n, Change::Call1Started).unwrap();
                }
            });
            scope.spawn(|| {
                for n in 200..400 {
                    record_now(&b, id(n), "f", n, Change::Call1Started).unwrap();
                }
            });
        });
        assert!(a.lookup(&id(399)).unwrap().is_some());
        assert!(b.lookup(&id(0)).unwrap().is_some());
    }

    #[cfg(unix)]
    #[test]
    fn the_journal_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        std::fs::write(&path, b"").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let journal = Journal::open(&path, &destination()).unwrap();
        record_now(&journal, id(1), "f", 1, Change::Call1Started).unwrap();
        for file in ["j", "j-wal"] {
            let mode = std::fs::metadata(dir.path().join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
    }

    #[test]
    fn a_journal_from_a_newer_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        drop(Journal::open(&path, &destination()).unwrap());
        Connection::open(&path)
            .unwrap()
            .execute(
                "UPDATE meta SET value = '99' WHERE key = 'schema_version'",
                [],
            )
            .unwrap();
        let err = Journal::open(&path, &destination())
            .unwrap_err()
            .to_string();
        assert!(err.contains("schema version 99"), "{err}");
    }

    /// What a journal of voyc-import 0.1 (schema 1, no marks) holds: its own tables and one
    /// uploaded row.
    fn journal_of_version_1(path: &Path) {
        let db = Connection::open(path).unwrap();
        db.execute_batch(&format!(
            "PRAGMA journal_mode = WAL;
             {SCHEMA_V1}
             INSERT INTO meta VALUES ('schema_version', '1');
             INSERT INTO destinations (label, base_url, organisation, created_at)
               VALUES ('https://api.app.voyc.ai org 118', 'https://api.app.voyc.ai', '118', 'x');
             INSERT INTO rows (destination, identity, file, line, state, conversation_id, bytes, sha256, updated_at)
               VALUES (1, '{}', './calls/1.wav', 2, 'uploaded', 'c-1', 1, 'a', '2024-05-01T12:00:00.000Z');",
            id(1).hex()
        ))
        .unwrap();
    }

    /// The schema of voyc-import 0.1, as it shipped.
    const SCHEMA_V1: &str = "
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE destinations (id INTEGER PRIMARY KEY, label TEXT NOT NULL UNIQUE,
            base_url TEXT NOT NULL, organisation TEXT NOT NULL, created_at TEXT NOT NULL);
        CREATE TABLE rows (destination INTEGER NOT NULL REFERENCES destinations(id),
            identity TEXT NOT NULL, file TEXT NOT NULL, line INTEGER NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('call1_started', 'call1_done', 'uploaded', 'failed')),
            conversation_id TEXT, target TEXT, target_expires_at TEXT, bytes INTEGER, sha256 TEXT,
            error TEXT, updated_at TEXT NOT NULL, PRIMARY KEY (destination, identity)) WITHOUT ROWID;
        CREATE TABLE conversations (destination INTEGER NOT NULL REFERENCES destinations(id),
            conversation_id TEXT NOT NULL, identity TEXT NOT NULL, created_at TEXT NOT NULL,
            PRIMARY KEY (destination, conversation_id)) WITHOUT ROWID;
        CREATE TABLE unknown_conversations (destination INTEGER NOT NULL REFERENCES destinations(id),
            identity TEXT NOT NULL, reason TEXT NOT NULL, created_at TEXT NOT NULL);";

    /// The first column of every row `sql` returns, as text.
    fn column(db: &Connection, sql: &str) -> Vec<String> {
        db.prepare(sql)
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn marks(path: &Path) -> (i32, i32) {
        let db = Connection::open(path).unwrap();
        let id = db
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .unwrap();
        let version = db
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        (id, version)
    }

    #[tokio::test]
    async fn a_row_claimed_by_a_live_run_is_left_to_it_and_taken_over_once_it_dies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let a = Journal::open_for_run(&path, &destination(), Path::new("rA.csv")).unwrap();
        let b = Journal::open_for_run(&path, &destination(), Path::new("rB.csv")).unwrap();
        a.record(&id(1), "f", 2, Change::Claim).await.unwrap();
        assert_eq!(
            a.claim_state(&id(1)).unwrap().holder,
            Holder::Me { fresh: true },
            "a new row's claim is its call 1 started"
        );
        b.record(&id(1), "f", 2, Change::Claim).await.unwrap();
        let seen = b.claim_state(&id(1)).unwrap();
        let Holder::Other(holder) = seen.holder else {
            panic!("{seen:?}");
        };
        assert!(holder.describe().ends_with("report rA.csv)"), "{holder:?}");
        assert!(b.is_alive(&holder));
        // B's stop takes back only what B's own claim created.
        b.record(&id(1), "f", 2, Change::NotStarted).await.unwrap();
        assert!(a.lookup(&id(1)).unwrap().is_some());

        // A row A uploaded is released, and nobody can claim it again.
        a.record(&id(2), "g", 3, Change::Claim).await.unwrap();
        a.record(
            &id(2),
            "g",
            3,
            Change::Uploaded {
                bytes: 1,
                sha256: "x".into(),
                body: bytes::Bytes::new(),
            },
        )
        .await
        .unwrap();
        b.record(&id(2), "g", 3, Change::Claim).await.unwrap();
        let seen = b.claim_state(&id(2)).unwrap();
        assert_eq!(seen.holder, Holder::Nobody);
        assert_eq!(seen.stored.unwrap().state, State::Uploaded);

        // A dies (kill -9): its claim stands until a run finds its lock free.
        a.record(&id(3), "h", 4, done("c-3")).await.unwrap();
        a.die();
        assert!(!b.is_alive(&holder), "a free lock is a dead run");
        b.record(&id(1), "f", 2, Change::Claim).await.unwrap();
        let seen = b.claim_state(&id(1)).unwrap();
        assert_eq!(seen.holder, Holder::Me { fresh: false }, "taken over");
        assert_eq!(seen.stored.unwrap().state, State::Call1Started);
    }

    #[tokio::test]
    async fn a_run_that_died_is_forgotten_by_the_next_and_a_run_that_ends_leaves_no_trace() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let a = Journal::open(&path, &destination()).unwrap();
        a.record(&id(1), "f", 2, Change::Claim).await.unwrap();
        a.die();
        // Runs killed before they were recorded: an old lock is removed, a new one left (its
        // run may be about to lock it).
        let stale = dir.path().join("j-run-00000000000000aa.lock");
        std::fs::File::create(&stale)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(120))
            .unwrap();
        let new = dir.path().join("j-run-00000000000000bb.lock");
        std::fs::write(&new, "").unwrap();
        let b = Journal::open(&path, &destination()).unwrap();
        assert!(!stale.exists());
        std::fs::remove_file(&new).expect("a new lock is left alone");
        b.record(&id(1), "f", 2, Change::Claim).await.unwrap();
        assert_eq!(
            b.claim_state(&id(1)).unwrap().holder,
            Holder::Me { fresh: false }
        );
        b.close();
        let db = Connection::open(&path).unwrap();
        let (runs, claims): (i64, i64) = db
            .query_row(
                "SELECT (SELECT count(*) FROM runs), (SELECT count(*) FROM rows WHERE claimed_by IS NOT NULL)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((runs, claims), (0, 0));
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".lock"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn a_new_journal_is_marked_as_ours() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        drop(Journal::open(&path, &destination()).unwrap());
        assert_eq!(marks(&path), (APPLICATION_ID, 5));
    }

    #[test]
    fn a_journal_of_the_previous_version_is_adopted_and_its_rows_still_resume() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        journal_of_version_1(&path);
        assert_eq!(marks(&path), (0, 0));
        assert!(
            Journal::open_for_lookups(&path, &destination())
                .unwrap()
                .is_some()
        );
        let journal = Journal::open(&path, &destination()).unwrap();
        assert_eq!(
            journal.lookup(&id(1)).unwrap().unwrap().state,
            State::Uploaded
        );
        drop(journal);
        assert_eq!(marks(&path), (APPLICATION_ID, 5));
    }

    /// A journal as schema 3 left it: `rows` keyed by identity, every conversation listed.
    fn journal_of_version_3(path: &Path) {
        let rows_v3 = "CREATE TABLE rows (destination INTEGER NOT NULL, identity TEXT NOT NULL,
            file TEXT NOT NULL, line INTEGER NOT NULL, state TEXT NOT NULL, conversation_id TEXT,
            target TEXT, target_expires_at TEXT, bytes INTEGER, sha256 TEXT, error TEXT,
            updated_at TEXT NOT NULL, claimed_by INTEGER, run INTEGER, path TEXT, size INTEGER,
            body TEXT, PRIMARY KEY (destination, identity)) WITHOUT ROWID;";
        let db = Connection::open(path).unwrap();
        db.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = 3;
             {rows_v3}
             {OTHER_TABLES_V3_V4}
             {INDEXES_V3_V4}
             INSERT INTO meta VALUES ('schema_version', '3');
             INSERT INTO rows (destination, identity, file, line, state, conversation_id, target,
                               updated_at)
               VALUES (1, '{two}', 'calls/2.wav', 3, 'call1_done', 'c-2', '{target}',
                       '2024-05-01T12:00:01.000Z');
             INSERT INTO rows (destination, identity, file, line, state, conversation_id, bytes,
                               sha256, updated_at, path, size, body)
               VALUES (1, '{one}', 'calls/1.wav', 2, 'uploaded', 'c-1', 1, 'a',
                       '2024-05-01T12:00:00.000Z', 'calls/1.wav', 1, '{{}}');
             INSERT INTO conversations VALUES (1, 'c-0', '{one}', 'x'), (1, 'c-1', '{one}', 'x'),
                                              (1, 'c-2', '{two}', 'x');",
            one = id(1).hex(),
            two = id(2).hex(),
            target = serde_json::to_string(&target()).unwrap(),
        ))
        .unwrap();
    }

    /// The tables of schemas 3 and 4 besides `rows` and its indexes, as they shipped, and the
    /// destination of the tests.
    const OTHER_TABLES_V3_V4: &str = "
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE destinations (id INTEGER PRIMARY KEY, label TEXT NOT NULL UNIQUE,
            base_url TEXT NOT NULL, organisation TEXT NOT NULL, created_at TEXT NOT NULL);
        CREATE TABLE conversations (destination INTEGER NOT NULL, conversation_id TEXT NOT NULL,
            identity TEXT NOT NULL, created_at TEXT NOT NULL,
            PRIMARY KEY (destination, conversation_id)) WITHOUT ROWID;
        CREATE TABLE unknown_conversations (destination INTEGER NOT NULL, identity TEXT NOT NULL,
            reason TEXT NOT NULL, created_at TEXT NOT NULL);
        CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, lock TEXT NOT NULL,
            pid INTEGER NOT NULL, report TEXT NOT NULL, started_at TEXT NOT NULL);
        INSERT INTO destinations (label, base_url, organisation, created_at)
          VALUES ('https://api.app.voyc.ai org 118', 'https://api.app.voyc.ai', '118', 'x');";

    /// The indexes of schemas 3 and 4, as they shipped.
    const INDEXES_V3_V4: &str = "
        CREATE UNIQUE INDEX rows_identity ON rows (destination, identity);
        CREATE INDEX rows_claimed ON rows (claimed_by) WHERE claimed_by IS NOT NULL;
        CREATE INDEX rows_uploaded_file ON rows (destination, path, size) WHERE state = 'uploaded';";

    /// An object's row as a journal of schema 4 kept it: under the path the manifest wrote
    /// (relative to an object `--base-dir`), which is not the key it has now (the URL).
    fn object_row() -> RowIdentity {
        RowIdentity::of_object("s3://b/calls/3.wav", Some("e"), 3, b"{}")
    }

    /// A journal as schema 4 left it: rows found by identity, a call 1 done, two uploaded rows
    /// (one an object's), and the conversations rows replaced.
    fn journal_of_version_4(path: &Path) {
        let rows_v4 = "CREATE TABLE rows (id INTEGER PRIMARY KEY, destination INTEGER NOT NULL,
            identity TEXT NOT NULL, file TEXT NOT NULL, line INTEGER NOT NULL, state TEXT NOT NULL,
            conversation_id TEXT, target TEXT, target_expires_at TEXT, bytes INTEGER, sha256 TEXT,
            error TEXT, updated_at TEXT NOT NULL, claimed_by INTEGER, run INTEGER, path TEXT,
            size INTEGER, body TEXT);";
        let db = Connection::open(path).unwrap();
        db.execute_batch(&format!(
            "PRAGMA page_size = 2048; PRAGMA journal_mode = WAL;
             PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = 4;
             {rows_v4}
             {OTHER_TABLES_V3_V4}
             {INDEXES_V3_V4}
             INSERT INTO meta VALUES ('schema_version', '4');
             INSERT INTO rows (destination, identity, file, line, state, conversation_id, bytes,
                               sha256, updated_at, path, size, body)
               VALUES (1, '{one}', 'calls/1.wav', 2, 'uploaded', 'c-1', 1, 'a',
                       '2024-05-01T12:00:00.000Z', 'calls/1.wav', 1, '{{}}');
             INSERT INTO rows (destination, identity, file, line, state, conversation_id, target,
                               updated_at)
               VALUES (1, '{two}', 'calls/2.wav', 3, 'call1_done', 'c-2', '{target}',
                       '2024-05-01T12:00:01.000Z');
             INSERT INTO rows (destination, identity, file, line, state, conversation_id, bytes,
                               sha256, updated_at, path, size, body)
               VALUES (1, '{object}', 'calls/3.wav', 4, 'uploaded', 'c-3', 3, 'b',
                       '2024-05-01T12:00:02.000Z', 'calls/3.wav', 3, '{{}}');
             INSERT INTO unknown_conversations VALUES (1, '{two}', 'a timeout', 'x');
             INSERT INTO conversations VALUES (1, 'c-0', '{one}', 'x'), (1, 'c-1b', '{two}', 'x');",
            one = id(1).hex(),
            two = id(2).hex(),
            object = object_row().hex(),
            target = serde_json::to_string(&target()).unwrap(),
        ))
        .unwrap();
    }

    #[tokio::test]
    async fn a_journal_of_schema_4_resumes_and_each_row_is_found_by_its_key_once_changed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        journal_of_version_4(&path);
        // A dry run reads it as it is.
        let lookups = Journal::open_for_lookups(&path, &destination())
            .unwrap()
            .unwrap();
        assert_eq!(
            lookups.lookup(&id(2)).unwrap().unwrap().state,
            State::Call1Done
        );
        assert!(lookups.uploaded_file("calls/1.wav", 1).unwrap().is_some());
        drop(lookups);
        assert_eq!(
            marks(&path),
            (APPLICATION_ID, 4),
            "a dry run changes nothing"
        );

        Journal::bring_up_to_date(&path).unwrap();
        assert_eq!(marks(&path), (APPLICATION_ID, 5));
        let journal = Journal::open(&path, &destination()).unwrap();
        assert_eq!(journal.keys, Keys::Mixed);
        assert_eq!(
            journal.lookup(&id(1)).unwrap().unwrap().state,
            State::Uploaded
        );
        let resumable = journal.lookup(&id(2)).unwrap().unwrap();
        assert_eq!(
            resumable.target,
            Some(target()),
            "the target to resume with"
        );
        assert_eq!(
            journal.lookup(&object_row()).unwrap().unwrap().state,
            State::Uploaded,
            "found by identity, though its key is not the path it was kept under"
        );
        assert!(journal.uploaded_file("calls/1.wav", 1).unwrap().is_some());
        let left = journal.leftovers().unwrap();
        assert_eq!(left[&id(1).hex()].without_audio, ["c-0"]);
        assert_eq!(left[&id(2).hex()].without_audio, ["c-1b"]);
        assert_eq!(left[&id(2).hex()].unknown, 1);

        // Its next changes give each row its key, and make no second row.
        let uploaded = Change::Uploaded {
            bytes: 2,
            sha256: "c".into(),
            body: bytes::Bytes::from_static(b"{}"),
        };
        journal
            .record(&id(2), "calls/2.wav", 3, uploaded)
            .await
            .unwrap();
        journal
            .record(&object_row(), "calls/3.wav", 4, Change::Claim)
            .await
            .unwrap();
        let row_two = journal.lookup(&id(2)).unwrap().unwrap();
        assert_eq!(
            (row_two.state, row_two.conversation_id),
            (State::Uploaded, Some(ConversationId("c-2".into())))
        );
        assert_eq!(
            journal.lookup(&object_row()).unwrap().unwrap().state,
            State::Uploaded,
            "an uploaded row is never claimed"
        );
        let left = journal.leftovers().unwrap();
        assert_eq!(
            left[&id(2).hex()].without_audio,
            ["c-1b"],
            "still not the row's own"
        );
        journal.close();
        let db = Connection::open(&path).unwrap();
        let rows: Vec<String> = column(
            &db,
            "SELECT coalesce(path, '-') || ' ' || coalesce(keyed, '-') FROM rows ORDER BY id",
        );
        assert_eq!(
            rows,
            ["calls/1.wav -", "calls/2.wav 1", "s3://b/calls/3.wav 1"],
            "one row each; the changed ones under their keys"
        );
        let conversations: Vec<String> = column(
            &db,
            "SELECT conversation_id || ' ' || coalesce(path, '-') FROM conversations ORDER BY 1",
        );
        assert_eq!(conversations, ["c-0 -", "c-1b calls/2.wav"]);
        drop(db);

        // A run after finds them all by their keys, and the rest as before.
        let journal = Journal::open(&path, &destination()).unwrap();
        for identity in [id(1), id(2), object_row()] {
            assert_eq!(
                journal.lookup(&identity).unwrap().unwrap().state,
                State::Uploaded
            );
        }
        assert_eq!(
            journal
                .uploaded_file("s3://b/calls/3.wav", 3)
                .unwrap()
                .unwrap()
                .file,
            "calls/3.wav"
        );
    }

    #[test]
    fn a_journal_of_schema_3_is_rebuilt_and_resumes_as_before() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        journal_of_version_3(&path);
        Journal::bring_up_to_date(&path).unwrap();
        assert_eq!(marks(&path), (APPLICATION_ID, 5));
        let journal = Journal::open(&path, &destination()).unwrap();
        let uploaded = journal.lookup(&id(1)).unwrap().unwrap();
        assert_eq!(uploaded.state, State::Uploaded);
        assert_eq!(uploaded.conversation_id, Some(ConversationId("c-1".into())));
        let resumable = journal.lookup(&id(2)).unwrap().unwrap();
        assert_eq!(resumable.state, State::Call1Done);
        assert_eq!(
            resumable.target,
            Some(target()),
            "the target to resume with"
        );
        let earlier = journal.uploaded_file("calls/1.wav", 1).unwrap().unwrap();
        assert_eq!(earlier.body.as_deref(), Some("{}"));
        // The one conversation no row holds is the one an earlier run left without audio.
        let left = journal.leftovers().unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[&id(1).hex()].without_audio, ["c-0"]);
        journal.close();
        let db = Connection::open(&path).unwrap();
        let kept: Vec<String> = column(&db, "SELECT conversation_id FROM conversations");
        assert_eq!(kept, ["c-0"], "the rows' own are in rows");
        let order: Vec<String> = column(&db, "SELECT file FROM rows ORDER BY id");
        assert_eq!(order.len(), 2);
    }

    #[test]
    fn a_journal_of_version_1_brought_up_to_date_finds_its_uploaded_rows_by_file_without_a_body() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Journal::bring_up_to_date(&dir.path().join("none")).is_ok());
        assert!(!dir.path().join("none").exists(), "nothing created");
        let path = dir.path().join("j");
        journal_of_version_1(&path);
        Journal::bring_up_to_date(&path).unwrap();
        assert_eq!(marks(&path), (APPLICATION_ID, 5));
        let lookups = Journal::open_for_lookups(&path, &destination())
            .unwrap()
            .unwrap();
        let earlier = lookups.uploaded_file("calls/1.wav", 1).unwrap().unwrap();
        assert_eq!(earlier.file, "./calls/1.wav");
        assert_eq!(earlier.body, None, "schema 1 kept no body");
        assert_eq!(
            earlier.stored.conversation_id,
            Some(ConversationId("c-1".into()))
        );
        assert_eq!(lookups.uploaded_file("calls/1.wav", 2).unwrap(), None);
        // Once up to date, it stays so.
        drop(lookups);
        Journal::bring_up_to_date(&path).unwrap();
        drop(Journal::open(&path, &destination()).unwrap());
    }

    #[test]
    fn a_journal_of_version_1_not_yet_up_to_date_finds_nothing_by_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        journal_of_version_1(&path);
        let lookups = Journal::open_for_lookups(&path, &destination())
            .unwrap()
            .unwrap();
        assert_eq!(lookups.uploaded_file("calls/1.wav", 1).unwrap(), None);
    }

    #[tokio::test]
    async fn an_uploaded_row_is_found_by_its_path_and_size_with_its_body_by_later_runs_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let journal = Journal::open(&path, &destination()).unwrap();
        journal
            .record(&id(1), "./calls//1.wav", 2, done("c-1"))
            .await
            .unwrap();
        let uploaded = Change::Uploaded {
            bytes: 10,
            sha256: "ab".into(),
            body: bytes::Bytes::from_static(br#"{"agent":"a"}"#),
        };
        journal
            .record(&id(1), "./calls//1.wav", 2, uploaded)
            .await
            .unwrap();
        // Not before it was opened: this run's own uploads are not earlier ones.
        journal
            .reader
            .lock()
            .unwrap()
            .execute(
                "UPDATE rows SET updated_at = '9999-01-01T00:00:00.000Z'",
                [],
            )
            .unwrap();
        assert_eq!(journal.uploaded_file("calls/1.wav", 10).unwrap(), None);
        journal
            .reader
            .lock()
            .unwrap()
            .execute(
                "UPDATE rows SET updated_at = '2024-01-01T00:00:00.000Z'",
                [],
            )
            .unwrap();
        drop(journal);
        let later = Journal::open(&path, &destination()).unwrap();
        let earlier = later.uploaded_file("calls/1.wav", 10).unwrap().unwrap();
        assert_eq!(earlier.body.as_deref(), Some(r#"{"agent":"a"}"#));
        assert_eq!(earlier.file, "./calls//1.wav");
        assert_eq!(
            earlier.stored.conversation_id,
            Some(ConversationId("c-1".into()))
        );
        assert_eq!(earlier.stored.sha256.as_deref(), Some("ab"));
        assert_eq!(later.uploaded_file("calls/1.wav", 11).unwrap(), None);
        assert_eq!(later.uploaded_file("calls/2.wav", 10).unwrap(), None);
        let other =
            Journal::open(&path, &Destination::voyc("https://api.app.voyc.ai", "7")).unwrap();
        assert_eq!(other.uploaded_file("calls/1.wav", 10).unwrap(), None);
    }

    /// How SQLite plans `sql` with `params` on a new journal: one line a step.
    fn query_plan(sql: &str, params: impl rusqlite::Params) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&dir.path().join("j"), &destination()).unwrap();
        let reader = journal.reader.lock().unwrap();
        reader
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap()
            .query_map(params, |r| r.get::<_, String>(3))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn finding_an_earlier_upload_of_a_file_is_an_index_search_not_a_scan() {
        let plan = query_plan(UPLOADED_FILE, params![1, "calls/1.wav", 10, "9999"]);
        assert!(
            plan.iter()
                .any(|step| step.contains("USING INDEX rows_key (destination=? AND path=?)")),
            "{plan:?}"
        );
    }

    #[test]
    fn a_row_is_found_by_its_key_and_one_of_before_schema_5_by_its_identity_among_those() {
        let select = "SELECT r.id FROM rows r";
        let plan = query_plan(
            &format!("{select} WHERE r.destination = ?1 AND r.path = ?2 AND r.identity = ?3"),
            params![1, "calls/1.wav", "ab"],
        );
        assert!(
            plan.iter().any(|step| step.contains(
                "USING COVERING INDEX rows_key (destination=? AND path=? AND identity=?)"
            )),
            "{plan:?}"
        );
        let plan = query_plan(
            &format!("{select} WHERE r.destination = ?1 AND r.identity = ?2 AND r.keyed IS NULL"),
            params![1, "ab"],
        );
        assert!(
            plan.iter()
                .any(|step| step
                    .contains("USING INDEX rows_before_5 (destination=? AND identity=?)")),
            "{plan:?}"
        );
    }

    #[tokio::test]
    async fn rows_looked_up_many_at_once_are_answered_as_one_at_a_time_in_any_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let journal = Journal::open(&path, &destination()).unwrap();
        let other =
            Journal::open(&path, &Destination::voyc("https://api.app.voyc.ai", "119")).unwrap();
        let rows = 700u64;
        for n in 0..rows {
            // Another destination's rows between ours, some with our rows' identities.
            if n % 3 == 0 {
                let theirs = if n % 2 == 0 { id(n) } else { id(50_000 + n) };
                other
                    .record(&theirs, "calls/x.wav", n, Change::Call1Started)
                    .await
                    .unwrap();
            }
            let change = match n % 4 {
                0 => Change::Call1Started,
                1 => Change::Call1Done {
                    conversation_id: ConversationId(format!("c-{n}")),
                    target: target(),
                },
                2 => Change::Uploaded {
                    bytes: n,
                    sha256: format!("{n:064}"),
                    body: bytes::Bytes::new(),
                },
                _ => Change::Failed {
                    error: format!("error {n}"),
                },
            };
            journal
                .record(&id(n), "calls/x.wav", n, change)
                .await
                .unwrap();
        }
        let check_on = |journal: &Journal, identities: &[RowIdentity]| {
            let answers = journal.lookup_many(identities).unwrap();
            assert_eq!(answers.len(), identities.len());
            for (identity, answer) in identities.iter().zip(answers) {
                assert_eq!(answer, journal.lookup(identity).unwrap(), "{identity:?}");
            }
        };
        let check = |identities: &[RowIdentity]| check_on(&journal, identities);
        let in_order: Vec<RowIdentity> = (0..rows).map(id).collect();
        // Batches one after the other, as a rerun asks, then one from the middle again.
        for batch in in_order.chunks(300) {
            check(batch);
        }
        check(&in_order[200..600]);
        let mut mixed = in_order.clone();
        mixed.reverse();
        check(&mixed);
        // Rows the journal does not hold, one row twice, another order.
        mixed.extend((0..100).map(|n| id(90_000 + n)));
        mixed.push(id(5));
        fastrand::Rng::with_seed(7).shuffle(&mut mixed);
        check(&mixed);
        check(&(0..400).map(|n| id(90_000 + n)).collect::<Vec<_>>());
        // Another destination's view of the same journal.
        let theirs: Vec<RowIdentity> = (0..rows)
            .map(id)
            .chain((0..rows).map(|n| id(50_000 + n)))
            .collect();
        check_on(&other, &theirs);
    }

    #[test]
    fn reading_the_next_rows_follows_the_rowids_without_sorting_the_destination() {
        let plan = query_plan(NEXT_ROWS, params![1, 1, 100]);
        assert!(
            plan.iter()
                .any(|step| step.contains("USING INTEGER PRIMARY KEY (rowid>?)")),
            "{plan:?}"
        );
        assert!(
            !plan.iter().any(|step| step.contains("TEMP B-TREE")),
            "{plan:?}"
        );
    }

    #[test]
    fn a_database_of_another_program_is_refused_and_not_written_to() {
        let dir = tempfile::tempdir().unwrap();
        for (name, sql) in [
            // A `rows` table like ours, but not ours.
            (
                "rows",
                "CREATE TABLE rows (id INTEGER PRIMARY KEY, body TEXT);",
            ),
            ("notes", "CREATE TABLE notes (x TEXT);"),
            // Our tables and one more.
            (
                "extra",
                &format!("{SCHEMA_V1} CREATE TABLE theirs (x TEXT);"),
            ),
            (
                "marked",
                "PRAGMA application_id = 42; CREATE TABLE meta (key TEXT, value TEXT);",
            ),
        ] {
            let path = dir.path().join(name);
            Connection::open(&path).unwrap().execute_batch(sql).unwrap();
            let before = std::fs::read(&path).unwrap();
            for err in [
                Journal::open(&path, &destination()).unwrap_err(),
                Journal::open_for_lookups(&path, &destination()).unwrap_err(),
            ] {
                let err = format!("{err:#}");
                assert!(
                    err.starts_with(&format!(
                        "the journal {} is an SQLite database of another program, not a voyc-import journal",
                        path.display()
                    )),
                    "{err}"
                );
            }
            assert_eq!(std::fs::read(&path).unwrap(), before, "{name} untouched");
            assert!(!dir.path().join(format!("{name}-wal")).exists());
        }
    }

    #[test]
    fn a_file_that_is_not_a_database_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        std::fs::write(&path, "line,file\n2,x\n".repeat(100)).unwrap();
        let err = format!("{:#}", Journal::open(&path, &destination()).unwrap_err());
        assert!(err.contains(&path.display().to_string()), "{err}");
    }

    /// The scale figure: `cargo test --release --lib journal::tests::a_million_rows -- --ignored --nocapture`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "a benchmark: a million rows through three state changes each"]
    async fn a_million_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let journal = Arc::new(Journal::open(&path, &destination()).unwrap());
        let started = std::time::Instant::now();
        let workers = 32u64;
        let rows: u64 = std::env::var("VOYC_JOURNAL_ROWS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(1_000_000);
        let tasks: Vec<_> = (0..workers)
            .map(|worker| {
                let journal = journal.clone();
                tokio::spawn(async move {
                    let mut row = worker;
                    while row < rows {
                        let identity = id(row);
                        journal
                            .record(&identity, "calls/x.wav", row, Change::Call1Started)
                            .await
                            .unwrap();
                        journal
                            .record(
                                &identity,
                                "calls/x.wav",
                                row,
                                Change::Call1Done {
                                    conversation_id: ConversationId(format!("c-{row}")),
                                    target: target(),
                                },
                            )
                            .await
                            .unwrap();
                        journal
                            .record(
                                &identity,
                                "calls/x.wav",
                                row,
                                Change::Uploaded {
                                    bytes: 1000,
                                    sha256: "a".repeat(64),
                                    body: bytes::Bytes::new(),
                                },
                            )
                            .await
                            .unwrap();
                        row += workers;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let written = started.elapsed();
        let started = std::time::Instant::now();
        for row in (0..rows).step_by(7) {
            assert!(journal.lookup(&id(row)).unwrap().is_some());
        }
        let looked_up = started.elapsed();
        journal.close();
        let size = std::fs::metadata(&path).unwrap().len();
        println!(
            "journal: {rows} rows x 3 changes in {:.1}s ({:.0} changes/s); {} lookups in {:.1}s; file {} MiB",
            written.as_secs_f64(),
            (3 * rows) as f64 / written.as_secs_f64(),
            rows / 7 + 1,
            looked_up.as_secs_f64(),
            size >> 20
        );
    }
}
