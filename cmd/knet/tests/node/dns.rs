//! The dns feature on a two-node lab: `dig` from pods (through their resolv.conf, which points
//! at 10.152.183.10, answered by the knet daemon of the pod's own node), over UDP and TCP,
//! against real Services, EndpointSlices and Pods created through the API; forwarding to real
//! upstream servers (Debian's BIND `named`) in their own namespace on the lab underlay, with
//! failover; live config changes.
//!
//! `support::lab_with_nodes` labs are IPv4-only, so the first test checks AAAA as NODATA; the
//! dual-stack rows (AAAA, `ip6.arpa` PTR, pod AAAA) run on a lab of their own with
//! `LabOptions::dual_stack` and IPv6 pod and service CIDRs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Service};
use knet_e2e::Lab;
use kube::Api;

use crate::support;

mod policy;

const NS: &str = "dnst";
const AGNHOST: &str = "registry.k8s.io/e2e-test-images/agnhost:2.53";
const ZONE: &str = "cluster.local";

/// One resource record of dig's output.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rr {
    name: String,
    ttl: String,
    rtype: String,
    data: String,
}

/// What dig printed: the rcode and the sections.
#[derive(Debug, Clone, Default)]
struct Reply {
    status: String,
    answer: Vec<Rr>,
    authority: Vec<Rr>,
    additional: Vec<Rr>,
    raw: String,
}

impl Reply {
    /// The data of the answer records of type `rtype`, sorted.
    fn data(&self, rtype: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .answer
            .iter()
            .filter(|r| r.rtype == rtype)
            .map(|r| r.data.clone())
            .collect();
        v.sort();
        v
    }

    /// Asserts NOERROR and that the answers of type `rtype` are exactly `want`.
    fn expect(&self, rtype: &str, want: &[&str], what: &str) {
        assert_eq!(self.status, "NOERROR", "{what}: {}", self.raw);
        let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(self.data(rtype), want, "{what}: {}", self.raw);
    }

    fn expect_servfail(&self, what: &str) {
        assert_eq!(self.status, "SERVFAIL", "{what}: {}", self.raw);
    }

    /// Asserts a negative answer with rcode `status`, no answer and the zone SOA in authority.
    fn expect_negative(&self, status: &str, zone: &str, what: &str) {
        assert_eq!(self.status, status, "{what}: {}", self.raw);
        assert!(
            self.answer.is_empty(),
            "{what}: no answer expected: {}",
            self.raw
        );
        assert!(
            self.authority.iter().any(|r| r.rtype == "SOA"
                && r.name == format!("{zone}.")
                && r.data
                    .starts_with(&format!("ns.dns.{zone}. hostmaster.{zone}."))),
            "{what}: the zone SOA must be in the authority section: {}",
            self.raw
        );
    }
}

