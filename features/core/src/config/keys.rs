//! The `knet set` / `knet get` key whitelist: `pod-cidr`, `service-cidr` and `<feature>.<key>`.
//!
//! Keys are derived from the typed document itself, so a field added to a section is settable
//! without touching this file, and a key that is not a field cannot be set.

use serde_yaml::{Mapping, Value};

use super::{ClusterConfig, ConfigError};

/// Every settable key, in document order.
pub fn valid_keys() -> Vec<String> {
    let mut keys = Vec::new();
    let Value::Mapping(top) = to_value(&ClusterConfig::default()) else {
        return keys;
    };
    for (k, v) in &top {
        let Some(k) = k.as_str() else { continue };
        match v {
            Value::Mapping(section) => {
                for sk in section.keys().filter_map(Value::as_str) {
                    keys.push(format!("{k}.{sk}"));
                }
            }
            _ => keys.push(k.to_owned()),
        }
    }
    keys
}

/// Reads the whole document (`""`), one section (`"dns"`) or one key (`"dns.cluster-domain"`).
/// Derived defaults are shown with their effective value (e.g. `dns.service-ip`).
pub fn get_key(cfg: &ClusterConfig, key: &str) -> Result<Value, ConfigError> {
    let mut doc = to_value(cfg);
    if let Value::Mapping(top) = &mut doc
        && let Some(Value::Mapping(dns)) = top.get_mut("dns")
        && dns.get("service-ip").is_none_or(Value::is_null)
    {
        dns.insert("service-ip".into(), cfg.dns_service_ip().to_string().into());
    }
    if key.is_empty() {
        return Ok(doc);
    }
    let Value::Mapping(top) = doc else {
        return Err(unknown(key));
    };
    let (section, field) = match key.split_once('.') {
        Some((s, f)) => (s, Some(f)),
        None => (key, None),
    };
    let value = top.get(section).ok_or_else(|| unknown(key))?;
    match field {
        None => Ok(value.clone()),
        Some(f) => match value {
            Value::Mapping(m) => m.get(f).cloned().ok_or_else(|| unknown(key)),
            _ => Err(unknown(key)),
        },
    }
}

/// Parses `key=value` and applies it to `cfg`, returning the validated new document.
pub fn set_key(cfg: &ClusterConfig, assignment: &str) -> Result<ClusterConfig, ConfigError> {
    let (key, raw) = assignment
        .split_once('=')
        .ok_or_else(|| ConfigError::NotAnAssignment(assignment.to_owned()))?;
    let (key, raw) = (key.trim(), raw.trim());
    let mut doc = to_value(cfg);
    let Value::Mapping(top) = &mut doc else {
        return Err(unknown(key));
    };
    let slot = slot_mut(top, key).ok_or_else(|| unknown(key))?;
    *slot = if raw.is_empty() && is_optional(key) {
        Value::Null
    } else {
        typed_value(slot, key, raw)?
    };
    let new: ClusterConfig =
        serde_yaml::from_value(doc).map_err(|e| ConfigError::InvalidValue {
            key: key.to_owned(),
            value: raw.to_owned(),
            reason: reason_from_serde(&e.to_string()),
        })?;
    new.validate()?;
    Ok(new)
}

fn slot_mut<'a>(top: &'a mut Mapping, key: &str) -> Option<&'a mut Value> {
    match key.split_once('.') {
        None => match top.get_mut(key)? {
            v @ Value::Mapping(_) => {
                let _ = v;
                None
            }
            v => Some(v),
        },
        Some((section, field)) => match top.get_mut(section)? {
            Value::Mapping(m) => m.get_mut(field),
            _ => None,
        },
    }
}

/// Turns the typed-in text into a YAML value shaped like the field it replaces.
fn typed_value(current: &Value, key: &str, raw: &str) -> Result<Value, ConfigError> {
    let bad = |reason: &str| ConfigError::InvalidValue {
        key: key.to_owned(),
        value: raw.to_owned(),
        reason: reason.to_owned(),
    };
    Ok(match current {
        Value::Sequence(_) => Value::Sequence(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_owned()))
                .collect(),
        ),
        Value::Bool(_) => match raw {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => return Err(bad("use true or false")),
        },
        // A number field may also take words (network.mtu=auto); serde has the last say.
        Value::Number(_) => match raw.parse::<u64>() {
            Ok(n) => Value::Number(n.into()),
            Err(_) => Value::String(raw.to_owned()),
        },
        _ => Value::String(raw.to_owned()),
    })
}

/// Whether a key may be unset (its default is null), so `key=` clears it.
fn is_optional(key: &str) -> bool {
    let mut defaults = to_value(&ClusterConfig::default());
    let Value::Mapping(top) = &mut defaults else {
        return false;
    };
    slot_mut(top, key).is_some_and(|v| v.is_null())
}

fn to_value(cfg: &ClusterConfig) -> Value {
    serde_yaml::to_value(cfg).unwrap_or(Value::Null)
}

fn unknown(key: &str) -> ConfigError {
    ConfigError::UnknownKey {
        key: key.to_owned(),
        valid: valid_keys().join(", "),
    }
}

fn reason_from_serde(msg: &str) -> String {
    let msg = clean_serde_message(msg);
    if msg.starts_with("invalid type: string") && msg.contains("expected u") {
        return "use a whole number".to_owned();
    }
    msg
}

/// serde_yaml prefixes messages with a path and position that mean nothing to a CLI user.
fn clean_serde_message(msg: &str) -> String {
    let msg = msg.split(" at line ").next().unwrap_or(msg);
    match msg.split_once(": ") {
        Some((path, rest)) if !path.contains(' ') => rest.to_owned(),
        _ => msg.to_owned(),
    }
}
