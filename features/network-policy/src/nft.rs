//! Running `nft -f -`: one script, one atomic kernel transaction, in the daemon's network
//! namespace or (for tests) in a chosen one.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sched::CloneFlags;
use tokio::io::AsyncWriteExt;

/// The table this feature owns (family `inet`).
pub const TABLE: &str = "knet-network-policy";

/// How long one `nft` run may take.
const NFT_TIMEOUT: Duration = Duration::from_secs(20);

/// Applying a ruleset failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NftError {
    /// `nft` could not be started.
    #[error("cannot run nft ({0}); install the nftables package")]
    Spawn(#[source] std::io::Error),
    /// The namespace file cannot be opened or entered.
    #[error("cannot enter network namespace {path}: {reason}")]
    Netns {
        /// The namespace file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// `nft` rejected the script or the kernel refused the transaction.
    #[error("nft rejected the ruleset: {0}")]
    Rejected(String),
    /// `nft` hung.
    #[error("nft did not finish within {0:?}")]
    Timeout(Duration),
    /// Talking to `nft` failed.
    #[error("talking to nft: {0}")]
    Io(#[source] std::io::Error),
}

/// Runs `script` through `nft -f -` in `netns` (the current namespace when `None`).
pub async fn apply(netns: Option<&Path>, script: &str) -> Result<(), NftError> {
    let mut child = match netns {
        None => spawn_nft(),
        Some(path) => {
            let rt = tokio::runtime::Handle::current();
            in_netns(path, move || {
                let _guard = rt.enter();
                spawn_nft()
            })
            .await?
        }
    }
    .map_err(NftError::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .await
            .map_err(NftError::Io)?;
    }
    let out = tokio::time::timeout(NFT_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| NftError::Timeout(NFT_TIMEOUT))?
        .map_err(NftError::Io)?;
    if !out.status.success() {
        return Err(NftError::Rejected(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ));
    }
    Ok(())
}

fn spawn_nft() -> std::io::Result<tokio::process::Child> {
    tokio::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
}

/// Runs `f` on a fresh thread inside the network namespace at `path`; a child process forked
/// there inherits the namespace. The thread ends with `f`, so nothing else runs there.
async fn in_netns<T, F>(path: &Path, f: F) -> Result<T, NftError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let err = |reason: String| NftError::Netns {
        path: path.to_owned(),
        reason,
    };
    let file = File::open(path).map_err(|e| err(e.to_string()))?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("knet-netpol-ns".into())
        .spawn(move || {
            let result = nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).map(|()| f());
            let _ = tx.send(result);
        })
        .map_err(|e| err(e.to_string()))?;
    rx.await
        .map_err(|_| err("the helper thread died".into()))?
        .map_err(|e| err(e.to_string()))
}
