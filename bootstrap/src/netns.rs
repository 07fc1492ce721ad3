//! Running code inside another network namespace, on a thread of its own.
//!
//! Namespaces belong to threads, not processes: a thread that calls `unshare(CLONE_NEWNET)` or
//! `setns` moves alone, and child processes it spawns (`ip`, `nft`) inherit its namespace. Both
//! helpers run the closure on a fresh scoped thread, so the caller's thread (and the rest of
//! the process) never leaves its own namespace. A namespace made by [`in_new_netns`] is freed
//! by the kernel when that thread ends, with every link created in it.
//!
//! Inside the closure read per-namespace files through `/proc/thread-self/net/...`:
//! `/proc/self/net` follows the main thread's namespace, not the calling thread's.

use std::fs::File;
use std::io;
use std::path::Path;

use nix::sched::{CloneFlags, setns, unshare};

/// Runs `f` on a new thread inside a new, empty network namespace that is discarded afterwards.
pub fn in_new_netns<T: Send>(f: impl FnOnce() -> T + Send) -> io::Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            unshare(CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
            Ok(f())
        })
        .join()
        .map_err(|_| io::Error::other("thread in the new network namespace panicked"))?
    })
}

/// Runs `f` on a new thread that has joined the network namespace at `path`
/// (e.g. `/run/netns/NAME`, `/proc/PID/ns/net`).
pub fn in_netns<T: Send>(path: &Path, f: impl FnOnce() -> T + Send) -> io::Result<T> {
    let ns = File::open(path)?;
    std::thread::scope(|s| {
        s.spawn(|| {
            setns(&ns, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
            Ok(f())
        })
        .join()
        .map_err(|_| io::Error::other("thread in the network namespace panicked"))?
    })
}

/// The inode of the calling thread's network namespace (to prove where code ran).
pub fn current_netns_inode() -> io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(std::fs::metadata("/proc/thread-self/ns/net")?.ino())
}
