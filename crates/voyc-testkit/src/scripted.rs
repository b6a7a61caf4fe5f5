//! A scripted HTTP/1.1 server on 127.0.0.1, on the caller's tokio runtime, for the client's
//! unit tests: it answers, trickles, stays silent, resets, or stops reading the body, as each
//! test asks, and records every request it read in full.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use url::Url;

/// A request's line and headers, which is what a script decides on.
#[derive(Clone, Debug)]
pub struct Head {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A request read in full.
#[derive(Clone, Debug)]
pub struct Request {
    pub head: Head,
    pub body: Vec<u8>,
}

/// What the server does with one request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// Reads the body, answers, keeps the connection for the next request.
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Reads the body, then writes a 200 JSON answer one byte every `every`.
    Trickle { body: Vec<u8>, every: Duration },
    /// Reads the body and never answers.
    Silent,
    /// Reads the body, then resets the connection.
    Reset,
    /// Never reads the body, never answers.
    StallBody,
    /// Reads the body `chunk` bytes every `every`, then answers `status` with no body.
    SlowRead {
        chunk: usize,
        every: Duration,
        status: u16,
    },
}

impl Reply {
    pub fn json(status: u16, body: &str) -> Reply {
        Reply::Respond {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.as_bytes().to_vec(),
        }
    }

    pub fn with_header(self, name: &str, value: &str) -> Reply {
        match self {
            Reply::Respond {
                status,
                mut headers,
                body,
            } => {
                headers.push((name.into(), value.into()));
                Reply::Respond {
                    status,
                    headers,
                    body,
                }
            }
            other => other,
        }
    }
}

type Script = Arc<dyn Fn(&Head) -> Reply + Send + Sync>;

pub struct Server {
    pub url: Url,
    pub requests: Arc<Mutex<Vec<Request>>>,
}

impl Server {
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

/// Starts a server on a free port; `script` decides each reply.
pub async fn serve(script: impl Fn(&Head) -> Reply + Send + Sync + 'static) -> Server {
    // A small receive buffer, so that a server which stops reading stops the client soon
    // (Linux lets loopback buffers grow to 32 MiB otherwise).
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(128 << 10).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(64).unwrap();
    let url = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let script: Script = Arc::new(script);
    let log = requests.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(connection(stream, script.clone(), log.clone()));
        }
    });
    Server { url, requests }
}

/// A port with nothing listening on it.
pub async fn closed_port_url() -> Url {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    drop(listener);
    url
}

async fn connection(mut stream: TcpStream, script: Script, log: Arc<Mutex<Vec<Request>>>) {
    let mut buffer = Vec::new();
    loop {
        let Some((head, body_start)) = read_head(&mut stream, &mut buffer).await else {
            return;
        };
        buffer.drain(..body_start);
        let length: usize = head
            .header("content-length")
            .map(|v| v.parse().unwrap())
            .unwrap_or(0);
        let reply = script(&head);
        match reply {
            Reply::StallBody => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
            Reply::SlowRead {
                chunk,
                every,
                status,
            } => {
                while buffer.len() < length {
                    tokio::time::sleep(every).await;
                    let goal = (buffer.len() + chunk).min(length);
                    if !read_exact_into(&mut stream, &mut buffer, goal).await {
                        return;
                    }
                }
                let body: Vec<u8> = buffer.drain(..length).collect();
                log.lock().unwrap().push(Request { head, body });
                let answer = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
                if stream.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
                continue;
            }
            _ => {}
        }
        if !read_exact_into(&mut stream, &mut buffer, length).await {
            return;
        }
        let body: Vec<u8> = buffer.drain(..length).collect();
        log.lock().unwrap().push(Request { head, body });
        match reply {
            Reply::Respond {
                status,
                headers,
                body,
            } => {
                let mut answer =
                    format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n", body.len());
                for (name, value) in headers {
                    answer.push_str(&format!("{name}: {value}\r\n"));
                }
                answer.push_str("\r\n");
                let mut bytes = answer.into_bytes();
                bytes.extend_from_slice(&body);
                if stream.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            Reply::Trickle { body, every } => {
                let mut answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                answer.extend_from_slice(&body);
                for byte in answer {
                    if stream.write_all(&[byte]).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(every).await;
                }
            }
            Reply::Silent => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
            Reply::Reset => {
                // Linger 0 makes the close a reset; it does not block on drop.
                #[allow(deprecated)]
                let _ = stream.set_linger(Some(Duration::ZERO));
                return;
            }
            Reply::StallBody | Reply::SlowRead { .. } => unreachable!(),
        }
    }
}

async fn read_head(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<(Head, usize)> {
    let mut scratch = [0u8; 8192];
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let text = String::from_utf8_lossy(&buffer[..end]).into_owned();
            let mut lines = text.split("\r\n");
            let mut first = lines.next()?.split(' ');
            let method = first.next()?.to_string();
            let target = first.next()?.to_string();
            let headers = lines
                .filter_map(|line| line.split_once(':'))
                .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
                .collect();
            return Some((
                Head {
                    method,
                    target,
                    headers,
                },
                end + 4,
            ));
        }
        let n = stream.read(&mut scratch).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&scratch[..n]);
    }
}

async fn read_exact_into(stream: &mut TcpStream, buffer: &mut Vec<u8>, length: usize) -> bool {
    let mut scratch = vec![0u8; 64 << 10];
    while buffer.len() < length {
        match stream.read(&mut scratch).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buffer.extend_from_slice(&scratch[..n]),
        }
    }
    true
}