fn parse_dig(out: &str) -> Option<Reply> {
    let mut reply = Reply {
        raw: out.to_owned(),
        ..Reply::default()
    };
    let mut section = "";
    for line in out.lines() {
        if let Some(rest) = line.split_once("status: ").map(|(_, r)| r) {
            reply.status = rest.split(',').next()?.trim().to_owned();
            continue;
        }
        if line.starts_with(";; ANSWER SECTION") {
            section = "answer";
            continue;
        }
        if line.starts_with(";; AUTHORITY SECTION") {
            section = "authority";
            continue;
        }
        if line.starts_with(";; ADDITIONAL SECTION") {
            section = "additional";
            continue;
        }
        if line.trim().is_empty() || line.starts_with(';') {
            if line.trim().is_empty() {
                section = "";
            }
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 5 {
            continue;
        }
        let rr = Rr {
            name: f[0].to_owned(),
            ttl: f[1].to_owned(),
            rtype: f[3].to_owned(),
            data: f[4..].join(" "),
        };
        match section {
            "answer" => reply.answer.push(rr),
            "authority" => reply.authority.push(rr),
            "additional" => reply.additional.push(rr),
            _ => {}
        }
    }
    (!reply.status.is_empty()).then_some(reply)
}

/// `dig` from pod `pod` (its resolv.conf's nameserver, the cluster DNS IP), over UDP, or TCP
/// with `tcp`. Errors when dig got no reply.
async fn dig_opt(lab: &Lab, pod: &str, name: &str, qtype: &str, tcp: bool) -> Option<Reply> {
    let mut argv = vec!["dig", "+time=5", "+tries=1", "+nocookie"];
    if tcp {
        argv.push("+tcp");
    }
    argv.extend([name, qtype]);
    let out = lab
        .exec_pod(NS, pod, &argv, Duration::from_secs(10))
        .await
        .ok()?;
    parse_dig(&out.stdout)
}

async fn dig(lab: &Lab, pod: &str, name: &str, qtype: &str, tcp: bool) -> Reply {
    match dig_opt(lab, pod, name, qtype, tcp).await {
        Some(r) => r,
        None => panic!("dig {name} {qtype} (tcp: {tcp}) from {pod}: no reply"),
    }
}

/// Polls `f` every 100 ms until it yields, for at most `limit`.
async fn poll<T, F, Fut>(limit: Duration, mut f: F) -> Option<(T, Duration)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(v) = f().await {
            return Some((v, start.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

fn pod_yaml(name: &str, node: &str, labels: &str, host: Option<(&str, &str)>) -> String {
    let host = host
        .map(|(h, s)| format!("  hostname: {h}\n  subdomain: {s}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {NS}, labels: {{{labels}}}}}\nspec:\n  nodeName: {node}\n{host}  containers:\n  - name: c\n    image: {AGNHOST}\n    args: [netexec, --http-port=8080]\n"
    )
}

fn slice_yaml(name: &str, svc: &str, endpoints: &[(&str, Option<&str>, bool)]) -> String {
    let eps: String = endpoints
        .iter()
        .map(|(ip, host, ready)| {
            let host = host
                .map(|h| format!("  hostname: {h}\n"))
                .unwrap_or_default();
            format!("- addresses: [\"{ip}\"]\n{host}  conditions: {{ready: {ready}}}\n")
        })
        .collect();
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}\n  namespace: {NS}\n  labels: {{kubernetes.io/service-name: {svc}}}\naddressType: IPv4\nports: [{{name: http, port: 80, protocol: TCP}}]\nendpoints:\n{eps}"
    )
}

async fn bootstrap_both(lab: &Lab) {
    for node in ["node-1", "node-2"] {
        let out = lab
            .bootstrap_knet_with(node, Some(support::BOOTSTRAP_CONFIG), &["--timeout", "60s"])
            .await
            .expect("bootstrap");
        assert!(
            out.success(),
            "bootstrap {node}: {}\n{}",
            out.stdout,
            out.stderr
        );
    }
}

async fn pod_ip(lab: &Lab, name: &str) -> String {
    let p: Pod = lab
        .wait_pod_ready(NS, name, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("pod {name} never became ready: {e:#}"));
    p.status.and_then(|s| s.pod_ip).expect("pod IP")
}

async fn cluster_ip(lab: &Lab, name: &str) -> String {
    let svcs: Api<Service> = Api::namespaced(lab.client(), NS);
    svcs.get(name)
        .await
        .expect("service")
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("clusterIP")
}

fn reverse_name(ip: &str) -> String {
    let mut o: Vec<&str> = ip.split('.').collect();
    o.reverse();
    format!("{}.in-addr.arpa.", o.join("."))
}

/// The two client pods: `client` on node-1 and `front` on node-2 (each node answers its own).
const CLIENTS: [&str; 2] = ["client", "front"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_answers_every_cluster_record_from_pods_over_udp_and_tcp() {
    let lab = support::lab_with_nodes("dnsrec", 2).await;
    bootstrap_both(&lab).await;
    support::wait_status_line(&lab, "dns: enabled at 10.152.183.10").await;
    let raw = support::knet(&lab, &["status"]).await.stdout;
    assert!(
        raw.lines()
            .any(|l| l == "dns:                      enabled at 10.152.183.10"),
        "knet status must print the dns row aligned: {raw}"
    );

    lab.create_namespace(NS).await.expect("namespace");
    let yaml = [
        pod_yaml("client", "node-1", "app: client", None),
        pod_yaml("front", "node-2", "app: front", None),
        pod_yaml("db-0", "node-1", "app: db", Some(("db-0", "db"))),
        pod_yaml("db-1", "node-2", "app: db", Some(("db-1", "db"))),
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: {NS}}}\nspec:\n  selector: {{app: front}}\n  ports: [{{name: http, port: 80, targetPort: 8080, protocol: TCP}}]\n"),
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: db, namespace: {NS}}}\nspec:\n  clusterIP: None\n  selector: {{app: db}}\n  ports: [{{name: pg, port: 5432, protocol: TCP}}]\n"),
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: ext, namespace: {NS}}}\nspec:\n  type: ExternalName\n  externalName: web.{NS}.svc.{ZONE}\n"),
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: manual, namespace: {NS}}}\nspec:\n  clusterIP: None\n  ports: [{{name: http, port: 80}}]\n"),
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: unready, namespace: {NS}}}\nspec:\n  clusterIP: None\n  ports: [{{name: http, port: 80}}]\n"),
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: pnra, namespace: {NS}}}\nspec:\n  clusterIP: None\n  publishNotReadyAddresses: true\n  ports: [{{name: http, port: 80}}]\n"),
        slice_yaml("manual-1", "manual", &[("10.1.200.1", Some("alpha"), true), ("10.1.200.2", None, false)]),
        slice_yaml("unready-1", "unready", &[("10.1.200.3", None, false)]),
        slice_yaml("pnra-1", "pnra", &[("10.1.200.4", Some("beta"), false)]),
    ]
    .join("---\n");
    lab.apply_yaml(&yaml, NS).await.expect("objects");
    let client_ip = pod_ip(&lab, "client").await;
    pod_ip(&lab, "front").await;
    let db0 = pod_ip(&lab, "db-0").await;
    let db1 = pod_ip(&lab, "db-1").await;
    let web_ip = cluster_ip(&lab, "web").await;
    let svc = |s: &str| format!("{s}.{NS}.svc.{ZONE}.");

    // The headless Service's endpoints come from the EndpointSlice controller: wait for both.
    let want_db = {
        let mut v = vec![db0.clone(), db1.clone()];
        v.sort();
        v
    };
    let (_, t) = poll(Duration::from_secs(30), || async {
        dig_opt(&lab, "client", &svc("db"), "A", false)
            .await
            .filter(|r| r.data("A") == want_db)
    })
    .await
    .unwrap_or_else(|| panic!("db.{NS} never listed both pods"));
    println!("headless endpoints answered {t:?} after the pods were ready");

    for pod in CLIENTS {
        for tcp in [false, true] {
            let at = format!("from {pod} (tcp: {tcp})");
            // ClusterIP A; AAAA is NODATA on this IPv4-only lab.
            dig(&lab, pod, &svc("web"), "A", tcp).await.expect(
                "A",
                &[&web_ip],
                &format!("web A {at}"),
            );
            dig(&lab, pod, &svc("web"), "AAAA", tcp)
                .await
                .expect_negative("NOERROR", ZONE, &format!("web AAAA {at}"));
            // SRV for the named port, the target's address in the additional section.
            let r = dig(&lab, pod, &format!("_http._tcp.{}", svc("web")), "SRV", tcp).await;
            r.expect(
                "SRV",
                &[&format!("0 100 80 {}", svc("web"))],
                &format!("web SRV {at}"),
            );
            assert!(
                r.additional
                    .iter()
                    .any(|a| a.name == svc("web") && a.rtype == "A" && a.data == web_ip),
                "web SRV additional {at}: {}",
                r.raw
            );
            dig(&lab, pod, &format!("_nope._tcp.{}", svc("web")), "SRV", tcp)
                .await
                .expect_negative("NXDOMAIN", ZONE, &format!("unknown port SRV {at}"));
            // PTR of the ClusterIP and of headless endpoints.
            dig(&lab, pod, &reverse_name(&web_ip), "PTR", tcp)
                .await
                .expect("PTR", &[&svc("web")], &format!("ClusterIP PTR {at}"));
            dig(&lab, pod, &reverse_name(&db1), "PTR", tcp)
                .await
                .expect(
                    "PTR",
                    &[&format!("db-1.{}", svc("db"))],
                    &format!("endpoint PTR {at}"),
                );
            dig(&lab, pod, &reverse_name("10.1.200.1"), "PTR", tcp)
                .await
                .expect(
                    "PTR",
                    &[&format!("alpha.{}", svc("manual"))],
                    &format!("slice PTR {at}"),
                );
            // Headless: every ready endpoint; per-hostname records (pod hostname+subdomain).
            dig(&lab, pod, &svc("db"), "A", tcp).await.expect(
                "A",
                &[&db0, &db1],
                &format!("headless A {at}"),
            );
            dig(&lab, pod, &format!("db-0.{}", svc("db")), "A", tcp)
                .await
                .expect("A", &[&db0], &format!("db-0 hostname A {at}"));
            dig(&lab, pod, &format!("db-1.{}", svc("db")), "A", tcp)
                .await
                .expect("A", &[&db1], &format!("db-1 hostname A {at}"));
            dig(&lab, pod, &format!("_pg._tcp.{}", svc("db")), "SRV", tcp)
                .await
                .expect(
                    "SRV",
                    &[
                        &format!("0 50 5432 db-0.{}", svc("db")),
                        &format!("0 50 5432 db-1.{}", svc("db")),
                    ],
                    &format!("headless SRV {at}"),
                );
            // Readiness from the EndpointSlice: not-ready endpoints are left out...
            dig(&lab, pod, &svc("manual"), "A", tcp).await.expect(
                "A",
                &["10.1.200.1"],
                &format!("ready only {at}"),
            );
            dig(&lab, pod, &format!("alpha.{}", svc("manual")), "A", tcp)
                .await
                .expect("A", &["10.1.200.1"], &format!("slice hostname {at}"));
            dig(
                &lab,
                pod,
                &format!("10-1-200-2.{}", svc("manual")),
                "A",
                tcp,
            )
            .await
            .expect_negative(
                "NXDOMAIN",
                ZONE,
                &format!("not-ready endpoint name {at}"),
            );
            dig(&lab, pod, &svc("unready"), "A", tcp)
                .await
                .expect_negative("NXDOMAIN", ZONE, &format!("headless without ready {at}"));
            // ...unless publishNotReadyAddresses.
            dig(&lab, pod, &svc("pnra"), "A", tcp).await.expect(
                "A",
                &["10.1.200.4"],
                &format!("publishNotReadyAddresses {at}"),
            );
            dig(&lab, pod, &format!("beta.{}", svc("pnra")), "A", tcp)
                .await
                .expect(
                    "A",
                    &["10.1.200.4"],
                    &format!("publishNotReadyAddresses host {at}"),
                );
            // ExternalName: the CNAME, then (in-zone target) its address.
            let r = dig(&lab, pod, &svc("ext"), "A", tcp).await;
            r.expect("CNAME", &[&svc("web")], &format!("ExternalName {at}"));
            assert_eq!(
                r.data("A"),
                vec![web_ip.clone()],
                "ExternalName target {at}: {}",
                r.raw
            );
            // Pod A records: the dashed IP.
            let dashed = client_ip.replace('.', "-");
            dig(&lab, pod, &format!("{dashed}.{NS}.pod.{ZONE}."), "A", tcp)
                .await
                .expect("A", &[&client_ip], &format!("pod A {at}"));
            dig(
                &lab,
                pod,
                &format!("{dashed}.nosuchns.pod.{ZONE}."),
                "A",
                tcp,
            )
            .await
            .expect_negative("NXDOMAIN", ZONE, &format!("pod A unknown ns {at}"));
            // NXDOMAIN versus NODATA, SOA in authority either way.
            dig(&lab, pod, &svc("nosuch"), "A", tcp)
                .await
                .expect_negative("NXDOMAIN", ZONE, &format!("unknown service {at}"));
            dig(&lab, pod, &format!("web.nosuchns.svc.{ZONE}."), "A", tcp)
                .await
                .expect_negative("NXDOMAIN", ZONE, &format!("unknown namespace {at}"));
            dig(&lab, pod, &format!("x.{ZONE}."), "A", tcp)
                .await
                .expect_negative("NXDOMAIN", ZONE, &format!("label other than svc/pod {at}"));
            dig(&lab, pod, &svc("web"), "TXT", tcp)
                .await
                .expect_negative("NOERROR", ZONE, &format!("TXT on a service {at}"));
            dig(&lab, pod, &format!("{NS}.svc.{ZONE}."), "A", tcp)
                .await
                .expect_negative("NOERROR", ZONE, &format!("namespace non-terminal {at}"));
            dig(&lab, pod, &format!("svc.{ZONE}."), "A", tcp)
                .await
                .expect_negative("NOERROR", ZONE, &format!("svc non-terminal {at}"));
            // SOA and NS at the apex; the NS name's address.
            let r = dig(&lab, pod, &format!("{ZONE}."), "SOA", tcp).await;
            assert_eq!(r.status, "NOERROR", "apex SOA {at}: {}", r.raw);
            let soa = r.data("SOA");
            assert_eq!(soa.len(), 1, "apex SOA {at}: {}", r.raw);
            let f: Vec<&str> = soa[0].split_whitespace().collect();
            assert_eq!(
                (f[0], f[1], f[3], f[4], f[5], f[6]),
                (
                    &*format!("ns.dns.{ZONE}."),
                    &*format!("hostmaster.{ZONE}."),
                    "7200",
                    "1800",
                    "86400",
                    "30"
                ),
                "apex SOA {at}: {}",
                r.raw
            );
            dig(&lab, pod, &format!("{ZONE}."), "NS", tcp).await.expect(
                "NS",
                &[&format!("ns.dns.{ZONE}.")],
                &format!("apex NS {at}"),
            );
            dig(&lab, pod, &format!("ns.dns.{ZONE}."), "A", tcp)
                .await
                .expect("A", &["10.152.183.10"], &format!("ns.dns A {at}"));
            // The schema version.
            dig(&lab, pod, &format!("dns-version.{ZONE}."), "TXT", tcp)
                .await
                .expect("TXT", &["\"1.1.0\""], &format!("dns-version {at}"));
            // TTLs: dns.ttl (30) on cluster records, 28800 on the schema version.
            let r = dig(&lab, pod, &format!("dns-version.{ZONE}."), "TXT", tcp).await;
            assert!(
                r.answer.iter().all(|a| a.ttl == "28800"),
                "dns-version TTL {at}: {}",
                r.raw
            );
            let r = dig(&lab, pod, &svc("web"), "A", tcp).await;
            assert!(
                !r.answer.is_empty() && r.answer.iter().all(|a| a.ttl == "30"),
                "cluster record TTL {at}: {}",
                r.raw
            );
            // SRV on the bare Service name: every port.
            dig(&lab, pod, &svc("web"), "SRV", tcp).await.expect(
                "SRV",
                &[&format!("0 100 80 {}", svc("web"))],
                &format!("bare SRV {at}"),
            );
            // Case-insensitive, echoing the question's case.
            let mixed = "WeB.DnSt.SvC.ClUsTeR.LoCaL.".to_owned();
            let r = dig(&lab, pod, &mixed, "A", tcp).await;
            r.expect("A", &[&web_ip], &format!("mixed case {at}"));
            assert!(
                r.answer.iter().all(|a| a.name == mixed),
                "the answer must echo the question's case {at}: {}",
                r.raw
            );
        }
        // The resolv.conf search path: `kubernetes.default` -> the API Service (UDP).
        let short = lab
            .dig_from_pod(NS, pod, "kubernetes.default", "A")
            .await
            .expect("dig +search");
        assert_eq!(
            short,
            vec!["10.152.183.1".to_owned()],
            "kubernetes.default from {pod}"
        );
        let out = lab
            .exec_pod(
                NS,
                pod,
                &[
                    "dig", "+short", "+search", "+tcp", "+time=3", "+tries=1", "web", "A",
                ],
                Duration::from_secs(10),
            )
            .await
            .expect("dig");
        assert_eq!(
            out.stdout.trim(),
            web_ip,
            "`web` through the search path (TCP) from {pod}"
        );
    }

    // Changes are visible quickly: a new Service answers without a stale NXDOMAIN.
    let late = svc("late");
    dig(&lab, "client", &late, "A", false)
        .await
        .expect_negative("NXDOMAIN", ZONE, "late before it exists");
    let start = Instant::now();
    lab.apply_yaml(
        &format!("apiVersion: v1\nkind: Service\nmetadata: {{name: late, namespace: {NS}}}\nspec:\n  ports: [{{port: 80}}]\n"),
        NS,
    )
    .await
    .expect("service late");
    let created = start.elapsed();
    let want = cluster_ip(&lab, "late").await;
    for pod in CLIENTS {
        let (ip, t) = poll(Duration::from_secs(10), || async {
            dig_opt(&lab, pod, &late, "A", false)
                .await
                .and_then(|r| r.data("A").into_iter().next())
        })
        .await
        .unwrap_or_else(|| panic!("late never answered from {pod} within 10 s"));
        // Each poll is a dig run in the pod (tens of ms): an upper bound.
        println!(
            "new Service answered from {pod}: {:?} after the create call began ({created:?} in the call), {t:?} of polling",
            start.elapsed()
        );
        assert_eq!(ip, want, "late from {pod}");
    }
    // ...and a deleted one goes away.
    let svcs: Api<Service> = Api::namespaced(lab.client(), NS);
    let start = Instant::now();
    svcs.delete("late", &Default::default())
        .await
        .expect("delete late");
    for pod in CLIENTS {
        poll(Duration::from_secs(10), || async {
            dig_opt(&lab, pod, &late, "A", false)
                .await
                .filter(|r| r.status == "NXDOMAIN")
        })
        .await
        .unwrap_or_else(|| panic!("late still answered from {pod} 10 s after its deletion"));
        println!(
            "deleted Service NXDOMAIN from {pod}: {:?} after the delete call began",
            start.elapsed()
        );
    }

    // dns.cluster-domain applies live, on both nodes; then restore.
    let out = support::knet(&lab, &["set", "dns.cluster-domain=lab.test"]).await;
    assert!(out.success(), "set cluster-domain: {}", out.stderr);
    let start = Instant::now();
    for pod in CLIENTS {
        let (_, t) = poll(Duration::from_secs(10), || async {
            dig_opt(&lab, pod, &format!("web.{NS}.svc.lab.test."), "A", false)
                .await
                .filter(|r| r.data("A") == vec![web_ip.clone()])
        })
        .await
        .unwrap_or_else(|| panic!("web.{NS}.svc.lab.test never answered from {pod}"));
        println!(
            "cluster-domain=lab.test live on {pod}'s node after {:?} (poll {t:?})",
            start.elapsed()
        );
        dig(&lab, pod, "dns-version.lab.test.", "TXT", true)
            .await
            .expect("TXT", &["\"1.1.0\""], "dns-version under lab.test");
        dig(&lab, pod, "nosuch.svc.lab.test.", "A", false)
            .await
            .expect_negative("NXDOMAIN", "lab.test", "unknown under lab.test");
    }
    let out = support::knet(&lab, &["set", "dns.cluster-domain=cluster.local"]).await;
    assert!(out.success(), "restore cluster-domain: {}", out.stderr);
    for pod in CLIENTS {
        poll(Duration::from_secs(10), || async {
            dig_opt(&lab, pod, &svc("web"), "A", false)
                .await
                .filter(|r| r.data("A") == vec![web_ip.clone()])
        })
        .await
        .unwrap_or_else(|| panic!("cluster.local never came back on {pod}'s node"));
    }

    // dns.ttl applies live: record TTLs and the SOA minimum (the negative-caching time).
    let out = support::knet(&lab, &["set", "dns.ttl=7"]).await;
    assert!(out.success(), "set dns.ttl: {}", out.stderr);
    for pod in CLIENTS {
        poll(Duration::from_secs(10), || async {
            dig_opt(&lab, pod, &svc("web"), "A", false)
                .await
                .filter(|r| !r.answer.is_empty() && r.answer.iter().all(|a| a.ttl == "7"))
        })
        .await
        .unwrap_or_else(|| panic!("dns.ttl=7 never showed from {pod}"));
        let r = dig(&lab, pod, &svc("nosuch"), "A", true).await;
        r.expect_negative("NXDOMAIN", ZONE, "NXDOMAIN with dns.ttl=7");
        assert!(
            r.authority
                .iter()
                .any(|a| a.rtype == "SOA" && a.data.ends_with(" 7")),
            "the SOA minimum must follow dns.ttl: {}",
            r.raw
        );
    }
    let out = support::knet(&lab, &["set", "dns.ttl=30"]).await;
    assert!(out.success(), "restore dns.ttl: {}", out.stderr);

    // Zone transfers are refused; so are classes other than IN.
    let out = lab
        .exec_pod(
            NS,
            "client",
            &["dig", "+time=5", "+tries=1", &format!("{ZONE}."), "AXFR"],
            Duration::from_secs(10),
        )
        .await
        .expect("dig AXFR");
    assert!(
        out.stdout.contains("Transfer failed") && !out.stdout.contains(" SOA "),
        "AXFR must be refused: {}",
        out.stdout
    );
    let out = lab
        .exec_pod(
            NS,
            "client",
            &[
                "dig",
                "+time=5",
                "+tries=1",
                &format!("dns-version.{ZONE}."),
                "TXT",
                "CH",
            ],
            Duration::from_secs(10),
        )
        .await
        .expect("dig CH");
    let r = parse_dig(&out.stdout).expect("a reply to a CH query");
    assert_eq!(r.status, "REFUSED", "class CH: {}", r.raw);

    // SERVFAIL for cluster names until the watches have synced: node-2's daemon restarts
    // while it cannot reach the API server; its pods get SERVFAIL, then answers once it can.
    // (Measured: the first SERVFAIL comes about 12 s after the restart; before that node-2
    // does not answer at all.)
    let api = lab.api_port();
    let block = format!(
        "nft add table inet dnsblk && nft add chain inet dnsblk out '{{ type filter hook output priority 0; }}' && \
         nft add rule inet dnsblk out tcp dport {api} drop"
    );
    let out = lab
        .exec_node("node-2", &["sh", "-c", &block], Duration::from_secs(10))
        .await
        .expect("nft");
    assert!(out.success(), "{block}: {}", out.stderr);
    let unblock = Unblock(&lab);
    lab.start_knet_daemon("node-2")
        .await
        .expect("restart node-2's daemon");
    let (_, t) = poll(Duration::from_secs(45), || async {
        dig_opt(&lab, "front", &svc("web"), "A", false)
            .await
            .filter(|r| r.status == "SERVFAIL")
    })
    .await
    .expect("node-2 without the API server must SERVFAIL cluster names");
    println!("SERVFAIL from node-2 before sync, {t:?} after its restart");
    dig(&lab, "front", &svc("web"), "A", true)
        .await
        .expect_servfail("before sync (tcp)");
    drop(unblock);
    let (_, t) = poll(Duration::from_secs(30), || async {
        dig_opt(&lab, "front", &svc("web"), "A", false)
            .await
            .filter(|r| r.data("A") == vec![web_ip.clone()])
    })
    .await
    .expect("node-2 never answered after the API server came back");
    println!("node-2 answering {t:?} after the API server came back");
}

