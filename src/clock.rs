//! Where `now` comes from: the wall clock, or simulated time running
//! `speed` times faster than real time.

use flightdeck_core::time::Timestamp;
use std::time::{SystemTime, UNIX_EPOCH};
// tokio's Instant is std's at run time, and can be paused in tests so a
// whole engine runs deterministically in virtual time.
use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
pub enum Clock {
    /// Milliseconds since the Unix epoch.
    Wall,
    /// `origin` plus real elapsed time × `speed`.
    Scaled { started: Instant, origin: Timestamp, speed: f64 },
}

impl Clock {
    pub fn scaled(origin: Timestamp, speed: f64) -> Clock {
        Clock::Scaled { started: Instant::now(), origin, speed }
    }

    pub fn now(&self) -> Timestamp {
        match *self {
            Clock::Wall => Timestamp(wall_ms()),
            Clock::Scaled { started, origin, speed } => {
                Timestamp(origin.0 + (started.elapsed().as_secs_f64() * 1000.0 * speed) as u64)
            }
        }
    }

    /// How fast this clock runs against real time.
    pub fn speed(&self) -> f64 {
        match *self {
            Clock::Wall => 1.0,
            Clock::Scaled { speed, .. } => speed,
        }
    }
}

pub fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
