//! `nginx -s reload`: run with a limit, and NGINX's complaint in its own words.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Why the reload command gave no exit status.
#[derive(Debug, thiserror::Error)]
pub(super) enum RunError {
    #[error("cannot start: {0}")]
    Start(std::io::Error),
    /// Killed at the limit.
    #[error("no answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    #[error("cannot wait for it: {0}")]
    Wait(std::io::Error),
}

/// Runs `command` to its end or kills it at `timeout`; returns the status and stderr.
/// (Polls `try_wait`: tokio's `process` feature is not enabled in this crate.)
pub(super) async fn run(
    mut command: Command,
    timeout: Duration,
) -> Result<(std::process::ExitStatus, String), RunError> {
    let mut child =
        command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().map_err(RunError::Start)?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(RunError::Timeout(timeout));
            }
            Ok(None) => tokio::time::sleep(Duration::from_millis(5)).await,
            Err(e) => return Err(RunError::Wait(e)),
        }
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        // The process has exited: the pipe is at EOF after what it wrote.
        let _ = pipe.read_to_string(&mut stderr);
    }
    Ok((status, stderr))
}

/// NGINX's complaint without timestamps and pids:
/// `[emerg] invalid parameter "weight=0" in /etc/nginx/up.conf:3`.
pub(super) fn reload_error(stderr: &str, status: std::process::ExitStatus) -> String {
    const LEVELS: [&str; 4] = ["[emerg]", "[alert]", "[crit]", "[error]"];
    let complaints: Vec<String> = stderr
        .lines()
        .filter_map(|line| {
            let level = LEVELS.iter().find_map(|l| line.find(l))?;
            let (tag, rest) = line[level..].split_once(']')?;
            // "24880#24880: message" → "message"
            let message = match rest.trim_start().split_once(": ") {
                Some((pids, message)) if pids.contains('#') => message,
                _ => rest.trim_start(),
            };
            Some(format!("{tag}] {message}"))
        })
        .collect();
    match (complaints.is_empty(), stderr.trim()) {
        (false, _) => complaints.join("; "),
        (true, "") => format!("`nginx -s reload` exited with {status}"),
        (true, text) => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_reload_that_cannot_start_or_hangs_is_said_so() {
        let missing = run(Command::new("/nonexistent/nginx"), Duration::from_secs(1)).await.unwrap_err();
        assert!(matches!(missing, RunError::Start(_)), "{missing}");
        let mut sleep = Command::new("sleep");
        sleep.arg("5");
        let hung = run(sleep, Duration::from_millis(50)).await.unwrap_err();
        assert!(matches!(hung, RunError::Timeout(_)), "{hung}");
        assert_eq!(hung.to_string(), "no answer within 50 ms");
    }

    #[test]
    fn reload_errors_keep_nginx_words() {
        use std::os::unix::process::ExitStatusExt;
        let failed = std::process::ExitStatus::from_raw(256);
        let stderr = "2026/01/01 12:00:00 [emerg] 24880#24880: invalid parameter \"weight=0\" in /x/up.conf:1\n";
        assert_eq!(reload_error(stderr, failed), "[emerg] invalid parameter \"weight=0\" in /x/up.conf:1");
        let stderr = "nginx: [emerg] unexpected \"}\" in /x/nginx.conf:9\n";
        assert_eq!(reload_error(stderr, failed), "[emerg] unexpected \"}\" in /x/nginx.conf:9");
        assert!(reload_error("", failed).contains("exit status: 1"));
    }
}
