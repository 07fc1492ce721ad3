//! The nf_tables netlink encoder against `nft` on the real kernel: the same ruleset (every rule
//! shape the renderer produces, IPv4 and IPv6, firewall chains included) applied as a netlink batch in one namespace and
//! as `nft -f` text in another gives the same `nft list table`, both as text and as the
//! kernel's expressions (`nft --debug=netlink`); so do an incremental change and a removal of
//! everything. A batch the kernel refuses is reported with the message it refused and changes
//! nothing. Needs root; fails without it.

#[path = "services/lab.rs"]
#[allow(dead_code, reason = "shared with tests/services.rs")]
mod lab;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use knet_network::services::apply::{Diff, full_script, parse_names};
use knet_network::services::base::StaticConfig;
use knet_network::services::exec::{nft_apply, nft_list};
use knet_network::services::model::ServiceTable;
use knet_network::services::nfnl::NfSocket;
use knet_network::services::render::Ruleset;
use lab::{Ns, privileged};
use serde_json::{Value, json};

fn service(name: &str, ips: &[&str], extra: Value) -> Service {
    let mut spec = json!({"clusterIP": ips[0], "clusterIPs": ips,
        "ports": [{"name": "p", "port": 80, "protocol": "TCP"},
                  {"name": "u", "port": 53, "protocol": "UDP"}]});
    for (k, v) in extra.as_object().expect("object") {
        spec[k] = v.clone();
    }
    serde_json::from_value(json!({"metadata": {"namespace": "t", "name": name}, "spec": spec}))
        .expect("service")
}

fn slice(svc: &str, family: &str, eps: &[(&str, &str)]) -> EndpointSlice {
    let endpoints: Vec<Value> = eps
        .iter()
        .map(|(ip, node)| json!({"addresses": [ip], "nodeName": node}))
        .collect();
    serde_json::from_value(json!({
        "metadata": {"namespace": "t", "name": format!("{svc}-{family}"),
                     "labels": {"kubernetes.io/service-name": svc}},
        "addressType": family,
        "ports": [{"name": "p", "port": 8080, "protocol": "TCP"},
                  {"name": "u", "port": 5353, "protocol": "UDP"}],
        "endpoints": endpoints}))
    .expect("slice")
}

/// Every shape of rule, set and element the renderer makes, in both families.
fn objects(variant: u8) -> (Vec<Service>, Vec<EndpointSlice>) {
    let ext = if variant == 0 {
        "192.0.2.10"
    } else {
        "192.0.2.11"
    };
    let services = vec![
        service(
            "web",
            &["10.152.183.5", "fd00:152::5"],
            json!({"type": "NodePort", "ipFamilyPolicy": "PreferDualStack",
                   "ports": [{"name": "p", "port": 80, "nodePort": 30080},
                             {"name": "u", "port": 53, "protocol": "UDP", "nodePort": 30053}]}),
        ),
        service(
            "local",
            &["10.152.183.6", "fd00:152::6"],
            json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local",
                   "healthCheckNodePort": 32000,
                   "ports": [{"name": "p", "port": 80, "nodePort": 30081}]}),
        ),
        service(
            "remote-only",
            &["10.152.183.7"],
            json!({"type": "NodePort", "externalTrafficPolicy": "Local",
                   "ports": [{"name": "p", "port": 80, "nodePort": 30082}]}),
        ),
        service(
            "sticky",
            &["10.152.183.8", "fd00:152::8"],
            json!({"sessionAffinity": "ClientIP",
                   "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}}}),
        ),
        service("empty", &["10.152.183.9", "fd00:152::9"], json!({})),
        service(
            "ext",
            &["10.152.183.10"],
            json!({"externalIPs": [ext, "2001:db8::10"]}),
        ),
        service(
            "internal",
            &["10.152.183.11"],
            json!({"internalTrafficPolicy": "Local"}),
        ),
        {
            let ranges = if variant == 0 {
                json!(["203.0.113.0/25", "198.51.100.7/32", "2001:db8::/33"])
            } else {
                json!(["203.0.113.128/25"])
            };
            let mut s = service(
                "fw",
                &["10.152.183.12", "fd00:152::12"],
                json!({"type": "LoadBalancer", "loadBalancerSourceRanges": ranges}),
            );
            s.status = serde_json::from_value(json!({"loadBalancer": {"ingress": [
                {"ip": "192.0.2.30"}, {"ip": "2001:db8:30::1"}]}}))
            .expect("status");
            s
        },
    ];
    let mut web4 = vec![("10.1.0.11", "node"), ("10.2.16.5", "other")];
    if variant == 1 {
        web4[1] = ("10.2.16.6", "other");
    }
    let slices = vec![
        slice("web", "IPv4", &web4),
        slice("web", "IPv6", &[("fd00:10::11", "node")]),
        slice(
            "local",
            "IPv4",
            &[("10.1.0.12", "node"), ("10.2.16.7", "other")],
        ),
        slice("local", "IPv6", &[("fd00:10::12", "node")]),
        slice("remote-only", "IPv4", &[("10.2.16.8", "other")]),
        slice(
            "sticky",
            "IPv4",
            &[("10.1.0.13", "node"), ("10.1.0.14", "node")],
        ),
        slice("sticky", "IPv6", &[("fd00:10::13", "node")]),
        slice("ext", "IPv4", &[("10.1.0.15", "node")]),
        slice("internal", "IPv4", &[("10.2.16.9", "other")]),
        slice("fw", "IPv4", &[("10.1.0.16", "node")]),
    ];
    (services, slices)
}

