//! The upload (call 2): a file streamed from disk into a presigned POST or PUT with an exact
//! `Content-Length`, its SHA-256 computed on the way, bounded by idle time only (a watchdog
//! fails it when no byte has moved for `--timeout`: an upload may take an hour, but it must
//! never sit still). With a gate, the file's last byte waits until the journal holds the
//! target, so S3 cannot store a file whose conversation the journal does not know.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::Stream;
use reqwest::header::CONTENT_LENGTH;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, ReadBuf};

use super::failure::{Call, Failure, s3_failure, s3_stored, transport_failure};
use super::http::read_limited;
use crate::human;
use crate::target::UploadTarget;

/// The most of an S3 error body we read.
const MAX_S3_ANSWER: usize = 64 << 10;
/// Size of the reads from disk while uploading.
const CHUNK: usize = 256 << 10;

/// Uploads to presigned targets; shares the HTTP client (and its connections) with call 1,
/// but never sends the token.
#[derive(Clone, Debug)]
pub struct Uploader {
    http: reqwest::Client,
    /// Idle time after which an upload fails (`--timeout`).
    timeout: Duration,
}

impl Uploader {
    pub fn new(http: reqwest::Client, timeout: Duration) -> Uploader {
        Uploader { http, timeout }
    }

    /// Call 2: streams `path` (`size` bytes, as checked) to the target. `sent` counts the
    /// bytes as they go (for progress) and is wound back if the attempt fails. The file may
    /// come already opened with [`open_for_upload`] (`opened`); its last byte is held back until
    /// `gate` resolves, and if the gate fails, the upload is abandoned before that byte, so S3
    /// stores nothing.
    pub async fn upload(
        &self,
        target: &UploadTarget,
        path: &Path,
        size: u64,
        sent: &Arc<AtomicU64>,
        opened: Option<Opened>,
        mut gate: Option<Gate>,
    ) -> Result<Uploaded, Failure> {
        let opened = match opened {
            Some(opened) => opened,
            None => open_for_upload(path, size).await?,
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
        });
        let body = reqwest::Body::wrap_stream(FileStream {
            remaining: size - opened.first.len() as u64,
            file: opened.file,
            next: Some(opened.first).filter(|first| !first.is_empty()),
            buffer: Vec::new(),
            watch: watch.clone(),
            gate,
            held: None,
        });
        let request = match target {
            UploadTarget::Post { url, fields } => {
                let mut form = reqwest::multipart::Form::new();
                for (name, value) in fields {
                    form = form.text(name.clone(), value.clone());
                }
                let part = reqwest::multipart::Part::stream_with_length(body, size)
                    .file_name(form_file_name(path))
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
    file: tokio::fs::File,
    first: Bytes,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("first", &self.first.len())
            .finish()
    }
}

/// Opens `path`, checks that it still has the `size` bytes validation saw, and reads its
/// first chunk, in one trip to the blocking pool: the pool does it while call 1 is in flight,
/// so that no disk access is left between call 1's answer and the upload's first byte.
pub async fn open_for_upload(path: &Path, size: u64) -> Result<Opened, Failure> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || open_blocking(&path, size))
        .await
        .unwrap_or_else(|err| {
            Err(Failure::permanent(
                Call::Upload,
                format!("cannot open the file: {err}"),
            ))
        })
}

