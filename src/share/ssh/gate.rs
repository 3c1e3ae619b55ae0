//! Who may hold the SSH port, and for how long: what keeps anyone who can
//! reach it from stopping it without a key.
//!
//! As OpenSSH's sshd does: connections not yet signed in are few
//! (`MaxStartups` 10:30:100: past 10, new ones are dropped at random with
//! a chance from 30 % rising to 100 % at 100), few from any one source
//! (`PerSourceMaxStartups`, an address; an IPv6 /64), and have a login grace
//! time (`LoginGraceTime`) to sign in before they are cut. All connections
//! together are bounded too, so the process keeps file descriptors for its
//! journals and the socket. A refused connection is closed at once.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// The limits `serve --ssh` holds its port to.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections not yet signed in: up to `start` all are taken; from
    /// there new ones are dropped with a chance of `rate` % rising
    /// linearly to 100 % at `full` (sshd's `MaxStartups start:rate:full`).
    pub start: usize,
    pub rate: u32,
    pub full: usize,
    /// Connections not yet signed in from one source (an IPv4 address, an IPv6 /64).
    pub per_source: usize,
    /// Time to sign in before the connection is cut.
    pub login_grace: Duration,
    /// All SSH connections, signed in or not.
    pub connections: usize,
    /// Signed-in connections of one key.
    pub connections_per_key: usize,
    /// Sessions (channels) on one connection (sshd's `MaxSessions` is 10; a cockpit needs 1 or 2).
    pub sessions_per_connection: usize,
    /// Cockpits of one key across its connections.
    pub cockpits_per_key: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            start: 10,
            rate: 30,
            full: 100,
            per_source: 8,
            login_grace: Duration::from_secs(30),
            connections: 256,
            connections_per_key: 16,
            sessions_per_connection: 4,
            cockpits_per_key: 8,
        }
    }
}

impl Limits {
    /// The defaults, with `FLIGHTDECK_SSH_LOGIN_GRACE` (seconds, 1 to
    /// 600) for the login grace time when it is set.
    pub fn from_env() -> Result<Limits, String> {
        let mut limits = Limits::default();
        if let Ok(text) = std::env::var("FLIGHTDECK_SSH_LOGIN_GRACE") {
            let seconds: u64 = text
                .trim()
                .trim_end_matches('s')
                .parse()
                .ok()
                .filter(|s| (1..=600).contains(s))
                .ok_or_else(|| format!("FLIGHTDECK_SSH_LOGIN_GRACE={text}: seconds, 1 to 600"))?;
            limits.login_grace = Duration::from_secs(seconds);
        }
        Ok(limits)
    }
}

/// Why a connection was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Connections,
    PerSource,
    Startups,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refused::Connections => "too many SSH connections",
            Refused::PerSource => "too many connections not signed in from this source",
            Refused::Startups => "too many connections not signed in (random early drop)",
        })
    }
}

/// The connections counted against the limits.
pub struct Gate {
    pub limits: Limits,
    state: Mutex<GateState>,
}

struct GateState {
    all: usize,
    pending: usize,
    per_source: HashMap<IpAddr, usize>,
    per_key: HashMap<String, usize>,
    rng: u64,
}

impl Gate {
    pub fn new(limits: Limits) -> Arc<Gate> {
        let seed = super::keys::random_seed()
            .map_or(0x9e37_79b9_7f4a_7c15, |s| u64::from_le_bytes(s[..8].try_into().expect("8 bytes")) | 1);
        let state = GateState { all: 0, pending: 0, per_source: HashMap::new(), per_key: HashMap::new(), rng: seed };
        Arc::new(Gate { limits, state: Mutex::new(state) })
    }

    /// A slot for a new connection from `peer`, or why not.
    pub fn admit(self: &Arc<Gate>, peer: IpAddr) -> Result<Arc<Slot>, Refused> {
        let source = source_of(peer);
        let l = &self.limits;
        let mut s = self.state.lock().expect("gate");
        if s.all >= l.connections {
            return Err(Refused::Connections);
        }
        if s.per_source.get(&source).copied().unwrap_or(0) >= l.per_source {
            return Err(Refused::PerSource);
        }
        if s.pending >= l.full {
            return Err(Refused::Startups);
        }
        if s.pending >= l.start {
            let span = (l.full - l.start).max(1) as u64;
            let chance = u64::from(l.rate) + (100 - u64::from(l.rate.min(100))) * (s.pending - l.start) as u64 / span;
            if next_random(&mut s.rng) % 100 < chance {
                return Err(Refused::Startups);
            }
        }
        s.all += 1;
        s.pending += 1;
        *s.per_source.entry(source).or_default() += 1;
        Ok(Arc::new(Slot { gate: self.clone(), source, signed_in: AtomicBool::new(false), key: Mutex::new(None) }))
    }

    /// Connections not yet signed in, and all connections.
    pub fn counts(&self) -> (usize, usize) {
        let s = self.state.lock().expect("gate");
        (s.pending, s.all)
    }
}

/// One connection's place at the gate, given back when it ends.
pub struct Slot {
    gate: Arc<Gate>,
    source: IpAddr,
    signed_in: AtomicBool,
    key: Mutex<Option<String>>,
}

