//! CNI spec versions knet accepts, and which operations each allows.

use std::fmt;

use super::{CniError, Code};

/// Spec versions knet speaks, oldest first. 0.3.0 is the same result format as 0.3.1.
pub const SUPPORTED: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// A parsed `cniVersion`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u16, pub u16, pub u16);

impl Version {
    /// 0.4.0: CHECK appears.
    pub const V0_4_0: Version = Version(0, 4, 0);
    /// 1.0.0: `ips[].version` goes away.
    pub const V1_0_0: Version = Version(1, 0, 0);
    /// 1.1.0: STATUS and GC appear.
    pub const V1_1_0: Version = Version(1, 1, 0);

    /// Parses and checks that knet supports the version (code 1 otherwise).
    pub fn parse_supported(s: &str) -> Result<Version, CniError> {
        if !SUPPORTED.contains(&s) {
            return Err(CniError::new(
                Code::INCOMPATIBLE_VERSION,
                format!("knet does not support CNI version {s:?}"),
            )
            .details(format!("supported versions: {}", SUPPORTED.join(", "))));
        }
        let mut parts = s.split('.').map(str::parse::<u16>);
        match (parts.next(), parts.next(), parts.next()) {
            (Some(Ok(a)), Some(Ok(b)), Some(Ok(c))) => Ok(Version(a, b, c)),
            _ => Err(CniError::new(
                Code::INCOMPATIBLE_VERSION,
                format!("{s:?} is not a CNI version"),
            )),
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// The answer to VERSION.
pub fn version_info() -> serde_json::Value {
    serde_json::json!({
        "cniVersion": knet_core::cni_conf::CNI_VERSION,
        "supportedVersions": SUPPORTED,
    })
}