/// Removes the API block from node-2 when dropped (also when the test fails).
struct Unblock<'a>(&'a Lab);

impl Drop for Unblock<'_> {
    fn drop(&mut self) {
        let Ok(n) = self.0.node("node-2") else {
            return;
        };
        let _ = std::process::Command::new("ip")
            .args([
                "netns", "exec", &n.netns, "nft", "delete", "table", "inet", "dnsblk",
            ])
            .status();
    }
}

/// Upstream DNS servers: Debian's `named` serving `example.test`, one process per address, in a
/// namespace of its own on the lab underlay (segment A). Stops what it started when dropped.
struct Upstreams {
    netns: String,
    dir: tempfile::TempDir,
    pids: Vec<Option<i32>>,
    ips: Vec<String>,
}

impl Upstreams {
    async fn start(lab: &Lab, hosts: &[u8]) -> Upstreams {
        let prefix = lab
            .underlay_netns()
            .strip_suffix("underlay")
            .expect("underlay name")
            .to_owned();
        let netns = format!("{prefix}dnsup");
        let dir = tempfile::tempdir().expect("tempdir");
        let mut up = Upstreams {
            netns: netns.clone(),
            dir,
            pids: Vec::new(),
            ips: Vec::new(),
        };
        let sh = |cmd: String| async move {
            let out = knet_e2e::process::run(&["sh", "-c", &cmd], Duration::from_secs(10))
                .await
                .expect("run");
            assert!(out.success(), "{cmd}: {}", out.stderr);
        };
        let underlay = lab.underlay_netns().to_owned();
        // A Linux bridge takes the lowest MAC of its ports: give ours the highest possible one,
        // or br-a's address (the nodes' gateway to the API server) could change under them.
        sh(format!("ip netns add {netns}")).await;
        sh(format!(
            "ip -n {underlay} link add vdnsup address fe:ff:ff:ff:ff:53 type veth peer name eth0 netns {netns} && \
             ip -n {underlay} link set vdnsup master br-a up && \
             ip -n {netns} link set lo up && ip -n {netns} link set eth0 up"
        ))
        .await;
        for (i, host) in hosts.iter().enumerate() {
            let ip = format!("172.31.250.{host}");
            sh(format!("ip -n {netns} addr add {ip}/24 dev eth0")).await;
            let d = up.dir.path().join(format!("ns{i}"));
            std::fs::create_dir_all(&d).expect("dir");
            write_named_config(&d, &ip, &format!("ns{i}"));
            up.pids.push(None);
            up.ips.push(ip);
            up.run(lab, i).await;
        }
        up
    }

