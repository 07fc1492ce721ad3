//! The names of knet's features.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One of knet's toggleable in-process modules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FeatureId {
    /// Pod networking (CNI, IPAM, routing) and Service load-balancing without kube-proxy.
    Network,
    /// NetworkPolicy enforcement.
    NetworkPolicy,
    /// Cluster DNS.
    Dns,
    /// LoadBalancer IP pools, L2 and BGP announcement.
    LoadBalancer,
    /// Ingress controller.
    Ingress,
    /// Gateway API controller.
    Gateway,
}

/// A feature name that knet does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown feature {0:?}: valid features are {valid}", valid = FeatureId::names().join(", "))]
pub struct UnknownFeature(pub String);

// === impl FeatureId ===

impl FeatureId {
    /// Every feature, in the order `knet status` lists them (dependencies first).
    pub const ALL: [FeatureId; 6] = [
        FeatureId::Network,
        FeatureId::NetworkPolicy,
        FeatureId::Dns,
        FeatureId::LoadBalancer,
        FeatureId::Ingress,
        FeatureId::Gateway,
    ];

    /// The name users type, and the config section key.
    pub fn as_str(self) -> &'static str {
        match self {
            FeatureId::Network => "network",
            FeatureId::NetworkPolicy => "network-policy",
            FeatureId::Dns => "dns",
            FeatureId::LoadBalancer => "load-balancer",
            FeatureId::Ingress => "ingress",
            FeatureId::Gateway => "gateway",
        }
    }

    /// Features that must be enabled for this one to be enabled.
    pub fn depends_on(self) -> &'static [FeatureId] {
        match self {
            FeatureId::Ingress | FeatureId::Gateway => &[FeatureId::Network],
            _ => &[],
        }
    }

    /// All valid names.
    pub fn names() -> Vec<&'static str> {
        FeatureId::ALL.iter().map(|f| f.as_str()).collect()
    }
}

impl fmt::Display for FeatureId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FeatureId {
    type Err = UnknownFeature;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FeatureId::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| UnknownFeature(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for f in FeatureId::ALL {
            assert_eq!(f.as_str().parse::<FeatureId>(), Ok(f));
        }
    }

    #[test]
    fn unknown_feature_lists_valid_names() {
        let err = "ingres".parse::<FeatureId>().expect_err("must fail");
        assert_eq!(
            err.to_string(),
            "unknown feature \"ingres\": valid features are network, network-policy, dns, load-balancer, ingress, gateway"
        );
    }

    #[test]
    fn dependencies_come_earlier_in_all() {
        for (i, f) in FeatureId::ALL.iter().enumerate() {
            for d in f.depends_on() {
                let j = FeatureId::ALL.iter().position(|x| x == d).expect("listed");
                assert!(j < i, "{d} must be listed before {f}");
            }
        }
    }
}
