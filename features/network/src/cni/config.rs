//! The network configuration on stdin, parsed strictly: every unknown key is an error naming the
//! key, so a typo in the conflist is caught at the first pod rather than ignored.

use serde_json::{Map, Value};

use super::{CniError, Code, Version};

/// Keys knet understands in its plugin section (besides the reserved `cni.dev/*`).
const KNOWN_KEYS: &[&str] = &[
    "cniVersion",
    "cniVersions",
    "name",
    "type",
    "socket",
    "prevResult",
    "runtimeConfig",
    "args",
    "capabilities",
    "dns",
    "disableCheck",
    "disableGC",
    "loadOnlyInlinedPlugins",
];

/// One attachment the runtime still uses, from GC's `cni.dev/valid-attachments`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Attachment {
    /// Container id.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// Interface name.
    pub ifname: String,
}

/// knet's plugin configuration as handed to one call.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    /// The version the runtime asked for; the result is rendered in it.
    pub version: Version,
    /// The `cniVersion` string as given.
    pub cni_version: String,
    /// The network name.
    pub name: String,
    /// The daemon's socket.
    pub socket: String,
    /// The previous result (CHECK, DEL, chained ADD).
    pub prev_result: Option<Value>,
    /// DNS settings to echo in the result.
    pub dns: Option<Value>,
    /// GC: the attachments still in use (`None` when the key is absent).
    pub valid_attachments: Option<Vec<Attachment>>,
}

// === impl NetConf ===

impl NetConf {
    /// Parses stdin bytes: code 6 when it is not JSON, 7 when a required key is missing or has
    /// the wrong type, 1 for an unsupported version, 2 for a key knet does not know.
    pub fn parse(bytes: &[u8]) -> Result<NetConf, CniError> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| {
            CniError::new(
                Code::DECODING_FAILURE,
                "the network configuration on stdin is not valid JSON",
            )
            .details(e.to_string())
        })?;
        let Value::Object(obj) = value else {
            return Err(CniError::new(
                Code::INVALID_CONFIG,
                "the network configuration must be a JSON object",
            ));
        };
        let cni_version = required_str(&obj, "cniVersion")?;
        let version = Version::parse_supported(&cni_version)?;
        let name = required_str(&obj, "name")?;
        let plugin_type = required_str(&obj, "type")?;
        if plugin_type.is_empty() {
            return Err(invalid("\"type\" must not be empty"));
        }
        for key in obj.keys() {
            if !KNOWN_KEYS.contains(&key.as_str()) && !key.starts_with("cni.dev/") {
                return Err(CniError::new(
                    Code::UNSUPPORTED_FIELD,
                    format!("knet does not support the network configuration key {key:?}"),
                )
                .details(
                    "knet allocates addresses itself (no \"ipam\" section) and only reads \"socket\"; \
                     remove the key from the conflist",
                ));
            }
        }
        let socket = required_str(&obj, "socket")?;
        if socket.is_empty() {
            return Err(invalid("\"socket\" must name the knet daemon's socket"));
        }
        let prev_result = optional_object(&obj, "prevResult")?;
        let dns = optional_object(&obj, "dns")?;
        for key in ["runtimeConfig", "args", "capabilities"] {
            optional_object(&obj, key)?;
        }
        let valid_attachments = match obj.get("cni.dev/valid-attachments") {
            None | Some(Value::Null) => None,
            Some(v) => Some(serde_json::from_value(v.clone()).map_err(|e| {
                invalid("\"cni.dev/valid-attachments\" must be a list of {containerID, ifname}")
                    .details(e.to_string())
            })?),
        };
        Ok(NetConf {
            version,
            cni_version,
            name,
            socket,
            prev_result,
            dns,
            valid_attachments,
        })
    }

    /// Reads only `cniVersion` (for VERSION and error rendering), defaulting to knet's own.
    pub fn peek_version(bytes: &[u8]) -> String {
        serde_json::from_slice::<Value>(bytes)
            .ok()
            .and_then(|v| {
                v.get("cniVersion")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .filter(|v| super::version::SUPPORTED.contains(&v.as_str()))
            .unwrap_or_else(|| knet_core::cni_conf::CNI_VERSION.to_owned())
    }
}

fn invalid(msg: impl Into<String>) -> CniError {
    CniError::new(Code::INVALID_CONFIG, msg)
}

fn required_str(obj: &Map<String, Value>, key: &str) -> Result<String, CniError> {
    match obj.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(invalid(format!(
            "{key:?} must be a string, not {}",
            kind(other)
        ))),
        None => Err(invalid(format!("the network configuration has no {key:?}"))),
    }
}

fn optional_object(obj: &Map<String, Value>, key: &str) -> Result<Option<Value>, CniError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Object(_)) => Ok(Some(v.clone())),
        Some(other) => Err(invalid(format!(
            "{key:?} must be an object, not {}",
            kind(other)
        ))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}
