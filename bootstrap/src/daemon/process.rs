//! Recognising a knet daemon process by its `/proc/PID/cmdline`, and signalling one.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Whether `pid` is alive (not a zombie) and runs `knet daemon`.
pub fn is_knet_daemon(pid: u32) -> bool {
    let proc = Path::new("/proc").join(pid.to_string());
    !is_zombie(&proc)
        && std::fs::read(proc.join("cmdline")).is_ok_and(|c| cmdline_is_knet_daemon(&c))
}

/// A cmdline is a knet daemon's when `daemon` is the first argument of a program whose file
/// name starts with `knet`, run directly or through an interpreter: `/usr/bin/knet daemon ...`,
/// `/snap/knet/x1/bin/knet daemon`, or `/bin/sh /tmp/t/knet daemon` (a test stand-in).
pub(crate) fn cmdline_is_knet_daemon(cmdline: &[u8]) -> bool {
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    args.windows(2).take(2).any(|w| {
        let prog = String::from_utf8_lossy(w[0]);
        let name = Path::new(prog.as_ref())
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        name.starts_with("knet") && w[1] == b"daemon"
    })
}

/// Sends SIGTERM, waits up to `grace` for the process to go, then SIGKILLs it. Returns once it
/// is gone (or a zombie) or after a further 5 s. The caller has checked it is a knet daemon.
pub(crate) fn terminate(pid: u32, grace: Duration) {
    let Ok(raw) = i32::try_from(pid) else {
        return;
    };
    let proc = Path::new("/proc").join(pid.to_string());
    let gone = || !proc.exists() || is_zombie(&proc);
    let _ = kill(Pid::from_raw(raw), Signal::SIGTERM);
    if wait_until(gone, grace) {
        return;
    }
    tracing::warn!(pid, "daemon ignored SIGTERM; killing it");
    let _ = kill(Pid::from_raw(raw), Signal::SIGKILL);
    wait_until(gone, Duration::from_secs(5));
}

fn wait_until(done: impl Fn() -> bool, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    done()
}

/// `/proc/PID/stat`'s state field is `Z` (or `X`, dead).
fn is_zombie(proc: &Path) -> bool {
    std::fs::read_to_string(proc.join("stat")).is_ok_and(|s| {
        // pid (comm) S ... — comm may hold spaces and parentheses; the state follows the last ')'.
        s.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_daemon_cmdlines_only() {
        assert!(cmdline_is_knet_daemon(
            b"/usr/bin/knet\0daemon\0--state-dir\0/x\0"
        ));
        assert!(cmdline_is_knet_daemon(b"/snap/knet/x1/bin/knet\0daemon\0"));
        assert!(cmdline_is_knet_daemon(b"/bin/sh\0/tmp/t/knet\0daemon\0"));
        assert!(!cmdline_is_knet_daemon(b"/opt/cni/bin/knet\0"));
        assert!(!cmdline_is_knet_daemon(b"/usr/bin/knet\0status\0"));
        assert!(!cmdline_is_knet_daemon(b"sleep\0daemon\0"));
        assert!(!cmdline_is_knet_daemon(
            b"/usr/bin/vim\0knet\0daemon-notes\0"
        ));
        assert!(!cmdline_is_knet_daemon(b"grep\0-r\0knet\0daemon\0"));
        assert!(!cmdline_is_knet_daemon(b""));
    }

    #[test]
    fn our_own_process_is_not_a_daemon() {
        assert!(!is_knet_daemon(std::process::id()));
        assert!(!is_knet_daemon(u32::MAX));
    }
}
