//! CNI plugin mode: the binary was started by a container runtime with `CNI_COMMAND` set.

use std::process::ExitCode;

/// Runs the network feature's CNI plugin and maps its status to an exit code.
pub fn run() -> ExitCode {
    let code = knet_network::cni_main();
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
