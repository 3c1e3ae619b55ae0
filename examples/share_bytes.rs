//! Bytes a `flightdeck serve` sends one attached client: connects to the
//! socket, says hello, takes the full state, then counts every byte for
//! the given seconds. `scripts/bench` runs it against idle and moving
//! fleets.
//!
//! cargo run --release --example share_bytes -- SOCKET SECONDS

use flightdeck::protocol::wire::{self, ClientMessage, ServerMessage, MAX_LINE};
use flightdeck::protocol::PROTOCOL_VERSION;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(socket), Some(seconds)) = (args.next(), args.next()) else {
        return Err("usage: share_bytes SOCKET SECONDS".into());
    };
    let seconds: f64 = seconds.parse()?;
    let stream = tokio::net::UnixStream::connect(&socket).await?;
    let (read, mut write) = stream.into_split();
    let hello = ClientMessage::Hello { version: PROTOCOL_VERSION, name: "bench".into(), client: "share_bytes".into() };
    write.write_all(&wire::encode(&hello)).await?;
    let mut read = BufReader::new(read);
    let welcome = wire::read_line(&mut read, MAX_LINE).await?.ok_or("closed before the welcome")?;
    let full = wire::read_line(&mut read, MAX_LINE).await?.ok_or("closed before the state")?;
    let ServerMessage::Full { follow, .. } = serde_json::from_slice(&full)? else {
        return Err("expected the full state".into());
    };
    let mut state = full.len();
    for _ in 0..follow.div_ceil(wire::BATCH) {
        state += wire::read_line(&mut read, MAX_LINE).await?.ok_or("closed during the state")?.len();
    }
    let start = Instant::now();
    let limit = Duration::from_secs_f64(seconds);
    let mut bytes = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(read) = tokio::time::timeout(limit.saturating_sub(start.elapsed()), read.read(&mut buf)).await {
        match read? {
            0 => break,
            n => bytes += n,
        }
    }
    let took = start.elapsed().as_secs_f64();
    println!(
        "{:.0} B/s ({bytes} bytes in {took:.0} s after a full state of {} bytes and a welcome of {})",
        bytes as f64 / took,
        state,
        welcome.len()
    );
    Ok(())
}
