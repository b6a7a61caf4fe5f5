//! The upload (call 2): a file streamed from disk into a presigned POST or PUT with an exact
//! `Content-Length`, its SHA-256 computed on the way, bounded by idle time only (a watchdog
//! fails it when no byte has moved for `--timeout`: an upload may take an hour, but it must
//! never sit still). With a gate, the file's last byte waits until the journal holds the
//! target, so S3 cannot store a file whose conversation the journal does not know.
//!
//! The file must be the one validation checked until its last byte goes: its size and
//! modification time are checked when it is opened and again just before that byte (a
//! recording still being written is refused, not sent cut short), and its first bytes must
//! still be audio.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures_util::Stream;
use futures_util::stream::BoxStream;
use reqwest::header::CONTENT_LENGTH;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, ReadBuf};

use super::failure::{Call, Failure, s3_failure, s3_stored, transport_failure};
use super::http::read_limited;
use super::rate::Bandwidth;
use crate::descriptors::out_of_descriptors;
use crate::human;
use crate::objects::{self, ObjectSources, RemoteObject};
use crate::target::UploadTarget;
use crate::validate::sniff::{SNIFF_LEN, sniff};
use crate::validate::{describe_start, open_regular, shown};

/// The most of an S3 error body we read.
const MAX_S3_ANSWER: usize = 64 << 10;
/// Size of the reads from disk while uploading.
const CHUNK: usize = 256 << 10;

/// A file as validation saw it: the upload sends exactly this, or fails.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub path: PathBuf,
    pub size: u64,
    /// Its modification time when checked; `None` where the system gives none (then only the
    /// size is compared).
    pub modified: Option<SystemTime>,
    /// An object in a store (`s3://`, `gs://`, `az://`) rather than a file: `path` is then its URL.
    pub object: Option<RemoteObject>,
}

impl Source {
    /// Why the file, as it is now (`meta`), is not what was checked; `None` if it is.
    fn changed(&self, meta: &std::fs::Metadata) -> Option<String> {
        let now = meta.len();
        if now != self.size {
            return Some(format!("{} bytes when checked, {now} now", self.size));
        }
        match (self.modified, meta.modified().ok()) {
            (Some(then), Some(now)) if then != now => {
                Some("modified again after it was checked".to_string())
            }
            _ => None,
        }
    }

    /// The failure of a row whose file changed: permanent (the file is not what the row
    /// announced), and marked, so that the pool keeps the target for a rerun.
    fn changed_failure(&self, when: &str, why: &str) -> Failure {
        Failure {
            file_changed: true,
            ..Failure::permanent(
                Call::Upload,
                format!(
                    "{} changed {when} ({why}); once it no longer changes, run the same command again to upload it to the same conversation",
                    shown(&self.path)
                ),
            )
        }
    }
}

/// Uploads to presigned targets; shares the HTTP client (and its connections) with call 1,
/// but never sends the token.
#[derive(Clone, Debug)]
pub struct Uploader {
    http: reqwest::Client,
    /// Idle time after which an upload fails (`--timeout`).
    timeout: Duration,
    /// `--bwlimit`, shared by every upload.
    bandwidth: Option<Arc<Bandwidth>>,
    /// Where `s3://`, `gs://` and `az://` rows are read from.
    objects: Option<Arc<ObjectSources>>,
}

impl Uploader {
    pub fn new(http: reqwest::Client, timeout: Duration) -> Uploader {
        Uploader {
            http,
            timeout,
            bandwidth: None,
            objects: None,
        }
    }

    /// Object rows are read through `objects` (built on the runtime the uploads run on).
    pub fn with_objects(self, objects: ObjectSources) -> Uploader {
        Uploader {
            objects: Some(Arc::new(objects)),
            ..self
        }
    }

    /// Opens the row's audio for its upload: the file ([`open_for_upload`]), or the object's
    /// body, asked for as validation saw it, its first bytes read and checked again.
    pub async fn open(&self, source: Source) -> Result<Opened, Failure> {
        match (&source.object, &self.objects) {
            (None, _) => open_for_upload(source).await,
            (Some(object), Some(objects)) => open_object(&source, object, objects).await,
            (Some(object), None) => Err(Failure::permanent(
                Call::Upload,
                format!("{}: no object store is set up to read it", object.url),
            )),
        }
    }

    /// Every upload together sends at most `bytes_per_second`.
    pub fn with_bandwidth(self, bytes_per_second: Option<u64>) -> Uploader {
        Uploader {
            bandwidth: bytes_per_second.map(|rate| Arc::new(Bandwidth::new(rate))),
            ..self
        }
    }