    /// Starts `named` for upstream `i` (it daemonizes; its pid file says which process it is)
    /// and waits until it answers.
    async fn run(&mut self, lab: &Lab, i: usize) {
        let d = self.dir.path().join(format!("ns{i}"));
        let ip = self.ips[i].clone();
        let _ = std::fs::remove_file(d.join("named.pid"));
        let conf = d.join("named.conf");
        let out = lab
            .exec_in(
                &self.netns,
                &["/usr/sbin/named", "-c", &conf.display().to_string()],
                Duration::from_secs(10),
            )
            .await
            .expect("named");
        assert!(out.success(), "named {ip}: {}", out.stderr);
        let pid = poll(Duration::from_secs(10), || async {
            std::fs::read_to_string(d.join("named.pid"))
                .ok()
                .and_then(|p| p.trim().parse::<i32>().ok())
        })
        .await
        .expect("named wrote its pid file")
        .0;
        self.pids[i] = Some(pid);
        if !d.join("example.test.zone").exists() {
            return;
        }
        let netns = self.netns.clone();
        poll(Duration::from_secs(10), || async {
            let out = lab
                .exec_in(
                    &netns,
                    &[
                        "dig",
                        "+short",
                        "+time=1",
                        "+tries=1",
                        &format!("@{ip}"),
                        "www.example.test",
                    ],
                    Duration::from_secs(5),
                )
                .await
                .ok()?;
            (out.stdout.trim() == "192.0.2.80").then_some(())
        })
        .await
        .unwrap_or_else(|| panic!("named on {ip} never answered"));
    }

