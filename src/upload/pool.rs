//! The pool: at most `--concurrency` rows in flight, each taken through call 1 and the upload
//! with retries, every step committed to the journal before the next relies on it.
//!
//! A row's way through: resume from the journal if it holds a target that is still valid
//! (no second conversation), else call 1; then the upload with the same target, retried on
//! transient failures; if S3 says the target expired, call 1 once more (noted). Ambiguous
//! call-1 retries are noted (Voyc may hold a conversation without audio). The first 401/403/404
//! before any success stops the run as misconfigured (a wrong token, organisation or base URL
//! is found on the first call, not a million rows later), a later 401 as a refused token. A stop (Ctrl-C,
//! or one of those) hands out no more rows and lets rows in flight finish; an abort (a
//! second Ctrl-C) drops them where they are, which the journal makes safe to resume.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use chrono::Utc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use futures_util::FutureExt as _;
use futures_util::future::{BoxFuture, Shared};

use super::client::VoycClient;
use super::clock::Clock;
use super::failure::{Call, Failure};
use super::outage::{Outages, Verdict};
use super::rate::CallRate;
use super::response::Call1Response;
use super::retry::Backoff;
use super::transfer::{Gate, Opened, Source, Uploaded, Uploader};
use crate::journal::{
    Change, ClaimState, Holder, Journal, OtherRun, Pending, RowIdentity, State, Stored,
};
use crate::outcome::{self, Outcome};
use crate::plan::ToSend;
use crate::target::{ConversationId, UploadTarget};

/// A target from an earlier run is tried again unless our clock says it expired more than this
/// long ago: S3 decides (it checks the expiry when an upload starts), and our clock may be
/// skewed against it. Reusing the target is what keeps a file the earlier run may have stored
/// in one conversation.
pub const TARGET_MARGIN: Duration = Duration::from_secs(5);

/// One valid row, ready for the pool.
#[derive(Clone, Debug)]
pub struct Job {
    /// The row's position among all manifest rows (0 for the first): its place in the report.
    pub seq: u64,
    /// The manifest line the row starts on.
    pub line: u64,
    /// The audio path as written in the manifest.
    pub file: String,
    /// The audio path resolved.
    pub path: PathBuf,
    pub size: u64,
    /// The file's modification time when it was checked.
    pub modified: Option<SystemTime>,
    /// An object in a store (`s3://`, `gs://`, `az://`) instead of a file, as checked.
    pub object: Option<crate::objects::RemoteObject>,
    /// The exact call-1 body.
    pub body: Bytes,
    pub identity: RowIdentity,
    /// What the journal held for this row when it was handed out.
    pub resume: Option<Stored>,
    /// Validation's warnings for the row (a date in the future, say): first in its notes.
    pub warnings: Vec<String>,
}

impl Job {
    /// The row at position `seq` that the plan says to send.
    pub fn new(seq: u64, send: ToSend) -> Job {
        Job {
            seq,
            line: send.row.line,
            file: send.row.file,
            path: send.row.path,
            size: send.row.size,
            modified: send.row.modified,
            object: send.row.object,
            body: send.body,
            identity: send.identity,
            resume: send.stored,
            warnings: send.notes,
        }
    }

    /// The file to send, as it was checked.
    fn source(&self) -> Source {
        Source {
            path: self.path.clone(),
            size: self.size,
            modified: self.modified,
            object: self.object.clone(),
        }
    }
}

/// Why a run stopped handing out rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// SIGINT or SIGTERM.
    Interrupted,
    /// 401, 403 or 404 before any row succeeded: a wrong token, organisation or base URL.
    /// Exit 2.
    Misconfigured(String),
    /// A 401 after rows succeeded: the token expired or was revoked. Exit 1, resumable.
    TokenRefused(String),
    /// The journal could not be written: going on could upload rows twice later.
    Journal(String),
    /// Voyc or S3 was unavailable for longer than `--max-outage`. Exit 1, resumable.
    Outage(String),
}

/// Stop and abort signals shared by the feeder, the workers and the signal handler.
#[derive(Debug, Default)]
pub struct RunControl {
    stop: CancellationToken,
    abort: CancellationToken,
    any_success: AtomicBool,
    reason: Mutex<Option<StopReason>>,
}

impl RunControl {
    pub fn new() -> RunControl {
        RunControl::default()
    }

    /// Stops handing out rows; the first reason given is the one kept. True if this call
    /// was the one that stopped the run.
    pub fn stop(&self, reason: StopReason) -> bool {
        let mut kept = self.reason.lock().expect("stop reason");
        if kept.is_some() {
            return false;
        }
        *kept = Some(reason);
        self.stop.cancel();
        true
    }

    /// Drops the rows in flight (a second Ctrl-C).
    pub fn abort(&self) {
        self.stop(StopReason::Interrupted);
        self.abort.cancel();
    }

    pub fn is_stopping(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// Resolves once the run is stopping.
    pub async fn stopped(&self) {
        self.stop.cancelled().await;
    }

    pub fn reason(&self) -> Option<StopReason> {
        self.reason.lock().expect("stop reason").clone()
    }

    /// True once any call 1 has succeeded in this run: from then on a 401 means the token
    /// expired rather than that it was wrong from the start.
    pub fn any_success(&self) -> bool {
        self.any_success.load(Ordering::Relaxed)
    }
}

/// What a row's way through the calls needs.
#[derive(Debug)]
pub struct Engine {
    pub client: VoycClient,
    pub uploader: Uploader,
    pub journal: Arc<Journal>,
    pub control: Arc<RunControl>,
    /// Retries per call (`--retries`).
    pub retries: u32,
    pub backoff: Mutex<Backoff>,
    pub clock: Clock,
    /// Bytes sent so far, for progress.
    pub sent: Arc<AtomicU64>,
    /// For messages: `--org`.
    pub organisation: String,
    /// Whether Voyc and S3 are up, and the waiting while one is not.
    pub outages: Outages,
    /// Call 1's pace (`--max-rps`, and what 429s taught).
    pub call_rate: CallRate,
}

/// How a row's attempt ended.
enum RowEnd {
    Uploaded {
        conversation: ConversationId,
        uploaded: Uploaded,
        /// The "uploaded" change, on its way to disk.
        commit: Option<Pending>,
    },
    Failed {
        conversation: Option<ConversationId>,
        error: String,
    },
    /// Stopped before it could finish; the journal holds where it got to.
    Abandoned {
        conversation: Option<ConversationId>,
        note: String,
    },
}

/// Bookkeeping for one row in one run.
#[derive(Default)]
struct Tally {
    /// Requests sent for this row (0: nothing left the machine).
    requests: u32,
    retries: u32,
    ambiguous_retries: u32,
    last_ambiguous: Option<String>,
    notes: Vec<String>,
}

impl Engine {
    /// Takes one row through both calls and says how it ended. The row is ready for the
    /// report once [`Settled::committed`] says the journal has it.
    #[cfg(test)]
    pub async fn process(&self, job: &Job) -> Settled {
        self.process_started(job, None).await
    }

    /// [`Engine::process`] for a row whose "call 1 started" change was handed to the journal
    /// while it waited for a worker (see [`Pool::submit`]).
    async fn process_started(&self, job: &Job, started_change: Option<Pending>) -> Settled {
        let started = Instant::now();
        let mut tally = Tally::default();
        let end = self.run_row(job, &mut tally, started_change).await;
        if tally.ambiguous_retries > 0 {
            let last = tally.last_ambiguous.take().unwrap_or_default();
            tally.notes.insert(
                0,
                match tally.ambiguous_retries {
                    1 => format!(
                        "call 1 retried after an ambiguous failure ({last}); Voyc may hold an extra conversation without audio for this row"
                    ),
                    n => format!(
                        "call 1 retried after {n} ambiguous failures (last: {last}); Voyc may hold up to {n} extra conversations without audio for this row"
                    ),
                },
            );
        }
        let attempts = if tally.requests == 0 {
            0
        } else {
            1 + tally.retries
        };
        let (end, pending) = match end {
            RowEnd::Uploaded {
                conversation,
                uploaded,
                commit,
            } => (
                outcome::End::Uploaded {
                    conversation,
                    bytes: uploaded.bytes,
                    sha256: uploaded.sha256,
                },
                commit,
            ),
            RowEnd::Failed {
                conversation,
                error,
            } => (
                outcome::End::Failed {
                    conversation,
                    error,
                },
                None,
            ),
            RowEnd::Abandoned { conversation, note } => {
                tally.notes.push(note);
                (outcome::End::NotAttempted { conversation }, None)
            }
        };
        let outcome = Outcome {
            seq: job.seq,
            line: job.line,
            file: job.file.clone(),
            end,
            attempts,
            duration: Some(started.elapsed()),
            notes: job.warnings.iter().cloned().chain(tally.notes).collect(),
        };
        Settled { outcome, pending }
    }

