use serde_json::{Value, json};

use super::*;

fn service(name: &str, ip: &str, rv: &str, extra: Value) -> Service {
    let mut spec = json!({"clusterIP": ip, "type": "NodePort",
        "ports": [{"name": "p", "port": 80, "protocol": "TCP"}]});
    for (k, v) in extra.as_object().expect("object") {
        spec[k] = v.clone();
    }
    serde_json::from_value(json!({
        "metadata": {"namespace": "t", "name": name, "uid": format!("u-{name}"),
                     "resourceVersion": rv},
        "spec": spec}))
    .expect("service")
}

fn slice(svc: &str, rv: &str, eps: &[&str], trigger: Option<&str>) -> EndpointSlice {
    let endpoints: Vec<Value> = eps
        .iter()
        .map(|ip| json!({"addresses": [ip], "nodeName": "n"}))
        .collect();
    let mut meta = json!({"namespace": "t", "name": format!("{svc}-1"),
        "uid": format!("s-{svc}"), "resourceVersion": rv,
        "labels": {"kubernetes.io/service-name": svc}});
    if let Some(t) = trigger {
        meta["annotations"] = json!({TRIGGER_TIME_ANNOTATION: t});
    }
    serde_json::from_value(json!({
        "metadata": meta, "addressType": "IPv4",
        "ports": [{"name": "p", "port": 8080, "protocol": "TCP"}],
        "endpoints": endpoints}))
    .expect("slice")
}

fn inputs() -> NodeInputs {
    NodeInputs {
        node: "n".into(),
        sctp: false,
        pod_cidrs: vec!["10.1.0.0/16".parse().expect("cidr")],
        node_ips: Vec::new(),
    }
}

/// What a full render from scratch gives for the same objects.
fn full(services: &[Service], slices: &[EndpointSlice]) -> Ruleset {
    let table = ServiceTable::build(services, slices, "n", false);
    Ruleset::render(&table, &inputs().pod_cidrs)
}

/// Applies a diff to an in-memory ruleset, in the diff's order, refusing what the kernel
/// would refuse (a chain or set created twice, deleting what is not there).
fn apply(r: &mut Ruleset, d: &Diff) {
    for (name, decl) in &d.sets_add {
        r.sets.insert(name.clone(), *decl);
    }
    for name in &d.chains_add {
        assert!(!r.chains.contains_key(name), "{name} created twice");
        r.chains.insert(name.clone(), Vec::new());
    }
    for (name, rules, flush) in &d.chains_fill {
        let chain = r.chains.get_mut(name).expect("filled chain exists");
        assert_eq!(
            *flush,
            !chain.is_empty(),
            "flush exactly when the chain has rules"
        );
        chain.clone_from(rules);
    }
    for (map, key) in &d.elements_del {
        let els = r.elements.get_mut(map).expect("map");
        assert!(els.remove(key).is_some(), "deleting a missing {key}");
    }
    for (map, key, v) in &d.elements_add {
        let els = r.elements.entry(map).or_default();
        assert!(els.insert(*key, v.clone()).is_none(), "{key} added twice");
    }
    for name in &d.chains_del {
        assert!(
            r.chains.remove(name).is_some(),
            "deleting a missing chain {name}"
        );
    }
    for name in &d.sets_del {
        assert!(
            r.sets.remove(name).is_some(),
            "deleting a missing set {name}"
        );
    }
    for m in MAPS {
        r.elements.entry(m).or_default();
    }
}

