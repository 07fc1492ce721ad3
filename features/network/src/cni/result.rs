//! The success result of ADD (and the `prevResult` of CHECK/DEL), rendered for the version the
//! runtime asked for.

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{Value, json};

use super::{CniError, Code, Version};

/// An interface in the result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Interface name.
    pub name: String,
    /// MAC address, `aa:bb:..`.
    pub mac: String,
    /// The netns path for container-side interfaces; `None` for host-side ones.
    pub sandbox: Option<String>,
    /// MTU (rendered from 1.1.0 on).
    pub mtu: Option<u32>,
}

/// An address in the result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpConfig {
    /// Address with prefix, e.g. `10.1.0.5/32`.
    pub address: IpNet,
    /// The gateway the pod uses.
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`.
    pub interface: Option<usize>,
}

/// A route in the result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Destination.
    pub dst: IpNet,
    /// Next hop.
    pub gw: Option<IpAddr>,
}

/// A CNI success result, independent of version.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CniResult {
    /// Interfaces created.
    pub interfaces: Vec<Interface>,
    /// Addresses assigned.
    pub ips: Vec<IpConfig>,
    /// Routes installed in the pod.
    pub routes: Vec<Route>,
    /// DNS settings (from the config, echoed).
    pub dns: Option<Value>,
}

// === impl CniResult ===

impl CniResult {
    /// The JSON of the result in `cni_version` (which must be supported).
    pub fn render(&self, version: Version) -> Value {
        let interfaces: Vec<Value> = self
            .interfaces
            .iter()
            .map(|i| {
                let mut v = json!({ "name": i.name, "mac": i.mac });
                if let Some(s) = &i.sandbox {
                    v["sandbox"] = json!(s);
                }
                if let (Some(mtu), true) = (i.mtu, version >= Version::V1_1_0) {
                    v["mtu"] = json!(mtu);
                }
                v
            })
            .collect();
        let ips: Vec<Value> = self
            .ips
            .iter()
            .map(|ip| {
                let mut v = json!({ "address": ip.address.to_string() });
                if version < Version::V1_0_0 {
                    v["version"] = json!(if ip.address.addr().is_ipv4() {
                        "4"
                    } else {
                        "6"
                    });
                }
                if let Some(gw) = ip.gateway {
                    v["gateway"] = json!(gw.to_string());
                }
                if let Some(idx) = ip.interface {
                    v["interface"] = json!(idx);
                }
                v
            })
            .collect();
        let routes: Vec<Value> = self
            .routes
            .iter()
            .map(|r| {
                let mut v = json!({ "dst": r.dst.to_string() });
                if let Some(gw) = r.gw {
                    v["gw"] = json!(gw.to_string());
                }
                v
            })
            .collect();
        json!({
            "cniVersion": version.to_string(),
            "interfaces": interfaces,
            "ips": ips,
            "routes": routes,
            "dns": self.dns.clone().unwrap_or_else(|| json!({})),
        })
    }

    /// Reads the addresses back from a result of any supported version (a `prevResult`).
    pub fn addresses_of(value: &Value) -> Result<Vec<IpNet>, CniError> {
        let bad = |why: &str| CniError::new(Code::INVALID_CONFIG, format!("\"prevResult\" {why}"));
        let Some(ips) = value.get("ips") else {
            return Ok(Vec::new());
        };
        let ips = ips
            .as_array()
            .ok_or_else(|| bad("has an \"ips\" that is not a list"))?;
        ips.iter()
            .map(|ip| {
                ip.get("address")
                    .and_then(Value::as_str)
                    .and_then(|a| a.parse::<IpNet>().ok())
                    .ok_or_else(|| bad("has an address that is not an IP/prefix"))
            })
            .collect()
    }
}