    /// Adds a recursive `named` on 172.31.250.`host` that forwards everything to `to` (reached
    /// through `via`): an upstream that loops back to the cluster DNS. Returns its address.
    async fn add_forwarder(&mut self, lab: &Lab, host: u8, to: &str, via: &str) -> String {
        let i = self.ips.len();
        let ip = format!("172.31.250.{host}");
        for cmd in [
            format!("ip -n {} addr add {ip}/24 dev eth0", self.netns),
            format!("ip -n {} route replace {to}/32 via {via}", self.netns),
        ] {
            let out = knet_e2e::process::run(&["sh", "-c", &cmd], Duration::from_secs(10))
                .await
                .expect("run");
            assert!(out.success(), "{cmd}: {}", out.stderr);
        }
        let d = self.dir.path().join(format!("ns{i}"));
        std::fs::create_dir_all(&d).expect("dir");
        let conf = format!(
            "options {{\n  directory \"{dir}\";\n  pid-file \"{dir}/named.pid\";\n  session-keyfile \"{dir}/session.key\";\n  managed-keys-directory \"{dir}\";\n  listen-on port 53 {{ {ip}; }};\n  listen-on-v6 {{ none; }};\n  recursion yes;\n  allow-recursion {{ any; }};\n  forward only;\n  forwarders {{ {to}; }};\n  dnssec-validation no;\n}};\ncontrols {{ }};\n",
            dir = d.display()
        );
        std::fs::write(d.join("named.conf"), conf).expect("named.conf");
        self.pids.push(None);
        self.ips.push(ip.clone());
        self.run(lab, i).await;
        ip
    }

