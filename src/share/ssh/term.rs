//! A session's terminal: its keys come in as raw bytes, its frames go out
//! as ANSI bytes on its own channel.
//!
//! Bytes become crossterm events through `terminput`'s parser (crossterm's
//! own parser as a library); [`Decoder`] adds what a byte stream from the
//! network needs: sequences split across packets are kept until they are
//! whole, and an ESC alone is a key only once nothing followed it for
//! [`ESC_WAIT`].
//!
//! Frames are written by [`SessionBackend`], a ratatui backend whose size
//! is the session's, into an [`Outbox`] that a writer task empties into the
//! channel. The outbox is bounded: a client that stops reading loses frames
//! (never the engine's time), and once it reads again it gets the whole
//! screen drawn afresh from the backend's copy of it.

use ratatui::backend::{Backend, ClearType, CrosstermBackend, WindowSize};
use ratatui::buffer::{Buffer, Cell};
use ratatui::crossterm::event::Event;
use ratatui::layout::{Position, Rect, Size};
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// How long an ESC waits for the rest of a sequence before it counts as the Esc key.
pub const ESC_WAIT: Duration = Duration::from_millis(80);

/// Longest input kept while waiting for a sequence to end (a long paste).
const MAX_PENDING: usize = 64 * 1024;

/// Frames a client may fall behind by before they are dropped.
pub const OUTBOX_LIMIT: usize = 256 * 1024;

/// The largest cockpit drawn, in columns and rows. A session's screen
/// costs memory and drawing time by the cell (its frame, the previous
/// one, the copy kept for repaints), and a client names its own size: a
/// window of 65535×65535 would be 4 billion cells. A bigger window gets
/// the cockpit at this size in its top-left corner, and a line saying so.
pub const MAX_COLS: u16 = 500;
pub const MAX_ROWS: u16 = 200;

/// The size taken when a client gives none (0 columns or rows).
pub const DEFAULT_COLS: u16 = 80;
pub const DEFAULT_ROWS: u16 = 24;

/// A session's window as its client gave it, and the size it is drawn at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub cols: u32,
    pub rows: u32,
}

impl Window {
    /// A pty request's size: a 0 (the client did not say) is the default.
    pub fn requested(cols: u32, rows: u32) -> Window {
        let or = |n: u32, default: u16| if n == 0 { u32::from(default) } else { n };
        Window { cols: or(cols, DEFAULT_COLS), rows: or(rows, DEFAULT_ROWS) }
    }

    /// A window change: `None` for a size of 0, which changes nothing.
    pub fn changed(cols: u32, rows: u32) -> Option<Window> {
        (cols > 0 && rows > 0).then_some(Window { cols, rows })
    }

    /// What the cockpit is drawn at: the window, at most [`MAX_COLS`]×[`MAX_ROWS`].
    pub fn drawn(&self) -> Size {
        let clamp = |n: u32, max: u16| n.clamp(1, u32::from(max)) as u16;
        Size::new(clamp(self.cols, MAX_COLS), clamp(self.rows, MAX_ROWS))
    }

    pub fn is_clamped(&self) -> bool {
        self.cols > u32::from(MAX_COLS) || self.rows > u32::from(MAX_ROWS)
    }

    /// Where the window is larger than the cockpit: the line that says so
    /// and where it goes (below the cockpit, else right of it).
    pub fn note(&self) -> Option<(Position, String)> {
        if !self.is_clamped() {
            return None;
        }
        let drawn = self.drawn();
        let text = format!(
            "flightdeck: this window is {}×{}; the cockpit is drawn at {}×{}, its largest",
            self.cols, self.rows, drawn.width, drawn.height
        );
        let at = if self.rows > u32::from(MAX_ROWS) {
            Position::new(0, MAX_ROWS)
        } else {
            Position::new(MAX_COLS.saturating_add(1), 0)
        };
        Some((at, text))
    }
}

/// Raw terminal bytes to events.
#[derive(Debug, Default)]
pub struct Decoder {
    pending: Vec<u8>,
}

