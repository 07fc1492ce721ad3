//! What the plugin process and the daemon send each other over the local API:
//! `POST /v1/feature/network/cni/<command>` with a [`CniRequest`]; the answer is the CNI result
//! JSON (200) or a [`CniErrorBody`] (4xx/5xx).

use serde::{Deserialize, Serialize};

use crate::cni::{CniEnv, CniError, Code, Command};

/// One CNI call forwarded to the daemon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CniRequest {
    /// The operation.
    pub command: Command,
    /// The CNI environment.
    pub env: CniEnv,
    /// The network configuration exactly as read from stdin.
    pub config: serde_json::Value,
}

/// An error answer. `error` makes it readable by any local API client; the rest is the CNI
/// error the plugin prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniErrorBody {
    /// One line, for humans.
    pub error: String,
    /// The CNI code.
    pub code: u32,
    /// The CNI message.
    pub msg: String,
    /// The CNI details.
    #[serde(default)]
    pub details: String,
}

/// The daemon API path of a command.
pub fn api_path(command: Command) -> String {
    format!("/v1/feature/network/cni/{}", command.as_path())
}

// === impl CniErrorBody ===

impl From<&CniError> for CniErrorBody {
    fn from(e: &CniError) -> Self {
        CniErrorBody {
            error: e.to_string(),
            code: e.code.0,
            msg: e.msg.clone(),
            details: e.details.clone(),
        }
    }
}

impl From<CniErrorBody> for CniError {
    fn from(b: CniErrorBody) -> Self {
        CniError {
            code: Code(b.code),
            msg: b.msg,
            details: b.details,
        }
    }
}

/// The HTTP status an error is answered with.
pub fn http_status(e: &CniError) -> u16 {
    match e.code {
        Code::UNKNOWN_CONTAINER => 404,
        Code::TRY_AGAIN_LATER | Code::NOT_AVAILABLE | Code::NOT_AVAILABLE_DEGRADED => 503,
        Code(c) if c < 100 => 400,
        _ => 500,
    }
}
