//! The S3 side: presigned POST (multipart form) and PUT uploads under `{base}/s3/{bucket}`,
//! checked as S3 checks them and answered with S3's status codes and XML errors. Bodies
//! stream to `{data_dir}/{bucket}/{key}` through a temporary file, hashed on the way; no
//! upload is ever held in memory whole.

use std::io::{self, BufWriter, Write as _};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};

use axum::Extension;
use axum::body::{Body, BodyDataStream, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use futures_util::{Stream, StreamExt as _};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::faults::Fault;
use crate::gate::Passage;
use crate::s3_error::{S3Error, xml_text};
use crate::shared::{ConnectionHandle, Shared};
use crate::sigv4::{PostGrant, uri_encode};

/// How much of a refused request's body is read (and thrown away) so that the client, still
/// sending, gets to read the answer; past this the connection is closed after the answer.
const DRAIN_LIMIT: u64 = 64 << 20;
/// S3's limit on the form fields before the file part of a POST.
const MAX_PRE_DATA: usize = 20 << 10;
/// Where in its body a dropped upload is cut, at most.
const MAX_CUT_AFTER: u64 = 8 << 20;

/// The request body, counted as it is read; when an `--s3-drop-rate` fault is due, it asks
/// the connection to close once enough has been read, and never yields again.
struct Metered {
    inner: BodyDataStream,
    read: u64,
    polled: bool,
    /// Set after each chunk: the next poll yields once before reading more (see `poll_next`).
    just_read: bool,
    cut_after: Option<u64>,
    connection: ConnectionHandle,
    shared: Arc<Shared>,
}

impl Metered {
    fn new(body: Body, shared: Arc<Shared>, connection: ConnectionHandle) -> Metered {
        Metered {
            inner: body.into_data_stream(),
            read: 0,
            polled: false,
            just_read: false,
            cut_after: None,
            connection,
            shared,
        }
    }

    /// Arranges for the connection to drop part-way through a body of `length` bytes.
    fn drop_midway(&mut self, length: u64) {
        self.cut_after = Some((length / 2).clamp(1, MAX_CUT_AFTER));
    }

    /// Reads and discards the rest of the body, within [`DRAIN_LIMIT`].
    async fn drain(&mut self) {
        let start = self.read;
        while self.read - start < DRAIN_LIMIT {
            match self.next().await {
                Some(Ok(_)) => {}
                _ => break,
            }
        }
    }
}

impl Stream for Metered {
    type Item = Result<Bytes, axum::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.cut_after.is_some_and(|cut| this.read >= cut) {
            // The connection task drops this request with its connection.
            return Poll::Pending;
        }
        this.polled = true;
        // multer reads whatever is ready into one growing buffer before parsing it; under load
        // that is megabytes, reallocated and copied as it grows. Yielding after every chunk
        // keeps its buffer at one chunk and halves the sandbox's CPU per uploaded byte.
        if std::mem::take(&mut this.just_read) {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let item = ready!(this.inner.poll_next_unpin(cx));
        if let Some(Ok(chunk)) = &item {
            this.just_read = true;
            this.read += chunk.len() as u64;
            if this.cut_after.is_some_and(|cut| this.read >= cut) {
                this.shared.faults.count(Fault::S3Drop);
                this.connection.drop_connection();
                return Poll::Pending;
            }
        }
        Poll::Ready(item)
    }
}

/// How much is gathered before it is handed to the writer: fewer, larger hand-overs cost
/// far fewer thread wake-ups than one per network read.
const BATCH_BYTES: usize = 1 << 20;

enum Chunk {
    Data(Vec<Bytes>),
    /// All data is in: move the file into place.
    Commit,
}

/// An upload on its way to disk: a blocking task hashes and writes the chunks it is sent to a
/// temporary file beside the target, and moves the file into place only on commit (otherwise
/// it is removed). Beside, because a rename within one folder takes no filesystem-wide lock.
struct Sink {
    chunks: mpsc::Sender<Chunk>,
    batch: Vec<Bytes>,
    batch_bytes: usize,
    writer: JoinHandle<io::Result<Option<(u64, String)>>>,
}

impl Sink {
    fn start(target: PathBuf) -> Sink {
        let (chunks, mut incoming) = mpsc::channel::<Chunk>(2);
        let writer = tokio::task::spawn_blocking(move || {
            let folder = target.parent().expect("an object path has a folder");
            // Looking first is cheap; creating takes the parent folder's lock every time.
            if !folder.is_dir() {
                std::fs::create_dir_all(folder)?;
            }
            let file = tempfile::Builder::new()
                .prefix(".upload-")
                .tempfile_in(folder)?;
            let mut out = BufWriter::with_capacity(256 << 10, file);
            let mut hasher = Sha256::new();
            let mut bytes = 0u64;
            while let Some(chunk) = incoming.blocking_recv() {
                match chunk {
                    Chunk::Data(batch) => {
                        for data in batch {
                            hasher.update(&data);
                            out.write_all(&data)?;
                            bytes += data.len() as u64;
                        }
                    }
                    Chunk::Commit => {
                        let file = out.into_inner().map_err(|e| e.into_error())?;
                        file.persist(&target).map_err(|e| e.error)?;
                        return Ok(Some((bytes, hex::encode(hasher.finalize()))));
                    }
                }
            }
            Ok(None)
        });
        Sink {
            chunks,
            batch: Vec::new(),
            batch_bytes: 0,
            writer,
        }
    }

    async fn write(&mut self, data: Bytes) -> Result<(), S3Error> {
        self.batch_bytes += data.len();
        self.batch.push(data);
        if self.batch_bytes < BATCH_BYTES {
            return Ok(());
        }
        self.flush().await
    }

    async fn flush(&mut self) -> Result<(), S3Error> {
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        if batch.is_empty() || self.chunks.send(Chunk::Data(batch)).await.is_ok() {
            return Ok(());
        }
        // The writer stopped: it failed.
        match (&mut self.writer).await {
            Ok(Err(err)) => Err(storage_error(&err)),
            _ => Err(S3Error::internal()),
        }
    }

    /// Moves the file into place; returns its size and SHA-256.
    async fn commit(mut self) -> Result<(u64, String), S3Error> {
        self.flush().await?;
        let _ = self.chunks.send(Chunk::Commit).await;
        drop(self.chunks);
        match self.writer.await {
            Ok(Ok(Some(written))) => Ok(written),
            Ok(Err(err)) => Err(storage_error(&err)),
            _ => Err(S3Error::internal()),
        }
    }
}

/// An upload the sandbox itself could not store (a full disk, no file descriptor left) is
/// its own failure, not the client's: say why on stderr, where its operator looks.
fn log_failure<T>(shared: &Shared, result: &Result<T, S3Error>) {
    if let Err(err) = result
        && err.status.is_server_error()
        && shared.config.log_errors
        && let Some(detail) = err.detail()
    {
        eprintln!(
            "sandbox: answered {} {}: {detail}",
            err.status.as_u16(),
            err.code
        );
    }
}

fn storage_error(err: &io::Error) -> S3Error {
    S3Error::internal().with(
        "Detail",
        format!("the sandbox could not store the upload: {err}"),
    )
}

/// Where an object is stored; `None` for a key that would leave the bucket's folder.
fn object_path(shared: &Shared, key: &str) -> Result<PathBuf, S3Error> {
    let mut path = shared.data_dir.join(&shared.bucket);
    for part in key.split('/') {
        if part.is_empty() || part == "." || part == ".." || part.contains('\\') {
            return Err(S3Error::invalid_argument(
                "The sandbox stores objects as files and cannot store this key.",
            )
            .with("ArgumentName", "key")
            .with("ArgumentValue", key));
        }
        path.push(part);
    }
    Ok(path)
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn expects_continue(headers: &HeaderMap) -> bool {
    headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// Answers, after reading what is left of the body so the client can read the answer — unless
/// the client is waiting for `100 Continue` and has not sent the body at all.
async fn finish(
    body: &mut Metered,
    headers: &HeaderMap,
    result: Result<Response, S3Error>,
) -> Response {
    if body.polled || !expects_continue(headers) {
        body.drain().await;
    }
    result.unwrap_or_else(IntoResponse::into_response)
}

fn object_url(shared: &Shared, headers: &HeaderMap, key: &str) -> String {
    format!(
        "http://{}/s3/{}/{}",
        shared.request_host(headers),
        uri_encode(&shared.bucket, false),
        uri_encode(key, true)
    )
}

/// `POST {base}/s3/{bucket}`: a browser-style form upload.
pub(crate) async fn post_object(
    State(shared): State<Arc<Shared>>,
    Path(bucket): Path<String>,
    Extension(connection): Extension<ConnectionHandle>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    shared.delay().await;
    shared.s3_requests.fetch_add(1, Ordering::Relaxed);
    let mut body = Metered::new(body, shared.clone(), connection);
    if shared.gate.s3() == Passage::Down {
        return finish(&mut body, &headers, Err(S3Error::service_unavailable())).await;
    }
    let draw = shared.faults.draw_s3();
    let result = if draw.fail {
        shared.faults.count(Fault::S3Fail);
        Err(S3Error::slow_down())
    } else {
        if let (true, Some(length)) = (draw.drop, content_length(&headers)) {
            body.drop_midway(length);
        }
        receive_post(&shared, &bucket, &headers, &mut body).await
    };
    log_failure(&shared, &result);
    finish(&mut body, &headers, result).await
}

async fn read_field(mut field: multer::Field<'_>, pre_data: &mut usize) -> Result<String, S3Error> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(|_| S3Error::malformed_post())? {
        *pre_data += chunk.len();
        if *pre_data > MAX_PRE_DATA {
            return Err(S3Error::new(
                StatusCode::BAD_REQUEST,
                "MaxPostPreDataLengthExceeded",
                "Your POST request fields preceeding the upload file was too large.",
            )
            .with("MaxPostPreDataLength", MAX_PRE_DATA.to_string()));
        }
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes).map_err(|_| S3Error::malformed_post())
}

async fn receive_post(
    shared: &Shared,
    bucket: &str,
    headers: &HeaderMap,
    body: &mut Metered,
) -> Result<Response, S3Error> {
    if bucket != shared.bucket {
        return Err(S3Error::no_such_bucket(bucket));
    }
    if content_length(headers).is_none() {
        return Err(S3Error::missing_content_length());
    }
    let boundary = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| multer::parse_boundary(v).ok())
        .ok_or_else(|| {
            S3Error::new(
                StatusCode::PRECONDITION_FAILED,
                "PreconditionFailed",
                "At least one of the pre-conditions you specified did not hold",
            )
            .with(
                "Condition",
                "Bucket POST must be of the enclosure-type multipart/form-data",
            )
        })?;
    let mut multipart = multer::Multipart::new(body, boundary);
    let mut form = Vec::new();
    let mut pre_data = 0;
    let mut file = None;
    // S3 reads fields up to the file part; whatever follows the file is ignored.
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|_| S3Error::malformed_post())?
    {
        let name = field.name().unwrap_or_default().to_ascii_lowercase();
        if name == "file" {
            file = Some(field);
            break;
        }
        let value = read_field(field, &mut pre_data).await?;
        form.push((name, value));
    }
    let grant = shared
        .credentials
        .check_post_form(bucket, &form, Utc::now())?;
    let Some(mut file) = file else {
        return Err(S3Error::invalid_argument(
            "POST requires exactly one file upload per request.",
        )
        .with("ArgumentName", "file")
        .with("ArgumentValue", "0"));
    };
    let target = object_path(shared, &grant.key)?;
    let max = grant.max_bytes.min(shared.config.max_upload_bytes);
    let mut sink = Sink::start(target);
    let mut size = 0u64;
    while let Some(chunk) = file.chunk().await.map_err(|_| S3Error::malformed_post())? {
        size += chunk.len() as u64;
        if size > max {
            drop(sink);
            // Count the rest (within reason) to report the size that was proposed.
            while size <= max.saturating_add(DRAIN_LIMIT) {
                match file.chunk().await {
                    Ok(Some(chunk)) => size += chunk.len() as u64,
                    _ => break,
                }
            }
            return Err(S3Error::entity_too_large(size, max));
        }
        sink.write(chunk).await?;
    }
    if size < grant.min_bytes {
        return Err(S3Error::entity_too_small(size, grant.min_bytes));
    }
    let (bytes, sha256) = sink.commit().await?;
    shared
        .store
        .record_upload(&grant.key, bytes, sha256.clone());
    Ok(post_success(shared, headers, bucket, &grant, &sha256))
}

