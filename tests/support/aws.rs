//! AWS on loopback for the ECS tests: `moto_server` (installed by
//! scripts/setup) and a tiny fake that answers each operation with a
//! recorded response and keeps every request it got; put in front of
//! moto, it answers what moto cannot and hands moto the rest.
#![allow(dead_code)]

use super::{eventually, free_port, program, Proc};
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ecs::config::{Credentials, SharedCredentialsProvider};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

pub const REGION: &str = "us-east-1";

/// An SDK configuration for `endpoint`: fake credentials, no retries, short timeouts.
pub fn sdk(endpoint: &str) -> SdkConfig {
    let credentials = Credentials::new("testing", "testing", None, None, "flightdeck-tests");
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .http_client(flightdeck::backend::ecs::http_client())
        .retry_config(RetryConfig::disabled())
        .timeout_config(TimeoutConfig::builder().operation_attempt_timeout(Duration::from_secs(10)).build())
        .build()
}

/// A `moto_server` on a free loopback port, killed on drop.
pub struct Moto {
    pub url: String,
    _proc: Proc,
    _dir: tempfile::TempDir,
}

impl Moto {
    pub async fn start() -> Moto {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let moto = program("moto_server");
        let proc =
            Proc::spawn("moto", moto.to_str().unwrap(), &["-H", "127.0.0.1", "-p", &port.to_string()], dir.path());
        let url = format!("http://127.0.0.1:{port}");
        let addr = format!("127.0.0.1:{port}");
        eventually(Duration::from_secs(30), "moto_server to listen", async || TcpStream::connect(&addr).await.is_ok())
            .await;
        Moto { url, _proc: proc, _dir: dir }
    }

    pub fn sdk(&self) -> SdkConfig {
        sdk(&self.url)
    }

    /// The default VPC's id, two of its subnets and its default security
    /// group (EC2, sent by hand: the tests need no EC2 SDK for two calls).
    pub async fn default_network(&self) -> (String, Vec<String>, String) {
        let subnets = self.ec2("DescribeSubnets").await;
        let security_groups = self.ec2("DescribeSecurityGroups").await;
        let values = |xml: &str, tag: &str| -> Vec<String> {
            xml.split(&format!("<{tag}>")).skip(1).filter_map(|s| s.split('<').next()).map(str::to_owned).collect()
        };
        let vpc = values(&subnets, "vpcId").into_iter().next().expect("moto has a default VPC");
        let group = values(&security_groups, "groupId").into_iter().next().expect("moto has a default security group");
        (vpc, values(&subnets, "subnetId").into_iter().take(2).collect(), group)
    }

    async fn ec2(&self, action: &str) -> String {
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential=testing/20260101/{REGION}/ec2/aws4_request, SignedHeaders=host, Signature=0"
        );
        let (status, xml) =
            post(&self.url, &[("Authorization", &auth)], &format!("Action={action}&Version=2016-11-15")).await;
        assert_eq!(status, 200, "{action}: {xml}");
        xml
    }
}

/// One HTTP/1.0 POST of a form; (status, body).
async fn post(url: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let addr = url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut request = format!(
        "POST / HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request += &format!("{k}: {v}\r\n");
    }
    request += "\r\n";
    request += body;
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, response.split("\r\n\r\n").nth(1).unwrap_or("").to_owned())
}

/// One request the fake got: the operation (`X-Amz-Target`'s last part or
/// the form's `Action`) and the body.
#[derive(Debug, Clone)]
pub struct Seen {
    pub operation: String,
    pub body: String,
}

type Answer = dyn Fn(&str, &str) -> Option<(u16, String)> + Send + Sync;
type Rewrite = dyn Fn(&str, String) -> String + Send + Sync;