    async fn run_row(&self, job: &Job, tally: &mut Tally, mut started: Option<Pending>) -> RowEnd {
        let (mut known, uploading) = self.resumable_target(job, &mut tally.notes);
        let mut renewed = false;
        loop {
            let (conversation, target, commit, opened) = match known.take() {
                Some((conversation, target)) => (conversation, target, None, None),
                None => {
                    // The file is opened and its first chunk read while call 1 is in flight.
                    let (answer, opened) = tokio::join!(
                        self.call1(job, tally, started.take()),
                        self.uploader.open(job.source())
                    );
                    match answer {
                        Ok((response, commit)) => (
                            response.conversation_id,
                            response.target,
                            Some(commit),
                            opened.ok(),
                        ),
                        Err(end) => return end,
                    }
                }
            };
            match self
                .upload(job, &conversation, &target, commit.as_ref(), opened, tally)
                .await
            {
                Ok(uploaded) => {
                    let change = Change::Uploaded {
                        bytes: uploaded.bytes,
                        sha256: uploaded.sha256.clone(),
                        body: job.body.clone(),
                    };
                    let commit =
                        match self
                            .journal
                            .begin(&job.identity, &job.file, job.line, change)
                        {
                            Ok(pending) => Some(pending),
                            Err(err) => {
                                tally.notes.push(journal_lost_note(&err));
                                self.control.stop(StopReason::Journal(format!("{err:#}")));
                                None
                            }
                        };
                    return RowEnd::Uploaded {
                        conversation,
                        uploaded,
                        commit,
                    };
                }
                Err(UploadEnd::Expired(why)) if !renewed => {
                    renewed = true;
                    // Making call 1 again is trying the row again: it counts in `attempts`.
                    tally.retries += 1;
                    tally.notes.push(if uploading.as_ref() == Some(&conversation) {
                        maybe_twice_note(&conversation, &why)
                    } else {
                        format!(
                            "the upload target expired ({why}); call 1 was made again, and conversation {conversation} keeps no audio"
                        )
                    });
                }
                Err(UploadEnd::Expired(why)) => {
                    let error = format!("upload: the target expired again ({why})");
                    self.record_failure(job, &error).await;
                    return RowEnd::Failed {
                        conversation: Some(conversation),
                        error,
                    };
                }
                Err(UploadEnd::End(end)) => return end,
            }
        }
    }

    /// A target from an earlier run that may still be used, with a note saying where the
    /// row stands; and the conversation an earlier run stopped while uploading to, which may
    /// hold the file already.
    fn resumable_target(
        &self,
        job: &Job,
        notes: &mut Vec<String>,
    ) -> (
        Option<(ConversationId, UploadTarget)>,
        Option<ConversationId>,
    ) {
        let Some(stored) = job.resume.as_ref() else {
            return (None, None);
        };
        // "Call 1 done" at the start of a run: the last run stopped after recording the target,
        // so while (or just before) uploading to it. S3 may hold the file; nobody can ask.
        let uploading = (stored.state == State::Call1Done)
            .then(|| stored.conversation_id.clone())
            .flatten();
        let known = match (stored.state, &stored.conversation_id, &stored.target) {
            (State::Call1Started, _, _) => {
                self.note_unknown_conversation(job, "a run stopped during call 1".into());
                notes.push(
                    "an earlier run stopped during this row's call 1, so Voyc may hold a conversation without audio for it"
                        .to_string(),
                );
                None
            }
            (State::Call1Done | State::Failed, Some(conversation), Some(target)) => {
                if may_still_be_valid(target) {
                    notes.push(format!(
                        "resumed with the upload target of conversation {conversation} from an earlier run"
                    ));
                    Some((conversation.clone(), target.clone()))
                } else if uploading.as_ref() == Some(conversation) {
                    notes.push(maybe_twice_note(conversation, "by our clock"));
                    None
                } else {
                    notes.push(format!(
                        "the upload target from an earlier run had expired; call 1 was made again, and conversation {conversation} keeps no audio"
                    ));
                    None
                }
            }
            _ => None,
        };
        (known, uploading)
    }

    async fn call1(
        &self,
        job: &Job,
        tally: &mut Tally,
        started: Option<Pending>,
    ) -> Result<(Call1Response, Commit), RowEnd> {
        let committed = match started {
            Some(pending) => pending.committed().await,
            None => self.record(job, Change::Call1Started).await,
        };
        if let Err(err) = committed {
            return Err(self.journal_broke(err, None));
        }
        let mut retries = Retries::default();
        let max_outage = self.outages.max_outage;
        let response = loop {
            // No row starts while S3 is down, or the store its recording is read from: it
            // could not finish.
            let up = self
                .outages
                .s3
                .until_up(&self.clock, &self.control, max_outage)
                .await
                && (job.object.is_none()
                    || self
                        .outages
                        .source
                        .until_up(&self.clock, &self.control, max_outage)
                        .await);
            let admitted = match up {
                true => {
                    self.outages
                        .api
                        .admit(&self.clock, &self.control, max_outage, job.seq)
                        .await
                }
                false => None,
            };
            let Some(ticket) = admitted else {
                return Err(self.stopped_waiting(job, None, "call 1").await);
            };
            // A slot, or an instant to ask again at (the next slot is far off at the rate in
            // force now, which may rise meanwhile).
            loop {
                let (at, go) = match self.call_rate.reserve(self.clock.now()) {
                    Ok(slot) => (slot, true),
                    Err(again) => (again, false),
                };
                if at > self.clock.now() {
                    tokio::select! {
                        biased;
                        () = self.control.stopped() => {
                            drop(ticket);
                            return Err(self.stopped_waiting(job, None, "call 1").await);
                        }
                        () = self.clock.sleep_until(at) => {}
                    }
                }
                if go {
                    break;
                }
            }
            tally.requests += 1;
            let sent = self.clock.now();
            let failure = match self.client.call1(job.body.clone()).await {
                Ok(response) => {
                    let now = self.clock.now();
                    ticket.answered(now);
                    self.call_rate.succeeded(sent, now);
                    break response;
                }
                Err(failure) => failure,
            };
            let now = self.clock.now();
            if failure.status == Some(429) {
                self.call_rate.throttled(sent, now);
            }
            // Before any success, nothing listening is a wrong --base-url, not an outage.
            let trip = self.control.any_success() || !failure.unreachable;
            let verdict = ticket.failed(&failure, now, trip);
            let retrying = verdict == Verdict::Outage || self.will_retry(&retries, &failure);
            self.note_call1_failure(job, tally, &failure, retrying);
            match self.next_try(&mut retries, tally, &failure, verdict).await {
                Next::Again => {}
                Next::GiveUp => {
                    self.check_for_stop(&failure);
                    let error = failure.describe();
                    self.record_failure(job, &error).await;
                    return Err(RowEnd::Failed {
                        conversation: failure.conversation.clone(),
                        error,
                    });
                }
                Next::Interrupted => {
                    let error = format!(
                        "interrupted while waiting to retry call 1 ({})",
                        failure.message
                    );
                    self.record_failure(job, &error).await;
                    return Err(RowEnd::Abandoned {
                        conversation: None,
                        note: format!("{error}; run the same command to finish it"),
                    });
                }
            }
        };
        self.control.any_success.store(true, Ordering::Relaxed);
        let change = Change::Call1Done {
            conversation_id: response.conversation_id.clone(),
            target: response.target.clone(),
        };
        // The upload starts while this is committed; its last byte waits for it.
        match self
            .journal
            .begin(&job.identity, &job.file, job.line, change)
        {
            Ok(pending) => Ok((response, shared(pending))),
            Err(err) => Err(self.journal_broke(err, Some(response.conversation_id.clone()))),
        }
    }

    /// What a failed call 1 may have left behind, in the journal and the row's notes: a
    /// conversation whose id never reached us (an ambiguous failure, or an answer that could
    /// not be used).
    fn note_call1_failure(&self, job: &Job, tally: &mut Tally, failure: &Failure, retrying: bool) {
        if failure.ambiguous {
            self.note_unknown_conversation(
                job,
                format!("call 1 failed after it was sent ({})", failure.message),
            );
        } else if let Some(status) = failure.status.filter(|s| (200..300).contains(s)) {
            let with = match &failure.conversation {
                Some(id) => format!(" with conversation {id}"),
                None => String::new(),
            };
            self.note_unknown_conversation(
                job,
                format!("call 1 answered HTTP {status}{with}, but its answer could not be used"),
            );
        }
        if failure.ambiguous && retrying {
            tally.ambiguous_retries += 1;
            tally.last_ambiguous = Some(failure.message.clone());
        } else if failure.ambiguous {
            tally.notes.push(
                "call 1's last attempt failed after it was sent, so Voyc may hold a conversation without audio for this row"
                    .to_string(),
            );
        } else if failure.status.is_some_and(|s| (200..300).contains(&s)) {
            tally.notes.push(match &failure.conversation {
                Some(id) => format!(
                    "call 1 succeeded but its answer could not be used, so Voyc holds conversation {id} without audio for this row"
                ),
                None => "call 1 succeeded but its answer could not be used, so Voyc holds a conversation without audio for this row".to_string(),
            });
        }
    }

