//! Journal lines, compactly: a metrics record's latency histograms are
//! written as short strings (see [`pack`]): a record at 100 req/s takes
//! about 700 bytes instead of 2.6 KB with the histograms as JSON pairs, so
//! a rollout-day of 1 m windows stays around a megabyte. Lines written
//! before are read as they are.

use super::Record;

/// One journal line as its [`Record`] (compact histograms read back).
pub fn parse_record(line: &str) -> Result<Record, serde_json::Error> {
    // Straight from the text first: serde's error then names the line's
    // column, which a detour through a `Value` would lose.
    let first = match serde_json::from_str::<Record>(line) {
        Ok(record) => return Ok(record),
        Err(e) => e,
    };
    unpacked(line).map_err(|_| first)
}

/// A record whose latency histograms are packed into strings.
fn unpacked(line: &str) -> Result<Record, serde_json::Error> {
    let mut value: serde_json::Value = serde_json::from_str(line)?;
    if let Some(latency) = histograms(&mut value) {
        for h in latency {
            if let Some(buckets) = h.as_str().and_then(unpack) {
                *h = serde_json::to_value(buckets).expect("pairs serialize");
            }
        }
    }
    serde_json::from_value(value)
}

/// The latency histograms of a metrics record (stable's and canary's).
fn histograms(record: &mut serde_json::Value) -> Option<Vec<&mut serde_json::Value>> {
    let event = record.get_mut("event")?.as_object_mut()?;
    if event.get("event")?.as_str()? != "metrics" {
        return None;
    }
    let mut found = Vec::new();
    for (side, window) in event.iter_mut() {
        if side == "stable" || side == "canary" {
            if let Some(latency) = window.get_mut("latency") {
                found.push(latency);
            }
        }
    }
    Some(found)
}

/// Writes a metrics record's histograms with [`pack`].
pub(super) fn compact_histograms(record: &mut serde_json::Value) {
    for h in histograms(record).unwrap_or_default() {
        if let Ok(buckets) = serde_json::from_value::<Vec<(i64, u64)>>(h.clone()) {
            *h = serde_json::Value::String(pack(&buckets));
        }
    }
}

/// The digits of [`pack`]: URL-safe base64, no JSON escaping needed.
const DIGITS: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// A histogram's `(bucket, count)` pairs (ascending, counts > 0) as
/// `"<first bucket>:<digits>"`: each bucket's count as its difference from
/// the bucket before (neighbours of a latency distribution hold similar
/// counts), zigzag-folded so small differences either way are small
/// numbers; `.` and a number skip that many empty buckets. Numbers are
/// base-32, lowest digit first, a digit of 32 or more saying another
/// follows: a difference within ±15 takes one character.
pub fn pack(buckets: &[(i64, u64)]) -> String {
    let Some(&(first, _)) = buckets.first() else { return String::new() };
    let mut out = format!("{first}:");
    let (mut next, mut previous) = (first, 0u64);
    for &(index, count) in buckets {
        if index > next {
            out.push('.');
            push_number(&mut out, (index - next) as u128);
        }
        push_number(&mut out, zigzag(count as i128 - previous as i128));
        (next, previous) = (index + 1, count);
    }
    out
}

/// 0, -1, 1, -2, 2 … as 0, 1, 2, 3, 4 …
fn zigzag(d: i128) -> u128 {
    (if d < 0 { (-d) * 2 - 1 } else { d * 2 }) as u128
}

fn unzigzag(n: u128) -> i128 {
    if n % 2 == 1 {
        -((n as i128 + 1) / 2)
    } else {
        n as i128 / 2
    }
}

fn push_number(out: &mut String, mut n: u128) {
    loop {
        let low = (n & 31) as usize;
        n >>= 5;
        out.push(DIGITS[low | if n > 0 { 32 } else { 0 }] as char);
        if n == 0 {
            return;
        }
    }
}

/// The pairs [`pack`] wrote; `None` if `text` is not one of its strings.
pub fn unpack(text: &str) -> Option<Vec<(i64, u64)>> {
    if text.is_empty() {
        return Some(Vec::new());
    }
    let (first, digits) = text.split_once(':')?;
    let mut index: i64 = first.parse().ok()?;
    let mut chars = digits.bytes().peekable();
    let read = |chars: &mut std::iter::Peekable<std::str::Bytes<'_>>| -> Option<u128> {
        let mut n = 0u128;
        for shift in (0..130).step_by(5) {
            let c = chars.next()?;
            let d = DIGITS.iter().position(|d| *d == c)? as u128;
            n |= (d & 31).checked_shl(shift)?;
            if d < 32 {
                return Some(n);
            }
        }
        None
    };
    let (mut buckets, mut previous) = (Vec::new(), 0i128);
    while let Some(&c) = chars.peek() {
        if c == b'.' {
            chars.next();
            index = index.checked_add(read(&mut chars)?.try_into().ok()?)?;
            continue;
        }
        let count = previous + unzigzag(read(&mut chars)?);
        if count <= 0 {
            return None;
        }
        buckets.push((index, u64::try_from(count).ok()?));
        (index, previous) = (index + 1, count);
    }
    Some(buckets)
}
