//! Stand-in servers on plain threads, for the end-to-end tests that run the real binary
//! against what the sandbox never does on its own: [`Scripted`] answers each request from a
//! script (a 400 for a row the client finds valid, a target that expires once), [`Hostile`]
//! writes raw bytes no well-behaved server would (an endless body, a broken head).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A stand-in for Voyc that answers from a script, for what the sandbox never does on its
/// own: a 400 from call 1 for a row the client finds valid, and a target that expires once.
pub struct Scripted {
    pub url: String,
    /// Every request line, in the order read.
    pub seen: Arc<Mutex<Vec<String>>>,
}

impl Scripted {
    /// `answer(request line, body)` gives (status, content type, body) for each request.
    pub fn start(
        answer: impl Fn(&str, &str) -> (u16, &'static str, String) + Send + Sync + 'static,
    ) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let answer = Arc::new(answer);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let answer = answer.clone();
                let log = log.clone();
                std::thread::spawn(move || serve_scripted(stream, &*answer, &log));
            }
        });
        Scripted { url, seen }
    }
}

fn serve_scripted(
    stream: TcpStream,
    answer: &dyn Fn(&str, &str) -> (u16, &'static str, String),
    log: &Mutex<Vec<String>>,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).unwrap();
            if header == "\r\n" {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let body = String::from_utf8_lossy(&body).into_owned();
        log.lock().unwrap().push(request_line.trim().to_string());
        let (status, content_type, text) = answer(request_line.trim(), &body);
        let response = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// A stand-in server that answers every request with raw bytes from a script, for what no
/// well-behaved server does. `answer(n, request line)` gives the n-th answer (from 0).
pub struct Hostile {
    pub url: String,
    /// Requests read so far.
    pub requests: Arc<AtomicUsize>,
}

pub enum Raw {
    /// These bytes, then the connection closes.
    Bytes(Vec<u8>),
    /// A 200 head with chunked encoding, then `chunk` every `every`, for ever.
    Endless { chunk: Vec<u8>, every: Duration },
}

impl Hostile {
    pub fn start(answer: impl Fn(usize, &str, &str) -> Raw + Send + Sync + 'static) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let answer = Arc::new(answer);
        let base = url.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (answer, counter, base) = (answer.clone(), counter.clone(), base.clone());
                std::thread::spawn(move || {
                    let _ = serve_hostile(stream, &*answer, &counter, &base);
                });
            }
        });
        Hostile { url, requests }
    }
}

fn serve_hostile(
    stream: TcpStream,
    answer: &dyn Fn(usize, &str, &str) -> Raw,
    counter: &AtomicUsize,
    base: &str,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header)?;
        if header == "\r\n" || header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let n = counter.fetch_add(1, Ordering::SeqCst);
    match answer(n, line.trim(), base) {
        Raw::Bytes(bytes) => writer.write_all(&bytes),
        Raw::Endless { chunk, every } => {
            writer.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
            )?;
            loop {
                writer.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())?;
                writer.write_all(&chunk)?;
                writer.write_all(b"\r\n")?;
                std::thread::sleep(every);
            }
        }
    }
}

/// A complete HTTP/1.1 answer that closes the connection: `status` is `200 OK`, `headers` each
/// end in `\r\n`.
pub fn http(status: &str, headers: &str, body: &[u8]) -> Raw {
    let mut bytes = format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(body);
    Raw::Bytes(bytes)
}