    /// The upload, retried with the same target. With `commit` (a target call 1 has just
    /// given), each attempt's last byte waits for the journal to hold the target. The first
    /// attempt uses `opened` if given; every other opens the file afresh.
    async fn upload(
        &self,
        job: &Job,
        conversation: &ConversationId,
        target: &UploadTarget,
        commit: Option<&Commit>,
        mut opened: Option<Opened>,
        tally: &mut Tally,
    ) -> Result<Uploaded, UploadEnd> {
        let mut retries = Retries::default();
        let source = job.source();
        // A fresh target is never judged by our clock (it may be skewed against Voyc's):
        // S3 says when it has expired.
        let max_outage = self.outages.max_outage;
        loop {
            // An object's recording is read from its store as it is sent: both must be up.
            let reading = match job.object {
                Some(_) => self
                    .outages
                    .source
                    .admit(&self.clock, &self.control, max_outage, job.seq)
                    .await
                    .map(Some),
                None => Some(None),
            };
            let ticket = match reading {
                Some(_) => {
                    self.outages
                        .s3
                        .admit(&self.clock, &self.control, max_outage, job.seq)
                        .await
                }
                None => None,
            };
            let (Some(reading), Some(ticket)) = (reading, ticket) else {
                return Err(UploadEnd::End(
                    self.stopped_waiting(job, Some(conversation), "the upload")
                        .await,
                ));
            };
            tally.requests += 1;
            let gate = commit.map(|commit| Box::pin(commit.clone()) as Gate);
            let result = self
                .uploader
                .upload(target, &source, &self.sent, opened.take(), gate)
                .await;
            if let Some(commit) = commit
                && let Err(err) = commit.clone().await
            {
                let err = anyhow::Error::msg(err);
                return Err(UploadEnd::End(
                    self.journal_broke(err, Some(conversation.clone())),
                ));
            }
            let now = self.clock.now();
            let failure = match result {
                Ok(uploaded) => {
                    ticket.answered(now);
                    if let Some(reading) = reading {
                        reading.answered(now);
                    }
                    return Ok(uploaded);
                }
                Err(failure) => failure,
            };
            // The recording not read is its store's failure, not S3's (which is not asked, and
            // hands its probe on); a local file's counts toward no outage.
            let verdict = match (failure.source_unreadable, reading) {
                (true, Some(reading)) => reading.failed(&failure, now, true),
                (true, None) => Verdict::Counted,
                (false, reading) => {
                    if let Some(reading) = reading {
                        reading.answered(now);
                    }
                    ticket.failed(&failure, now, true)
                }
            };
            if failure.expired_target {
                return Err(UploadEnd::Expired(failure.message));
            }
            match self.next_try(&mut retries, tally, &failure, verdict).await {
                Next::Again => {}
                Next::GiveUp => {
                    let error = failure.describe();
                    self.record_failure(job, &error).await;
                    if failure.file_changed {
                        self.keep_target_for_changed_file(job, conversation, target, &error)
                            .await;
                    }
                    return Err(UploadEnd::End(RowEnd::Failed {
                        conversation: Some(conversation.clone()),
                        error,
                    }));
                }
                // The journal keeps call1_done and the target: a rerun finishes the upload.
                Next::Interrupted => {
                    return Err(UploadEnd::End(RowEnd::Abandoned {
                        conversation: Some(conversation.clone()),
                        note: format!(
                            "interrupted while waiting to retry the upload ({}); run the same command to finish it with the same target",
                            failure.message
                        ),
                    }));
                }
            }
        }
    }

    /// A file that changed during its upload (a recording still being written) is, at its new
    /// size, another row to the journal (the size is part of a row's identity). So that a
    /// rerun sends it to the same conversation rather than making call 1 again, the target is
    /// also recorded under the identity the row has with the file's size now.
    async fn keep_target_for_changed_file(
        &self,
        job: &Job,
        conversation: &ConversationId,
        target: &UploadTarget,
        error: &str,
    ) {
        let Ok(meta) = tokio::fs::metadata(&job.path).await else {
            return;
        };
        if meta.len() == job.size {
            return;
        }
        let identity = RowIdentity::new(&job.file, meta.len(), &job.body);
        let changes = [
            Change::Call1Done {
                conversation_id: conversation.clone(),
                target: target.clone(),
            },
            Change::Failed {
                error: error.to_string(),
            },
        ];
        for change in changes {
            if let Err(err) = self
                .journal
                .record(&identity, &job.file, job.line, change)
                .await
            {
                self.control.stop(StopReason::Journal(format!("{err:#}")));
                return;
            }
        }
    }

    /// Whether a failed attempt will be tried again: a transient failure with retries left
    /// (`--retries`).
    fn will_retry(&self, retries: &Retries, failure: &Failure) -> bool {
        if failure.out_of_descriptors {
            return retries.descriptor_waits < MAX_DESCRIPTOR_WAITS;
        }
        if failure.status == Some(429) {
            return retries.throttled_waits < MAX_THROTTLED_WAITS;
        }
        failure.is_transient() && retries.done < self.retries
    }

    /// The one decision both calls' loops make after a failed attempt: give up, or wait
    /// (backoff, `Retry-After`) and try again, unless the run stops meanwhile.
    ///
    /// While the service is down ([`Verdict::Outage`]) the attempt spends no retry and there
    /// is no backoff here: the outage gate holds the row until it may probe or go.
    async fn next_try(
        &self,
        retries: &mut Retries,
        tally: &mut Tally,
        failure: &Failure,
        verdict: Verdict,
    ) -> Next {
        if verdict == Verdict::Outage {
            tally.retries += 1;
            return match self.control.is_stopping() {
                true => Next::Interrupted,
                false => Next::Again,
            };
        }
        if !self.will_retry(retries, failure) {
            return Next::GiveUp;
        }
        let retry = if failure.out_of_descriptors {
            retries.descriptor_waits += 1;
            retries.descriptor_waits.min(4)
        } else if failure.status == Some(429) {
            retries.throttled_waits += 1;
            retries.throttled_waits.min(4)
        } else {
            retries.done += 1;
            retries.done
        };
        tally.retries += 1;
        if self.pause(retry, failure.retry_after).await {
            Next::Again
        } else {
            Next::Interrupted
        }
    }

    /// Waits before a retry; false if the run was stopped meanwhile.
    async fn pause(&self, retry: u32, retry_after: Option<Duration>) -> bool {
        let delay = self
            .backoff
            .lock()
            .expect("backoff")
            .delay(retry, retry_after);
        tokio::select! {
            () = self.clock.sleep(delay) => !self.control.is_stopping(),
            () = self.control.stop.cancelled() => false,
        }
    }

    /// A 401, 403 or 404 from call 1 before any success stops the run as misconfigured (the
    /// rest would fail the same way); a refused token later stops it as expired.
    fn check_for_stop(&self, failure: &Failure) {
        if failure.untrusted_certificate && !self.control.any_success() {
            self.control.stop(StopReason::Misconfigured(format!(
                "call 1 could not be made: {}",
                failure.message
            )));
            return;
        }
        // Every retry of the first calls failed to connect: a mistyped --base-url, or no
        // network. Going on would fail every row the same way, for hours on a large manifest.
        if failure.unreachable && failure.call == Call::Api && !self.control.any_success() {
            self.control.stop(StopReason::Misconfigured(format!(
                "call 1 could not be made: {}; check --base-url ({}) and the network, then run the same command again",
                failure.message,
                crate::target::without_query(self.client.endpoint())
            )));
            return;
        }
        let Some(status) = failure.status else {
            return;
        };
        let endpoint = crate::target::without_query(self.client.endpoint());
        if !self.control.any_success() && matches!(status, 401 | 403 | 404) {
            let cause = if failure.about_credentials || status == 401 {
                format!(
                    "the token was refused (wrong, expired or revoked): check {}",
                    self.client.token_source()
                )
            } else if status == 403 {
                format!(
                    "the token may not upload to organisation {}: check --org and the token's permissions",
                    self.organisation
                )
            } else {
                format!(
                    "{endpoint} does not exist: check --base-url and --org ({})",
                    self.organisation
                )
            };
            self.control.stop(StopReason::Misconfigured(format!(
                "call 1 answered {}; {cause}",
                failure.message
            )));
        } else if failure.about_credentials {
            self.control.stop(StopReason::TokenRefused(format!(
                "call 1 answered {} after earlier rows succeeded: the token has expired or was revoked; get a new one and run the same command to resume",
                failure.message
            )));
        }
    }

    /// Keeps in the journal that call 1 may have created a conversation whose id we never
    /// learned: the row's notes say so too, but a kill -9 loses a run's report, not its journal.
    /// Not waited for: the journal commits a row's changes in order, before its next step's.
    fn note_unknown_conversation(&self, job: &Job, reason: String) {
        let change = Change::MaybeConversation { reason };
        if let Err(err) = self
            .journal
            .begin(&job.identity, &job.file, job.line, change)
        {
            self.control.stop(StopReason::Journal(format!("{err:#}")));
        }
    }

    async fn record(&self, job: &Job, change: Change) -> anyhow::Result<()> {
        self.journal
            .record(&job.identity, &job.file, job.line, change)
            .await
    }

    async fn record_failure(&self, job: &Job, error: &str) {
        let change = Change::Failed {
            error: error.to_string(),
        };
        if let Err(err) = self.record(job, change).await {
            self.control.stop(StopReason::Journal(format!("{err:#}")));
        }
    }