impl Decoder {
    /// The events the bytes complete; the start of an unfinished sequence waits for more.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Event> {
        let mut events = Vec::new();
        for &byte in bytes {
            self.pending.push(byte);
            self.parse(&mut events);
        }
        if self.pending.len() > MAX_PENDING {
            self.pending.clear();
        }
        events
    }

    /// Something is waiting for more bytes (then [`Decoder::timeout`] is due after [`ESC_WAIT`]).
    pub fn is_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Nothing more came: an ESC at the front is the Esc key, and what
    /// follows it is read again on its own.
    pub fn timeout(&mut self) -> Vec<Event> {
        let pending = std::mem::take(&mut self.pending);
        let mut events = Vec::new();
        if let Some((&first, rest)) = pending.split_first() {
            if first == 0x1b {
                events.extend(to_crossterm(terminput::Event::parse_from(&[0x1b])));
                events.extend(self.feed(rest));
                if self.pending.as_slice() == [0x1b] {
                    events.extend(self.timeout());
                }
            }
            // Anything else left is a cut UTF-8 character: dropped.
        }
        events
    }

    fn parse(&mut self, events: &mut Vec<Event>) {
        // A lone ESC may be the start of a sequence: wait for the next byte or the timeout.
        if self.pending.as_slice() == [0x1b] {
            return;
        }
        match terminput::Event::parse_from(&self.pending) {
            Ok(Some(event)) => {
                events.extend(to_crossterm(Ok(Some(event))));
                self.pending.clear();
            }
            Ok(None) => {}
            // Not a sequence anyone sends: dropped, like crossterm does.
            Err(_) => self.pending.clear(),
        }
    }
}

fn to_crossterm(parsed: io::Result<Option<terminput::Event>>) -> Option<Event> {
    let event = parsed.ok()??;
    terminput_crossterm::to_crossterm(event).ok()
}

/// Bytes on their way to one client.
#[derive(Default)]
pub struct Outbox {
    state: Mutex<OutboxState>,
    ready: Notify,
}

#[derive(Default)]
struct OutboxState {
    bytes: Vec<u8>,
    /// The writer is sending what it took last (a client that stops
    /// reading keeps it there).
    writing: bool,
    /// Frames were dropped: the next frame must be the whole screen.
    dropped: bool,
    /// The cockpit was asked for that frame.
    asked: bool,
    closed: bool,
    /// The session's exit status, given with the close.
    exit_status: u32,
    /// Bytes handed to the channel so far.
    sent: u64,
}

/// What the writer takes from the outbox.
pub struct Taken {
    pub bytes: Vec<u8>,
    /// Frames were dropped and the client has caught up: draw the whole screen.
    pub wants_repaint: bool,
    /// The session is over, with this exit status.
    pub closed: Option<u32>,
}

impl Outbox {
    /// Queues bytes that must go out whole (the terminal's setup and teardown).
    pub fn push(&self, bytes: &[u8]) {
        self.state.lock().expect("outbox").bytes.extend_from_slice(bytes);
        self.ready.notify_one();
    }

    /// Queues a frame, or drops it (and everything queued) when the client is too far behind.
    fn push_frame(&self, frame: &[u8], repaint: impl FnOnce() -> Vec<u8>) {
        let mut s = self.state.lock().expect("outbox");
        if s.dropped {
            if !s.bytes.is_empty() || s.writing {
                return; // still behind
            }
            s.bytes = repaint();
            s.dropped = false;
            s.asked = false;
        } else if s.bytes.len() + frame.len() > OUTBOX_LIMIT {
            s.bytes.clear();
            s.dropped = true;
            return;
        } else {
            s.bytes.extend_from_slice(frame);
        }
        drop(s);
        self.ready.notify_one();
    }

    /// No more frames: the writer ends once what is queued is out, and
    /// the client's `ssh` exits with `exit_status`.
    pub fn close(&self, exit_status: u32) {
        let mut s = self.state.lock().expect("outbox");
        s.closed = true;
        s.exit_status = exit_status;
        drop(s);
        self.ready.notify_one();
    }

    /// Waits for bytes (or the close, or frames dropped while the client
    /// was behind and now caught up) and takes them.
    pub async fn take(&self) -> Taken {
        loop {
            {
                let mut s = self.state.lock().expect("outbox");
                if !s.bytes.is_empty() || s.closed {
                    let bytes = std::mem::take(&mut s.bytes);
                    s.sent += bytes.len() as u64;
                    s.writing = !bytes.is_empty();
                    return Taken { bytes, wants_repaint: false, closed: s.closed.then_some(s.exit_status) };
                }
                if s.dropped && !s.writing && !s.asked {
                    s.asked = true;
                    return Taken { bytes: Vec::new(), wants_repaint: true, closed: None };
                }
            }
            self.ready.notified().await;
        }
    }

