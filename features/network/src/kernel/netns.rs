//! Netlink connections in a chosen network namespace, and running a closure inside one.

use std::fs::File;
use std::path::Path;

use nix::sched::CloneFlags;
use tokio::task::JoinHandle;

use super::KernelError;

/// A route-netlink connection bound to one network namespace, driven on the current runtime.
/// Dropping it closes the connection.
#[derive(Debug)]
pub struct Netlink {
    /// The request handle.
    pub handle: rtnetlink::Handle,
    task: JoinHandle<()>,
}

// === impl Netlink ===

impl Netlink {
    /// A connection in `netns` (a file such as `/var/run/netns/x` or `/proc/<pid>/ns/net`), or in
    /// the daemon's own namespace when `None`. Must be called inside a tokio runtime.
    pub async fn open(netns: Option<&Path>) -> Result<Netlink, KernelError> {
        let (conn, handle, _) = match netns {
            None => rtnetlink::new_connection().map_err(KernelError::Connect)?,
            Some(path) => {
                let rt = tokio::runtime::Handle::current();
                in_netns(path, move || {
                    // The socket is created (and registered with the runtime's reactor) here,
                    // on a thread inside the namespace; it stays bound to it afterwards.
                    let _guard = rt.enter();
                    rtnetlink::new_connection()
                })
                .await?
                .map_err(KernelError::Connect)?
            }
        };
        let task = tokio::spawn(conn);
        Ok(Netlink { handle, task })
    }
}

impl Drop for Netlink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs `f` on a fresh thread that has entered the network namespace at `path`, and returns its
/// result. The thread ends with `f`, so no other code ever runs in the wrong namespace.
pub async fn in_netns<T, F>(path: &Path, f: F) -> Result<T, KernelError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let shown = path.display().to_string();
    let file = File::open(path).map_err(|source| KernelError::OpenNetns {
        path: shown.clone(),
        source,
    })?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("knet-netns".into())
        .spawn(move || {
            let result = nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).map(|()| f());
            let _ = tx.send(result);
        })
        .map_err(|e| KernelError::Thread(e.to_string()))?;
    rx.await
        .map_err(|_| KernelError::Thread("the thread ended without an answer".into()))?
        .map_err(|source| KernelError::Setns {
            path: shown,
            source,
        })
}