    /// Call 2: streams the file (`source`, as checked) to the target. `sent` counts the
    /// bytes as they go (for progress) and is wound back if the attempt fails. The file may
    /// come already opened with [`open_for_upload`] (`opened`); its last byte is held back until
    /// `gate` resolves, and if the gate fails, the upload is abandoned before that byte, so S3
    /// stores nothing.
    pub async fn upload(
        &self,
        target: &UploadTarget,
        source: &Source,
        sent: &Arc<AtomicU64>,
        opened: Option<Opened>,
        mut gate: Option<Gate>,
    ) -> Result<Uploaded, Failure> {
        let size = source.size;
        let opened = match opened {
            Some(opened) => opened,
            None => self.open(source.clone()).await?,
        };
        if size == 0
            && let Some(gate) = gate.take()
        {
            // No byte to hold back: wait before anything is sent.
            gate.await
                .map_err(|err| Failure::permanent(Call::Upload, gate_failed(&err)))?;
        }
        let started = Instant::now();
        let watch = Arc::new(Watch {
            started,
            last_ms: AtomicU64::new(0),
            state: Mutex::new((Sha256::new(), 0)),
            sent: sent.clone(),
            changed: Mutex::new(None),
            unreadable: Mutex::new(None),
        });
        let body = reqwest::Body::wrap_stream(FileStream {
            remaining: size - opened.first.len() as u64,
            reader: opened.reader,
            source: source.clone(),
            next: Some(opened.first).filter(|first| !first.is_empty()),
            buffer: Vec::new(),
            watch: watch.clone(),
            gate,
            held: None,
            bandwidth: self.bandwidth.clone(),
            paced: None,
        });
        let request = match target {
            UploadTarget::Post { url, fields } => {
                let mut form = reqwest::multipart::Form::new();
                for (name, value) in fields {
                    form = form.text(name.clone(), value.clone());
                }
                let part = reqwest::multipart::Part::stream_with_length(body, size)
                    .file_name(form_file_name(&source.path))
                    .mime_str("application/octet-stream")
                    .expect("a valid MIME type");
                self.http
                    .post(url.clone())
                    .multipart(form.part("file", part))
            }
            UploadTarget::Put { url } => self
                .http
                .put(url.clone())
                .header(CONTENT_LENGTH, size)
                .body(body),
        };
        let exchange = async {
            let response = request
                .send()
                .await
                .map_err(|err| transport_failure(Call::Upload, err))?;
            watch.touch();
            let status = response.status();
            let headers = response.headers().clone();
            let body = if s3_stored(status) {
                // Read it (S3 may send `<PostResponse>`) so that the connection can carry the
                // next upload; the status already says the upload is stored.
                let _ = read_limited(response, MAX_S3_ANSWER).await;
                Vec::new()
            } else {
                read_limited(response, MAX_S3_ANSWER)
                    .await
                    .map_err(|err| transport_failure(Call::Upload, err))?
            };
            Ok::<_, Failure>((status, headers, body))
        };
        let outcome = tokio::select! {
            result = exchange => result,
            idle = watch.stalled(self.timeout) => Err(Failure::transient(
                Call::Upload,
                format!("no progress for {} (--timeout)", human::duration(idle)),
            )),
        };
        let (status, headers, body) = match outcome {
            Ok(answer) => answer,
            Err(failure) => {
                sent.fetch_sub(watch.bytes(), Ordering::Relaxed);
                // The body stream stopped the request because the file changed: say that,
                // not the transport error it caused.
                if let Some(why) = watch.changed.lock().expect("changed").take() {
                    return Err(source.changed_failure("during its upload", &why));
                }
                // Nor S3's, when it was the recording that could not be read.
                if let Some(why) = watch.unreadable.lock().expect("unreadable").take() {
                    return Err(Failure::reading_the_source(why));
                }
                return Err(failure);
            }
        };
        if s3_stored(status) {
            let (hasher, bytes) = std::mem::take(&mut *watch.state.lock().expect("hash state"));
            if bytes != size {
                sent.fetch_sub(bytes, Ordering::Relaxed);
                return Err(Failure::transient(
                    Call::Upload,
                    format!(
                        "HTTP {} after only {bytes} of {size} bytes were sent",
                        status.as_u16()
                    ),
                ));
            }
            return Ok(Uploaded {
                bytes,
                sha256: hex::encode(hasher.finalize()),
            });
        }
        sent.fetch_sub(watch.bytes(), Ordering::Relaxed);
        Err(s3_failure(status, &headers, &body, target))
    }
}

/// What an upload's last byte waits for: the journal's commit of its target (`Err` says why
/// it failed). Everything else goes out meanwhile, so the commit overlaps the transfer, and
/// S3 cannot store the file before the journal knows where it went.
pub type Gate = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// A finished upload: what went over the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uploaded {
    pub bytes: u64,
    /// Lower-case hex SHA-256 of the bytes sent.
    pub sha256: String,
}

/// A file opened for an upload, its size checked again and its first chunk read.
pub struct Opened {
    reader: Reader,
    first: Bytes,
}

/// Where an upload's bytes after the first chunk come from.
enum Reader {
    File {
        file: tokio::fs::File,
        /// The same open file, to ask its size and modification time before the last byte.
        recheck: std::fs::File,
    },
    /// An object's body (`If-Match` its ETag: the object validation saw, or an error).
    Object(BoxStream<'static, Result<Bytes, objects::Problem>>),
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("first", &self.first.len())
            .finish()
    }
}

/// Opens the file, checks that it is still the regular file of the size and modification
/// time validation saw and that its first bytes are still audio, and reads its first chunk,
/// in one trip to the blocking pool: the pool does it while call 1 is in flight, so that no
/// disk access is left between call 1's answer and the upload's first byte.
pub async fn open_for_upload(source: Source) -> Result<Opened, Failure> {
    tokio::task::spawn_blocking(move || open_blocking(&source))
        .await
        .unwrap_or_else(|err| {
            Err(Failure::permanent(
                Call::Upload,
                format!("cannot open the file: {err}"),
            ))
        })
}

