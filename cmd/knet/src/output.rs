//! How answers are printed: `knet status` in plain, JSON or YAML, and config values as YAML.

use knet_core::NodeStatus;

use crate::cli::OutputFormat;

const PAD: usize = 26;

/// Renders `knet status`.
pub fn status(s: &NodeStatus, format: OutputFormat) -> anyhow::Result<String> {
    Ok(match format {
        OutputFormat::Json => format!("{}\n", serde_json::to_string_pretty(s)?),
        OutputFormat::Yaml => serde_yaml::to_string(s)?,
        OutputFormat::Plain => {
            let mut out = String::new();
            let mut line = |k: &str, v: &str| {
                out.push_str(&format!("{:<PAD$}{v}\n", format!("{k}:")));
            };
            line("node", &s.node);
            line("status", &s.overall);
            line("api server", &s.api_server);
            for f in &s.features {
                line(f.name.as_str(), &f.summary());
            }
            out
        }
    })
}

/// Renders a config value for `knet get`: scalars bare, sections as YAML.
pub fn value(v: &serde_yaml::Value) -> anyhow::Result<String> {
    Ok(match v {
        serde_yaml::Value::String(s) => format!("{s}\n"),
        serde_yaml::Value::Bool(b) => format!("{b}\n"),
        serde_yaml::Value::Number(n) => format!("{n}\n"),
        serde_yaml::Value::Null => "\n".to_owned(),
        serde_yaml::Value::Sequence(items) => {
            let parts: Vec<String> = items
                .iter()
                .map(|i| serde_yaml::to_string(i).map(|s| s.trim().to_owned()))
                .collect::<Result<_, _>>()?;
            format!("{}\n", parts.join(","))
        }
        other => serde_yaml::to_string(other)?,
    })
}

#[cfg(test)]
mod tests {
    use knet_core::{FeatureId, FeatureState, FeatureStatus};

    use super::*;

    fn sample() -> NodeStatus {
        let mut features: Vec<FeatureStatus> = FeatureId::ALL
            .into_iter()
            .map(|id| FeatureStatus::new(id, false))
            .collect();
        for f in &mut features {
            f.updated_at = "2026-11-23T01:44:05Z".into();
        }
        features[0].enabled = true;
        features[0].state = FeatureState::Ready;
        features[2].enabled = true;
        features[2].state = FeatureState::Ready;
        features[2].message = "at 10.152.183.10".into();
        features[3].enabled = true;
        features[3].state = FeatureState::Failed;
        features[3].message = "pool 192.0.2.0/30 is exhausted".into();
        NodeStatus {
            node: "node1".into(),
            version: "0.1.0".into(),
            overall: "not ready".into(),
            api_server: "reachable".into(),
            features,
        }
    }

    #[test]
    fn plain_status_snapshot() {
        let got = status(&sample(), OutputFormat::Plain).expect("render");
        let want = "\
node:                     node1
status:                   not ready
api server:               reachable
network:                  enabled
network-policy:           disabled
dns:                      enabled at 10.152.183.10
load-balancer:            enabled, failing: pool 192.0.2.0/30 is exhausted
ingress:                  disabled
gateway:                  disabled
";
        assert_eq!(got, want);
    }

    #[test]
    fn json_status_snapshot() {
        let got = status(&sample(), OutputFormat::Json).expect("render");
        let v: serde_json::Value = serde_json::from_str(&got).expect("valid json");
        assert_eq!(v["node"], "node1");
        assert_eq!(v["overall"], "not ready");
        assert_eq!(v["features"][2]["name"], "dns");
        assert_eq!(v["features"][2]["state"], "ready");
        assert_eq!(v["features"][2]["message"], "at 10.152.183.10");
        assert_eq!(v["features"][2]["updated-at"], "2026-11-23T01:44:05Z");
        assert_eq!(v["features"][3]["state"], "failed");
        assert!(
            got.starts_with("{\n  \"node\": \"node1\",\n  \"version\": \"0.1.0\","),
            "{got}"
        );
    }

    #[test]
    fn yaml_status_snapshot() {
        let got = status(&sample(), OutputFormat::Yaml).expect("render");
        assert!(got.starts_with("node: node1\nversion: 0.1.0\noverall: not ready\napi-server: reachable\nfeatures:\n- name: network\n  enabled: true\n  state: ready\n  message: ''\n  updated-at: 2026-11-23T01:44:05Z\n"), "{got}");
        let back: NodeStatus = serde_yaml::from_str(&got).expect("parses back");
        assert_eq!(back, sample());
    }

    #[test]
    fn values_print_bare_or_as_yaml() {
        assert_eq!(
            value(&"cluster.local".into()).expect("s"),
            "cluster.local\n"
        );
        assert_eq!(value(&true.into()).expect("b"), "true\n");
        let seq = serde_yaml::Value::Sequence(vec!["9.9.9.9".into(), "1.1.1.1".into()]);
        assert_eq!(value(&seq).expect("seq"), "9.9.9.9,1.1.1.1\n");
    }
}
