use super::*;

fn cfg(text: &str) -> ClusterConfig {
    ClusterConfig::from_yaml(text).expect("valid config")
}

#[test]
fn first_node_creates_from_file_or_defaults() {
    assert_eq!(
        decide(None, None).expect("decide"),
        ConfigDecision::Create(ClusterConfig::default())
    );
    assert_eq!(
        decide(None, Some("  \n")).expect("decide"),
        ConfigDecision::Create(ClusterConfig::default())
    );
    let text = "pod-cidr: 10.50.0.0/16\nnetwork:\n  vxlan-port: 4789\n";
    match decide(None, Some(text)).expect("decide") {
        ConfigDecision::Create(c) => {
            assert_eq!(c.pod_cidr.to_string(), "10.50.0.0/16");
            assert_eq!(c.network.vxlan_port, 4789);
        }
        other => panic!("expected create, got {other:?}"),
    }
}

#[test]
fn invalid_file_is_a_config_error_before_anything_else() {
    let err = decide(None, Some("bogus-key: 1\n")).expect_err("unknown key");
    assert!(matches!(err, BootstrapError::Config(_)), "{err}");
    assert!(err.to_string().contains("--file"), "{err}");
    let cluster = ClusterConfig::default();
    let err = decide(Some(&cluster), Some("network: {vxlan-port: 0}\n")).expect_err("bad value");
    assert!(matches!(err, BootstrapError::Config(_)), "{err}");
}

#[test]
fn further_node_adopts_without_a_file() {
    let cluster = cfg("pod-cidr: 10.9.0.0/16\n");
    assert_eq!(
        decide(Some(&cluster), None).expect("decide"),
        ConfigDecision::Adopt {
            config: cluster.clone(),
            ignored: vec![]
        }
    );
}

#[test]
fn omitted_immutable_keys_do_not_conflict() {
    // The cluster's pod CIDR is not the default, the file does not mention it.
    let cluster = cfg("pod-cidr: 10.9.0.0/16\nservice-cidr: 10.96.0.0/24\n");
    let d = decide(Some(&cluster), Some("dns:\n  enabled: true\n")).expect("decide");
    assert_eq!(
        d,
        ConfigDecision::Adopt {
            config: cluster,
            ignored: vec![]
        }
    );
}

#[test]
fn equal_immutable_keys_are_fine() {
    let cluster = cfg("pod-cidr: 10.9.0.0/16\n");
    let d = decide(Some(&cluster), Some("pod-cidr: 10.9.0.0/16\n")).expect("decide");
    assert!(matches!(d, ConfigDecision::Adopt { ignored, .. } if ignored.is_empty()));
}

#[test]
fn conflicting_immutable_key_fails_with_both_values() {
    let cluster = ClusterConfig::default();
    let err = decide(Some(&cluster), Some("pod-cidr: 10.50.0.0/16\n")).expect_err("conflict");
    match &err {
        BootstrapError::ConfigConflict { key, cluster, file } => {
            assert_eq!(key, "pod-cidr");
            assert_eq!(cluster, "10.1.0.0/16");
            assert_eq!(file, "10.50.0.0/16");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("remove pod-cidr from the file"), "{msg}");
    let err = decide(Some(&cluster), Some("service-cidr: 10.152.0.0/24\n")).expect_err("conflict");
    assert!(
        matches!(&err, BootstrapError::ConfigConflict { key, .. } if key == "service-cidr"),
        "{err}"
    );
}

#[test]
fn mutable_differences_are_adopted_and_listed() {
    let cluster = cfg("network:\n  vxlan-port: 4789\ndns:\n  cluster-domain: corp.local\n");
    let text = "network:\n  vxlan-port: 8472\ndns:\n  cluster-domain: corp.local\n  ttl: 60\n";
    match decide(Some(&cluster), Some(text)).expect("decide") {
        ConfigDecision::Adopt { config, ignored } => {
            assert_eq!(config, cluster, "the cluster's config wins");
            let keys: Vec<&str> = ignored.iter().map(|k| k.key.as_str()).collect();
            assert_eq!(keys, ["dns.ttl", "network.vxlan-port"]);
            assert_eq!(ignored[1].file, "8472");
            assert_eq!(ignored[1].cluster, "4789");
        }
        other => panic!("expected adopt, got {other:?}"),
    }
}

#[test]
fn origin_messages_say_what_happened() {
    use crate::cluster_config::ConfigOrigin;
    assert_eq!(
        ConfigOrigin::Created.to_string(),
        "stored the cluster config in ConfigMap kube-system/knet-config"
    );
    assert_eq!(
        ConfigOrigin::Adopted { ignored: vec![] }.to_string(),
        "adopted the cluster config from ConfigMap kube-system/knet-config"
    );
    let o = ConfigOrigin::Adopted {
        ignored: vec![IgnoredKey {
            key: "dns.ttl".into(),
            file: "60".into(),
            cluster: "30".into(),
        }],
    };
    assert!(o.to_string().ends_with(
        "the cluster's values win over --file for dns.ttl (file 60, cluster 30) (change them cluster-wide with `knet set`)"
    ));
}
