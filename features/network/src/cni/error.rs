//! CNI error results: the spec's well-known codes and the JSON the runtime reads on stdout.

use serde::{Deserialize, Serialize};

/// A CNI error code (spec section "Error").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Code(pub u32);

impl Code {
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: Code = Code(1);
    /// Unsupported field in the network configuration.
    pub const UNSUPPORTED_FIELD: Code = Code(2);
    /// Container unknown or does not exist.
    pub const UNKNOWN_CONTAINER: Code = Code(3);
    /// Invalid necessary environment variables (CNI_COMMAND, CNI_CONTAINERID, ...).
    pub const INVALID_ENV: Code = Code(4);
    /// I/O failure (e.g. reading stdin).
    pub const IO_FAILURE: Code = Code(5);
    /// Failed to decode content (not JSON).
    pub const DECODING_FAILURE: Code = Code(6);
    /// Invalid network config.
    pub const INVALID_CONFIG: Code = Code(7);
    /// Try again later: a transient condition.
    pub const TRY_AGAIN_LATER: Code = Code(11);
    /// STATUS: the plugin cannot service ADD requests.
    pub const NOT_AVAILABLE: Code = Code(50);
    /// STATUS: existing containers may be degraded too.
    pub const NOT_AVAILABLE_DEGRADED: Code = Code(51);
    /// Plugin-specific: setting up the pod's network failed in the kernel.
    pub const WIRING_FAILED: Code = Code(100);
    /// Plugin-specific: the node's address pool is exhausted.
    pub const POOL_EXHAUSTED: Code = Code(101);
    /// Plugin-specific: CHECK found the pod network broken.
    pub const CHECK_FAILED: Code = Code(102);
    /// Plugin-specific: an internal failure (store, daemon).
    pub const INTERNAL: Code = Code(103);
}

/// A CNI error: what the plugin prints on stdout before exiting non-zero.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{msg}{}", if details.is_empty() { String::new() } else { format!(": {details}") })]
pub struct CniError {
    /// The spec code.
    pub code: Code,
    /// A short message.
    pub msg: String,
    /// Longer details (may be empty).
    #[serde(default)]
    pub details: String,
}

// === impl CniError ===

impl CniError {
    /// An error with a message and no details.
    pub fn new(code: Code, msg: impl Into<String>) -> CniError {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// Adds details.
    pub fn details(mut self, details: impl Into<String>) -> CniError {
        self.details = details.into();
        self
    }

    /// The JSON the runtime expects on stdout for this error, in `cni_version`.
    pub fn to_json(&self, cni_version: &str) -> serde_json::Value {
        serde_json::json!({
            "cniVersion": cni_version,
            "code": self.code.0,
            "msg": self.msg,
            "details": self.details,
        })
    }
}
