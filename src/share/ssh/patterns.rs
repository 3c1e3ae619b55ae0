//! The OpenSSH key options that limit a key: `from="pattern-list"` (where
//! the key may sign in from) and `expiry-time="YYYYMMDD[HHMM[SS]][Z]"`
//! (until when), as sshd(8) "AUTHORIZED_KEYS FILE FORMAT" documents them.
//!
//! Patterns are matched against the client's address only: flightdeck
//! does not look names up (sshd's default `UseDNS no` does not either), so
//! a pattern that can only be a host name is refused when the file is read
//! rather than never matching.

use std::net::IpAddr;

/// A `from=` list: comma-separated patterns, each an address glob (`*` and
/// `?`), an exact address or a CIDR block, optionally negated with `!`.
/// A client is let in when a pattern matches and no negated one does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePatterns {
    text: String,
    entries: Vec<(bool, Pattern)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Cidr(IpAddr, u8),
    Glob(String),
}

impl SourcePatterns {
    pub fn parse(list: &str) -> Result<SourcePatterns, String> {
        let mut entries = Vec::new();
        for item in list.split(',') {
            let item = item.trim();
            let (negated, pattern) = match item.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, item),
            };
            if pattern.is_empty() {
                return Err(format!("from=\"{list}\": an empty pattern"));
            }
            let pattern = if pattern.contains('/') { cidr(pattern)? } else { glob(pattern)? };
            entries.push((negated, pattern));
        }
        Ok(SourcePatterns { text: list.to_string(), entries })
    }

    /// Whether a client at `address` may use the key.
    pub fn admits(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        let shown = address.to_string().to_ascii_lowercase();
        let mut allowed = false;
        for (negated, pattern) in &self.entries {
            let hit = match pattern {
                Pattern::Cidr(net, bits) => in_block(address, *net, *bits),
                Pattern::Glob(glob) => wildcard(glob.as_bytes(), shown.as_bytes()),
            };
            if hit && *negated {
                return false;
            }
            allowed |= hit;
        }
        allowed
    }
}

impl std::fmt::Display for SourcePatterns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

fn cidr(text: &str) -> Result<Pattern, String> {
    let bad = |why: &str| format!("from: `{text}`: {why}");
    let (address, bits) = text.split_once('/').ok_or_else(|| bad("not a CIDR block"))?;
    let address: IpAddr = address.parse().map_err(|_| bad("not an address before the /"))?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    let bits: u8 = bits.parse().ok().filter(|b| *b <= max).ok_or_else(|| bad(&format!("the prefix is 0 to {max}")))?;
    if mask(address, bits) != address {
        return Err(bad(&format!("has host bits set (the block is {}/{bits})", mask(address, bits))));
    }
    Ok(Pattern::Cidr(address, bits))
}

fn glob(text: &str) -> Result<Pattern, String> {
    let text = text.to_ascii_lowercase();
    if text.chars().all(|c| c.is_ascii_hexdigit() || ".:*?".contains(c)) {
        Ok(Pattern::Glob(text))
    } else {
        Err(format!(
            "from: `{text}`: host names are not matched (flightdeck does not look names up); use addresses, globs or CIDR blocks"
        ))
    }
}