    /// The run stopped while the row waited for a service to come back (or for its call-1
    /// slot): the row is left where the journal has it, for the same command to finish.
    async fn stopped_waiting(
        &self,
        job: &Job,
        conversation: Option<&ConversationId>,
        call: &str,
    ) -> RowEnd {
        let error = match self.control.reason() {
            Some(StopReason::Outage(_)) => format!(
                "the run stopped while {call} waited for Voyc or S3 to come back (unavailable for longer than --max-outage)"
            ),
            _ => format!("the run stopped while {call} waited for its turn"),
        };
        if conversation.is_none() {
            self.record_failure(job, &error).await;
        }
        RowEnd::Abandoned {
            conversation: conversation.cloned(),
            note: format!("{error}; run the same command to finish it"),
        }
    }

    fn journal_broke(&self, err: anyhow::Error, conversation: Option<ConversationId>) -> RowEnd {
        let text = format!("{err:#}");
        self.control.stop(StopReason::Journal(text.clone()));
        RowEnd::Abandoned {
            conversation,
            note: format!("stopped: {text}"),
        }
    }
}

/// How often a row another run holds is looked at again, at first and at most.
const HELD_POLL: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(1));

impl Engine {
    /// Takes the row's claim (`claim`, on its way to the journal) and, once this run holds it,
    /// takes the row through both calls from where the journal has it now. A row another live
    /// run holds is left to it: waited for without a worker, then settled as that run left it
    /// (uploaded, or failed), or claimed again if it left it unfinished or died.
    async fn claim_and_run(
        &self,
        mut job: Job,
        claim: Pending,
        permit: OwnedSemaphorePermit,
        permits: &Arc<Semaphore>,
    ) -> Outcome {
        let mut claim = Some(claim);
        let mut permit = Some(permit);
        loop {
            let pending = match claim.take() {
                Some(pending) => Ok(pending),
                None => self
                    .journal
                    .begin(&job.identity, &job.file, job.line, Change::Claim),
            };
            let state = match pending {
                Ok(pending) => match pending.committed().await {
                    Ok(()) => self.journal.claim_state(&job.identity),
                    Err(err) => Err(err),
                },
                Err(err) => Err(err),
            };
            let state = match state {
                Ok(state) => state,
                Err(err) => return self.claim_lost(&job, &err),
            };
            if let Some(done) = settled_by_another(&job, &state) {
                return done;
            }
            let holder = match state.holder {
                Holder::Me { fresh } => {
                    // Fresh: the claim was the row's "call 1 started". Otherwise the row is
                    // resumed from where the journal has it now (another run may have moved it
                    // on, or died with it, since it was planned).
                    let started = match fresh {
                        true => {
                            job.resume = None;
                            Some(Pending::committed_already(Path::new("")))
                        }
                        false => {
                            job.resume = state.stored;
                            None
                        }
                    };
                    let settled = self.process_started(&job, started).await;
                    // The worker is free while its last change is committed.
                    drop(permit);
                    return settled.committed(&self.control).await;
                }
                Holder::Other(other) => other,
                // Released since the claim was refused: look again.
                Holder::Nobody => continue,
            };
            if !self.journal.is_alive(&holder) {
                continue;
            }
            drop(permit.take());
            if let Some(done) = self.wait_for(&job, &holder).await {
                return done;
            }
            permit = tokio::select! {
                permit = permits.clone().acquire_owned() => Some(permit.expect("the pool's semaphores are never closed")),
                () = self.control.stop.cancelled() => return held_when_stopped(&job, &holder),
            };
        }
    }

    /// Waits while another live run holds the row: its outcome if that run settled it, `None`
    /// when this run should claim it again (released unfinished, or its run died).
    async fn wait_for(&self, job: &Job, holder: &OtherRun) -> Option<Outcome> {
        let mut poll = HELD_POLL.0;
        loop {
            tokio::select! {
                () = tokio::time::sleep(poll) => {}
                () = self.control.stop.cancelled() => return Some(held_when_stopped(job, holder)),
            }
            poll = (poll * 2).min(HELD_POLL.1);
            let state = match self.journal.claim_state(&job.identity) {
                Ok(state) => state,
                Err(err) => return Some(self.claim_lost(job, &err)),
            };
            if let Some(done) = settled_by_another(job, &state) {
                return Some(done);
            }
            match &state.holder {
                Holder::Other(other) if self.journal.is_alive(other) => {}
                _ => return None,
            }
        }
    }

    /// The journal could not record or read the row's claim: the run stops (going on could
    /// upload rows twice), and the row is left for a rerun.
    fn claim_lost(&self, job: &Job, err: &anyhow::Error) -> Outcome {
        let text = format!("{err:#}");
        self.control.stop(StopReason::Journal(text.clone()));
        let end = outcome::End::NotAttempted { conversation: None };
        Outcome::new(job.seq, job.line, job.file.clone(), end)
            .noting(notes_with(job, format!("stopped: {text}")))
    }
}

/// A row that another run settled while this one had it planned: uploaded there (at any
/// time since it was planned here), or failed there and released.
fn settled_by_another(job: &Job, state: &ClaimState) -> Option<Outcome> {
    let stored = state.stored.as_ref()?;
    let end = match (stored.state, &state.holder) {
        (State::Uploaded, _) => outcome::End::AlreadyUploaded {
            conversation: stored.conversation_id.clone(),
            bytes: stored.bytes,
            sha256: stored.sha256.clone(),
        },
        (State::Failed, Holder::Nobody) => outcome::End::Failed {
            conversation: stored.conversation_id.clone(),
            error: stored.error.clone().unwrap_or_default(),
        },
        _ => return None,
    };
    let note = match end {
        outcome::End::AlreadyUploaded { .. } => {
            "another run uploaded it at the same time (it shares this journal)"
        }
        _ => {
            "another run sharing this journal tried it at the same time, and it failed there; run the same command to try it again"
        }
    };
    Some(
        Outcome::new(job.seq, job.line, job.file.clone(), end).noting(notes_with(job, note.into())),
    )
}

/// A row another run still held when this one was stopped.
fn held_when_stopped(job: &Job, holder: &OtherRun) -> Outcome {
    let end = outcome::End::NotAttempted { conversation: None };
    let note = format!(
        "{} was uploading it when this run stopped; run the same command once it has ended to see how it ended",
        holder.describe()
    );
    Outcome::new(job.seq, job.line, job.file.clone(), end).noting(notes_with(job, note))
}

fn notes_with(job: &Job, note: String) -> Vec<String> {
    job.warnings.iter().cloned().chain([note]).collect()
}

/// A processed row, and the journal change it waits on before it may be reported.
#[derive(Debug)]
pub struct Settled {
    pub outcome: Outcome,
    pending: Option<Pending>,
}

impl Settled {
    /// Waits for the journal to hold the row's last change, then gives the row's outcome.
    pub async fn committed(self, control: &RunControl) -> Outcome {
        let mut outcome = self.outcome;
        if let Some(pending) = self.pending
            && let Err(err) = pending.committed().await
        {
            outcome.notes.push(journal_lost_note(&err));
            control.stop(StopReason::Journal(format!("{err:#}")));
        }
        outcome
    }
}

/// A journal change many waiters can await: the upload's gate and the pool.
type Commit = Shared<BoxFuture<'static, Result<(), String>>>;

fn shared(pending: Pending) -> Commit {
    pending
        .committed()
        .map(|result| result.map_err(|err| format!("{err:#}")))
        .boxed()
        .shared()
}

fn journal_lost_note(err: &anyhow::Error) -> String {
    format!("the journal could not record this upload ({err:#}); a rerun would upload it again")
}

/// Retries made so far of one call of one row.
#[derive(Default)]
struct Retries {
    done: u32,
    /// Waits for a free file descriptor, which spend no retry.
    descriptor_waits: u32,
    /// Waits after a 429, which spend no retry either: throttling slows the run down (the
    /// call rate is cut), it does not fail rows.
    throttled_waits: u32,
}

/// How many 429s one call waits out before its row fails: far more than any rate limit
/// that lets the run go on at all would give.
const MAX_THROTTLED_WAITS: u32 = 100;

/// How many times one call waits for a free file descriptor (a few minutes in all) before
/// its row fails: others are closed as rows end, so the wait spends none of `--retries`.
const MAX_DESCRIPTOR_WAITS: u32 = 100;

/// What follows a failed attempt.
enum Next {
    Again,
    /// A permanent failure, or retries ran out.
    GiveUp,
    /// The run stopped while waiting to retry.
    Interrupted,
}

enum UploadEnd {
    /// S3 (or the target's own expiry) says the target is past its time.
    Expired(String),
    End(RowEnd),
}

fn may_still_be_valid(target: &UploadTarget) -> bool {
    target.expires_at().is_none_or(|at| {
        at + chrono::Duration::from_std(TARGET_MARGIN).unwrap_or_default() > Utc::now()
    })
}

/// The one case no client can settle: an earlier run stopped while uploading to `conversation`,
/// and its target expired before this run could finish it with the same target (S3 gives no
/// way to ask whether it stored the file). The file goes to a new conversation rather than
/// risk losing it, and the note names both so that a duplicate can be found.
fn maybe_twice_note(conversation: &ConversationId, why: &str) -> String {
    format!(
        "an earlier run stopped while uploading this file to conversation {conversation}, and that upload target has expired ({why}), so whether {conversation} holds the audio cannot be known: call 1 was made again and the file uploaded to the new conversation; if {conversation} has audio too, it is a duplicate"
    )
}

