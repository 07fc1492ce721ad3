//! The CNI network configuration knet installs, shared by `knet bootstrap` (which writes it) and
//! the network feature's plugin (which reads its own section back from stdin).

use serde::{Deserialize, Serialize};

use crate::paths::{CNI_NETWORK_NAME, CNI_PLUGIN_NAME, Paths};

/// The newest CNI spec version knet speaks; also the conflist's version.
pub const CNI_VERSION: &str = "1.1.0";

/// knet's own keys in its plugin section of the conflist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KnetPluginConf {
    /// The node daemon's local API socket.
    pub socket: String,
}

/// The conflist knet installs into the CNI conf dir.
pub fn conflist(paths: &Paths) -> serde_json::Value {
    serde_json::json!({
        "cniVersion": CNI_VERSION,
        "name": CNI_NETWORK_NAME,
        "plugins": [{
            "type": CNI_PLUGIN_NAME,
            "socket": paths.socket().display().to_string(),
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflist_names_the_socket_of_its_node() {
        let paths = Paths {
            run_dir: "/run/knet-n1".into(),
            ..Paths::default()
        };
        let c = conflist(&paths);
        assert_eq!(c["plugins"][0]["type"], "knet");
        assert_eq!(c["plugins"][0]["socket"], "/run/knet-n1/knet.sock");
        assert_eq!(c["cniVersion"], "1.1.0");
        let back: KnetPluginConf =
            serde_json::from_value(c["plugins"][0].clone()).expect("plugin section parses");
        assert_eq!(back.socket, "/run/knet-n1/knet.sock");
    }
}