fn open_blocking(source: &Source) -> Result<Opened, Failure> {
    use std::io::Read as _;
    let path = &source.path;
    let failed = |what: &str, err: std::io::Error| {
        let message = format!(
            "cannot {what} {}: {}",
            shown(path),
            crate::validate::io_text(&err)
        );
        match out_of_descriptors(&err) {
            // Others close theirs as their uploads end: wait for one.
            true => Failure {
                out_of_descriptors: true,
                ..Failure::transient(Call::Upload, message)
            },
            false => Failure::permanent(Call::Upload, message),
        }
    };
    let (file, meta) = match open_regular(path) {
        Ok(opened) => opened,
        Err(err) if err.kind() == std::io::ErrorKind::InvalidInput => {
            return Err(source.changed_failure("since it was checked", &format!("it is now {err}")));
        }
        Err(err) => return Err(failed("open", err)),
    };
    if let Some(why) = source.changed(&meta) {
        return Err(source.changed_failure("since it was checked", &why));
    }
    let recheck = file.try_clone().map_err(|err| failed("open", err))?;
    let mut file = file;
    let size = source.size;
    let mut first = vec![0; usize::try_from(size).unwrap_or(usize::MAX).min(CHUNK)];
    let mut filled = 0;
    while filled < first.len() {
        match file.read(&mut first[filled..]) {
            Ok(0) => {
                let why = format!("{size} bytes when checked, {filled} could be read");
                return Err(source.changed_failure("since it was checked", &why));
            }
            Ok(n) => filled += n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(failed("read", err)),
        }
    }
    // Overwritten with other bytes of the same size (and a restored time): at least its
    // start must still be audio.
    still_audio(source, &first)?;
    Ok(Opened {
        reader: Reader::File {
            file: tokio::fs::File::from_std(file),
            recheck,
        },
        first: Bytes::from(first),
    })
}

/// A recording's first bytes, read again for its upload, must still be audio (it may have been
/// overwritten with other bytes of the same size since it was checked).
fn still_audio(source: &Source, first: &[u8]) -> Result<(), Failure> {
    let head = &first[..first.len().min(SNIFF_LEN)];
    if sniff(head).is_none() {
        let why = format!(
            "its first bytes are no longer audio; {}",
            describe_start(head)
        );
        return Err(source.changed_failure("since it was checked", &why));
    }
    Ok(())
}

/// What a failure to read an object means for its row: gone or replaced since it was
/// checked (the row's target is kept: a rerun sends the new one to the same conversation),
/// refused (permanent), or a passing failure of the store (retried).
fn object_failure(source: &Source, problem: objects::Problem) -> Failure {
    use objects::Kind;
    match problem.kind {
        Kind::Missing => source.changed_failure("since it was checked", "it is no longer there"),
        Kind::Replaced => {
            source.changed_failure("since it was checked", "it was replaced: its ETag differs")
        }
        Kind::Passing => Failure::reading_the_source(problem.message),
        Kind::Denied | Kind::Row | Kind::Store => Failure::permanent(Call::Upload, problem.message),
    }
}

/// [`Uploader::open`] for an object: its body asked for, and read until its first bytes can
/// be checked to still be audio.
async fn open_object(
    source: &Source,
    object: &RemoteObject,
    objects: &ObjectSources,
) -> Result<Opened, Failure> {
    use futures_util::StreamExt as _;
    let mut stream = objects
        .open(object)
        .await
        .map_err(|problem| object_failure(source, problem))?;
    let want = usize::try_from(source.size)
        .unwrap_or(usize::MAX)
        .min(SNIFF_LEN);
    let mut first = bytes::BytesMut::new();
    while first.len() < want {
        match stream.next().await {
            Some(Ok(chunk)) => first.extend_from_slice(&chunk),
            Some(Err(problem)) => return Err(object_failure(source, problem)),
            None => {
                let why = format!(
                    "{} bytes when checked, {} could be read",
                    source.size,
                    first.len()
                );
                return Err(source.changed_failure("since it was checked", &why));
            }
        }
    }
    if first.len() as u64 > source.size {
        let why = format!("{} bytes when checked, more now", source.size);
        return Err(source.changed_failure("since it was checked", &why));
    }
    still_audio(source, &first)?;
    Ok(Opened {
        reader: Reader::Object(stream),
        first: first.freeze(),
    })
}

/// The file name the multipart form gives S3: S3 stores the object under the key the target
/// names, so the local name need not go at all; a name with a line break or a quote would
/// break the form (S3 answers `MalformedPOSTRequest`). Only a plain ASCII extension is kept.
fn form_file_name(path: &Path) -> String {
    let extension = path
        .extension()
        .and_then(|extension| extension.to_str())
        .filter(|extension| {
            !extension.is_empty()
                && extension.len() <= 8
                && extension.chars().all(|c| c.is_ascii_alphanumeric())
        });
    match extension {
        Some(extension) => format!("audio.{}", extension.to_ascii_lowercase()),
        None => "audio".to_string(),
    }
}

/// What the upload watchdog and the body stream share: when a byte last moved, the hash and
/// count of what went out, and the progress counter.
struct Watch {
    started: Instant,
    last_ms: AtomicU64,
    state: Mutex<(Sha256, u64)>,
    sent: Arc<AtomicU64>,
    /// Why the body stream stopped because the file changed under it, if it did.
    changed: Mutex<Option<String>>,
    /// Why the body stream stopped because the recording could not be read, if it did
    /// (`cannot read PATH: ...`).
    unreadable: Mutex<Option<String>>,
}

impl Watch {
    fn touch(&self) {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(now, Ordering::Relaxed);
    }

    fn bytes(&self) -> u64 {
        self.state.lock().expect("hash state").1
    }

