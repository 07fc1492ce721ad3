//! Create or adopt: what a node does with the cluster's config and its own `--file`.
//!
//! Only keys the file actually names count: a file that omits `pod-cidr` does not contradict
//! a cluster whose pod CIDR is not the default. Which keys are immutable is decided by
//! [`knet_core::config::check_update`], not here.

use std::collections::BTreeMap;

use knet_core::config::{ClusterConfig, ConfigError, check_update};
use serde_json::Value;

use super::IgnoredKey;
use crate::BootstrapError;

/// What to do with the cluster config.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigDecision {
    /// No config in the cluster yet: store this one.
    Create(ClusterConfig),
    /// The cluster has one: use it.
    Adopt {
        /// The cluster's config.
        config: ClusterConfig,
        /// File keys whose values lost to the cluster's.
        ignored: Vec<IgnoredKey>,
    },
}

/// Decides between creating and adopting, given the cluster's config (if any) and the text of
/// `--file` (if any). Fails if the file is invalid, or names a value for an immutable key
/// that differs from the cluster's.
pub fn decide(
    cluster: Option<&ClusterConfig>,
    file_text: Option<&str>,
) -> Result<ConfigDecision, BootstrapError> {
    let file_text = file_text.filter(|t| !t.trim().is_empty());
    let file = file_text
        .map(ClusterConfig::from_yaml)
        .transpose()
        .map_err(BootstrapError::Config)?;
    let Some(cluster) = cluster else {
        return Ok(ConfigDecision::Create(file.unwrap_or_default()));
    };
    let (Some(file), Some(text)) = (file, file_text) else {
        return Ok(ConfigDecision::Adopt {
            config: cluster.clone(),
            ignored: Vec::new(),
        });
    };
    let named = named_keys(text);
    let file_flat = flatten_config(&file);
    let cluster_json = serde_json::to_value(cluster).unwrap_or(Value::Null);
    let cluster_flat = flatten(&cluster_json);
    let mut ignored = Vec::new();
    for key in named {
        let (Some(fv), cv) = (file_flat.get(&key), cluster_flat.get(&key)) else {
            continue;
        };
        if Some(fv) == cv {
            continue;
        }
        if let Some(ConfigError::Immutable {
            key: k,
            current,
            wanted,
        }) = immutable_violation(cluster, &cluster_json, &key, fv)
        {
            return Err(BootstrapError::ConfigConflict {
                key: k.to_owned(),
                cluster: current,
                file: wanted,
            });
        }
        ignored.push(IgnoredKey {
            key,
            file: fv.to_string(),
            cluster: cv.map(Value::to_string).unwrap_or_else(|| "unset".into()),
        });
    }
    Ok(ConfigDecision::Adopt {
        config: cluster.clone(),
        ignored,
    })
}

/// Would changing only `key` to `value` in the cluster's config break an immutable key?
fn immutable_violation(
    cluster: &ClusterConfig,
    cluster_json: &Value,
    key: &str,
    value: &Value,
) -> Option<ConfigError> {
    let mut changed = cluster_json.clone();
    let mut slot = &mut changed;
    for part in key.split('.') {
        slot = slot.get_mut(part)?;
    }
    *slot = value.clone();
    let candidate: ClusterConfig = serde_json::from_value(changed).ok()?;
    match check_update(cluster, &candidate) {
        Err(e @ ConfigError::Immutable { .. }) => Some(e),
        _ => None,
    }
}

/// Dotted paths of the leaves a YAML document names (sequences are leaves).
fn named_keys(text: &str) -> Vec<String> {
    let Ok(yaml) = serde_yaml::from_str::<serde_yaml::Value>(text) else {
        return Vec::new();
    };
    let json = serde_json::to_value(yaml).unwrap_or(Value::Null);
    flatten(&json).into_keys().collect()
}

fn flatten_config(cfg: &ClusterConfig) -> BTreeMap<String, Value> {
    flatten(&serde_json::to_value(cfg).unwrap_or(Value::Null))
}

fn flatten(v: &Value) -> BTreeMap<String, Value> {
    fn walk(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            leaf => {
                out.insert(prefix.to_owned(), leaf.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", v, &mut out);
    out
}

#[cfg(test)]
mod tests;