    /// Makes upstream `i` silently drop queries (`on`), or stops doing so: timeouts, not
    /// refusals.
    async fn blackhole(&self, lab: &Lab, i: usize, on: bool) {
        let ip = &self.ips[i];
        let script = if on {
            format!(
                "nft add table inet dnsbh && nft add chain inet dnsbh in '{{ type filter hook input priority 0; }}' && \
                 nft add rule inet dnsbh in ip daddr {ip} meta l4proto {{ udp, tcp }} th dport 53 drop"
            )
        } else {
            "nft delete table inet dnsbh".to_owned()
        };
        let out = lab
            .exec_in(&self.netns, &["sh", "-c", &script], Duration::from_secs(10))
            .await
            .expect("nft");
        assert!(out.success(), "{script}: {}", out.stderr);
    }

    /// Stops upstream `i` (SIGTERM, then SIGKILL), by the pid it wrote.
    fn stop(&mut self, i: usize) {
        if let Some(pid) = self.pids[i].take() {
            kill(pid);
        }
    }
}

impl Drop for Upstreams {
    fn drop(&mut self) {
        for pid in self.pids.iter_mut().filter_map(Option::take) {
            kill(pid);
        }
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
    }
}

/// SIGTERM `pid`, SIGKILL after 5 s if it is still there.
fn kill(pid: i32) {
    let pid = pid.to_string();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    for _ in 0..50 {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &pid])
        .status();
}

/// Eight 250-character strings (about 2 KB): more than a UDP answer carries, so knet must use
/// TCP to the upstream.
fn big_txt() -> Vec<String> {
    (0..8)
        .map(|i| format!("\"{}\"", char::from(b'a' + i).to_string().repeat(250)))
        .collect()
}

fn write_named_config(d: &Path, ip: &str, who: &str) {
    let p = |f: &str| -> PathBuf { d.join(f) };
    let conf = format!(
        "options {{\n  directory \"{dir}\";\n  pid-file \"{pid}\";\n  session-keyfile \"{key}\";\n  managed-keys-directory \"{dir}\";\n  listen-on port 53 {{ {ip}; }};\n  listen-on-v6 {{ none; }};\n  recursion no;\n  dnssec-validation no;\n  allow-query {{ any; }};\n}};\ncontrols {{ }};\nzone \"example.test\" {{ type primary; file \"{zone}\"; }};\n",
        dir = d.display(),
        pid = p("named.pid").display(),
        key = p("session.key").display(),
        zone = p("example.test.zone").display(),
    );
    std::fs::write(p("named.conf"), conf).expect("named.conf");
    let zone = format!(
        "$TTL 60\n@ IN SOA ns.example.test. admin.example.test. 1 3600 600 86400 60\n@ IN NS ns.example.test.\nns IN A {ip}\nwww IN A 192.0.2.80\n*.who IN TXT \"{who}\"\n* IN A 192.0.2.77\nbig IN TXT {big}\n",
        big = big_txt().join(" ")
    );
    std::fs::write(p("example.test.zone"), zone).expect("zone");
}

