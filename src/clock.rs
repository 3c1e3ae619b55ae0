//! Where `now` comes from: the wall clock, or simulated time running
//! `speed` times faster than real time. The engine decides which when it
//! starts (a resumed simulation continues from its journaled time) and
//! hands it to the rollout tasks, the viewers and the simulator.

use flightdeck_core::time::Timestamp;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
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

    /// The real time until this clock reads `t` (zero when it already
    /// does), rounded up to the next millisecond so that a task woken then
    /// finds `t` has come.
    pub fn real_time_until(&self, t: Timestamp) -> Duration {
        let ahead = t.0.saturating_sub(self.now().0) as f64;
        if ahead == 0.0 {
            return Duration::ZERO;
        }
        // A stopped clock (speed 0) never gets there.
        let real_ms = ahead / self.speed().max(f64::MIN_POSITIVE);
        Duration::from_secs_f64((real_ms.ceil() + 1.0).min(1e15) / 1000.0)
    }

    /// Where a simulated clock began (the run's start, or the journaled
    /// time a resumed simulation continues from); `None` on the wall clock.
    pub fn origin(&self) -> Option<Timestamp> {
        match *self {
            Clock::Wall => None,
            Clock::Scaled { origin, .. } => Some(origin),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn real_time_until_divides_by_the_speed_and_lands_after_it() {
        let clock = Clock::scaled(Timestamp(0), 60.0);
        // A simulated minute at 60× is a real second (and a millisecond, to land after it).
        assert_eq!(clock.real_time_until(Timestamp(60_000)), Duration::from_millis(1_001));
        tokio::time::sleep(clock.real_time_until(Timestamp(60_000))).await;
        assert!(clock.now() >= Timestamp(60_000));
        assert_eq!(clock.real_time_until(Timestamp(60_000)), Duration::ZERO, "already there");
        let stopped = Clock::scaled(Timestamp(0), 0.0);
        assert!(stopped.real_time_until(Timestamp(1)) > Duration::from_secs(86_400 * 365), "never, in practice");
    }
}
