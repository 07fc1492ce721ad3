//! `knet bootstrap`.

use std::process::ExitCode;

use crate::cli::{BootstrapArgs, NodeArgs};

pub async fn run(_node: &NodeArgs, _args: BootstrapArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("bootstrap is being wired to knet-bootstrap")
}