/// The rows in flight, at most `concurrency`, and as many more handed in and waiting for a
/// worker.
#[derive(Debug)]
pub struct Pool {
    engine: Arc<Engine>,
    /// One per row in flight.
    permits: Arc<Semaphore>,
    /// One per row handed in and still waiting for a worker.
    queued: Arc<Semaphore>,
    outcomes: std::sync::mpsc::Sender<Outcome>,
    /// Every row's task, until it has sent its outcome (finished ones are reaped as we go).
    tasks: Mutex<tokio::task::JoinSet<()>>,
}

impl Pool {
    pub fn new(
        engine: Arc<Engine>,
        concurrency: usize,
        outcomes: std::sync::mpsc::Sender<Outcome>,
    ) -> Pool {
        let concurrency = concurrency.clamp(1, Semaphore::MAX_PERMITS);
        Pool {
            engine,
            permits: Arc::new(Semaphore::new(concurrency)),
            queued: Arc::new(Semaphore::new(concurrency)),
            outcomes,
            tasks: Mutex::new(tokio::task::JoinSet::new()),
        }
    }

    /// Hands a row to the pool once fewer than `concurrency` rows wait for a worker; it
    /// starts as soon as one is free, in the order rows were handed in. A row handed in
    /// after a stop, or still waiting when the run stops, is settled as not attempted.
    ///
    /// A new row's "call 1 started" change goes to the journal while it waits, so that its
    /// commit is not on the way of its call 1 even when many workers come free at once (it
    /// is taken back if the row never starts).
    pub async fn submit(&self, job: Job) {
        let control = &self.engine.control;
        let queued = tokio::select! {
            permit = self.queued.clone().acquire_owned() => Some(permit.expect("the pool's semaphores are never closed")),
            () = control.stop.cancelled() => None,
        };
        let Some(queued) = queued.filter(|_| !control.is_stopping()) else {
            let _ = self.outcomes.send(unstarted(job, control.reason()));
            return;
        };
        let claim =
            match self
                .engine
                .journal
                .begin(&job.identity, &job.file, job.line, Change::Claim)
            {
                Ok(pending) => Some(pending),
                Err(err) => {
                    control.stop(StopReason::Journal(format!("{err:#}")));
                    None
                }
            };
        let engine = self.engine.clone();
        let permits = self.permits.clone();
        let outcomes = self.outcomes.clone();
        let mut tasks = self.tasks.lock().expect("pool tasks");
        while tasks.try_join_next().is_some() {}
        tasks.spawn(async move {
            let control = &engine.control;
            let permit = tokio::select! {
                permit = permits.clone().acquire_owned() => Some(permit.expect("the pool's semaphores are never closed")),
                () = control.stop.cancelled() => None,
            };
            drop(queued);
            let (Some(permit), Some(claim)) = (permit.filter(|_| !control.is_stopping()), claim)
            else {
                let _ = engine.journal.begin(
                    &job.identity,
                    &job.file,
                    job.line,
                    Change::NotStarted,
                );
                let _ = outcomes.send(unstarted(job, control.reason()));
                return;
            };
            // Tells the journal's writer how many rows may add to a group commit.
            let in_flight = engine.journal.row_in_flight();
            let outcome = tokio::select! {
                outcome = engine.claim_and_run(job.clone(), claim, permit, &permits) => outcome,
                () = control.abort.cancelled() => aborted(&job),
            };
            drop(in_flight);
            let _ = outcomes.send(outcome);
        });
    }

    /// Waits until every row handed in has settled and sent its outcome.
    pub async fn wait(&self) {
        let mut tasks = std::mem::take(&mut *self.tasks.lock().expect("pool tasks"));
        while let Some(result) = tasks.join_next().await {
            if let Err(err) = result
                && err.is_panic()
            {
                std::panic::resume_unwind(err.into_panic());
            }
        }
    }
}

/// A row the run stopped before it started.
fn unstarted(job: Job, reason: Option<StopReason>) -> Outcome {
    let end = outcome::End::NotAttempted { conversation: None };
    Outcome::new(job.seq, job.line, job.file, end).noting(vec![stopped_note(reason)])
}

/// Why a row was not tried, for its notes.
pub fn stopped_note(reason: Option<StopReason>) -> String {
    match reason {
        Some(StopReason::Interrupted) | None => "the run was interrupted before this row".into(),
        Some(StopReason::Misconfigured(_)) => {
            "the run stopped at the first calls: the token, organisation or base URL is wrong"
                .into()
        }
        Some(StopReason::TokenRefused(_)) => "the run stopped: the token was refused".into(),
        Some(StopReason::Journal(_)) => "the run stopped: the journal could not be written".into(),
        Some(StopReason::Outage(_)) => {
            "the run stopped: Voyc or S3 was unavailable for longer than --max-outage; run the same command to resume".into()
        }
    }
}

