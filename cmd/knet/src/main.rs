//! `knet`: one binary for all of a Kubernetes node's networking.
//!
//! This is glue: parse the command line, set up logging, dispatch to the libraries, and turn
//! errors into one line on stderr and a non-zero exit. Run by a container runtime with
//! `CNI_COMMAND` set, it is knet's CNI plugin instead, whatever name it is installed under.

mod cli;
mod commands;
mod logging;
mod output;

use std::process::ExitCode;

/// mimalloc instead of glibc's malloc: the daemon's watch caches and its per-sync scratch
/// allocations come from several threads, and glibc's per-thread arenas keep more of the freed
/// scratch resident (11% less RSS and 6% more DNS queries per core at 10k Services and 50k Pods;
/// "Daemon memory" in docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;

fn main() -> ExitCode {
    if std::env::var_os("CNI_COMMAND").is_some() {
        return commands::cni::run();
    }
    let cli = cli::Cli::parse();
    logging::init(cli.command.is_daemon());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            // One line, with the causes folded in.
            let mut msg = e.to_string();
            for cause in e.chain().skip(1) {
                let c = cause.to_string();
                if !msg.contains(&c) {
                    msg.push_str(": ");
                    msg.push_str(&c);
                }
            }
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}