fn mask(address: IpAddr, bits: u8) -> IpAddr {
    match address {
        IpAddr::V4(a) => {
            let m = if bits == 0 { 0 } else { u32::MAX << (32 - u32::from(bits)) };
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            let m = if bits == 0 { 0 } else { u128::MAX << (128 - u32::from(bits)) };
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

fn in_block(address: IpAddr, net: IpAddr, bits: u8) -> bool {
    address.is_ipv4() == net.is_ipv4() && mask(address, bits) == mask(net, bits)
}

/// sshd's `match_pattern`: `*` any run of characters, `?` any one.
fn wildcard(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// `expiry-time="YYYYMMDD[HHMM[SS]][Z]"`: seconds since the epoch. Local
/// time as sshd reads it, or UTC with a trailing `Z`.
pub fn expiry_time(text: &str) -> Result<i64, String> {
    let bad = || format!("expiry-time: `{text}` is not YYYYMMDD[HHMM[SS]][Z]");
    let (digits, utc) = match text.strip_suffix(['Z', 'z']) {
        Some(d) => (d, true),
        None => (text, false),
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) || ![8, 12, 14].contains(&digits.len()) {
        return Err(bad());
    }
    let field = |from: usize, to: usize| -> i64 { digits.get(from..to).map_or(0, |s| s.parse().unwrap_or(0)) };
    let (year, month, day) = (field(0, 4), field(4, 6), field(6, 8));
    let (hour, minute, second) = (field(8, 10), field(10, 12), field(12, 14));
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => return Err(bad()),
    };
    if year < 1970 || day < 1 || day > days_in_month || hour > 23 || minute > 59 || second > 59 {
        return Err(bad());
    }
    if utc {
        let days = days_from_civil(year, month, day);
        return Ok(days * 86_400 + hour * 3600 + minute * 60 + second);
    }
    // SAFETY: mktime reads and normalises the struct it is given; nothing else is shared.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    tm.tm_year = (year - 1900) as i32;
    tm.tm_mon = (month - 1) as i32;
    tm.tm_mday = day as i32;
    tm.tm_hour = hour as i32;
    tm.tm_min = minute as i32;
    tm.tm_sec = second as i32;
    tm.tm_isdst = -1;
    let at = unsafe { libc::mktime(&mut tm) };
    if at == -1 {
        return Err(bad());
    }
    Ok(at)
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn exact_addresses_globs_cidr_and_negation() {
        let p = SourcePatterns::parse("10.0.0.0/8,!10.9.0.0/16,192.168.1.?,203.0.113.7,2001:db8::/32").unwrap();
        assert!(p.admits(ip("10.1.2.3")));
        assert!(!p.admits(ip("10.9.1.1")), "negated block");
        assert!(p.admits(ip("192.168.1.5")));
        assert!(!p.admits(ip("192.168.1.50")), "? is one character");
        assert!(p.admits(ip("203.0.113.7")));
        assert!(!p.admits(ip("203.0.113.70")));
        assert!(p.admits(ip("2001:db8::1")));
        assert!(!p.admits(ip("2001:db9::1")));
        // An IPv4 client seen through an IPv6 socket is its IPv4 address.
        assert!(p.admits(ip("::ffff:10.1.2.3")));
        assert!(!p.admits(ip("127.0.0.1")), "nothing matched");
        let star = SourcePatterns::parse("*,!127.0.0.2").unwrap();
        assert!(star.admits(ip("127.0.0.1")) && !star.admits(ip("127.0.0.2")));
        assert!(SourcePatterns::parse("127.*").unwrap().admits(ip("127.0.0.1")));
    }

    #[test]
    fn names_bad_blocks_and_empty_patterns_are_refused() {
        for (list, want) in [
            ("host.example.com", "host names are not matched"),
            ("10.0.0.1/8", "has host bits set (the block is 10.0.0.0/8)"),
            ("10.0.0.0/33", "the prefix is 0 to 32"),
            ("10.0.0.0/x", "the prefix is 0 to 32"),
            ("nonsense/8", "not an address"),
            ("10.0.0.1,,10.0.0.2", "an empty pattern"),
            ("!", "an empty pattern"),
        ] {
            let err = SourcePatterns::parse(list).unwrap_err();
            assert!(err.contains(want), "{list}: {err}");
        }
    }

    #[test]
    fn expiry_times_as_sshd_reads_them() {
        assert_eq!(expiry_time("19700101Z").unwrap(), 0);
        assert_eq!(expiry_time("20240229Z").unwrap(), 1_709_164_800);
        assert_eq!(expiry_time("202402291230Z").unwrap(), 1_709_164_800 + 12 * 3600 + 30 * 60);
        assert_eq!(expiry_time("20240229123059Z").unwrap(), 1_709_164_800 + 12 * 3600 + 30 * 60 + 59);
        // Local time: within a day of the UTC reading, whatever the zone.
        let local = expiry_time("20240229").unwrap();
        assert!((local - 1_709_164_800).abs() <= 86_400);
        for bad in ["2024022", "20230229", "20241301", "202401011260", "2024-01-01", "", "20240101123"] {
            assert!(expiry_time(bad).is_err(), "{bad}");
        }
    }
}