fn aborted(job: &Job) -> Outcome {
    let end = outcome::End::NotAttempted { conversation: None };
    Outcome::new(job.seq, job.line, job.file.clone(), end).noting(vec![
        "aborted by a second interrupt while in flight; run the same command to finish it".into(),
    ])
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::atomic::AtomicUsize;

    use reqwest::Url;

    use super::super::client::ClientConfig;
    use super::super::http::http_client;
    use super::*;
    use crate::journal::Destination;
    use crate::report::{ReportRow, RowStatus};
    use crate::secret::Token;
    use voyc_testkit::scripted::{Reply, Server, serve};

    /// A stand-in for Voyc and S3 whose next answers each test queues; by default call 1
    /// creates conversation `c-N` with a presigned PUT valid for an hour, and S3 says 200.
    #[derive(Default)]
    struct Fake {
        call1: Mutex<VecDeque<Reply>>,
        s3: Mutex<VecDeque<Reply>>,
        conversations: AtomicUsize,
        /// The test's clock, once `setup` has made it.
        clock: std::sync::OnceLock<Arc<super::super::clock::Manual>>,
        outage: Mutex<Option<Outage>>,
        /// Requests answered 503 by the outage.
        refused: AtomicUsize,
        call1_requests: AtomicUsize,
    }

    /// Every request (API and S3) answered 503 for `length` of the test's clock, from the
    /// moment call 1 number `after + 1` arrives.
    struct Outage {
        after: usize,
        length: Duration,
        started: Option<Duration>,
    }

    impl Fake {
        fn with_outage(after: usize, length: Duration) -> Fake {
            let fake = Fake::default();
            *fake.outage.lock().unwrap() = Some(Outage {
                after,
                length,
                started: None,
            });
            fake
        }

        /// Whether this request meets the outage.
        fn down(&self, call1: bool) -> bool {
            let calls = if call1 {
                self.call1_requests.fetch_add(1, Ordering::SeqCst) + 1
            } else {
                self.call1_requests.load(Ordering::SeqCst)
            };
            let mut outage = self.outage.lock().unwrap();
            let Some(outage) = outage.as_mut() else {
                return false;
            };
            let now = self
                .clock
                .get()
                .map_or(Duration::ZERO, |clock| clock.elapsed());
            if outage.started.is_none() && calls > outage.after {
                outage.started = Some(now);
            }
            let down = outage
                .started
                .is_some_and(|start| now < start + outage.length);
            if down {
                self.refused.fetch_add(1, Ordering::SeqCst);
            }
            down
        }
    }

    impl Fake {
        fn queue_call1(&self, reply: Reply) {
            self.call1.lock().unwrap().push_back(reply);
        }
        fn queue_s3(&self, reply: Reply) {
            self.s3.lock().unwrap().push_back(reply);
        }
    }

    fn put_url(host: &str, n: usize, expires_in: i64) -> String {
        let date = Utc::now().format("%Y%m%dT%H%M%SZ");
        format!(
            "http://{host}/s3/b/c-{n}?X-Amz-Date={date}&X-Amz-Expires={expires_in}&X-Amz-Signature=s"
        )
    }

    async fn fake_voyc(fake: Arc<Fake>) -> Server {
        serve(move |head| {
            let host = head.header("host").unwrap().to_string();
            if fake.down(head.target.starts_with("/api/")) {
                return Reply::json(503, r#"{"detail": "down for maintenance"}"#);
            }
            if head.target.starts_with("/api/") {
                if let Some(reply) = fake.call1.lock().unwrap().pop_front() {
                    return reply;
                }
                let n = fake.conversations.fetch_add(1, Ordering::SeqCst) + 1;
                Reply::json(
                    201,
                    &format!(
                        r#"{{"conversation_id": "c-{n}", "upload_url": "{}"}}"#,
                        put_url(&host, n, 3600)
                    ),
                )
            } else {
                fake.s3
                    .lock()
                    .unwrap()
                    .pop_front()
                    .unwrap_or_else(|| Reply::json(200, ""))
            }
        })
        .await
    }

    struct Setup {
        engine: Arc<Engine>,
        server: Server,
        dir: tempfile::TempDir,
        waits: Arc<super::super::clock::Manual>,
    }

    async fn setup(fake: Arc<Fake>) -> Setup {
        setup_with(fake, Duration::from_secs(1800)).await
    }

    async fn setup_with(fake: Arc<Fake>, max_outage: Duration) -> Setup {
        let (clock, waits) = Clock::manual();
        let _ = fake.clock.set(waits.clone());
        let server = fake_voyc(fake).await;
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(
            &dir.path().join("j"),
            &Destination::voyc(server.url.as_str(), "118"),
        )
        .unwrap();
        let http = http_client(Duration::from_secs(5), None, true).unwrap();
        let client = VoycClient::with_http(
            http.clone(),
            ClientConfig {
                base_url: server.url.clone(),
                organisation: "118".into(),
                token: Token::parse("t0ken").unwrap(),
                timeout: Duration::from_secs(5),
            },
        );
        let engine = Arc::new(Engine {
            client,
            uploader: Uploader::new(http, Duration::from_secs(5)),
            journal: Arc::new(journal),
            control: Arc::new(RunControl::new()),
            retries: 5,
            backoff: Mutex::new(Backoff::new(fastrand::Rng::with_seed(1))),
            clock,
            sent: Arc::new(AtomicU64::new(0)),
            organisation: "118".into(),
            outages: Outages::new(max_outage),
            call_rate: CallRate::new(None),
        });
        Setup {
            engine,
            server,
            dir,
            waits,
        }
    }

    /// The journal's `unknown_conversations` reasons for `job`'s row.
    fn unknown(setup: &Setup, job: &Job) -> Vec<String> {
        setup
            .engine
            .journal
            .unknown_conversations(&job.identity)
            .unwrap()
    }

    /// Journals row 0 as an earlier run left it when killed while uploading to `target`.
    async fn journal_call1_done(setup: &Setup, conversation: &str, target: UploadTarget) {
        let job0 = job(setup, 0);
        setup
            .engine
            .journal
            .record(
                &job0.identity,
                &job0.file,
                job0.line,
                Change::Call1Done {
                    conversation_id: ConversationId(conversation.into()),
                    target,
                },
            )
            .await
            .unwrap();
    }

    fn job(setup: &Setup, n: u64) -> Job {
        let file = format!("calls/{n}.wav");
        let path = setup.dir.path().join(format!("{n}.wav"));
        std::fs::write(&path, format!("RIFF\0\0\0\0WAVE audio {n}")).unwrap();
        let size = std::fs::metadata(&path).unwrap().len();
        let body = Bytes::from(format!(r#"{{"channel_id":"1","agent":"a{n}"}}"#));
        let identity = RowIdentity::new(&file, size, &body);
        Job {
            seq: n,
            line: n + 2,
            file,
            modified: std::fs::metadata(&path).unwrap().modified().ok(),
            path,
            size,
            object: None,
            body,
            resume: setup.engine.journal.lookup(&identity).unwrap(),
            identity,
            warnings: Vec::new(),
        }
    }

    /// An outcome as the report shows it, with its place.
    #[derive(Debug)]
    struct Reported {
        seq: u64,
        row: ReportRow,
    }

    impl From<Outcome> for Reported {
        fn from(outcome: Outcome) -> Reported {
            Reported {
                seq: outcome.seq,
                row: ReportRow::from(outcome),
            }
        }
    }

    async fn settle(engine: &Engine, job: &Job) -> ReportRow {
        let outcome = engine.process(job).await.committed(&engine.control).await;
        ReportRow::from(outcome)
    }

    fn requests_to(server: &Server, prefix: &str) -> usize {
        server
            .requests()
            .iter()
            .filter(|r| r.head.target.starts_with(prefix))
            .count()
    }

    #[tokio::test]
    async fn a_row_is_uploaded_and_journaled() {
        let setup = setup(Arc::new(Fake::default())).await;
        let job = job(&setup, 0);
        let row = settle(&setup.engine, &job).await;
        assert_eq!(row.status, RowStatus::Uploaded, "{row:?}");
        assert_eq!(row.conversation_id.as_deref(), Some("c-1"));
        assert_eq!(row.attempts, 1);
        assert_eq!(row.bytes, Some(job.size));
        assert_eq!(row.sha256.as_ref().unwrap().len(), 64);
        assert!(row.notes.is_empty() && row.error.is_none(), "{row:?}");
        let stored = setup.engine.journal.lookup(&job.identity).unwrap().unwrap();
        assert_eq!(stored.state, State::Uploaded);
        assert_eq!(stored.sha256, row.sha256);
    }

    #[tokio::test]
    async fn transient_failures_are_retried_and_counted() {
        let fake = Arc::new(Fake::default());
        fake.queue_call1(Reply::json(503, r#"{"detail": "busy"}"#));
        fake.queue_call1(Reply::json(429, r#"{"detail": "slow"}"#).with_header("Retry-After", "2"));
        fake.queue_s3(Reply::json(
            503,
            "<Error><Code>SlowDown</Code><Message>Reduce</Message></Error>",
        ));
        let setup = setup(fake).await;
        let row = settle(&setup.engine, &job(&setup, 0)).await;
        assert_eq!(row.status, RowStatus::Uploaded, "{row:?}");
        assert_eq!(row.attempts, 4, "1 + three retries");
        assert!(
            row.notes.is_empty(),
            "503 and 429 are not ambiguous: {row:?}"
        );
        let waits = setup.waits.sleeps();
        assert_eq!(waits.len(), 3);
        assert!(
            waits[1] >= Duration::from_secs(2),
            "Retry-After honoured: {waits:?}"
        );
        assert_eq!(requests_to(&setup.server, "/s3/"), 2, "same target retried");
        assert_eq!(requests_to(&setup.server, "/api/"), 3);
    }

    #[tokio::test]
    async fn an_ambiguous_call_1_retry_is_noted() {
        let fake = Arc::new(Fake::default());
        fake.queue_call1(Reply::json(502, ""));
        let setup = setup(fake).await;
        let row = settle(&setup.engine, &job(&setup, 0)).await;
        assert_eq!(row.status, RowStatus::Uploaded);
        assert_eq!(
            row.notes,
            [
                "call 1 retried after an ambiguous failure (HTTP 502 Bad Gateway); Voyc may hold an extra conversation without audio for this row"
            ]
        );
        // The journal keeps it too: a kill -9 would have lost the report, not this.
        assert_eq!(
            unknown(&setup, &job(&setup, 0)),
            ["call 1 failed after it was sent (HTTP 502 Bad Gateway)"]
        );
    }

    #[tokio::test]
    async fn an_answer_that_cannot_be_used_is_kept_in_the_journal_as_an_unknown_conversation() {
        let fake = Arc::new(Fake::default());
        fake.queue_call1(Reply::json(201, "<html>ok</html>"));
        let setup = setup(fake).await;
        let job = job(&setup, 0);
        let row = settle(&setup.engine, &job).await;
        assert_eq!(row.status, RowStatus::Failed);
        assert_eq!(
            unknown(&setup, &job),
            ["call 1 answered HTTP 201, but its answer could not be used"]
        );
    }

    #[tokio::test]
    async fn an_answer_with_an_id_but_no_usable_target_names_the_conversation_it_created() {
        let fake = Arc::new(Fake::default());
        fake.queue_call1(Reply::json(201, r#"{"conversation_id": "c-9", "s3": {}}"#));
        let setup = setup(fake).await;
        let job = job(&setup, 0);
        let row = settle(&setup.engine, &job).await;
        assert_eq!(row.status, RowStatus::Failed);
        assert_eq!(row.conversation_id.as_deref(), Some("c-9"));
        assert_eq!(
            row.notes,
            [
                "call 1 succeeded but its answer could not be used, so Voyc holds conversation c-9 without audio for this row"
            ]
        );
        assert_eq!(
            unknown(&setup, &job),
            ["call 1 answered HTTP 201 with conversation c-9, but its answer could not be used"]
        );
    }

    #[tokio::test]
    async fn a_permanent_error_fails_the_row_at_once_with_the_servers_message() {
        let fake = Arc::new(Fake::default());
        fake.queue_call1(Reply::json(
            201,
            r#"{"conversation_id": "c-0", "upload_url": "/s3/b/x"}"#,
        ));
        fake.queue_call1(Reply::json(
            400,
            r#"{"call_date": ["Date has wrong format."]}"#,
        ));
        let setup = setup(fake).await;
        assert_eq!(
            settle(&setup.engine, &job(&setup, 0)).await.status,
            RowStatus::Uploaded
        );
        let job = job(&setup, 1);
        let row = settle(&setup.engine, &job).await;
        assert_eq!(row.status, RowStatus::Failed);
        assert_eq!(row.attempts, 1);
        assert_eq!(
            row.error.as_deref(),
            Some("call 1: HTTP 400: call_date: Date has wrong format.")
        );
        assert!(setup.waits.sleeps().is_empty());
        assert_eq!(
            setup.engine.control.reason(),
            None,
            "one bad row does not stop the run"
        );
        assert_eq!(
            setup
                .engine
                .journal
                .lookup(&job.identity)
                .unwrap()
                .unwrap()
                .state,
            State::Failed
        );
    }

    #[tokio::test]
    async fn a_401_before_any_success_stops_the_run_as_misconfigured() {
        let fake = Arc::new(Fake::default());
        fake.queue_call1(Reply::json(401, r#"{"detail": "Invalid token."}"#));
        let setup = setup(fake).await;
        let row = settle(&setup.engine, &job(&setup, 0)).await;
        assert_eq!((row.status, row.attempts), (RowStatus::Failed, 1));
        let Some(StopReason::Misconfigured(message)) = setup.engine.control.reason() else {
            panic!("expected a misconfiguration stop");
        };
        assert_eq!(
            message,
            "call 1 answered HTTP 401: Invalid token.; the token was refused (wrong, expired or revoked): check VOYC_TOKEN or --token-file"
        );
    }

    #[tokio::test]
    async fn a_404_before_any_success_names_the_base_url_and_organisation() {
        let fake = Arc::new(Fake::default());
        fake.queue_call1(Reply::json(404, r#"{"detail": "Not found."}"#));
        let setup = setup(fake).await;
        settle(&setup.engine, &job(&setup, 0)).await;
        let Some(StopReason::Misconfigured(message)) = setup.engine.control.reason() else {
            panic!("expected a misconfiguration stop");
        };
        assert!(
            message.ends_with("/api/v2/workspace/118/conversation/upload_data/ does not exist: check --base-url and --org (118)"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_401_after_a_success_stops_the_run_as_a_refused_token() {
        let fake = Arc::new(Fake::default());
        let setup = setup(fake.clone()).await;
        assert_eq!(
            settle(&setup.engine, &job(&setup, 0)).await.status,
            RowStatus::Uploaded
        );
        fake.queue_call1(Reply::json(401, r#"{"detail": "Token expired."}"#));
        let row = settle(&setup.engine, &job(&setup, 1)).await;
        assert_eq!(row.status, RowStatus::Failed);
        assert!(matches!(
            setup.engine.control.reason(),
            Some(StopReason::TokenRefused(_))
        ));
    }

    #[tokio::test]
    async fn an_expired_target_is_renewed_once_with_a_note() {
        let fake = Arc::new(Fake::default());
        fake.queue_s3(Reply::json(
            403,
            "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>",
        ));
        let setup = setup(fake).await;
        let row = settle(&setup.engine, &job(&setup, 0)).await;
        assert_eq!(row.status, RowStatus::Uploaded, "{row:?}");
        assert_eq!(row.conversation_id.as_deref(), Some("c-2"));
        assert_eq!(
            row.notes,
            [
                "the upload target expired (HTTP 403: AccessDenied: Request has expired); call 1 was made again, and conversation c-1 keeps no audio"
            ]
        );
        assert_eq!(requests_to(&setup.server, "/api/"), 2);
        assert_eq!(row.attempts, 2, "the renewal is a second attempt");
    }

    #[tokio::test]
    async fn a_target_that_expires_again_fails_the_row() {
        let fake = Arc::new(Fake::default());
        for _ in 0..2 {
            fake.queue_s3(Reply::json(
                403,
                "<Error><Code>AccessDenied</Code><Message>Invalid according to Policy: Policy expired.</Message></Error>",
            ));
        }
        let setup = setup(fake).await;
        let row = settle(&setup.engine, &job(&setup, 0)).await;
        assert_eq!(row.status, RowStatus::Failed);
        assert_eq!(requests_to(&setup.server, "/api/"), 2, "renewed once only");
        assert!(
            row.error
                .unwrap()
                .starts_with("upload: the target expired again")
        );
    }

    #[tokio::test]
    async fn a_rerun_finishes_with_the_journaled_target_and_makes_no_new_conversation() {
        let fake = Arc::new(Fake::default());
        fake.queue_s3(Reply::json(
            400,
            "<Error><Code>BadDigest</Code><Message>x</Message></Error>",
        ));
        let setup = setup(fake).await;
        let first = settle(&setup.engine, &job(&setup, 0)).await;
        assert_eq!(first.status, RowStatus::Failed);
        let again = job(&setup, 0);
        assert_eq!(again.resume.as_ref().unwrap().state, State::Failed);
        let row = settle(&setup.engine, &again).await;
        assert_eq!(row.status, RowStatus::Uploaded, "{row:?}");
        assert_eq!(row.conversation_id.as_deref(), Some("c-1"));
        assert_eq!(
            row.notes,
            ["resumed with the upload target of conversation c-1 from an earlier run"]
        );
        assert_eq!(requests_to(&setup.server, "/api/"), 1);
    }

    #[tokio::test]
    async fn a_journaled_target_that_expired_is_replaced_by_a_new_call_1() {
        let fake = Arc::new(Fake::default());
        let setup = setup(fake.clone()).await;
        let old = UploadTarget::Put {
            url: Url::parse(&put_url("127.0.0.1:9", 7, -60)).unwrap(),
        };
        journal_call1_done(&setup, "c-old", old).await;
        let row = settle(&setup.engine, &job(&setup, 0)).await;
        assert_eq!(row.status, RowStatus::Uploaded);
        assert_eq!(row.conversation_id.as_deref(), Some("c-1"));
        assert_eq!(
            row.notes,
            [
                "an earlier run stopped while uploading this file to conversation c-old, and that upload target has expired (by our clock), so whether c-old holds the audio cannot be known: call 1 was made again and the file uploaded to the new conversation; if c-old has audio too, it is a duplicate"
            ]
        );
    }

    #[tokio::test]
    async fn a_journaled_target_that_our_clock_says_just_expired_is_still_tried_first() {
        // S3 decides, not our clock: reusing the target keeps a file the killed run may have
        // stored in one conversation.
        let setup = setup(Arc::new(Fake::default())).await;
        let old = UploadTarget::Put {
            url: Url::parse(&put_url(setup.server.url.authority(), 7, -1)).unwrap(),
        };
        journal_call1_done(&setup, "c-7", old).await;
        let row = settle(&setup.engine, &job(&setup, 0)).await;
        assert_eq!(row.status, RowStatus::Uploaded, "{row:?}");
        assert_eq!(row.conversation_id.as_deref(), Some("c-7"));
        assert_eq!(
            requests_to(&setup.server, "/api/"),
            0,
            "no new conversation"
        );
    }

    #[tokio::test]
    async fn a_row_interrupted_during_call_1_is_noted_when_redone() {
        let setup = setup(Arc::new(Fake::default())).await;
        let job0 = job(&setup, 0);
        setup
            .engine
            .journal
            .record(&job0.identity, &job0.file, job0.line, Change::Call1Started)
            .await
            .unwrap();
        let row = settle(&setup.engine, &job(&setup, 0)).await;
        assert_eq!(row.status, RowStatus::Uploaded);
        assert_eq!(
            row.notes,
            [
                "an earlier run stopped during this row's call 1, so Voyc may hold a conversation without audio for it"
            ]
        );
        assert_eq!(unknown(&setup, &job0), ["a run stopped during call 1"]);
    }

    #[tokio::test]
    async fn retries_run_out_and_the_row_fails_with_the_last_error() {
        let fake = Arc::new(Fake::default());
        // Two 503s with --retries 1: fewer than an outage takes (TRIP_AFTER in a row).
        for _ in 0..2 {
            fake.queue_call1(Reply::json(503, r#"{"detail": "down"}"#));
        }
        let setup = setup(fake).await;
        let engine = Engine {
            retries: 1,
            ..clone_engine(&setup.engine)
        };
        let row = settle(&engine, &job(&setup, 0)).await;
        assert_eq!(row.status, RowStatus::Failed);
        assert_eq!(row.attempts, 2);
        assert_eq!(row.error.as_deref(), Some("call 1: HTTP 503: down"));
        assert_eq!(setup.waits.sleeps().len(), 1);
    }

    #[tokio::test]
    async fn a_429_spends_no_retry_and_the_row_is_uploaded_after_many() {
        let fake = Arc::new(Fake::default());
        for _ in 0..12 {
            fake.queue_call1(Reply::json(429, r#"{"detail": "slow down"}"#));
        }
        let setup = setup(fake).await;
        let row = settle(&setup.engine, &job(&setup, 0)).await;
        assert_eq!(row.status, RowStatus::Uploaded, "{row:?}");
        assert_eq!(
            row.attempts, 13,
            "every attempt counted, none failed the row"
        );
        assert_eq!(setup.engine.call_rate.stats().throttled, 12);
    }

    #[tokio::test]
    async fn a_stop_during_a_retry_wait_leaves_the_row_not_attempted() {
        let fake = Arc::new(Fake::default());
        fake.queue_s3(Reply::json(503, ""));
        let setup = setup(fake).await;
        setup.engine.control.stop(StopReason::Interrupted);
        let row = settle(&setup.engine, &job(&setup, 0)).await;
        // Call 1 and the first upload went out (the stop only halts waits and new rows).
        assert_eq!(row.status, RowStatus::NotAttempted, "{row:?}");
        assert_eq!(row.conversation_id.as_deref(), Some("c-1"));
        assert!(row.notes[0].starts_with("interrupted while waiting to retry the upload"));
        let stored = setup
            .engine
            .journal
            .lookup(&job(&setup, 0).identity)
            .unwrap()
            .unwrap();
        assert_eq!(
            stored.state,
            State::Call1Done,
            "resumable with the same target"
        );
    }

    #[tokio::test]
    async fn the_pool_settles_every_row_and_a_stop_leaves_the_rows_not_started_unattempted() {
        let setup = setup(Arc::new(Fake::default())).await;
        let (tx, rx) = std::sync::mpsc::channel();
        let pool = Pool::new(setup.engine.clone(), 3, tx);
        let jobs: Vec<Job> = (0..15).map(|n| job(&setup, n)).collect();
        for job in &jobs[..10] {
            pool.submit(job.clone()).await;
        }
        setup.engine.control.stop(StopReason::Interrupted);
        for job in &jobs[10..] {
            pool.submit(job.clone()).await;
        }
        pool.wait().await;
        drop(pool);
        setup.engine.journal.close();
        let mut outcomes: Vec<Reported> = rx.iter().map(Reported::from).collect();
        outcomes.sort_by_key(|o| o.seq);
        assert_eq!(outcomes.len(), 15);
        // Rows start in the order they were handed in, and at most 3 wait for a worker: the
        // 10th could only be handed in once the 7th had started, so at least 7 did; those
        // still waiting at the stop were not attempted.
        let uploaded = outcomes
            .iter()
            .take_while(|o| o.row.status == RowStatus::Uploaded)
            .count();
        assert!((7..=10).contains(&uploaded), "{outcomes:?}");
        for outcome in &outcomes[uploaded..] {
            assert_eq!(outcome.row.status, RowStatus::NotAttempted, "{outcome:?}");
            assert_eq!(
                outcome.row.notes,
                ["the run was interrupted before this row"]
            );
            let stored = setup
                .engine
                .journal
                .lookup(&jobs[outcome.seq as usize].identity)
                .unwrap();
            assert_eq!(stored, None, "'call 1 started' is taken back: {stored:?}");
        }
    }

    /// Hands `rows` rows to a pool of `concurrency` and returns their outcomes in order.
    async fn run_pool(setup: &Setup, rows: u64, concurrency: usize) -> Vec<Reported> {
        let (tx, rx) = std::sync::mpsc::channel();
        let pool = Pool::new(setup.engine.clone(), concurrency, tx);
        for n in 0..rows {
            pool.submit(job(setup, n)).await;
        }
        pool.wait().await;
        drop(pool);
        let mut outcomes: Vec<Reported> = rx.iter().map(Reported::from).collect();
        outcomes.sort_by_key(|o| o.seq);
        outcomes
    }

    #[tokio::test]
    async fn a_ten_minute_outage_mid_run_fails_no_row_and_is_probed_one_request_at_a_time() {
        let fake = Arc::new(Fake::with_outage(5, Duration::from_secs(600)));
        let setup = setup(fake.clone()).await;
        let outcomes = run_pool(&setup, 30, 4).await;
        assert_eq!(outcomes.len(), 30);
        for outcome in &outcomes {
            assert_eq!(outcome.row.status, RowStatus::Uploaded, "{outcome:?}");
        }
        assert!(setup.waits.elapsed() >= Duration::from_secs(600));
        // The rows in flight when it began, then one probe at a time: 1, 2, 4, 8 s, then
        // every 15 s.
        let refused = fake.refused.load(Ordering::SeqCst);
        assert!(
            (40..=60).contains(&refused),
            "{refused} requests met the outage"
        );
        assert!(
            setup
                .waits
                .sleeps()
                .iter()
                .all(|&s| s <= Duration::from_secs(15))
        );
        let (api, s3) = (
            setup.engine.outages.api.waited(),
            setup.engine.outages.s3.waited(),
        );
        let (outages, down) = (api.0 + s3.0, api.1.max(s3.1));
        assert!(outages >= 1, "{outages}");
        assert!(down >= Duration::from_secs(590), "{down:?}");
        assert_eq!(
            setup.engine.control.reason().map(|r| format!("{r:?}")),
            None
        );
    }

    #[tokio::test]
    async fn an_outage_longer_than_max_outage_stops_the_run_leaving_every_row_resumable() {
        let fake = Arc::new(Fake::with_outage(3, Duration::from_secs(7200)));
        let setup = setup_with(fake, Duration::from_secs(1800)).await;
        let outcomes = run_pool(&setup, 12, 2).await;
        let Some(StopReason::Outage(message)) = setup.engine.control.reason() else {
            panic!("{:?}", setup.engine.control.reason());
        };
        assert!(
            message.contains("longer than --max-outage 30m"),
            "{message}"
        );
        // The manual clock adds up the sleeps of rows that wait side by side (two services
        // are down here, each with a row timing its next probe), so only a bound holds: not
        // before --max-outage, and not at the outage's end.
        let elapsed = setup.waits.elapsed();
        assert!(
            elapsed >= Duration::from_secs(1800) && elapsed < Duration::from_secs(2 * 1800 + 60),
            "stopped at --max-outage: {elapsed:?}"
        );
        let uploaded = outcomes
            .iter()
            .filter(|o| o.row.status == RowStatus::Uploaded)
            .count();
        assert!((1..=3).contains(&uploaded), "{outcomes:?}");
        for outcome in &outcomes {
            assert!(
                matches!(
                    outcome.row.status,
                    RowStatus::Uploaded | RowStatus::NotAttempted
                ),
                "nothing fails for an outage: {outcome:?}"
            );
        }
        // The same command resumes: what is not uploaded is not recorded as uploaded.
        for outcome in outcomes
            .iter()
            .filter(|o| o.row.status == RowStatus::NotAttempted)
        {
            let stored = setup
                .engine
                .journal
                .lookup(&job(&setup, outcome.seq).identity)
                .unwrap();
            assert!(
                stored.as_ref().is_none_or(|s| s.state != State::Uploaded),
                "{stored:?}"
            );
        }
    }

    #[tokio::test]
    async fn before_any_success_a_server_that_is_not_there_stops_the_run_instead_of_waiting() {
        let setup = setup(Arc::new(Fake::default())).await;
        // Nothing listens where call 1 goes.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = Url::parse(&format!("http://{}/", closed.local_addr().unwrap())).unwrap();
        drop(closed);
        let engine = Engine {
            client: VoycClient::with_http(
                http_client(Duration::from_secs(5), None, true).unwrap(),
                ClientConfig {
                    base_url: url,
                    organisation: "118".into(),
                    token: Token::parse("t0ken").unwrap(),
                    timeout: Duration::from_secs(5),
                },
            ),
            ..clone_engine(&setup.engine)
        };
        let row = settle(&engine, &job(&setup, 0)).await;
        assert_eq!(row.status, RowStatus::Failed, "{row:?}");
        assert!(matches!(
            engine.control.reason(),
            Some(StopReason::Misconfigured(_))
        ));
        assert!(engine.outages.down(engine.clock.now()).is_none());
    }

    /// A second engine on `engine`'s journal and clock, with a fresh run's state.
    fn clone_engine(engine: &Engine) -> Engine {
        Engine {
            client: engine.client.clone(),
            uploader: Uploader::new(
                http_client(Duration::from_secs(5), None, true).unwrap(),
                Duration::from_secs(5),
            ),
            journal: engine.journal.clone(),
            control: Arc::new(RunControl::new()),
            retries: engine.retries,
            backoff: Mutex::new(Backoff::new(fastrand::Rng::with_seed(2))),
            clock: engine.clock.clone(),
            sent: Arc::new(AtomicU64::new(0)),
            organisation: engine.organisation.clone(),
            outages: Outages::new(engine.outages.max_outage),
            call_rate: CallRate::new(None),
        }
    }

    #[tokio::test]
    async fn a_429_is_counted_by_the_call_rate_and_cuts_it() {
        let fake = Arc::new(Fake::default());
        for _ in 0..2 {
            fake.queue_call1(
                Reply::json(429, r#"{"detail": "slow"}"#).with_header("Retry-After", "1"),
            );
        }
        let setup = setup(fake).await;
        let outcomes = run_pool(&setup, 6, 2).await;
        assert!(
            outcomes.iter().all(|o| o.row.status == RowStatus::Uploaded),
            "{outcomes:?}"
        );
        let stats = setup.engine.call_rate.stats();
        assert_eq!((stats.requests, stats.throttled), (8, 2));
        assert!(stats.rate.is_some(), "the first 429 set a rate");
        assert!(
            setup
                .engine
                .outages
                .down(setup.engine.clock.now())
                .is_none(),
            "a 429 is no outage"
        );
    }

    #[tokio::test]
    async fn an_abort_drops_rows_in_flight() {
        let fake = Arc::new(Fake::default());
        fake.queue_call1(Reply::Silent);
        let setup = setup(fake).await;
        let (tx, rx) = std::sync::mpsc::channel();
        let pool = Pool::new(setup.engine.clone(), 2, tx);
        pool.submit(job(&setup, 0)).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        setup.engine.control.abort();
        pool.wait().await;
        let outcome = Reported::from(rx.recv().unwrap());
        assert_eq!(outcome.row.status, RowStatus::NotAttempted);
        assert!(outcome.row.notes[0].starts_with("aborted by a second interrupt"));
    }
}
