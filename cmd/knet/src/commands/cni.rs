//! CNI plugin mode: the binary was started by a container runtime with `CNI_COMMAND` set.

use std::process::ExitCode;

pub fn run() -> ExitCode {
    let msg = serde_json::json!({
        "cniVersion": knet_core::cni_conf::CNI_VERSION,
        "code": 50,
        "msg": "knet's CNI plugin is not available in this build",
        "details": "the network feature's CNI plugin is not compiled in",
    });
    println!("{msg}");
    ExitCode::FAILURE
}
