//! A stand-in Prometheus for the unit tests: one request per connection,
//! answered as the test says; it records the decoded request targets and
//! the most requests it held open at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the server answers one request.
pub(super) enum Reply {
    /// This status and body, at once.
    Now(u16, String),
    /// This status and body once `n` requests are open together, or after
    /// 50 ms: a client that keeps fewer than `n` open waits each time.
    Crowded(u16, String, usize),
    /// No answer; the connection stays open.
    Never,
}

pub(super) struct TestServer {
    pub(super) address: String,
    state: Arc<State>,
}

#[derive(Default)]
struct State {
    seen: Mutex<Vec<String>>,
    open: AtomicUsize,
    most_open: AtomicUsize,
}

type Answer = Arc<dyn Fn(&str) -> Reply + Send + Sync>;

pub(super) async fn start(answer: impl Fn(&str) -> Reply + Send + Sync + 'static) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let state = Arc::new(State::default());
    let (answer, shared): (Answer, _) = (Arc::new(answer), state.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, answer.clone(), shared.clone()));
        }
    });
    TestServer { address, state }
}

async fn serve(mut stream: TcpStream, answer: Answer, state: Arc<State>) {
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&request);
    let target = decode(text.split_whitespace().nth(1).unwrap_or(""));
    let open = state.open.fetch_add(1, Ordering::SeqCst) + 1;
    state.most_open.fetch_max(open, Ordering::SeqCst);
    state.seen.lock().unwrap().push(target.clone());
    let (status, body) = match answer(&target) {
        Reply::Now(status, body) => (status, body),
        Reply::Crowded(status, body, n) => {
            let start = tokio::time::Instant::now();
            while state.open.load(Ordering::SeqCst) < n && start.elapsed() < Duration::from_millis(50) {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (status, body)
        }
        Reply::Never => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            return;
        }
    };
    // Counted out before the answer leaves: the client cannot send its next
    // query before this one stops counting.
    state.open.fetch_sub(1, Ordering::SeqCst);
    let response = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
}

impl TestServer {
    /// The decoded request targets, in arrival order.
    pub(super) fn seen(&self) -> Vec<String> {
        self.state.seen.lock().unwrap().clone()
    }

    pub(super) fn queries(&self) -> usize {
        self.state.seen.lock().unwrap().len()
    }

    /// The most requests the server held unanswered at once.
    pub(super) fn most_open(&self) -> usize {
        self.state.most_open.load(Ordering::SeqCst)
    }

    pub(super) async fn wait_for_queries(&self, n: usize) {
        while self.queries() < n {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// `application/x-www-form-urlencoded` back to text.
fn decode(s: &str) -> String {
    let mut out = Vec::new();
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex: String = bytes.by_ref().take(2).map(char::from).collect();
                out.push(u8::from_str_radix(&hex, 16).unwrap());
            }
            b => out.push(b),
        }
    }
    String::from_utf8(out).unwrap()
}