/// Twelve never-asked names (so never cached) from both clients, alternating UDP and TCP: each
/// must be answered by an upstream.
async fn fresh_names(lab: &Lab, tag: &str, why: &str) {
    let start = Instant::now();
    let mut slowest = Duration::ZERO;
    for n in 0..6 {
        for pod in CLIENTS {
            let name = format!("{tag}-{n}-{pod}.example.test.");
            let t = Instant::now();
            let r = dig_opt(lab, pod, &name, "A", n % 2 == 1)
                .await
                .unwrap_or_else(|| panic!("{name} from {pod}: no reply {why}"));
            r.expect("A", &["192.0.2.77"], &format!("{name} from {pod} {why}"));
            slowest = slowest.max(t.elapsed());
        }
    }
    println!(
        "12 fresh names {why}: {:?} in all, slowest {slowest:?} (dig run in the pod included)",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_forwards_to_upstreams_and_fails_over() {
    let lab = support::lab_with_nodes("dnsfwd", 2).await;
    bootstrap_both(&lab).await;
    let mut up = Upstreams::start(&lab, &[201, 202]).await;
    let list = up.ips.join(",");
    let out = support::knet(&lab, &["set", &format!("dns.upstream-nameservers={list}")]).await;
    assert!(out.success(), "set upstreams: {}", out.stderr);

    lab.create_namespace(NS).await.expect("namespace");
    let yaml = [
        pod_yaml("client", "node-1", "app: client", None),
        pod_yaml("front", "node-2", "app: front", None),
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: ext, namespace: {NS}}}\nspec:\n  type: ExternalName\n  externalName: www.example.test\n"),
    ]
    .join("---\n");
    lab.apply_yaml(&yaml, NS).await.expect("objects");
    pod_ip(&lab, "client").await;
    pod_ip(&lab, "front").await;

    // Forwarded over UDP and TCP from both nodes (the setting reached both daemons).
    for pod in CLIENTS {
        let (_, t) = poll(Duration::from_secs(15), || async {
            dig_opt(&lab, pod, "www.example.test.", "A", false)
                .await
                .filter(|r| r.data("A") == vec!["192.0.2.80".to_owned()])
        })
        .await
        .unwrap_or_else(|| panic!("www.example.test never forwarded from {pod}"));
        println!("forwarding from {pod} answered after {t:?}");
        for tcp in [false, true] {
            let at = format!("from {pod} (tcp: {tcp})");
            dig(&lab, pod, "www.example.test.", "A", tcp).await.expect(
                "A",
                &["192.0.2.80"],
                &format!("forwarded A {at}"),
            );
            dig(
                &lab,
                pod,
                &format!("fresh-{pod}-{tcp}.example.test."),
                "A",
                tcp,
            )
            .await
            .expect("A", &["192.0.2.77"], &format!("forwarded wildcard {at}"));
            let r = dig(&lab, pod, "nosuch.sub.www.example.test.", "A", tcp).await;
            assert_eq!(
                r.status, "NXDOMAIN",
                "upstream NXDOMAIN passed on {at}: {}",
                r.raw
            );
            assert!(
                r.authority
                    .iter()
                    .any(|a| a.rtype == "SOA" && a.name == "example.test."),
                "upstream SOA in authority {at}: {}",
                r.raw
            );
            // ExternalName to an outside name: CNAME, then the address from upstream.
            let r = dig(&lab, pod, &format!("ext.{NS}.svc.{ZONE}."), "A", tcp).await;
            r.expect(
                "CNAME",
                &["www.example.test."],
                &format!("ExternalName {at}"),
            );
            assert_eq!(
                r.data("A"),
                vec!["192.0.2.80".to_owned()],
                "ExternalName address {at}: {}",
                r.raw
            );
        }
        // An answer too large for UDP: knet fetches it over TCP from the upstream; the pod's
        // dig gets it whole (over TCP; over UDP dig retries with TCP when told it is truncated).
        let big = big_txt();
        let want: Vec<&str> = big.iter().map(String::as_str).collect();
        for tcp in [true, false] {
            let r = dig(&lab, pod, "big.example.test.", "TXT", tcp).await;
            assert_eq!(
                r.status, "NOERROR",
                "big TXT from {pod} (tcp: {tcp}): {}",
                r.raw
            );
            let got = r.data("TXT");
            assert_eq!(got.len(), 1, "big TXT from {pod} (tcp: {tcp}): {}", r.raw);
            assert_eq!(got[0], want.join(" "), "big TXT from {pod} (tcp: {tcp})");
        }
        // Search path misses end in the upstream; the cluster name still wins for in-zone.
        let short = lab
            .dig_from_pod(NS, pod, "kubernetes.default", "A")
            .await
            .expect("dig +search");
        assert_eq!(
            short,
            vec!["10.152.183.1".to_owned()],
            "kubernetes.default from {pod}"
        );
    }

    // Failover on timeouts: the first upstream drops queries; fresh names (never cached) are
    // still answered, through the second one.
    up.blackhole(&lab, 0, true).await;
    fresh_names(&lab, "blackholed", "with the first upstream silent").await;
    up.blackhole(&lab, 0, false).await;

    // Failover on a stopped server: stop the first upstream's process.
    up.stop(0);
    fresh_names(&lab, "stopped", "with the first upstream stopped").await;
    dig(&lab, "client", "s1.who.example.test.", "TXT", false)
        .await
        .expect("TXT", &["\"ns1\""], "only the second upstream is left");

    // Both down: fresh names fail (the answers above did come from the upstreams).
    up.stop(1);
    let r = dig_opt(
        &lab,
        "client",
        "after-both-stopped.example.test.",
        "A",
        false,
    )
    .await;
    if let Some(r) = r {
        assert!(
            r.status != "NOERROR" || r.answer.is_empty(),
            "no upstream left, yet an answer: {}",
            r.raw
        );
    }

    // Recovery: the first upstream comes back and is used again.
    up.run(&lab, 0).await;
    let (_, t) = poll(Duration::from_secs(15), || async {
        dig_opt(&lab, "client", "s2.who.example.test.", "TXT", false)
            .await
            .filter(|r| r.data("TXT") == vec!["\"ns0\"".to_owned()])
    })
    .await
    .expect("the restarted upstream never answered through knet");
    println!("restarted upstream answering through knet after {t:?}");
    fresh_names(&lab, "restarted", "with only the restarted upstream").await;

    // The cluster zone does not depend on upstreams.
    dig(
        &lab,
        "client",
        &format!("kubernetes.default.svc.{ZONE}."),
        "A",
        false,
    )
    .await
    .expect("A", &["10.152.183.1"], "cluster names with no upstream");

    // Loop detection: an upstream that forwards back to node-1's cluster DNS address. node-1's
    // probe name comes back to it; the upstream is marked looping and not used.
    let node1 = lab.node("node-1").expect("node").ipv4.to_string();
    let looper = up.add_forwarder(&lab, 203, "10.152.183.10", &node1).await;
    let before = loops_detected(&lab, "node-1").await;
    let out = support::knet(
        &lab,
        &["set", &format!("dns.upstream-nameservers={looper}")],
    )
    .await;
    assert!(out.success(), "set upstreams: {}", out.stderr);
    let (n, t) = poll(Duration::from_secs(30), || async {
        let n = loops_detected(&lab, "node-1").await;
        (n > before).then_some(n)
    })
    .await
    .unwrap_or_else(|| panic!("node-1 never detected the loop through {looper}"));
    println!("forwarding loop through {looper} detected on node-1 after {t:?} (counter {n})");
    // Queries are not sent round the loop: a prompt SERVFAIL, the cluster zone unaffected.
    let t = Instant::now();
    let r = dig(&lab, "client", "through-the-loop.example.test.", "A", false).await;
    assert_eq!(r.status, "SERVFAIL", "no usable upstream: {}", r.raw);
    println!(
        "external name with only a looping upstream: SERVFAIL in {:?}",
        t.elapsed()
    );
    dig(
        &lab,
        "client",
        &format!("kubernetes.default.svc.{ZONE}."),
        "A",
        false,
    )
    .await
    .expect(
        "A",
        &["10.152.183.1"],
        "cluster names with a looping upstream",
    );
}

/// `knet_dns_forward_loops_detected_total` from `node`'s daemon.
async fn loops_detected(lab: &Lab, node: &str) -> u64 {
    metric(lab, node, "knet_dns_forward_loops_detected_total").await
}