    /// The bytes last taken are out.
    pub fn sent_out(&self) {
        self.state.lock().expect("outbox").writing = false;
        self.ready.notify_one();
    }

    /// Bytes handed to the channel so far.
    pub fn sent(&self) -> u64 {
        self.state.lock().expect("outbox").sent
    }
}

/// A byte buffer the ANSI writer and the backend share.
#[derive(Clone, Default)]
struct Bytes(Arc<Mutex<Vec<u8>>>);

impl Bytes {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().expect("frame bytes"))
    }
}

impl io::Write for Bytes {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().expect("frame bytes").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The session's window, set by its pty and window-change requests.
pub type SharedSize = Arc<Mutex<Window>>;

/// A ratatui backend for one SSH session: the session's size, ANSI bytes
/// to its outbox, and a copy of the screen to redraw it whole after
/// frames were dropped.
pub struct SessionBackend {
    ansi: CrosstermBackend<Bytes>,
    /// What `ansi` wrote for the frame being drawn.
    frame: Bytes,
    size: SharedSize,
    screen: Buffer,
    cursor: Position,
    cursor_shown: bool,
    outbox: Arc<Outbox>,
    /// The screen was cleared: a clamped window's note is due with the next frame.
    note_due: bool,
}

impl SessionBackend {
    pub fn new(size: SharedSize, outbox: Arc<Outbox>) -> SessionBackend {
        let area = Rect::from((Position::ORIGIN, size.lock().expect("size").drawn()));
        let frame = Bytes::default();
        SessionBackend {
            ansi: CrosstermBackend::new(frame.clone()),
            frame,
            size,
            screen: Buffer::empty(area),
            cursor: Position::ORIGIN,
            cursor_shown: false,
            outbox,
            note_due: true,
        }
    }

    fn window(&self) -> Window {
        *self.size.lock().expect("size")
    }

    /// A clamped window's note at its place, the cursor back where it was.
    fn write_note(&self, out: &mut impl io::Write) -> io::Result<()> {
        use ratatui::crossterm::{cursor::MoveTo, style::Print, style::ResetColor, QueueableCommand};
        if let Some((at, text)) = self.window().note() {
            out.queue(MoveTo(at.x, at.y))?.queue(ResetColor)?.queue(Print(text))?;
            out.queue(MoveTo(self.cursor.x, self.cursor.y))?;
        }
        Ok(())
    }

    /// The whole screen as bytes: clear, every cell, the cursor as it was.
    fn repaint(&self) -> Vec<u8> {
        let bytes = Bytes::default();
        let mut all = CrosstermBackend::new(bytes.clone());
        let area = self.screen.area;
        let cells = area.positions().map(|p| (p.x, p.y, &self.screen[p]));
        let drawn = all
            .clear()
            .and_then(|()| all.draw(cells))
            .and_then(|()| self.write_note(&mut bytes.clone()))
            .and_then(|()| all.set_cursor_position(self.cursor))
            .and_then(|()| if self.cursor_shown { all.show_cursor() } else { all.hide_cursor() });
        match drawn {
            Ok(()) => bytes.take(),
            Err(_) => Vec::new(),
        }
    }
}

impl Backend for SessionBackend {
    type Error = io::Error;

