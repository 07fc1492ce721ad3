//! One module per subcommand.

pub mod bootstrap;
pub mod cni;
mod config;
mod daemon;
mod reset;
mod status;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

/// Runs a parsed command line.
pub async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let node = cli.node;
    match cli.command {
        Command::Bootstrap(args) => bootstrap::run(&node, args).await,
        Command::Daemon => daemon::run(&node).await,
        Command::Enable(args) => config::toggle(&node, args.features, true).await,
        Command::Disable(args) => config::toggle(&node, args.features, false).await,
        Command::Set(args) => config::set(&node, args.assignments).await,
        Command::Get(args) => config::get(&node, args.key).await,
        Command::Status(args) => status::run(&node, args).await,
        Command::Reset(args) => reset::run(node, args).await,
        Command::Version => {
            println!("knet {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
    }
}
