//! Running `nft` and `conntrack` inside the node's network namespace (the daemon's own when
//! `None`): the child inherits the namespace of the thread that forks it.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::ServicesError;
use super::apply::{FullScript, parse_names};
use super::base::{StaticConfig, TABLE};
use super::desired::Desired;
use crate::kernel::in_netns;

/// How long one run may take (a cold 30k-Service table is a large transaction).
const TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `argv` in `netns` with `stdin` on its standard input.
pub async fn run(
    netns: Option<&Path>,
    argv: &[&str],
    stdin: &str,
) -> Result<Output, ServicesError> {
    run_streamed(netns, argv, &mut std::iter::once(stdin.to_owned())).await
}

/// Runs `argv` in `netns`, writing `input`'s chunks to its standard input as they come (while
/// its output is read, so neither side waits on a full pipe).
pub async fn run_streamed(
    netns: Option<&Path>,
    argv: &[&str],
    input: &mut (dyn Iterator<Item = String> + Send),
) -> Result<Output, ServicesError> {
    let program = argv.first().copied().unwrap_or("true").to_owned();
    let args: Vec<String> = argv.iter().skip(1).map(|s| (*s).to_owned()).collect();
    let spawn = move || {
        tokio::process::Command::new(&program)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
    };
    let child = match netns {
        None => spawn(),
        Some(path) => {
            let rt = tokio::runtime::Handle::current();
            in_netns(path, move || {
                let _guard = rt.enter();
                spawn()
            })
            .await?
        }
    };
    let shown = argv.join(" ");
    let mut child = child.map_err(|e| ServicesError::Exec(format!("cannot run {shown}: {e}")))?;
    let pipe = child.stdin.take();
    let write = async move {
        if let Some(mut pipe) = pipe {
            for chunk in input {
                pipe.write_all(chunk.as_bytes()).await?;
            }
        }
        Ok::<(), std::io::Error>(())
    };
    let (written, out) = tokio::time::timeout(TIMEOUT, async {
        tokio::join!(write, child.wait_with_output())
    })
    .await
    .map_err(|_| ServicesError::Exec(format!("{shown} did not finish within {TIMEOUT:?}")))?;
    let out = out.map_err(|e| ServicesError::Exec(format!("{shown}: {e}")))?;
    match written {
        // A program that failed may stop reading its input: its own error says more.
        Err(e) if out.status.success() => {
            Err(ServicesError::Exec(format!("writing to {shown}: {e}")))
        }
        _ => Ok(out),
    }
}

/// Applies an nft script as one transaction.
pub async fn nft_apply(netns: Option<&Path>, script: &str) -> Result<(), ServicesError> {
    nft_apply_streamed(netns, &mut std::iter::once(script.to_owned())).await
}

/// Applies an nft script given in chunks (streamed to `nft`) as one transaction.
pub async fn nft_apply_streamed(
    netns: Option<&Path>,
    script: &mut (dyn Iterator<Item = String> + Send),
) -> Result<(), ServicesError> {
    let out = run_streamed(netns, &["nft", "-f", "-"], script).await?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ServicesError::Nft(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ))
    }
}

/// The full transaction, as the sync loop sends it at start, after a failure and every resync:
/// lists the table's chain and set names, then streams `desired` to `nft -f -` Service by
/// Service ([`FullScript`]). Returns the transaction's size in bytes.
pub async fn nft_apply_full(
    netns: Option<&Path>,
    config: &StaticConfig,
    desired: &Desired,
) -> Result<usize, ServicesError> {
    let kernel = parse_names(&nft_list_names(netns).await?);
    let mut script = FullScript::new(&kernel, config, desired.rendered(), desired.elements());
    nft_apply_streamed(netns, &mut script).await?;
    Ok(script.bytes())
}

/// The names of every chain and set of the `inet` tables, without rules or elements
/// (`nft -t list chains inet ; list sets inet`; for [`crate::services::apply::parse_names`]):
/// much less than the whole table to read and parse.
pub async fn nft_list_names(netns: Option<&Path>) -> Result<String, ServicesError> {
    let out = run(
        netns,
        &[
            "nft", "-t", "list", "chains", "inet", ";", "list", "sets", "inet",
        ],
        "",
    )
    .await?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        Err(ServicesError::Nft(err.trim().to_owned()))
    }
}

/// `nft -t list table inet knet-services`, or an empty string when the table is absent.
pub async fn nft_list(netns: Option<&Path>) -> Result<String, ServicesError> {
    let out = run(netns, &["nft", "-t", "list", "table", "inet", TABLE], "").await?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("No such file or directory") {
            Ok(String::new())
        } else {
            Err(ServicesError::Nft(err.trim().to_owned()))
        }
    }
}