/// 204 by default; 200, or 201 with a `<PostResponse>`, when `success_action_status` asks.
fn post_success(
    shared: &Shared,
    headers: &HeaderMap,
    bucket: &str,
    grant: &PostGrant,
    sha256: &str,
) -> Response {
    let location = object_url(shared, headers, &grant.key);
    let etag = format!("\"{sha256}\"");
    let mut response = match grant.success_action_status {
        Some(200) => StatusCode::OK.into_response(),
        Some(201) => (
            StatusCode::CREATED,
            [(header::CONTENT_TYPE, "application/xml")],
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<PostResponse><Location>{}</Location>\
                 <Bucket>{}</Bucket><Key>{}</Key><ETag>{}</ETag></PostResponse>",
                xml_text(&location),
                xml_text(bucket),
                xml_text(&grant.key),
                xml_text(&etag)
            ),
        )
            .into_response(),
        _ => StatusCode::NO_CONTENT.into_response(),
    };
    let response_headers = response.headers_mut();
    for (name, value) in [(header::ETAG, etag), (header::LOCATION, location)] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response_headers.insert(name, value);
        }
    }
    response
}

/// `PUT {base}/s3/{bucket}/{key}?X-Amz-...`: a presigned PUT, the bytes as the body.
pub(crate) async fn put_object(
    State(shared): State<Arc<Shared>>,
    Path((bucket, key)): Path<(String, String)>,
    Query(query): Query<Vec<(String, String)>>,
    Extension(connection): Extension<ConnectionHandle>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    shared.delay().await;
    shared.s3_requests.fetch_add(1, Ordering::Relaxed);
    let mut body = Metered::new(body, shared.clone(), connection);
    if shared.gate.s3() == Passage::Down {
        return finish(&mut body, &headers, Err(S3Error::service_unavailable())).await;
    }
    let draw = shared.faults.draw_s3();
    let result = if draw.fail {
        shared.faults.count(Fault::S3Fail);
        Err(S3Error::slow_down())
    } else {
        if let (true, Some(length)) = (draw.drop, content_length(&headers)) {
            body.drop_midway(length);
        }
        receive_put(&shared, &bucket, &key, &query, &headers, &mut body).await
    };
    log_failure(&shared, &result);
    finish(&mut body, &headers, result).await
}

async fn receive_put(
    shared: &Shared,
    bucket: &str,
    key: &str,
    query: &[(String, String)],
    headers: &HeaderMap,
    body: &mut Metered,
) -> Result<Response, S3Error> {
    if bucket != shared.bucket {
        return Err(S3Error::no_such_bucket(bucket));
    }
    let path = format!(
        "/s3/{}/{}",
        uri_encode(bucket, false),
        uri_encode(key, true)
    );
    shared
        .credentials
        .check_presigned("PUT", &path, query, headers, Utc::now())?;
    let length = content_length(headers).ok_or_else(S3Error::missing_content_length)?;
    let max = shared.config.max_upload_bytes;
    if length > max {
        return Err(S3Error::entity_too_large(length, max));
    }
    let target = object_path(shared, key)?;
    let mut sink = Sink::start(target);
    let mut received = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|_| S3Error::incomplete_body())?;
        received += chunk.len() as u64;
        sink.write(chunk).await?;
    }
    if received != length {
        return Err(S3Error::incomplete_body());
    }
    let (bytes, sha256) = sink.commit().await?;
    shared.store.record_upload(key, bytes, sha256.clone());
    let mut response = StatusCode::OK.into_response();
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{sha256}\"")) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    Ok(response)
}
