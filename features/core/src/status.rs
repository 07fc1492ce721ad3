//! Status rows: what `knet status` prints for each feature and for the node.

use serde::{Deserialize, Serialize};

use crate::FeatureId;

/// Where a feature is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FeatureState {
    /// Switched off; nothing installed.
    Disabled,
    /// Switched on, starting or syncing for the first time.
    Starting,
    /// Switched on and serving.
    Ready,
    /// Switched on but failing; retried with backoff.
    Failed,
    /// Switched off, removing what it installed.
    Stopping,
    /// Switched on in the cluster config, but this build has no module for it.
    Unavailable,
}

/// One feature's row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct FeatureStatus {
    /// The feature.
    pub name: FeatureId,
    /// Whether the cluster config switches it on.
    pub enabled: bool,
    /// Lifecycle state on this node.
    pub state: FeatureState,
    /// A short human message: where it serves (e.g. `at 10.152.183.10`), or the last error.
    pub message: String,
    /// When the row last changed (RFC 3339, UTC).
    pub updated_at: String,
}

/// The whole `knet status` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct NodeStatus {
    /// This node's name.
    pub node: String,
    /// knet's version.
    pub version: String,
    /// `ready` when every enabled feature is ready, else `not ready`.
    pub overall: String,
    /// How the daemon's link to the Kubernetes API is.
    pub api_server: String,
    /// One row per feature, in [`FeatureId::ALL`] order.
    pub features: Vec<FeatureStatus>,
}

// === impl FeatureStatus ===

impl FeatureStatus {
    /// A fresh row for a feature.
    pub fn new(name: FeatureId, enabled: bool) -> FeatureStatus {
        FeatureStatus {
            name,
            enabled,
            state: if enabled {
                FeatureState::Starting
            } else {
                FeatureState::Disabled
            },
            message: String::new(),
            updated_at: now_rfc3339(),
        }
    }

    /// The text after `name:` in `knet status`, like `k8s status`.
    pub fn summary(&self) -> String {
        let with = |prefix: &str, sep: &str| match self.message.as_str() {
            "" => prefix.to_owned(),
            // "enabled at 10.152.183.10", as k8s status prints dns.
            m if m.starts_with("at ") => format!("{prefix} {m}"),
            m => format!("{prefix}{sep}{m}"),
        };
        match self.state {
            FeatureState::Disabled => "disabled".into(),
            FeatureState::Ready => with("enabled", ", "),
            FeatureState::Starting => with("enabled, starting", ": "),
            FeatureState::Failed => with("enabled, failing", ": "),
            FeatureState::Stopping => "disabling".into(),
            FeatureState::Unavailable => with("enabled, unavailable", ": "),
        }
    }
}

// === impl NodeStatus ===

impl NodeStatus {
    /// Whether every enabled feature is ready.
    pub fn all_ready(&self) -> bool {
        self.features
            .iter()
            .filter(|f| f.enabled)
            .all(|f| f.state == FeatureState::Ready)
    }
}

/// Now, as RFC 3339 UTC with seconds.
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    rfc3339(secs)
}

/// Formats Unix seconds as RFC 3339 UTC (civil-from-days, Howard Hinnant's algorithm).
pub fn rfc3339(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or_default();
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_398_245), "2026-11-23T01:44:05Z");
    }

    #[test]
    fn summaries_read_like_k8s_status() {
        let mut s = FeatureStatus::new(FeatureId::Dns, true);
        s.state = FeatureState::Ready;
        s.message = "at 10.152.183.10".into();
        assert_eq!(s.summary(), "enabled at 10.152.183.10");
        s.message = "pod CIDR 10.1.0.0/24".into();
        assert_eq!(s.summary(), "enabled, pod CIDR 10.1.0.0/24");
        s.state = FeatureState::Failed;
        s.message = "cannot bind 10.152.183.10:53: address in use".into();
        assert_eq!(
            s.summary(),
            "enabled, failing: cannot bind 10.152.183.10:53: address in use"
        );
        s.message.clear();
        assert_eq!(s.summary(), "enabled, failing");
        assert_eq!(
            FeatureStatus::new(FeatureId::Gateway, false).summary(),
            "disabled"
        );
    }
}