impl Slot {
    /// The connection signed in with the key of `fingerprint`: it no
    /// longer counts as a startup, it counts for its key. `false` when the
    /// key already holds as many connections as it may.
    pub fn sign_in(&self, fingerprint: &str) -> bool {
        if self.signed_in.load(Ordering::SeqCst) {
            return true;
        }
        let mut s = self.gate.state.lock().expect("gate");
        let held = s.per_key.get(fingerprint).copied().unwrap_or(0);
        if held >= self.gate.limits.connections_per_key {
            return false;
        }
        *s.per_key.entry(fingerprint.to_string()).or_default() += 1;
        release_pending(&mut s, self.source);
        self.signed_in.store(true, Ordering::SeqCst);
        *self.key.lock().expect("slot") = Some(fingerprint.to_string());
        true
    }

    pub fn is_signed_in(&self) -> bool {
        self.signed_in.load(Ordering::SeqCst)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut s = self.gate.state.lock().expect("gate");
        s.all -= 1;
        match self.key.lock().expect("slot").take() {
            Some(key) => {
                if let Some(n) = s.per_key.get_mut(&key) {
                    *n -= 1;
                    if *n == 0 {
                        s.per_key.remove(&key);
                    }
                }
            }
            None => release_pending(&mut s, self.source),
        }
    }
}

fn release_pending(s: &mut GateState, source: IpAddr) {
    s.pending -= 1;
    if let Some(n) = s.per_source.get_mut(&source) {
        *n -= 1;
        if *n == 0 {
            s.per_source.remove(&source);
        }
    }
}

/// An IPv4 address is a source; IPv6 addresses count by /64 (one host
/// gets a whole /64).
fn source_of(peer: IpAddr) -> IpAddr {
    match peer.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        v4 => v4,
    }
}

/// xorshift64*: the early drop needs unpredictability of a kind, not secrecy.
fn next_random(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// A connection's stream that can be cut from outside: once cut, reads
/// end and writes fail, so the SSH session over it ends and lets go of
/// the socket whatever state it was in.
pub struct Cuttable {
    inner: TcpStream,
    read_cut: Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    write_cut: Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
}

/// Cuts a [`Cuttable`] stream.
pub struct Cutter(watch::Sender<bool>);

impl Cutter {
    pub fn cut(&self) {
        self.0.send_replace(true);
    }
}

impl Cuttable {
    pub fn new(inner: TcpStream) -> (Cuttable, Cutter) {
        let (tx, rx) = watch::channel(false);
        let waiting = |mut rx: watch::Receiver<bool>| -> Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
            Box::pin(async move {
                let _ = rx.wait_for(|cut| *cut).await;
            })
        };
        let stream = Cuttable { inner, read_cut: waiting(rx.clone()), write_cut: waiting(rx) };
        (stream, Cutter(tx))
    }
}

fn cut_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "the connection was cut")
}

impl AsyncRead for Cuttable {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.read_cut.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Cuttable {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.write_cut.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn startups_per_source_and_all_connections_are_bounded_and_given_back() {
        let gate =
            Gate::new(Limits { per_source: 3, start: 4, rate: 100, full: 6, connections: 8, ..Limits::default() });
        let a: Vec<_> = (0..3).map(|_| gate.admit(ip("10.0.0.1")).unwrap()).collect();
        assert_eq!(gate.admit(ip("10.0.0.1")).err(), Some(Refused::PerSource));
        let b = gate.admit(ip("10.0.0.2")).unwrap();
        // Four waiting: past `start` at a rate of 100 %, the fifth is dropped.
        assert_eq!(gate.admit(ip("10.0.0.3")).err(), Some(Refused::Startups));
        assert_eq!(gate.counts(), (4, 4));
        // Signed in: no longer a startup, its source may connect again.
        assert!(a[0].sign_in("SHA256:alice"));
        assert_eq!(gate.counts(), (3, 4));
        let again = gate.admit(ip("10.0.0.1")).unwrap();
        drop((a, b, again));
        assert_eq!(gate.counts(), (0, 0));
    }

    #[test]
    fn the_early_drop_chance_rises_from_rate_to_all() {
        let gate = Gate::new(Limits { per_source: 1000, start: 10, rate: 30, full: 100, ..Limits::default() });
        let held: Vec<_> = (0..10).map(|i| gate.admit(ip(&format!("10.0.0.{i}"))).unwrap()).collect();
        // At `start`, about 30 % of attempts are dropped (each taken one is let go again).
        let dropped = (0..1000).filter(|_| gate.admit(ip("10.1.0.1")).is_err()).count();
        assert!((200..400).contains(&dropped), "{dropped} of 1000 dropped at the start");
        drop(held);
    }

    #[test]
    fn a_key_holds_a_bounded_number_of_connections_and_ipv6_counts_by_64() {
        let gate = Gate::new(Limits { connections_per_key: 2, per_source: 2, ..Limits::default() });
        let slots: Vec<_> = (0..3).map(|i| gate.admit(ip(&format!("10.0.0.{i}"))).unwrap()).collect();
        assert!(slots[0].sign_in("k") && slots[1].sign_in("k"));
        assert!(!slots[2].sign_in("k"), "a third connection of the key");
        drop(slots);
        let _x = gate.admit(ip("2001:db8::1")).unwrap();
        let _y = gate.admit(ip("2001:db8::2")).unwrap();
        assert_eq!(gate.admit(ip("2001:db8::ffff:1")).err(), Some(Refused::PerSource));
        assert!(gate.admit(ip("2001:db8:0:1::1")).is_ok());
    }
}
