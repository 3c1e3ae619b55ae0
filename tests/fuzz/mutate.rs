//! Mutations of a text file, as a hostile or careless user makes them:
//! lines deleted, doubled, swapped or spliced from another file, values
//! replaced by extremes, characters changed, bytes that are not UTF-8,
//! the file cut short. Each mutation is a few numbers, so proptest can
//! shrink a failing case to the smallest edit that shows it.

use proptest::prelude::*;

/// Values that have broken parsers before: empty, huge, negative, not a
/// number, wrapping durations, odd quoting, nesting, keys of the keymap.
const NASTY: &[&str] = &[
    "\"\"",
    "\" \"",
    "0",
    "-1",
    "1e309",
    "-1e309",
    "nan",
    "inf",
    "18446744073709551616",
    "4294967296",
    "255",
    "256",
    "\"18446744073709552s\"",
    "\"1000000000y\"",
    "\"0s\"",
    "\"-5m\"",
    "\"1ms\"",
    "[]",
    "{}",
    "[[",
    "{",
    "true",
    "null",
    "\"\\u0000\"",
    "\"é😀\"",
    "\"<C-c>\"",
    "\"<Esc>\"",
    "\"default\"",
    "\"quit\"",
    "\"sim\"",
    "\"canary\"",
    "{\"event\":\"tick\"}",
    "{\"event\":\"start\"}",
    "\"x\" = 1",
    "[strategy]",
    "[[strategy.stages]]",
];

/// Numbers that overflow, wrap or make no sense where a count, a weight,
/// a time or a sequence number goes.
const NUMBERS: &[&str] =
    &["0", "-1", "1.5", "1e309", "255", "256", "4294967296", "18446744073709551615", "18446744073709551616"];

#[derive(Debug, Clone)]
pub struct Mutation {
    op: u8,
    a: usize,
    b: usize,
    pick: usize,
}

pub fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    let one = (0u8..10, any::<usize>(), any::<usize>(), any::<usize>()).prop_map(|(op, a, b, pick)| Mutation {
        op,
        a,
        b,
        pick,
    });
    prop::collection::vec(one, 1..5)
}

/// Applies `edits` to `text`; `others` are files of the same kind to splice from.
pub fn apply(text: &str, others: &[String], edits: &[Mutation]) -> Vec<u8> {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut bytes_edit = None;
    for m in edits {
        let n = lines.len().max(1);
        let at = m.a % n;
        match m.op {
            0 if !lines.is_empty() => drop(lines.remove(at)),
            1 if !lines.is_empty() => lines.insert(at, lines[at].clone()),
            2 if !lines.is_empty() => lines.swap(at, m.b % n),
            3 if !lines.is_empty() => lines[at] = replace_value(&lines[at], NASTY[m.pick % NASTY.len()]),
            4 => lines.insert(at.min(lines.len()), NASTY[m.pick % NASTY.len()].to_owned()),
            5 if !others.is_empty() => {
                let other: Vec<&str> = others[m.pick % others.len()].lines().collect();
                if !other.is_empty() {
                    lines.insert(at.min(lines.len()), other[m.b % other.len()].to_owned());
                }
            }
            6 if !lines.is_empty() => lines[at] = replace_char(&lines[at], m.b, m.pick),
            7 => bytes_edit = Some((m.a, m.pick)),
            8 if !lines.is_empty() => lines[at] = replace_number(&lines[at], m.b, NUMBERS[m.pick % NUMBERS.len()]),
            _ => lines.truncate(at),
        }
    }
    let mut bytes = (lines.join("\n") + "\n").into_bytes();
    if let Some((at, pick)) = bytes_edit {
        // Bytes that are not UTF-8 (a lone continuation byte, an overlong start).
        let bad = [0x80u8, 0xC0, 0xFF, 0xED][pick % 4];
        let at = at % bytes.len().max(1);
        bytes.insert(at, bad);
    }
    bytes
}

/// `key = value` / `"key": value` with the value replaced.
fn replace_value(line: &str, value: &str) -> String {
    match line.find(['=', ':']) {
        Some(i) => format!("{} {value}", &line[..=i]),
        None => value.to_owned(),
    }
}

/// The `nth` number in `line` (counting from 0, wrapping) replaced by `value`.
fn replace_number(line: &str, nth: usize, value: &str) -> String {
    let starts: Vec<usize> = line
        .char_indices()
        .filter(|(i, c)| c.is_ascii_digit() && !line[..*i].ends_with(|p: char| p.is_ascii_digit() || p == '.'))
        .map(|(i, _)| i)
        .collect();
    let Some(&start) = starts.get(nth % starts.len().max(1)) else { return line.to_owned() };
    let end = line[start..].find(|c: char| !(c.is_ascii_digit() || c == '.')).map_or(line.len(), |n| start + n);
    format!("{}{value}{}", &line[..start], &line[end..])
}

fn replace_char(line: &str, at: usize, pick: usize) -> String {
    const CHARS: &[char] = &['"', '\'', '[', ']', '{', '}', '=', ',', '.', '\\', '\t', '\0', '#', '0', '9', '-', 'é'];
    let mut chars: Vec<char> = line.chars().collect();
    if chars.is_empty() {
        return CHARS[pick % CHARS.len()].to_string();
    }
    let at = at % chars.len();
    chars[at] = CHARS[pick % CHARS.len()];
    chars.into_iter().collect()
}
