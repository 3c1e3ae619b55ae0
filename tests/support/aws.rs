//! AWS on loopback for the ECS tests: `moto_server` (installed by
//! scripts/setup) and a tiny fake that answers each operation with a
//! recorded response and keeps every request it got; put in front of
//! moto, it answers what moto cannot and hands moto the rest. Bodies pass
//! through as bytes: CloudWatch speaks Smithy RPCv2 CBOR, whose operation is
//! in the path (`/service/GraniteServiceVersion20100801/operation/GetMetricData`).
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
        self.query("ec2", &format!("Action={action}&Version=2016-11-15")).await
    }

    /// An IAM role Lambda may assume (moto checks a function's role exists);
    /// its ARN.
    pub async fn lambda_role(&self, name: &str) -> String {
        let policy = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%7B%22Effect%22%3A%22Allow%22%2C\
                      %22Principal%22%3A%7B%22Service%22%3A%22lambda.amazonaws.com%22%7D%2C%22Action%22%3A\
                      %22sts%3AAssumeRole%22%7D%5D%7D";
        let form = format!("Action=CreateRole&Version=2010-05-08&RoleName={name}&AssumeRolePolicyDocument={policy}");
        let xml = self.query("iam", &form).await;
        let arn = xml.split("<Arn>").nth(1).and_then(|s| s.split('<').next()).expect("the role's ARN");
        arn.to_owned()
    }

    /// One query-protocol call of `service` (sent by hand: the tests need
    /// no EC2 or IAM SDK for a few calls); the XML answer.
    async fn query(&self, service: &str, form: &str) -> String {
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential=testing/20260101/{REGION}/{service}/aws4_request, SignedHeaders=host, Signature=0"
        );
        let (status, xml) = post(&self.url, &[("Authorization", &auth)], form).await;
        assert_eq!(status, 200, "{form}: {xml}");
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

/// One request the fake got: the operation (`X-Amz-Target`'s last part,
/// the RPCv2 path's last part, the form's `Action`, or for REST APIs such
/// as Lambda's the method and path: `PUT /2015-03-31/functions/f/aliases/a`)
/// and the body (CBOR bodies as their JSON equivalent).
#[derive(Debug, Clone)]
pub struct Seen {
    pub operation: String,
    pub body: String,
    /// The `smithy-protocol` header, `rpc-v2-cbor` for CBOR requests.
    pub protocol: Option<String>,
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

    /// The bodies of the requests whose operation `matches`, as JSON.
    pub fn bodies_where(&self, matches: impl Fn(&str) -> bool) -> Vec<serde_json::Value> {
        let seen = self.seen.lock().unwrap();
        let of = seen.iter().filter(|s| matches(&s.operation));
        of.map(|s| serde_json::from_str(&s.body).unwrap_or(serde_json::Value::Null)).collect()
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

/// A CBOR body as JSON (tags dropped: an RPCv2 timestamp, tag 1, reads
/// as its epoch seconds).
pub fn cbor_to_json(body: &[u8]) -> serde_json::Value {
    json(ciborium::from_reader(body).expect("a CBOR body"))
}

fn json(value: ciborium::Value) -> serde_json::Value {
    use ciborium::Value as C;
    use serde_json::Value as J;
    match value {
        C::Integer(i) => i64::try_from(i).map_or(J::from(i128::from(i) as f64), J::from),
        C::Float(f) => J::from(f),
        C::Bool(b) => J::Bool(b),
        C::Null => J::Null,
        C::Text(t) => J::String(t),
        C::Bytes(b) => J::Array(b.into_iter().map(J::from).collect()),
        C::Tag(_, inner) => json(*inner),
        C::Array(items) => J::Array(items.into_iter().map(json).collect()),
        C::Map(entries) => {
            let key = |k: C| k.into_text().unwrap_or_else(|k| format!("{k:?}"));
            J::Object(entries.into_iter().map(|(k, v)| (key(k), json(v))).collect())
        }
        other => panic!("unexpected CBOR value {other:?}"),
    }
}

/// Hop-by-hop headers the fake sets itself.
fn own_header(header: &str) -> bool {
    let lower = header.to_ascii_lowercase();
    ["host:", "content-length:", "connection:", "transfer-encoding:", "date:", "server:"]
        .iter()
        .any(|p| lower.starts_with(p))
}

/// One request sent on to `upstream` as it came (path, headers, body):
/// (status, its headers, body).
async fn forward(upstream: &str, line: &str, headers: &[String], body: &[u8]) -> (u16, Vec<String>, Vec<u8>) {
    let addr = upstream.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let (method, path) = line.split_once(' ').unwrap_or(("POST", "/"));
    let mut request = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n", body.len());
    for h in headers.iter().filter(|h| !own_header(h)) {
        request += h;
    }
    request += "\r\n";
    let mut request = request.into_bytes();
    request.extend_from_slice(body);
    stream.write_all(&request).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(response.len());
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let reply = response.get(split + 4..).unwrap_or_default().to_vec();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers = head.lines().skip(1).filter(|h| !own_header(h)).map(|h| format!("{h}\r\n")).collect();
    (status, headers, reply)
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
        let method = line.split_whitespace().next().unwrap_or("POST").to_owned();
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
        let (mut length, mut target, mut headers, mut protocol) = (0usize, String::new(), Vec::new(), None);
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
            if let Some(v) = lower.strip_prefix("smithy-protocol:") {
                protocol = Some(v.trim().to_owned());
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
        let raw = body;
        let cbor = protocol.as_deref() == Some("rpc-v2-cbor");
        let body = if cbor { cbor_to_json(&raw).to_string() } else { String::from_utf8_lossy(&raw).into_owned() };
        let operation = match path.rsplit_once("/operation/") {
            _ if !target.is_empty() => target,
            Some((_, operation)) => operation.to_owned(),
            None => match body.split('&').find_map(|kv| kv.strip_prefix("Action=")) {
                Some(action) => action.to_owned(),
                None => format!("{method} {}", path.split('?').next().unwrap_or("")),
            },
        };
        seen.lock().unwrap().push(Seen { operation: operation.clone(), body: body.clone(), protocol });
        let json = vec!["Content-Type: application/x-amz-json-1.1\r\n".to_owned()];
        let (status, reply_headers, reply) = match (answer(&operation, &body), &upstream) {
            (Some((status, reply)), _) => (status, json, reply.into_bytes()),
            (None, Some(upstream)) => {
                let (status, reply_headers, reply) =
                    forward(upstream, &format!("{method} {path}"), &headers, &raw).await;
                // Only text replies are rewritten; CBOR passes as it came.
                match String::from_utf8(reply) {
                    Ok(text) if !cbor => (status, reply_headers, rewrite(&operation, text).into_bytes()),
                    Ok(text) => (status, reply_headers, text.into_bytes()),
                    Err(e) => (status, reply_headers, e.into_bytes()),
                }
            }
            (None, None) => {
                let reply = format!(r#"{{"__type":"InvalidParameterException","message":"unexpected {operation}"}}"#);
                (400, json, reply.into_bytes())
            }
        };
        let mut response = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n", reply.len());
        for h in reply_headers {
            response += &h;
        }
        response += "\r\n";
        let mut response = response.into_bytes();
        response.extend_from_slice(&reply);
        if write.write_all(&response).await.is_err() {
            return;
        }
    }
}