#[test]
fn incremental_updates_match_a_full_render_at_every_step() {
    let mut d = Desired::default();
    let mut kernel = Ruleset::default();
    let steps: Vec<(Vec<Service>, Vec<EndpointSlice>)> = vec![
        (
            vec![
                service("a", "10.152.183.1", "1", json!({})),
                service("b", "10.152.183.2", "1", json!({})),
            ],
            vec![slice("a", "1", &["10.1.0.5", "10.1.0.6"], None)],
        ),
        // One endpoint of a replaced; b gets endpoints (reject → chains).
        (
            vec![
                service("a", "10.152.183.1", "1", json!({})),
                service("b", "10.152.183.2", "1", json!({})),
            ],
            vec![
                slice("a", "2", &["10.1.0.5", "10.1.0.7"], None),
                slice("b", "1", &["10.1.0.8"], None),
            ],
        ),
        // Two Services claim the same external IP and port; then a goes away.
        (
            vec![
                service(
                    "a",
                    "10.152.183.1",
                    "2",
                    json!({"externalIPs": ["192.0.2.1"]}),
                ),
                service(
                    "b",
                    "10.152.183.2",
                    "2",
                    json!({"externalIPs": ["192.0.2.1"]}),
                ),
            ],
            vec![
                slice("a", "2", &["10.1.0.5", "10.1.0.7"], None),
                slice("b", "1", &["10.1.0.8"], None),
            ],
        ),
        (
            vec![service(
                "b",
                "10.152.183.2",
                "2",
                json!({"externalIPs": ["192.0.2.1"]}),
            )],
            vec![slice("b", "1", &["10.1.0.8"], None)],
        ),
        (
            vec![service(
                "b",
                "10.152.183.2",
                "3",
                json!({"sessionAffinity": "ClientIP"}),
            )],
            vec![slice("b", "1", &["10.1.0.8"], None)],
        ),
        (Vec::new(), Vec::new()),
    ];
    for (i, (svcs, slices)) in steps.iter().enumerate() {
        let u = d.update(svcs, slices, &inputs(), true);
        assert_eq!(u.all, i == 0);
        apply(&mut kernel, &u.diff);
        let want = full(svcs, slices);
        assert_eq!(d.ruleset(), want, "step {i}: merged state");
        assert_eq!(kernel, want, "step {i}: previous state + diff");
        assert_eq!(d.table(), ServiceTable::build(svcs, slices, "n", false));
    }
    assert!(d.ruleset().chains.is_empty());
    assert_eq!(d.chain_count(), 0);
    assert!(d.claims.is_empty(), "no claims left");
}

#[test]
fn only_changed_services_are_recomputed() {
    let svcs: Vec<Service> = (0..50)
        .map(|i| service(&format!("s{i}"), &format!("10.152.0.{i}"), "1", json!({})))
        .collect();
    let mut slices: Vec<EndpointSlice> = (0..50)
        .map(|i| slice(&format!("s{i}"), "1", &[&format!("10.1.1.{i}")], None))
        .collect();
    let mut d = Desired::default();
    assert_eq!(d.update(&svcs, &slices, &inputs(), true).recomputed, 50);
    let again = d.update(&svcs, &slices, &inputs(), true);
    assert_eq!(again.recomputed, 0);
    assert!(again.diff.is_empty());
    slices[7] = slice("s7", "2", &["10.1.2.7"], Some("2026-01-01T00:00:00Z"));
    let one = d.update(&svcs, &slices, &inputs(), true);
    assert_eq!(one.recomputed, 1);
    assert!(!one.all);
    assert_eq!(one.triggers.len(), 1, "the changed slice's trigger time");
    // One service chain refilled, one endpoint chain added, one removed.
    assert_eq!(one.diff.chains_add.len(), 1);
    assert_eq!(one.diff.chains_fill.len(), 2);
    assert_eq!(one.diff.chains_del.len(), 1);
    assert!(one.diff.elements_add.is_empty() && one.diff.elements_del.is_empty());
    // A node-wide input change recomputes everything.
    let mut other = inputs();
    other.node = "m".into();
    let all = d.update(&svcs, &slices, &other, true);
    assert!(all.all);
    assert_eq!(all.recomputed, 50);
    assert!(
        all.triggers.is_empty(),
        "no latency recorded for a full recompute"
    );
}
