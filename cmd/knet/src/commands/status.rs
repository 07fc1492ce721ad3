//! `knet status`.

use std::process::ExitCode;
use std::time::Instant;

use knet_core::NodeStatus;

use crate::cli::{NodeArgs, StatusArgs};
use crate::output;

pub async fn run(node: &NodeArgs, args: StatusArgs) -> anyhow::Result<ExitCode> {
    let client = node.client();
    let start = Instant::now();
    let status = loop {
        let s: NodeStatus = client.get("/v1/status").await?;
        if !args.wait_ready || s.all_ready() {
            break s;
        }
        if start.elapsed() >= args.timeout {
            print!("{}", output::status(&s, args.output_format)?);
            anyhow::bail!(
                "not ready after {:?}: see the lines above; `journalctl -u knet` or the daemon log has details",
                args.timeout
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    print!("{}", output::status(&status, args.output_format)?);
    Ok(ExitCode::SUCCESS)
}
