//! Running helper programs (`ip`, `nft`, `systemctl`) with a bounded wait.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What a finished command produced.
#[derive(Debug)]
pub(crate) struct Output {
    /// Whether it exited 0.
    pub success: bool,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr, trimmed.
    pub stderr: String,
}

/// Why a command produced no [`Output`].
#[derive(Debug)]
pub(crate) enum RunError {
    /// The program is not installed.
    NotFound,
    /// It could not be started or waited for.
    Io(std::io::Error),
    /// It ran past its deadline and was killed.
    Timeout(Duration),
}

/// Runs `argv` (in the calling thread's namespaces) and waits at most `timeout`.
pub(crate) fn run(argv: &[&str], timeout: Duration) -> Result<Output, RunError> {
    let (prog, args) = argv.split_first().ok_or(RunError::NotFound)?;
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => RunError::NotFound,
            _ => RunError::Io(e),
        })?;
    // Drain the pipes on threads so a chatty child cannot block on a full pipe.
    let out = child.stdout.take().map(drain);
    let err = child.stderr.take().map(drain);
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait().map_err(RunError::Io)? {
            Some(status) => break status,
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(RunError::Timeout(timeout));
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    let collect = |h: Option<std::thread::JoinHandle<String>>| {
        h.and_then(|h| h.join().ok()).unwrap_or_default()
    };
    Ok(Output {
        success: status.success(),
        stdout: collect(out),
        stderr: collect(err).trim().to_owned(),
    })
}

/// A one-line description of a failed run, for error messages.
pub(crate) fn describe(result: &Result<Output, RunError>) -> String {
    match result {
        Ok(o) if o.success => "succeeded".into(),
        Ok(o) if o.stderr.is_empty() => "exited non-zero".into(),
        Ok(o) => first_line(&o.stderr),
        Err(RunError::NotFound) => "not installed".into(),
        Err(RunError::Io(e)) => e.to_string(),
        Err(RunError::Timeout(t)) => format!("no answer within {t:?}"),
    }
}

/// The first line of `s`.
pub(crate) fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().trim().to_owned()
}

fn drain<R: Read + Send + 'static>(mut r: R) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_reports_and_times_out() {
        let ok = run(
            &["sh", "-c", "echo hi; echo oops >&2"],
            Duration::from_secs(5),
        );
        let ok = ok.expect("sh runs");
        assert!(ok.success);
        assert_eq!(ok.stdout, "hi\n");
        assert_eq!(ok.stderr, "oops");
        assert!(matches!(
            run(&["/nonexistent/prog"], Duration::from_secs(1)),
            Err(RunError::NotFound)
        ));
        let slow = run(&["sleep", "5"], Duration::from_millis(100));
        assert!(matches!(slow, Err(RunError::Timeout(_))));
        assert_eq!(describe(&slow), "no answer within 100ms");
    }
}