    fn record(&self, chunk: &[u8]) {
        let mut state = self.state.lock().expect("hash state");
        state.0.update(chunk);
        state.1 += chunk.len() as u64;
        drop(state);
        self.sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        self.touch();
    }

    /// Resolves with the idle time once nothing has moved for `limit`.
    async fn stalled(&self, limit: Duration) -> Duration {
        let tick = (limit / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        loop {
            tokio::time::sleep(tick).await;
            let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let idle = self.started.elapsed().saturating_sub(last);
            if idle >= limit {
                return idle;
            }
        }
    }
}

fn gate_failed(err: &str) -> String {
    format!("not completed, as the journal could not record its target: {err}")
}

/// The file as a stream of chunks: exactly its size in bytes, hashed and counted as they go.
/// With a gate, the last byte is held back until the gate resolves.
struct FileStream {
    /// The file (and the same file again, for the check before the last byte), or the object.
    reader: Reader,
    source: Source,
    /// Bytes not read from the file yet.
    remaining: u64,
    /// A chunk read ahead (the first), to go before any other read.
    next: Option<Bytes>,
    /// Allocated at the first read from `file`.
    buffer: Vec<u8>,
    watch: Arc<Watch>,
    gate: Option<Gate>,
    /// The last byte, while it waits for the gate.
    held: Option<Bytes>,
    /// `--bwlimit`.
    bandwidth: Option<Arc<Bandwidth>>,
    /// A chunk waiting for its turn under `--bwlimit`, and the wait.
    paced: Option<(Bytes, Pin<Box<tokio::time::Sleep>>)>,
}

impl FileStream {
    /// Sends a chunk on when `--bwlimit` gives it its turn (at once without one); a chunk
    /// larger than the limit's share is split, the rest read ahead for the next turn.
    fn pace(
        &mut self,
        mut chunk: Bytes,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<std::io::Result<Bytes>>> {
        let Some(bandwidth) = &self.bandwidth else {
            return self.emit(chunk, cx);
        };
        if chunk.len() > bandwidth.chunk() {
            let rest = chunk.split_off(bandwidth.chunk());
            debug_assert!(self.next.is_none());
            self.next = Some(rest);
        }
        let now = Instant::now();
        let at = bandwidth.reserve(now, chunk.len());
        if at <= now {
            return self.emit(chunk, cx);
        }
        let wait = Box::pin(tokio::time::sleep_until(at.into()));
        self.paced = Some((chunk, wait));
        self.poll_paced(cx)
    }

    fn poll_paced(&mut self, cx: &mut TaskContext<'_>) -> Poll<Option<std::io::Result<Bytes>>> {
        let Some((_, wait)) = self.paced.as_mut() else {
            return Poll::Pending;
        };
        match wait.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => {
                let (chunk, _) = self.paced.take().expect("a paced chunk");
                self.emit(chunk, cx)
            }
        }
    }

    /// Sends a chunk on, holding back the file's last byte if there is a gate. The last
    /// chunk (or byte) goes only if the file is still as it was checked.
    fn emit(
        &mut self,
        mut chunk: Bytes,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<std::io::Result<Bytes>>> {
        self.watch.record(&chunk);
        let last = self.remaining == 0 && self.next.is_none();
        if last && self.gate.is_some() {
            self.held = Some(chunk.split_off(chunk.len() - 1));
            if chunk.is_empty() {
                return self.poll_held(cx);
            }
        } else if last && let Err(err) = self.unchanged() {
            return Poll::Ready(Some(Err(err)));
        }
        Poll::Ready(Some(Ok(chunk)))
    }

    /// Whether the file still has the size and modification time it was checked with, now
    /// that all of it was read: a file still being written to is refused here rather than
    /// sent cut short.
    fn unchanged(&self) -> std::io::Result<()> {
        let Reader::File { recheck, .. } = &self.reader else {
            // An object was asked for by its ETag: its bytes are the ones checked.
            return Ok(());
        };
        let why = match recheck.metadata() {
            Ok(meta) => self.source.changed(&meta),
            Err(err) => Some(format!("it cannot be read: {err}")),
        };
        match why {
            None => Ok(()),
            Some(why) => {
                let err = std::io::Error::other(format!("the file changed: {why}"));
                *self.watch.changed.lock().expect("changed") = Some(why);
                Err(err)
            }
        }
    }

    fn poll_held(&mut self, cx: &mut TaskContext<'_>) -> Poll<Option<std::io::Result<Bytes>>> {
        let Some(gate) = self.gate.as_mut() else {
            return Poll::Ready(self.held.take().map(Ok));
        };
        match gate.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(result) => {
                self.gate = None;
                match result.map_err(|err| std::io::Error::other(gate_failed(&err))) {
                    Ok(()) => match self.unchanged() {
                        Ok(()) => Poll::Ready(self.held.take().map(Ok)),
                        Err(err) => {
                            self.held = None;
                            Poll::Ready(Some(Err(err)))
                        }
                    },
                    Err(err) => {
                        self.held = None;
                        Poll::Ready(Some(Err(err)))
                    }
                }
            }
        }
    }
}

impl FileStream {
    /// The next chunk of an object's body: exactly as many bytes as validation counted.
    fn poll_object(&mut self, cx: &mut TaskContext<'_>) -> Poll<Option<std::io::Result<Bytes>>> {
        let Reader::Object(stream) = &mut self.reader else {
            return Poll::Ready(None);
        };
        let changed = |this: &mut FileStream, why: String| {
            let err = std::io::Error::other(format!("the object changed: {why}"));
            *this.watch.changed.lock().expect("changed") = Some(why);
            Poll::Ready(Some(Err(err)))
        };
        match stream.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) if chunk.len() as u64 > self.remaining => {
                let why = format!("{} bytes when checked, more now", self.source.size);
                changed(self, why)
            }
            Poll::Ready(Some(Ok(chunk))) => {
                self.remaining -= chunk.len() as u64;
                self.pace(chunk, cx)
            }
            Poll::Ready(Some(Err(problem))) => match problem.kind {
                objects::Kind::Missing | objects::Kind::Replaced => changed(self, problem.message),
                // A passing failure of the store: the upload fails transiently and is retried.
                _ => {
                    *self.watch.unreadable.lock().expect("unreadable") =
                        Some(problem.message.clone());
                    Poll::Ready(Some(Err(std::io::Error::other(problem.message))))
                }
            },
            Poll::Ready(None) => {
                let why = format!(
                    "{} bytes when checked, {} could be read",
                    self.source.size,
                    self.source.size - self.remaining
                );
                changed(self, why)
            }
        }
    }
}