fn render(variant: u8) -> Ruleset {
    let (services, slices) = objects(variant);
    let table = ServiceTable::build(&services, &slices, "node", false);
    let pods = [
        "10.1.0.0/16",
        "10.2.16.0/20",
        "fd00:10::/64",
        "fd00:11::/60",
    ];
    // The node is inside a source range: its LB IPs are admitted as sources too.
    let node = ["203.0.113.9".parse().expect("ip")];
    Ruleset::render_ports(&table.ports, &pods.map(|p| p.parse().expect("cidr")), &node)
}

/// `nft list table` and the kernel's expressions of every rule (`nft --debug=netlink`), with
/// what depends on the order things were added left out: rule handles, and the order in which
/// the kernel lists set elements.
fn listing(ns: &Ns) -> (String, String) {
    let text = ns.exec(&["nft", "list", "table", "inet", "knet-services"]);
    let debug = ns.exec(&[
        "nft",
        "--debug=netlink",
        "list",
        "table",
        "inet",
        "knet-services",
    ]);
    let mut exprs: Vec<String> = Vec::new();
    let mut elements: Vec<String> = Vec::new();
    for l in String::from_utf8_lossy(&debug.stdout).lines() {
        if l.starts_with("\telement ") {
            elements.push(l.to_owned());
            continue;
        }
        elements.sort();
        exprs.append(&mut elements);
        if l.starts_with("inet knet-services ") {
            exprs.push(l.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
        } else {
            exprs.push(l.to_owned());
        }
    }
    (
        String::from_utf8_lossy(&text.stdout).into_owned(),
        exprs.join("\n"),
    )
}

fn assert_same(by_nft: &Ns, by_netlink: &Ns, step: &str) {
    let (text_a, exprs_a) = listing(by_nft);
    let (text_b, exprs_b) = listing(by_netlink);
    assert!(
        text_a.contains("chain "),
        "{step}: nothing listed:\n{text_a}"
    );
    same_lines(&text_a, &text_b, &format!("{step}: nft list table"));
    same_lines(&exprs_a, &exprs_b, &format!("{step}: kernel expressions"));
}

/// Fails with the first differing line and some context.
fn same_lines(by_nft: &str, by_netlink: &str, what: &str) {
    let a: Vec<&str> = by_nft.lines().collect();
    let b: Vec<&str> = by_netlink.lines().collect();
    if let Some(i) = (0..a.len().max(b.len())).find(|i| a.get(*i) != b.get(*i)) {
        let from = i.saturating_sub(8);
        panic!(
            "{what} differs at line {i}:\n--- nft -f ---\n{}\n--- netlink ---\n{}",
            a[from.min(a.len())..(i + 3).min(a.len())].join("\n"),
            b[from.min(b.len())..(i + 3).min(b.len())].join("\n")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netlink_batches_program_what_nft_programs() {
    assert!(privileged(), "needs root and nft");
    let by_nft = Ns::create("nft");
    let by_netlink = Ns::create("nl");
    let (a, b) = (by_nft.path(), by_netlink.path());
    let config = StaticConfig::default();
    let empty = Ruleset::default();
    let first = render(0);

    // Cold: the whole ruleset as text in one namespace; the static part as text and the rest
    // as one netlink batch in the other.
    let kernel = parse_names(&nft_list(Some(&a)).await.expect("list"));
    nft_apply(Some(&a), &full_script(&kernel, &config, &first))
        .await
        .expect("nft cold");
    let kernel = parse_names(&nft_list(Some(&b)).await.expect("list"));
    nft_apply(Some(&b), &full_script(&kernel, &config, &empty))
        .await
        .expect("static part");
    let mut socket = NfSocket::open(Some(&b)).await.expect("socket");
    let cold = Diff::between(&empty, &first);
    let (messages, bytes) = socket.apply(&cold).expect("netlink cold");
    println!("cold batch: {messages} messages, {bytes} bytes");
    assert_same(&by_nft, &by_netlink, "cold");

    // An incremental change (an endpoint replaced, an external IP moved), both ways.
    let second = render(1);
    let change = Diff::between(&first, &second);
    assert!(!change.is_empty());
    nft_apply(Some(&a), &change.script())
        .await
        .expect("nft change");
    socket.apply(&change).expect("netlink change");
    assert_same(&by_nft, &by_netlink, "change");

    // Everything removed again.
    let gone = Diff::between(&second, &empty);
    nft_apply(Some(&a), &gone.script())
        .await
        .expect("nft removal");
    socket.apply(&gone).expect("netlink removal");
    assert_same(&by_nft, &by_netlink, "removal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_batch_names_the_message_and_changes_nothing() {
    assert!(privileged(), "needs root and nft");
    let ns = Ns::create("nlerr");
    let path = ns.path();
    let first = render(0);
    let kernel = parse_names(&nft_list(Some(&path)).await.expect("list"));
    nft_apply(
        Some(&path),
        &full_script(&kernel, &StaticConfig::default(), &first),
    )
    .await
    .expect("cold");
    let before = listing(&ns);
    // A valid change followed by the deletion of a chain that does not exist.
    let mut diff = Diff::between(&first, &render(1));
    diff.chains_del.push("no-such-chain".into());
    let mut socket = NfSocket::open(Some(&path)).await.expect("socket");
    let err = socket.apply(&diff).expect_err("refused").to_string();
    assert!(
        err.contains("no-such-chain") && err.contains("No such file or directory"),
        "{err}"
    );
    assert_eq!(listing(&ns), before, "nothing of the batch applied");
    // The socket stays usable.
    socket
        .apply(&Diff::between(&first, &render(1)))
        .expect("next batch");
    assert_ne!(listing(&ns), before);
}