fn open_blocking(path: &Path, size: u64) -> Result<Opened, Failure> {
    use std::io::Read as _;
    let failed = |what: &str, err: std::io::Error| {
        Failure::permanent(
            Call::Upload,
            format!("cannot {what} {}: {err}", path.display()),
        )
    };
    let mut file = std::fs::File::open(path).map_err(|err| failed("open", err))?;
    let now = file.metadata().map_err(|err| failed("read", err))?.len();
    let changed = |now: u64| {
        Failure::permanent(
            Call::Upload,
            format!(
                "{} changed since it was checked ({size} bytes then, {now} now)",
                path.display()
            ),
        )
    };
    if now != size {
        return Err(changed(now));
    }
    let mut first = vec![0; usize::try_from(size).unwrap_or(usize::MAX).min(CHUNK)];
    let mut filled = 0;
    while filled < first.len() {
        match file.read(&mut first[filled..]) {
            Ok(0) => return Err(changed(filled as u64)),
            Ok(n) => filled += n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(failed("read", err)),
        }
    }
    Ok(Opened {
        file: tokio::fs::File::from_std(file),
        first: Bytes::from(first),
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
    file: tokio::fs::File,
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
}

impl FileStream {
    /// Sends a chunk on, holding back the file's last byte if there is a gate.
    fn emit(
        &mut self,
        mut chunk: Bytes,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<std::io::Result<Bytes>>> {
        self.watch.record(&chunk);
        if self.remaining == 0 && self.next.is_none() && self.gate.is_some() {
            self.held = Some(chunk.split_off(chunk.len() - 1));
            if chunk.is_empty() {
                return self.poll_held(cx);
            }
        }
        Poll::Ready(Some(Ok(chunk)))
    }

    fn poll_held(&mut self, cx: &mut TaskContext<'_>) -> Poll<Option<std::io::Result<Bytes>>> {
        let Some(gate) = self.gate.as_mut() else {
            return Poll::Ready(self.held.take().map(Ok));
        };
        match gate.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(result) => {
                self.gate = None;
                match result {
                    Ok(()) => Poll::Ready(self.held.take().map(Ok)),
                    Err(err) => {
                        self.held = None;
                        Poll::Ready(Some(Err(std::io::Error::other(gate_failed(&err)))))
                    }
                }
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
        if let Some(chunk) = this.next.take() {
            return this.emit(chunk, cx);
        }
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        if this.buffer.is_empty() {
            this.buffer = vec![0; CHUNK];
        }
        let want = usize::try_from(this.remaining)
            .unwrap_or(usize::MAX)
            .min(this.buffer.len());
        let mut buf = ReadBuf::new(&mut this.buffer[..want]);
        match Pin::new(&mut this.file).poll_read(cx, &mut buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(err)) => Poll::Ready(Some(Err(err))),
            Poll::Ready(Ok(())) if buf.filled().is_empty() => {
                Poll::Ready(Some(Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "the file shrank while it was read ({} bytes missing)",
                        this.remaining
                    ),
                ))))
            }
            Poll::Ready(Ok(())) => {
                let chunk = Bytes::copy_from_slice(buf.filled());
                this.remaining -= chunk.len() as u64;
                this.emit(chunk, cx)
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

    fn uploader(timeout: Duration) -> Uploader {
        Uploader::new(http_client(timeout, None, true).unwrap(), timeout)
    }

    /// A file of `size` bytes with varied content, and its SHA-256.
    fn audio_file(dir: &tempfile::TempDir, size: usize) -> (PathBuf, String) {
        let bytes: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
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
            .upload(&target, &path, 300_000, &sent, None, None)
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
                &path,
                1_000_003,
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
                .upload(target, path, 1000, &Arc::new(AtomicU64::new(0)), None, None)
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
            .upload(target, path, 1000, &sent, None, None)
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
        }, 10)
        .await;
        let failure = uploader(Duration::from_secs(5))
            .upload(
                &case.target,
                &case.path,
                10,
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
            .upload(&case.target, &case.path, size as u64, &sent, None, None)
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
                &case.path,
                size as u64,
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
                    .upload(&target, &path, 300_001, &sent, None, Some(gate))
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
        let opened = open_for_upload(path, 1000).await.unwrap();
        let (open, gate) = gate();
        open.send(Err("disk full".into())).unwrap();
        let failure = uploader(Duration::from_secs(5))
            .upload(
                target,
                path,
                1000,
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
            .upload(target, path, 99, &Arc::new(AtomicU64::new(0)), None, None)
            .await
            .unwrap_err();
        assert_eq!(failure.class, Class::Permanent);
        assert!(
            failure
                .message
                .ends_with("changed since it was checked (99 bytes then, 100 now)"),
            "{}",
            failure.message
        );
        assert!(server.requests().is_empty());
    }

    #[test]
    fn the_form_names_the_file_by_its_extension_only() {
        assert_eq!(form_file_name(Path::new("calls/a\nb\".wav")), "audio.wav");
        assert_eq!(form_file_name(Path::new("calls/x.MP3")), "audio.mp3");
        assert_eq!(form_file_name(Path::new("calls/x.w\r\nav")), "audio");
        assert_eq!(form_file_name(Path::new("calls/noext")), "audio");
    }
}