impl Stream for FileStream {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.held.is_some() {
            return this.poll_held(cx);
        }
        if this.paced.is_some() {
            return this.poll_paced(cx);
        }
        if let Some(chunk) = this.next.take() {
            return this.pace(chunk, cx);
        }
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let file = match &mut this.reader {
            Reader::File { file, .. } => file,
            Reader::Object(_) => return this.poll_object(cx),
        };
        if this.buffer.is_empty() {
            this.buffer = vec![0; CHUNK];
        }
        let want = usize::try_from(this.remaining)
            .unwrap_or(usize::MAX)
            .min(this.buffer.len())
            .min(this.bandwidth.as_ref().map_or(usize::MAX, |b| b.chunk()));
        let mut buf = ReadBuf::new(&mut this.buffer[..want]);
        match Pin::new(file).poll_read(cx, &mut buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(err)) => {
                let why = format!("cannot read {}: {err}", this.source.path.display());
                *this.watch.unreadable.lock().expect("unreadable") = Some(why);
                Poll::Ready(Some(Err(err)))
            }
            Poll::Ready(Ok(())) if buf.filled().is_empty() => {
                let why = format!(
                    "{} bytes when checked, {} could be read",
                    this.source.size,
                    this.source.size - this.remaining
                );
                let err = std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("the file shrank while it was read: {why}"),
                );
                *this.watch.changed.lock().expect("changed") = Some(why);
                Poll::Ready(Some(Err(err)))
            }
            Poll::Ready(Ok(())) => {
                let chunk = Bytes::copy_from_slice(buf.filled());
                this.remaining -= chunk.len() as u64;
                this.pace(chunk, cx)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::http::http_client;
    use super::*;
    use crate::upload::failure::Class;
    use std::path::PathBuf;
    use voyc_testkit::scripted::{Reply, serve};

    /// The file as it is now, as validation would have seen it.
    fn checked(path: &Path) -> Source {
        let meta = std::fs::metadata(path).unwrap();
        Source {
            path: path.to_path_buf(),
            size: meta.len(),
            modified: meta.modified().ok(),
            object: None,
        }
    }

    fn uploader(timeout: Duration) -> Uploader {
        Uploader::new(http_client(timeout, None, true).unwrap(), timeout)
    }

    /// A file of `size` bytes (at least 12) with varied content after a WAV signature, and its
    /// SHA-256.
    fn audio_file(dir: &tempfile::TempDir, size: usize) -> (PathBuf, String) {
        let mut bytes: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
        bytes[..12].copy_from_slice(b"RIFF\0\0\0\0WAVE");
        let path = dir.path().join("call.wav");
        std::fs::write(&path, &bytes).unwrap();
        (path, hex::encode(Sha256::digest(&bytes)))
    }

    /// What most upload tests start from: a server answering with `script`, an audio file of
    /// `size` bytes, and a PUT target on the server (`/s3/b/k`).
    struct PutCase {
        server: voyc_testkit::scripted::Server,
        _dir: tempfile::TempDir,
        path: PathBuf,
        sha256: String,
        target: UploadTarget,
    }

    async fn put_case(
        script: impl Fn(&voyc_testkit::scripted::Head) -> Reply + Send + Sync + 'static,
        size: usize,
    ) -> PutCase {
        let server = serve(script).await;
        let dir = tempfile::tempdir().unwrap();
        let (path, sha256) = audio_file(&dir, size);
        let target = UploadTarget::Put {
            url: server.url.join("s3/b/k").unwrap(),
        };
        PutCase {
            server,
            _dir: dir,
            path,
            sha256,
            target,
        }
    }

    #[test]
    fn an_objects_read_error_is_retried_and_a_gone_or_replaced_object_keeps_the_target() {
        let source = Source {
            path: PathBuf::from("s3://b/calls/a.wav"),
            size: 10,
            modified: None,
            object: Some(RemoteObject {
                url: crate::objects::ObjectUrl::parse("s3://b/calls/a.wav").unwrap(),
                etag: Some("\"e1\"".into()),
            }),
        };
        let problem = |kind| objects::Problem {
            kind,
            message: "said".into(),
        };
        let failure = object_failure(&source, problem(objects::Kind::Passing));
        assert_eq!(
            (
                failure.class,
                failure.file_changed,
                failure.source_unreadable
            ),
            (Class::Transient, false, true),
            "retried, as a failure of the recordings' store"
        );
        for kind in [objects::Kind::Missing, objects::Kind::Replaced] {
            let failure = object_failure(&source, problem(kind));
            assert_eq!(
                (failure.class, failure.file_changed),
                (Class::Permanent, true)
            );
            assert!(
                failure
                    .message
                    .starts_with("s3://b/calls/a.wav changed since it was checked"),
                "{}",
                failure.message
            );
        }
        let failure = object_failure(&source, problem(objects::Kind::Denied));
        assert_eq!(
            (failure.class, failure.file_changed),
            (Class::Permanent, false)
        );
    }

    #[tokio::test]
    async fn a_presigned_post_sends_the_fields_in_order_then_the_file_with_an_exact_length() {
        let server = serve(|_| Reply::json(204, "")).await;
        let dir = tempfile::tempdir().unwrap();
        let (path, sha256) = audio_file(&dir, 300_000);
        let target = UploadTarget::Post {
            url: server.url.join("s3/bucket").unwrap(),
            fields: vec![
                ("key".into(), "k/1".into()),
                ("x-amz-algorithm".into(), "AWS4-HMAC-SHA256".into()),
                ("policy".into(), "cG9saWN5".into()),
                ("x-amz-signature".into(), "sig".into()),
            ],
        };
        let sent = Arc::new(AtomicU64::new(0));
        let uploaded = uploader(Duration::from_secs(5))
            .upload(&target, &checked(&path), &sent, None, None)
            .await
            .unwrap();
        assert_eq!(uploaded.bytes, 300_000);
        assert_eq!(uploaded.sha256, sha256);
        assert_eq!(sent.load(Ordering::Relaxed), 300_000);

        let request = &server.requests()[0];
        assert_eq!(request.head.method, "POST");
        assert_eq!(request.head.target, "/s3/bucket");
        assert_eq!(request.head.header("authorization"), None, "no token to S3");
        assert_eq!(request.head.header("transfer-encoding"), None);
        let length: usize = request
            .head
            .header("content-length")
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(length, request.body.len());

        let boundary =
            multer::parse_boundary(request.head.header("content-type").unwrap()).unwrap();
        let body = request.body.clone();
        let stream =
            futures_util::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(body)) });
        let mut multipart = multer::Multipart::new(stream, boundary);
        let mut names = Vec::new();
        let mut file_bytes = Vec::new();
        while let Some(field) = multipart.next_field().await.unwrap() {
            let name = field.name().unwrap().to_string();
            let data = field.bytes().await.unwrap();
            if name == "file" {
                file_bytes = data.to_vec();
            }
            names.push(name);
        }
        assert_eq!(
            names,
            [
                "key",
                "x-amz-algorithm",
                "policy",
                "x-amz-signature",
                "file"
            ]
        );
        assert_eq!(hex::encode(Sha256::digest(&file_bytes)), sha256);
    }

    #[tokio::test]
    async fn a_presigned_put_sends_the_bytes_with_an_exact_content_length_and_no_token() {
        let server = serve(|_| Reply::json(200, "")).await;
        let dir = tempfile::tempdir().unwrap();
        let (path, sha256) = audio_file(&dir, 1_000_003);
        let target = UploadTarget::Put {
            url: server.url.join("s3/bucket/k?X-Amz-Signature=abc").unwrap(),
        };
        let uploaded = uploader(Duration::from_secs(5))
            .upload(
                &target,
                &checked(&path),
                &Arc::new(AtomicU64::new(0)),
                None,
                None,
            )
            .await
            .unwrap();
        assert_eq!(uploaded.sha256, sha256);
        let request = &server.requests()[0];
        assert_eq!(request.head.method, "PUT");
        assert_eq!(request.head.target, "/s3/bucket/k?X-Amz-Signature=abc");
        assert_eq!(request.head.header("content-length"), Some("1000003"));
        assert_eq!(request.head.header("transfer-encoding"), None);
        assert_eq!(request.head.header("authorization"), None);
        assert_eq!(hex::encode(Sha256::digest(&request.body)), sha256);
    }

    #[tokio::test]
    async fn only_200_201_and_204_from_s3_say_the_file_is_stored() {
        for (status, stored) in [
            (200, true),
            (201, true),
            (204, true),
            (202, false),
            (299, false),
        ] {
            let PutCase {
                server: _server,
                path,
                target,
                ..
            } = &put_case(move |_| Reply::json(status, ""), 1000).await;
            let result = uploader(Duration::from_secs(5))
                .upload(
                    target,
                    &checked(path),
                    &Arc::new(AtomicU64::new(0)),
                    None,
                    None,
                )
                .await;
            match result {
                Ok(uploaded) => assert!(stored, "{status}: {uploaded:?}"),
                Err(failure) => {
                    assert!(!stored, "{status}: {}", failure.message);
                    assert_eq!(failure.class, Class::Permanent);
                    assert_eq!(failure.status, Some(status));
                    assert_eq!(
                        failure.message,
                        format!(
                            "HTTP {status}: S3 answers 200, 201 or 204 when it has stored a file, so this answer does not say the file was stored (is the upload URL an S3 endpoint?)"
                        )
                    );
                }
            }
        }
    }

    #[tokio::test]
    async fn an_expired_policy_is_recognised_and_not_retried_as_is() {
        let case = put_case(|_| Reply::Respond {
            status: 403,
            headers: vec![("Content-Type".into(), "application/xml".into())],
            body: b"<Error><Code>AccessDenied</Code><Message>Invalid according to Policy: Policy expired.</Message></Error>".to_vec(),
        }, 1000)
        .await;
        let PutCase {
            server: _server,
            path,
            target,
            ..
        } = &case;
        let sent = Arc::new(AtomicU64::new(0));
        let failure = uploader(Duration::from_secs(5))
            .upload(target, &checked(path), &sent, None, None)
            .await
            .unwrap_err();
        assert!(failure.expired_target);
        assert_eq!(failure.class, Class::Permanent);
        assert_eq!(
            failure.describe(),
            "upload: HTTP 403: AccessDenied: Invalid according to Policy: Policy expired."
        );
        assert_eq!(sent.load(Ordering::Relaxed), 0, "progress wound back");
    }

    #[tokio::test]
    async fn s3_slow_down_is_transient_with_its_retry_after() {
        let case = put_case(|_| {
            Reply::Respond {
                status: 503,
                headers: vec![],
                body: b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>".to_vec(),
            }
            .with_header("Retry-After", "1")
        }, 100)
        .await;
        let failure = uploader(Duration::from_secs(5))
            .upload(
                &case.target,
                &checked(&case.path),
                &Arc::new(AtomicU64::new(0)),
                None,
                None,
            )
            .await
            .unwrap_err();
        assert!(failure.is_transient() && !failure.ambiguous);
        assert_eq!(failure.retry_after, Some(Duration::from_secs(1)));
        assert_eq!(
            failure.message,
            "HTTP 503: SlowDown: Please reduce your request rate."
        );
    }

    #[tokio::test]
    async fn an_upload_nobody_reads_fails_after_the_idle_timeout() {
        let size = 16 << 20;
        let case = put_case(|_| Reply::StallBody, size).await;
        let sent = Arc::new(AtomicU64::new(0));
        let failure = uploader(Duration::from_millis(400))
            .upload(&case.target, &checked(&case.path), &sent, None, None)
            .await
            .unwrap_err();
        assert!(failure.is_transient(), "{failure:?}");
        assert!(
            failure.message.starts_with("no progress for "),
            "{}",
            failure.message
        );
        assert_eq!(sent.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_slow_but_steady_upload_outlasts_the_timeout() {
        // 1 MiB every 100 ms: each gap is far below --timeout (the kernel's send buffer,
        // up to 4 MiB, drains in under half a second at the end), the whole is above it.
        let size = 40 << 20;
        let case = put_case(
            |_| Reply::SlowRead {
                chunk: 1 << 20,
                every: Duration::from_millis(100),
                status: 204,
            },
            size,
        )
        .await;
        let timeout = Duration::from_secs(2);
        let started = Instant::now();
        let uploaded = uploader(timeout)
            .upload(
                &case.target,
                &checked(&case.path),
                &Arc::new(AtomicU64::new(0)),
                None,
                None,
            )
            .await
            .unwrap();
        assert_eq!(uploaded.sha256, case.sha256);
        // The point of the test: the whole took longer than --timeout, and that is fine.
        assert!(started.elapsed() > timeout, "the test server read too fast");
    }

    /// A gate the test opens (or fails) by sending on the returned channel.
    fn gate() -> (tokio::sync::oneshot::Sender<Result<(), String>>, Gate) {
        let (open, opened) = tokio::sync::oneshot::channel();
        let gate = Box::pin(async move { opened.await.unwrap_or_else(|_| Err("dropped".into())) });
        (open, gate)
    }

    async fn until_sent(sent: &AtomicU64, bytes: u64) {
        for _ in 0..1000 {
            if sent.load(Ordering::Relaxed) >= bytes {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "only {} of {bytes} bytes went out",
            sent.load(Ordering::Relaxed)
        );
    }

    #[tokio::test]
    async fn a_gated_upload_sends_all_but_its_last_byte_and_completes_once_the_gate_opens() {
        let server = serve(|_| Reply::json(200, "")).await;
        let dir = tempfile::tempdir().unwrap();
        let (path, sha256) = audio_file(&dir, 300_001);
        let target = UploadTarget::Put {
            url: server.url.join("s3/b/k").unwrap(),
        };
        let (open, gate) = gate();
        let sent = Arc::new(AtomicU64::new(0));
        let upload = tokio::spawn({
            let (client, sent) = (uploader(Duration::from_secs(5)), sent.clone());
            async move {
                client
                    .upload(&target, &checked(&path), &sent, None, Some(gate))
                    .await
            }
        });
        until_sent(&sent, 300_001).await;
        assert!(
            server.requests().is_empty(),
            "S3 cannot have the whole file yet"
        );
        open.send(Ok(())).unwrap();
        let uploaded = upload.await.unwrap().unwrap();
        assert_eq!(uploaded.sha256, sha256);
        assert_eq!(
            hex::encode(Sha256::digest(&server.requests()[0].body)),
            sha256
        );
    }

    #[tokio::test]
    async fn a_gated_upload_whose_gate_fails_never_completes() {
        let PutCase {
            server,
            path,
            target,
            ..
        } = &put_case(|_| Reply::json(200, ""), 1000).await;
        let opened = open_for_upload(checked(path)).await.unwrap();
        let (open, gate) = gate();
        open.send(Err("disk full".into())).unwrap();
        let failure = uploader(Duration::from_secs(5))
            .upload(
                target,
                &checked(path),
                &Arc::new(AtomicU64::new(0)),
                Some(opened),
                Some(gate),
            )
            .await
            .unwrap_err();
        assert!(
            failure
                .message
                .contains("not completed, as the journal could not record its target: disk full"),
            "{}",
            failure.message
        );
        assert!(server.requests().is_empty());
    }

    #[tokio::test]
    async fn a_file_that_changed_size_since_validation_is_not_sent() {
        let PutCase {
            server,
            path,
            target,
            ..
        } = &put_case(|_| Reply::json(200, ""), 100).await;
        let failure = uploader(Duration::from_secs(5))
            .upload(
                target,
                &Source {
                    size: 99,
                    ..checked(path)
                },
                &Arc::new(AtomicU64::new(0)),
                None,
                None,
            )
            .await
            .unwrap_err();
        assert_eq!(failure.class, Class::Permanent);
        assert!(
            failure
                .message
                .contains("changed since it was checked (99 bytes when checked, 100 now)"),
            "{}",
            failure.message
        );
        assert!(server.requests().is_empty());
    }

    #[tokio::test]
    async fn a_file_appended_to_during_its_upload_fails_before_its_last_byte_saying_it_changed() {
        let PutCase {
            server,
            path,
            target,
            ..
        } = &put_case(|_| Reply::json(200, ""), 300_001).await;
        let source = checked(path);
        let (open, gate) = gate();
        let sent = Arc::new(AtomicU64::new(0));
        let upload = tokio::spawn({
            let (client, sent, target) = (
                uploader(Duration::from_secs(5)),
                sent.clone(),
                target.clone(),
            );
            let source = source.clone();
            async move {
                client
                    .upload(&target, &source, &sent, None, Some(gate))
                    .await
            }
        });
        // Every byte but the last has been read: the recording is still being written to.
        until_sent(&sent, 300_001).await;
        let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
        std::io::Write::write_all(&mut file, b"more audio").unwrap();
        open.send(Ok(())).unwrap();
        let failure = upload.await.unwrap().unwrap_err();
        assert_eq!(failure.class, Class::Permanent);
        assert!(failure.file_changed);
        assert!(
            failure.message.ends_with(
                "changed during its upload (300001 bytes when checked, 300011 now); once it no longer changes, run the same command again to upload it to the same conversation"
            ),
            "{}",
            failure.message
        );
        assert!(
            server.requests().iter().all(|r| r.body.len() < 300_001),
            "S3 never had the whole file"
        );
        assert_eq!(sent.load(Ordering::Relaxed), 0, "progress wound back");
    }

    #[tokio::test]
    async fn a_file_overwritten_with_other_bytes_of_the_same_size_is_not_sent() {
        let PutCase {
            server,
            path,
            target,
            ..
        } = &put_case(|_| Reply::json(200, ""), 1000).await;
        let source = checked(path);
        let mut page = b"<!DOCTYPE html><html>".to_vec();
        page.resize(1000, b' ');
        std::fs::write(path, page).unwrap();
        // Even with the time it was checked with.
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(source.modified.unwrap()).unwrap();
        let failure = uploader(Duration::from_secs(5))
            .upload(target, &source, &Arc::new(AtomicU64::new(0)), None, None)
            .await
            .unwrap_err();
        assert!(failure.file_changed && failure.class == Class::Permanent);
        assert!(
            failure.message.contains(
                r#"changed since it was checked (its first bytes are no longer audio; it starts with text: "<!DOCTYPE html><""#
            ),
            "{}",
            failure.message
        );
        assert!(server.requests().is_empty());
    }

    #[tokio::test]
    async fn a_file_touched_since_it_was_checked_is_not_sent() {
        let PutCase {
            server,
            path,
            target,
            ..
        } = &put_case(|_| Reply::json(200, ""), 1000).await;
        let source = checked(path);
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(source.modified.unwrap() + Duration::from_secs(1))
            .unwrap();
        let failure = uploader(Duration::from_secs(5))
            .upload(target, &source, &Arc::new(AtomicU64::new(0)), None, None)
            .await
            .unwrap_err();
        assert!(failure.file_changed, "{failure:?}");
        assert!(
            failure
                .message
                .contains("changed since it was checked (modified again after it was checked)"),
            "{}",
            failure.message
        );
        assert!(server.requests().is_empty());
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_named_pipe_put_in_place_of_the_file_fails_at_once_instead_of_waiting_for_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = audio_file(&dir, 1000);
        let source = checked(&path);
        std::fs::remove_file(&path).unwrap();
        let status = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success());
        let opening = tokio::spawn(async move { open_for_upload(source).await });
        // Not a verdict by time: if the open waits for a writer, be one, so the test ends.
        let result = match tokio::time::timeout(Duration::from_secs(20), opening).await {
            Ok(result) => result.unwrap(),
            Err(_) => {
                let _writer = std::fs::OpenOptions::new().write(true).open(&path);
                panic!("opening a named pipe waited for a writer");
            }
        };
        let failure = result.unwrap_err();
        assert!(failure.file_changed && failure.class == Class::Permanent);
        assert!(
            failure.message.contains(
                "changed since it was checked (it is now a named pipe, not a regular file)"
            ),
            "{}",
            failure.message
        );
    }

    #[test]
    fn the_form_names_the_file_by_its_extension_only() {
        assert_eq!(form_file_name(Path::new("calls/a\nb\".wav")), "audio.wav");
        assert_eq!(form_file_name(Path::new("calls/x.MP3")), "audio.mp3");
        assert_eq!(form_file_name(Path::new("calls/x.w\r\nav")), "audio");
        assert_eq!(form_file_name(Path::new("calls/noext")), "audio");
    }
}