/// An AWS endpoint on loopback answering each operation with what
/// `answer(operation, body)` returns (status, JSON body).
pub struct Fake {
    pub url: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Fake {
    pub async fn start(answer: impl Fn(&str, &str) -> (u16, String) + Send + Sync + 'static) -> Fake {
        let answer = Arc::new(move |operation: &str, body: &str| Some(answer(operation, body)));
        Self::listen(None, answer, Arc::new(|_: &str, reply: String| reply)).await
    }

    /// In front of `upstream` (moto): what `answer` returns `None` for is
    /// sent on to `upstream`, headers and body as they came.
    pub async fn before(
        upstream: &str,
        answer: impl Fn(&str, &str) -> Option<(u16, String)> + Send + Sync + 'static,
    ) -> Fake {
        Self::listen(Some(upstream.to_owned()), Arc::new(answer), Arc::new(|_: &str, reply: String| reply)).await
    }

    /// In front of `upstream` as [`Fake::before`], and what `upstream`
    /// answers goes back through `rewrite(operation, reply)`.
    pub async fn around(
        upstream: &str,
        answer: impl Fn(&str, &str) -> Option<(u16, String)> + Send + Sync + 'static,
        rewrite: impl Fn(&str, String) -> String + Send + Sync + 'static,
    ) -> Fake {
        Self::listen(Some(upstream.to_owned()), Arc::new(answer), Arc::new(rewrite)).await
    }

    async fn listen(upstream: Option<String>, answer: Arc<Answer>, rewrite: Arc<Rewrite>) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, answer.clone(), rewrite.clone(), upstream.clone(), log.clone()));
            }
        });
        Fake { url, seen }
    }

    pub fn operations(&self) -> Vec<String> {
        self.seen.lock().unwrap().iter().map(|s| s.operation.clone()).collect()
    }

    /// The bodies of the requests for `operation`, as JSON.
    pub fn bodies(&self, operation: &str) -> Vec<serde_json::Value> {
        let seen = self.seen.lock().unwrap();
        let of = seen.iter().filter(|s| s.operation == operation);
        of.map(|s| serde_json::from_str(&s.body).unwrap_or(serde_json::Value::Null)).collect()
    }
}

/// What an AWS JSON endpoint answers for an operation it does not have.
pub fn unknown_operation() -> (u16, String) {
    (400, r#"{"__type":"com.amazon.coral.service#UnknownOperationException","message":null}"#.into())
}

/// One request sent on to `upstream` as it came: (status, content type, body).
async fn forward(upstream: &str, headers: &[String], body: &str) -> (u16, String, String) {
    let addr = upstream.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut request = format!("POST / HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n", body.len());
    for h in headers {
        let lower = h.to_ascii_lowercase();
        if !["host:", "content-length:", "connection:", "transfer-encoding:"].iter().any(|p| lower.starts_with(p)) {
            request += h;
        }
    }
    request += "\r\n";
    request += body;
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let (head, reply) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let kind = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-type:").map(|v| v.trim().to_owned()))
        .unwrap_or_else(|| "text/xml".into());
    (status, kind, reply.to_owned())
}

async fn serve(
    stream: TcpStream,
    answer: Arc<Answer>,
    rewrite: Arc<Rewrite>,
    upstream: Option<String>,
    seen: Arc<Mutex<Vec<Seen>>>,
) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let (mut length, mut target, mut headers) = (0usize, String::new(), Vec::new());
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).await.unwrap_or(0) == 0 {
                return;
            }
            let lower = header.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            if lower.starts_with("x-amz-target:") {
                target = header.trim().rsplit('.').next().unwrap_or("").to_owned();
            }
            if header == "\r\n" {
                break;
            }
            headers.push(header);
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).await.is_err() {
            return;
        }
        let body = String::from_utf8_lossy(&body).into_owned();
        let operation = if target.is_empty() {
            body.split('&').find_map(|kv| kv.strip_prefix("Action=")).unwrap_or("").to_owned()
        } else {
            target
        };
        seen.lock().unwrap().push(Seen { operation: operation.clone(), body: body.clone() });
        let json = "application/x-amz-json-1.1".to_owned();
        let (status, kind, reply) = match (answer(&operation, &body), &upstream) {
            (Some((status, reply)), _) => (status, json, reply),
            (None, Some(upstream)) => {
                let (status, kind, reply) = forward(upstream, &headers, &body).await;
                (status, kind, rewrite(&operation, reply))
            }
            (None, None) => {
                (400, json, format!(r#"{{"__type":"InvalidParameterException","message":"unexpected {operation}"}}"#))
            }
        };
        let response =
            format!("HTTP/1.1 {status} X\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\r\n{reply}", reply.len());
        if write.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}
