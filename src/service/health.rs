//! `serve --http ADDR`: `/healthz`, `/readyz` and `/metrics` over plain
//! HTTP/1.1, one request per connection, written by hand on a tokio
//! listener (no HTTP server in the tree). Bounded: at most
//! [`MAX_CONNECTIONS`] at once, a request head of at most [`MAX_HEAD`]
//! bytes within [`REQUEST_TIMEOUT`]; anything else is answered 400, 404
//! or 405 and closed. Bind it to a loopback or cluster-internal address:
//! it answers anyone who reaches it, and tells them rollout names and
//! reasons.

use super::Shared;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Connections answered at once; more wait in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 32;
/// The longest request line and headers read.
pub const MAX_HEAD: usize = 8 * 1024;
/// A request must be read and answered within this.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Listens on `addr` (`127.0.0.1:9464`, `[::1]:9464`, `0.0.0.0:9464`).
pub async fn bind(addr: &str) -> Result<TcpListener, String> {
    TcpListener::bind(addr).await.map_err(|e| format!("--http {addr}: cannot listen: {e}"))
}

/// Answers requests until the task is dropped.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else { return };
        match listener.accept().await {
            Ok((stream, _)) => {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(REQUEST_TIMEOUT, answer(stream, &shared)).await;
                    drop(permit);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "http: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// A response: status, content type, body.
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Response {
    fn text(status: u16, body: impl Into<String>) -> Response {
        Response { status, content_type: "text/plain; charset=utf-8", body: body.into() }
    }
}

/// What `method path` gets.
pub fn route(method: &str, path: &str, shared: &Shared) -> Response {
    let path = path.split('?').next().unwrap_or(path);
    if !matches!(path, "/healthz" | "/readyz" | "/metrics") {
        return Response::text(404, "not found: try /healthz, /readyz or /metrics\n");
    }
    if method != "GET" && method != "HEAD" {
        return Response::text(405, "only GET and HEAD\n");
    }
    match path {
        "/healthz" => match shared.liveness() {
            Ok(text) => Response::text(200, text),
            Err(text) => Response::text(503, text),
        },
        "/readyz" => match shared.readiness() {
            Ok(()) => Response::text(200, "ready\n"),
            Err(reasons) => Response::text(503, format!("not ready:\n{}\n", reasons.join("\n"))),
        },
        _ => Response { status: 200, content_type: super::metrics::CONTENT_TYPE, body: shared.metrics() },
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    }
}

/// Reads one request head and answers it.
async fn answer(mut stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let complete = loop {
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            break true;
        }
        if head.len() > MAX_HEAD {
            break false;
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break !head.is_empty() && head.contains(&b'\n');
        }
        head.extend_from_slice(&buf[..n]);
    };
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.trim_end().split(' ');
    let (method, path, version) = (parts.next(), parts.next(), parts.next());
    let response = match (complete, method, path, version) {
        (false, ..) if head.len() > MAX_HEAD => Response::text(431, "request head too large\n"),
        (true, Some(method), Some(path), Some(v)) if v.starts_with("HTTP/1.") && path.starts_with('/') => {
            route(method, path, shared)
        }
        _ => Response::text(400, "bad request\n"),
    };
    let head_only = method == Some("HEAD");
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        response.status,
        reason_phrase(response.status),
        response.content_type,
        response.body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(response.body.as_bytes());
    }
    stream.write_all(&out).await?;
    stream.shutdown().await
}
