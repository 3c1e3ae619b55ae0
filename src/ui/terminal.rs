//! The terminal the cockpit owns: whether there is one, and putting it
//! back as it was however the cockpit ends.

use std::io::IsTerminal;

/// The cockpit draws on stdout and reads keys from stdin, or from the
/// controlling terminal when stdin is redirected (as crossterm does).
pub fn available() -> bool {
    std::io::stdout().is_terminal() && (std::io::stdin().is_terminal() || std::fs::File::open("/dev/tty").is_ok())
}
