//! Time as a value. The core never reads a clock: callers pass `now`.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Milliseconds since an epoch chosen by the caller (wall clock for real
/// backends, simulated time for the simulator). Only differences matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The instant `d` after this one.
    pub fn plus(self, d: Duration) -> Timestamp {
        // `as u64` would wrap a duration past u64::MAX milliseconds.
        Timestamp(self.0.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)))
    }

    /// Time elapsed since `earlier` (zero if `earlier` is in the future).
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

/// Serde helpers that write durations as humane strings ("15m", "30s").
pub mod humane {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// Formats a duration the way the cockpit shows timers: `9:42`, `1:02:03`.
pub fn clock(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// A countdown to something far off (the ETA to 100 %, the next gate):
/// to the second under ten minutes (`9:42`), else to the minute, rounded
/// up so it never reads less than what is left (`25m`, `1h05m`, `3d04h`).
/// kubectl drops seconds past a few minutes the same way; a cockpit left
/// open then changes these once a minute rather than once a second.
pub fn countdown(d: Duration) -> String {
    if d < Duration::from_secs(600) {
        return clock(d);
    }
    let minutes = d.as_secs().div_ceil(60);
    match (minutes / 60, minutes % 60) {
        (0, m) => format!("{m}m"),
        (h, m) if h < 48 => format!("{h}h{m:02}m"),
        _ => {
            let hours = d.as_secs().div_ceil(3600);
            format!("{}d{:02}h", hours / 24, hours % 24)
        }
    }
}

/// Milliseconds since the Unix epoch of 2001-09-09: any timestamp past it
/// is wall-clock time; simulated runs start at 0.
const WALL_CLOCK_FROM: u64 = 1_000_000_000_000;

/// A timestamp as the cockpit and logs show it: simulated time as elapsed
/// `m:ss` / `h:mm:ss`, wall-clock time as UTC `HH:MM:SS`.
pub fn stamp(t: Timestamp) -> String {
    if t.0 < WALL_CLOCK_FROM {
        return clock(Duration::from_millis(t.0));
    }
    let s = (t.0 / 1000) % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

/// Whether `t` is on a simulated clock (time since the run began) rather
/// than the wall clock.
pub fn is_simulated(t: Timestamp) -> bool {
    t.0 < WALL_CLOCK_FROM
}

/// How long ago, in words a reader takes in at a glance: `just now`,
/// `40 s ago`, `3 min ago`, `2 h ago`, `4 d ago`.
pub fn ago(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..5 => "just now".into(),
        5..60 => format!("{s} s ago"),
        60..3_600 => format!("{} min ago", s / 60),
        3_600..86_400 => format!("{} h ago", s / 3_600),
        _ => format!("{} d ago", s / 86_400),
    }
}

/// The engine's clock for the cockpit's top bar, saying which it is:
/// `sim 12:00` (simulated time since the run began) or `14:03:22 UTC`.
pub fn clock_label(t: Timestamp) -> String {
    if t.0 < WALL_CLOCK_FROM {
        format!("sim {}", stamp(t))
    } else {
        format!("{} UTC", stamp(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_formats_minutes_and_hours() {
        assert_eq!(clock(Duration::from_secs(582)), "9:42");
        assert_eq!(clock(Duration::from_secs(3723)), "1:02:03");
    }

    #[test]
    fn countdowns_keep_seconds_under_ten_minutes_and_round_up_past_them() {
        assert_eq!(countdown(Duration::from_secs(599)), "9:59");
        assert_eq!(countdown(Duration::from_secs(600)), "10m");
        assert_eq!(countdown(Duration::from_secs(24 * 60 + 1)), "25m", "never less than what is left");
        assert_eq!(countdown(Duration::from_secs(3600)), "1h00m");
        assert_eq!(countdown(Duration::from_secs(3600 + 4 * 60 + 30)), "1h05m");
        assert_eq!(countdown(Duration::from_secs(50 * 3600 + 1)), "2d03h");
        assert!(countdown(Duration::MAX).ends_with('h'), "a bake of forever does not overflow");
    }

    #[test]
    fn stamps_show_simulated_time_elapsed_and_wall_time_of_day() {
        assert_eq!(stamp(Timestamp(754_000)), "12:34");
        // 2026-11-23 12:34:56 UTC
        assert_eq!(stamp(Timestamp(1_795_437_296_000)), "12:34:56");
    }

    #[test]
    fn ago_says_the_largest_whole_unit() {
        assert_eq!(ago(Duration::from_secs(2)), "just now");
        assert_eq!(ago(Duration::from_secs(40)), "40 s ago");
        assert_eq!(ago(Duration::from_secs(200)), "3 min ago");
        assert_eq!(ago(Duration::from_secs(7_300)), "2 h ago");
        assert_eq!(ago(Duration::from_secs(4 * 86_400 + 5)), "4 d ago");
    }

    #[test]
    fn since_saturates_instead_of_underflowing() {
        assert_eq!(Timestamp(5).since(Timestamp(10)), Duration::ZERO);
        assert_eq!(Timestamp(1500).since(Timestamp(500)), Duration::from_secs(1));
    }
}