/// The value of the series `series` (name with labels, as printed) in `node`'s daemon's
/// `/metrics` (its local API socket); 0 when absent.
async fn metric(lab: &Lab, node: &str, series: &str) -> u64 {
    let sock = lab.node(node).expect("node").run_dir.join("knet.sock");
    let out = knet_e2e::process::run(
        &[
            "curl",
            "-sS",
            "--unix-socket",
            &sock.display().to_string(),
            "http://knet/metrics",
        ],
        Duration::from_secs(10),
    )
    .await
    .expect("curl /metrics");
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{series} ")))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// `ip6.arpa` name of an IPv6 address (32 nibbles).
fn reverse_name_v6(ip: &str) -> String {
    let ip: std::net::Ipv6Addr = ip.parse().expect("IPv6");
    let hex: String = ip.octets().iter().map(|b| format!("{b:02x}")).collect();
    let nibbles: Vec<String> = hex.chars().rev().map(String::from).collect();
    format!("{}.ip6.arpa.", nibbles.join("."))
}

/// The pod's (IPv4, IPv6) addresses, once Ready.
async fn pod_ips(lab: &Lab, name: &str) -> (String, String) {
    let p: Pod = lab
        .wait_pod_ready(NS, name, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("pod {name} never became ready: {e:#}"));
    let ips: Vec<String> = p
        .status
        .and_then(|s| s.pod_ips)
        .unwrap_or_default()
        .into_iter()
        .map(|i| i.ip)
        .collect();
    let v4 = ips.iter().find(|i| !i.contains(':')).cloned();
    let v6 = ips.iter().find(|i| i.contains(':')).cloned();
    (
        v4.unwrap_or_else(|| panic!("{name}: no IPv4 in {ips:?}")),
        v6.unwrap_or_else(|| panic!("{name}: no IPv6 in {ips:?}")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_answers_aaaa_and_ip6_arpa_on_a_dual_stack_lab() {
    let id = format!("dns6{}", std::process::id() % 100_000);
    let mut opts = knet_e2e::LabOptions::new(&id, 2);
    opts.cni = knet_e2e::CniMode::ConfDir;
    opts.dual_stack = true;
    let lab = Lab::start(opts)
        .await
        .expect("the lab must start (root, `make deps`)");
    let cfg = "pod-cidr: 10.1.0.0/16,fd01::/48\nservice-cidr: 10.152.183.0/24,fd98::/108\n";
    for node in ["node-1", "node-2"] {
        let out = lab
            .bootstrap_knet_with(node, Some(cfg), &["--timeout", "60s"])
            .await
            .expect("bootstrap");
        assert!(
            out.success(),
            "bootstrap {node}: {}\n{}",
            out.stdout,
            out.stderr
        );
    }
    lab.create_namespace(NS).await.expect("namespace");
    let yaml = [
        pod_yaml("client", "node-1", "app: client", None),
        pod_yaml("front", "node-2", "app: front", None),
        pod_yaml("db-0", "node-1", "app: db", Some(("db-0", "db"))),
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: {NS}}}\nspec:\n  ipFamilyPolicy: RequireDualStack\n  selector: {{app: front}}\n  ports: [{{name: http, port: 80, targetPort: 8080}}]\n"),
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: db, namespace: {NS}}}\nspec:\n  clusterIP: None\n  ipFamilyPolicy: RequireDualStack\n  selector: {{app: db}}\n  ports: [{{name: pg, port: 5432}}]\n"),
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: v4only, namespace: {NS}}}\nspec:\n  ipFamilyPolicy: SingleStack\n  ipFamilies: [IPv4]\n  ports: [{{port: 80}}]\n"),
    ]
    .join("---\n");
    lab.apply_yaml(&yaml, NS).await.expect("objects");
    let (_, client6) = pod_ips(&lab, "client").await;
    pod_ips(&lab, "front").await;
    let (db4, db6) = pod_ips(&lab, "db-0").await;
    let svcs: Api<Service> = Api::namespaced(lab.client(), NS);
    let ips = svcs
        .get("web")
        .await
        .expect("web")
        .spec
        .and_then(|s| s.cluster_ips)
        .unwrap_or_default();
    let web4 = ips
        .iter()
        .find(|i| !i.contains(':'))
        .cloned()
        .expect("IPv4 ClusterIP");
    let web6 = ips
        .iter()
        .find(|i| i.contains(':'))
        .cloned()
        .expect("IPv6 ClusterIP");
    let svc = |s: &str| format!("{s}.{NS}.svc.{ZONE}.");

    poll(Duration::from_secs(30), || async {
        dig_opt(&lab, "client", &svc("db"), "AAAA", false)
            .await
            .filter(|r| r.data("AAAA") == vec![db6.clone()])
    })
    .await
    .unwrap_or_else(|| panic!("db.{NS} never answered AAAA {db6}"));

    let dashed6 = client6.replace(':', "-");
    for pod in CLIENTS {
        for tcp in [false, true] {
            let at = format!("from {pod} (tcp: {tcp})");
            dig(&lab, pod, &svc("web"), "A", tcp).await.expect(
                "A",
                &[&web4],
                &format!("dual-stack A {at}"),
            );
            dig(&lab, pod, &svc("web"), "AAAA", tcp).await.expect(
                "AAAA",
                &[&web6],
                &format!("dual-stack AAAA {at}"),
            );
            dig(&lab, pod, &svc("v4only"), "AAAA", tcp)
                .await
                .expect_negative("NOERROR", ZONE, &format!("AAAA on IPv4-only {at}"));
            dig(&lab, pod, &reverse_name_v6(&web6), "PTR", tcp)
                .await
                .expect(
                    "PTR",
                    &[&svc("web")],
                    &format!("ip6.arpa ClusterIP PTR {at}"),
                );
            dig(&lab, pod, &svc("db"), "AAAA", tcp).await.expect(
                "AAAA",
                &[&db6],
                &format!("headless AAAA {at}"),
            );
            dig(&lab, pod, &svc("db"), "A", tcp).await.expect(
                "A",
                &[&db4],
                &format!("headless A {at}"),
            );
            dig(&lab, pod, &format!("db-0.{}", svc("db")), "AAAA", tcp)
                .await
                .expect("AAAA", &[&db6], &format!("hostname AAAA {at}"));
            dig(&lab, pod, &reverse_name_v6(&db6), "PTR", tcp)
                .await
                .expect(
                    "PTR",
                    &[&format!("db-0.{}", svc("db"))],
                    &format!("ip6.arpa endpoint PTR {at}"),
                );
            dig(
                &lab,
                pod,
                &format!("{dashed6}.{NS}.pod.{ZONE}."),
                "AAAA",
                tcp,
            )
            .await
            .expect("AAAA", &[&client6], &format!("pod AAAA {at}"));
        }
    }
}
