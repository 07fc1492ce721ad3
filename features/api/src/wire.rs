//! Request and answer bodies.

use serde::{Deserialize, Serialize};

/// `knet set` assignments, e.g. `["dns.cluster-domain=example.local"]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetRequest {
    /// `key=value` strings.
    pub assignments: Vec<String>,
}

/// `knet enable` / `knet disable` feature names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeaturesRequest {
    /// Feature names as typed.
    pub features: Vec<String>,
}

/// The cluster config after a read or a change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigAnswer {
    /// The whole document.
    pub config: knet_core::config::ClusterConfig,
}

/// Every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// One line saying what is wrong and what to do.
    pub error: String,
}
