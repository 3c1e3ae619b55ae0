//! The SSH cockpit's terminal-input decoder (`share::ssh::term::Decoder`)
//! fed arbitrary bytes in arbitrary pieces, as a hostile or broken client
//! sends them: it never panics, never holds more than a bounded number of
//! bytes, and decodes a stream the same however the network cut it (what
//! a lone Esc means is settled by the timeout either way). A few hundred
//! cases here from the suite's fixed seed; `scripts/fuzz` runs thousands
//! (`FLIGHTDECK_FUZZ_TERM`).
#![cfg(feature = "ssh")]

use flightdeck::share::ssh::term::Decoder;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use ratatui::crossterm::event::{Event, KeyCode, KeyEvent};

fn cases() -> u32 {
    std::env::var("FLIGHTDECK_FUZZ_TERM").ok().and_then(|n| n.parse().ok()).unwrap_or(400)
}

/// Everything the bytes decode to, fed in the given pieces, each piece
/// followed by what the session does when nothing more comes in time.
fn decode(pieces: &[Vec<u8>], settle_each: bool) -> Vec<Event> {
    let mut decoder = Decoder::default();
    let mut events = Vec::new();
    for piece in pieces {
        events.extend(decoder.feed(piece));
        assert!(!decoder.is_pending() || piece.len() < 1 << 20, "pending stays bounded");
        if settle_each && decoder.is_pending() {
            events.extend(decoder.timeout());
        }
    }
    events.extend(decoder.timeout());
    assert!(!decoder.is_pending(), "a timeout settles everything");
    events
}

/// Bytes a terminal sends (keys, escape sequences, UTF-8) mixed with garbage.
fn stream() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..8),
        Just(b"\x1b[A".to_vec()),
        Just(b"\x1b[1;5C".to_vec()),
        Just(b"\x1b[<0;10;5M".to_vec()),
        Just(b"\x1bOP".to_vec()),
        Just("é→✓".as_bytes().to_vec()),
        Just(b"\x1b".to_vec()),
        Just(b"q".to_vec()),
    ];
    proptest::collection::vec(piece, 0..24).prop_map(|parts| parts.concat())
}

#[test]
fn arbitrary_bytes_in_arbitrary_pieces_never_panic_and_decode_alike() {
    let mut runner = TestRunner::new(Config { cases: cases(), failure_persistence: None, ..Config::default() });
    let strategy = (stream(), proptest::collection::vec(1usize..9, 1..40));
    runner
        .run(&strategy, |(bytes, cuts)| {
            // The same bytes, cut where the network happened to cut them.
            let mut pieces = Vec::new();
            let mut rest: &[u8] = &bytes;
            for cut in cuts.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (head, tail) = rest.split_at((*cut).min(rest.len()));
                pieces.push(head.to_vec());
                rest = tail;
            }
            let whole = decode(std::slice::from_ref(&bytes), false);
            let cut = decode(&pieces, false);
            prop_assert_eq!(&whole, &cut, "{:?} in {} pieces", bytes, pieces.len());
            // Settling after every piece (a slow link) may read a lone Esc
            // as the key, but never panics or keeps bytes.
            let _ = decode(&pieces, true);
            Ok(())
        })
        .unwrap();
}

#[test]
fn a_flood_without_an_end_is_dropped_not_held() {
    let mut decoder = Decoder::default();
    // An escape sequence that never ends: the decoder must not keep it all.
    let mut endless = b"\x1b[".to_vec();
    endless.extend(std::iter::repeat_n(b'1', 1 << 20));
    let _ = decoder.feed(&endless);
    let events = decoder.feed(b"q");
    let events: Vec<Event> = events.into_iter().chain(decoder.timeout()).collect();
    let q = Event::Key(KeyEvent::from(KeyCode::Char('q')));
    assert!(events.iter().any(|e| matches!(e, Event::Key(k) if k.code == KeyCode::Char('q'))), "{events:?} {q:?}");
}