    fn draw<'a, I>(&mut self, content: I) -> io::Result<()>
    where
        I: Iterator<Item = (u16, u16, &'a Cell)>,
    {
        let area = self.screen.area;
        let content: Vec<(u16, u16, &Cell)> = content.collect();
        for &(x, y, cell) in &content {
            if area.contains(Position::new(x, y)) {
                self.screen[(x, y)] = cell.clone();
            }
        }
        self.ansi.draw(content.into_iter())
    }

    fn hide_cursor(&mut self) -> io::Result<()> {
        self.cursor_shown = false;
        self.ansi.hide_cursor()
    }

    fn show_cursor(&mut self) -> io::Result<()> {
        self.cursor_shown = true;
        self.ansi.show_cursor()
    }

    fn get_cursor_position(&mut self) -> io::Result<Position> {
        Ok(self.cursor)
    }

    fn set_cursor_position<P: Into<Position>>(&mut self, position: P) -> io::Result<()> {
        self.cursor = position.into();
        self.ansi.set_cursor_position(self.cursor)
    }

    fn clear(&mut self) -> io::Result<()> {
        // Cleared after a resize too: the copy takes the session's size.
        let size = self.window().drawn();
        self.screen = Buffer::empty(Rect::from((Position::ORIGIN, size)));
        self.note_due = true;
        self.ansi.clear()
    }

    fn clear_region(&mut self, clear_type: ClearType) -> io::Result<()> {
        if clear_type == ClearType::All {
            return self.clear();
        }
        self.ansi.clear_region(clear_type)
    }

    fn size(&self) -> io::Result<Size> {
        Ok(self.window().drawn())
    }

    fn window_size(&mut self) -> io::Result<WindowSize> {
        Ok(WindowSize { columns_rows: self.size()?, pixels: Size::new(0, 0) })
    }

    fn flush(&mut self) -> io::Result<()> {
        io::Write::flush(&mut self.ansi)?;
        if std::mem::take(&mut self.note_due) {
            self.write_note(&mut self.frame.clone())?;
        }
        let frame = self.frame.take();
        if !frame.is_empty() {
            self.outbox.push_frame(&frame, || self.repaint());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

    fn key(code: KeyCode, modifiers: KeyModifiers) -> Event {
        Event::Key(KeyEvent::new(code, modifiers))
    }

    fn plain(code: KeyCode) -> Event {
        key(code, KeyModifiers::NONE)
    }

    #[test]
    fn keys_arrows_and_function_keys_are_read_as_the_terminal_sends_them() {
        let mut d = Decoder::default();
        let events = d.feed(b"q\x1b[A\x1b[B\x1bOC\x1b[H\x1b[F\x1b[5~\x1b[6~\x1bOP\x1b[15~\x1b[1;5D\r\x7f\t");
        assert_eq!(
            events,
            vec![
                plain(KeyCode::Char('q')),
                plain(KeyCode::Up),
                plain(KeyCode::Down),
                plain(KeyCode::Right),
                plain(KeyCode::Home),
                plain(KeyCode::End),
                plain(KeyCode::PageUp),
                plain(KeyCode::PageDown),
                plain(KeyCode::F(1)),
                plain(KeyCode::F(5)),
                key(KeyCode::Left, KeyModifiers::CONTROL),
                plain(KeyCode::Enter),
                plain(KeyCode::Backspace),
                plain(KeyCode::Tab),
            ]
        );
        assert!(!d.is_pending());
    }

    #[test]
    fn ctrl_and_alt_keys() {
        let mut d = Decoder::default();
        assert_eq!(
            d.feed(b"\x03\x1bx\x1b\x1b"),
            vec![
                key(KeyCode::Char('c'), KeyModifiers::CONTROL),
                key(KeyCode::Char('x'), KeyModifiers::ALT),
                key(KeyCode::Esc, KeyModifiers::ALT),
            ]
        );
    }

    #[test]
    fn a_sequence_split_across_packets_is_one_key() {
        let mut d = Decoder::default();
        assert_eq!(d.feed(b"\x1b"), vec![]);
        assert_eq!(d.feed(b"["), vec![]);
        assert!(d.is_pending());
        assert_eq!(d.feed(b"6"), vec![]);
        assert_eq!(d.feed(b"~j"), vec![plain(KeyCode::PageDown), plain(KeyCode::Char('j'))]);
        assert!(!d.is_pending());
    }

    #[test]
    fn a_lone_esc_is_the_esc_key_once_nothing_follows() {
        let mut d = Decoder::default();
        assert_eq!(d.feed(b"\x1b"), vec![]);
        assert!(d.is_pending(), "waits for the rest of a possible sequence");
        assert_eq!(d.timeout(), vec![plain(KeyCode::Esc)]);
        assert!(!d.is_pending());
        // An ESC and an unfinished `[` that never went on: Esc, then `[`.
        assert_eq!(d.feed(b"\x1b["), vec![]);
        assert_eq!(d.timeout(), vec![plain(KeyCode::Esc), plain(KeyCode::Char('['))]);
    }

    #[test]
    fn utf8_characters_whole_or_split() {
        let mut d = Decoder::default();
        assert_eq!(d.feed("é€".as_bytes()), vec![plain(KeyCode::Char('é')), plain(KeyCode::Char('€'))]);
        let crab = "🦀".as_bytes();
        assert_eq!(d.feed(&crab[..2]), vec![]);
        assert_eq!(d.feed(&crab[2..]), vec![plain(KeyCode::Char('🦀'))]);
        // A cut character that never ends is dropped at the timeout, not sent as garbage.
        d.feed(&crab[..1]);
        assert_eq!(d.timeout(), vec![]);
        assert_eq!(d.feed(b"a"), vec![plain(KeyCode::Char('a'))]);
    }

    #[test]
    fn a_client_that_stops_reading_loses_frames_then_gets_the_whole_screen() {
        let size: SharedSize = Arc::new(Mutex::new(Window::requested(20, 3)));
        let outbox = Arc::new(Outbox::default());
        let mut terminal = ratatui::Terminal::new(SessionBackend::new(size.clone(), outbox.clone())).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        terminal.draw(|f| f.render_widget("first", f.area())).unwrap();
        // The writer takes the first frame and never gets it out: the client stopped reading.
        assert!(!rt.block_on(outbox.take()).bytes.is_empty());
        let mut frames = 0;
        while !outbox.state.lock().unwrap().dropped {
            frames += 1;
            terminal.draw(|f| f.render_widget(format!("frame {frames}"), f.area())).unwrap();
            terminal.clear().unwrap();
            assert!(outbox.state.lock().unwrap().bytes.len() <= OUTBOX_LIMIT);
        }
        // Still behind: later frames are not queued either.
        terminal.draw(|f| f.render_widget("more", f.area())).unwrap();
        assert!(outbox.state.lock().unwrap().bytes.is_empty());
        // The client reads again: the cockpit is asked for a frame, and that frame is the whole screen.
        outbox.sent_out();
        let taken = rt.block_on(outbox.take());
        assert!(taken.bytes.is_empty() && taken.wants_repaint);
        terminal.draw(|f| f.render_widget("the latest", f.area())).unwrap();
        let taken = rt.block_on(outbox.take());
        let text = String::from_utf8_lossy(&taken.bytes);
        assert!(text.starts_with("\x1b[2J"), "a repaint starts by clearing: {text:?}");
        assert!(text.contains("the latest"), "{text:?}");
        assert!(!taken.wants_repaint);
    }

    #[test]
    fn the_backend_has_the_sessions_size() {
        let size: SharedSize = Arc::new(Mutex::new(Window::requested(80, 24)));
        let mut terminal = ratatui::Terminal::new(SessionBackend::new(size.clone(), Arc::default())).unwrap();
        assert_eq!(terminal.size().unwrap(), Size::new(80, 24));
        *size.lock().unwrap() = Window::requested(120, 40);
        let frame = terminal.draw(|_| {}).unwrap();
        assert_eq!(frame.area, Rect::new(0, 0, 120, 40));
    }

    #[test]
    fn a_huge_window_is_drawn_at_the_largest_size_and_says_so() {
        let size: SharedSize = Arc::new(Mutex::new(Window::requested(65535, 65535)));
        let outbox = Arc::new(Outbox::default());
        let mut terminal = ratatui::Terminal::new(SessionBackend::new(size.clone(), outbox.clone())).unwrap();
        assert_eq!(terminal.size().unwrap(), Size::new(MAX_COLS, MAX_ROWS));
        let frame = terminal.draw(|f| f.render_widget("cockpit", f.area())).unwrap();
        assert_eq!(frame.area, Rect::new(0, 0, MAX_COLS, MAX_ROWS));
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let text = String::from_utf8_lossy(&rt.block_on(outbox.take()).bytes).into_owned();
        assert!(text.contains("this window is 65535×65535; the cockpit is drawn at 500×200"), "{text:?}");
        // Below the cockpit (row 201), when the window is taller.
        assert!(text.contains("\x1b[201;1H"), "{text:?}");
        // Only wider: right of it.
        assert_eq!(Window::requested(4000, 50).note().unwrap().0, Position::new(501, 0));
        assert_eq!(Window::requested(4000, 50).drawn(), Size::new(500, 50));
        // No size given is 80×24; a window change to 0 changes nothing.
        assert_eq!(Window::requested(0, 0).drawn(), Size::new(80, 24));
        assert_eq!(Window::changed(0, 40), None);
        assert!(Window::requested(500, 200).note().is_none());
    }
}
