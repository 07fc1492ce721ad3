//! Table-driven tests of the answer logic: one case per checklist row of
//! `shared/reference/dns.md` §1, plus CoreDNS's `handler_test.go` cases, shaped like them
//! (question → rcode, answer, authority, additional), against in-memory objects.

use std::net::IpAddr;

use hickory_server::proto::op::ResponseCode;
use hickory_server::proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::{Lookup, PodMode, ZoneConfig, answer};
use crate::fixture::{
    cluster_ip, ep, ep_host, ep_not_ready, external_name, headless, headless_publish_not_ready,
    index, namespace, pod, slice,
};
use crate::index::Index;

use RecordType::{A, AAAA, AXFR, CNAME, HINFO, IXFR, MX, NS, PTR, SOA, SRV, TXT};

/// The zone's SOA as rendered by [`render`] (serial left out: it is a timestamp).
const SOA_RR: &str =
    "cluster.local. 5 SOA ns.dns.cluster.local. hostmaster.cluster.local. 7200 1800 86400 5";

/// The objects of CoreDNS's `handler_test.go`, plus a few for rows it does not cover.
fn world() -> Index {
    let http = [("http", "TCP", 80)];
    index(
        vec![
            namespace("testns"),
            namespace("kube-system"),
            namespace("podns"),
        ],
        vec![
            cluster_ip(
                "kube-system",
                "kubedns",
                &["10.0.0.10"],
                &[("dns", "UDP", 53)],
            ),
            cluster_ip("testns", "svc1", &["10.0.0.1"], &http),
            cluster_ip("testns", "svcempty", &["10.0.0.1"], &http),
            cluster_ip("testns", "svc6", &["1234:abcd::1"], &http),
            headless("testns", "hdls1", &[]),
            external_name("testns", "external", "ext.interwebs.test"),
            external_name(
                "testns",
                "external-to-service",
                "svc1.testns.svc.cluster.local.",
            ),
            external_name("testns", "external-ip", "1.2.3.4"),
            headless("testns", "hdlsprtls", &[]),
            cluster_ip("unexposedns", "svc1", &["10.0.0.2"], &http),
            cluster_ip("testns", "svc-dual-stack", &["10.0.0.3", "10::3"], &http),
            // Not in CoreDNS's fixture:
            cluster_ip(
                "testns",
                "multi",
                &["10.0.0.4"],
                &[("http", "TCP", 80), ("dns", "UDP", 53), ("", "TCP", 8080)],
            ),
            headless("testns", "notready", &[]),
            headless("testns", "mixed", &[]),
            headless_publish_not_ready("testns", "publish"),
            headless("testns", "sub", &[]),
        ],
        vec![
            slice(
                "kube-system",
                "kubedns-1",
                "kubedns",
                &[("dns", "UDP", 53)],
                vec![ep("172.0.0.100")],
            ),
            slice(
                "testns",
                "svc1-slice1",
                "svc1",
                &http,
                vec![ep_host("172.0.0.1", "ep1a")],
            ),
            slice("testns", "svcempty-slice1", "svcempty", &http, vec![]),
            slice(
                "testns",
                "hdls1-slice1",
                "hdls1",
                &http,
                vec![
                    ep("172.0.0.2"),
                    ep("172.0.0.3"),
                    ep_host("172.0.0.4", "dup-name"),
                    ep_host("172.0.0.5", "dup-name"),
                ],
            ),
            slice(
                "testns",
                "hdls1-slice2",
                "hdls1",
                &http,
                vec![ep("5678:abcd::1"), ep("5678:abcd::2")],
            ),
            slice(
                "testns",
                "hdlsprtls-slice1",
                "hdlsprtls",
                &[],
                vec![ep("172.0.0.20")],
            ),
            slice(
                "testns",
                "notready-1",
                "notready",
                &[],
                vec![ep_not_ready("172.0.0.40")],
            ),
            slice(
                "testns",
                "mixed-1",
                "mixed",
                &[],
                vec![ep("172.0.0.41"), ep_not_ready("172.0.0.42")],
            ),
            slice(
                "testns",
                "publish-1",
                "publish",
                &[],
                vec![ep_not_ready("172.0.0.43")],
            ),
            slice(
                "testns",
                "sub-1",
                "sub",
                &[],
                vec![ep_host("172.0.0.30", "web-0")],
            ),
        ],
        vec![pod("podns", "foo", "10.240.0.1")],
    )
}

fn cfg() -> ZoneConfig {
    let mut cfg =
        ZoneConfig::new("cluster.local", 5, vec!["10.0.0.10".parse().expect("ip")]).expect("zone");
    cfg.pods = PodMode::Insecure;
    cfg
}

/// One question and the answer CoreDNS gives to it.
struct Case {
    q: &'static str,
    t: RecordType,
    rcode: ResponseCode,
    answer: Vec<&'static str>,
    ns: Vec<&'static str>,
    extra: Vec<&'static str>,
}

fn ok(q: &'static str, t: RecordType, answer: &[&'static str]) -> Case {
    Case {
        q,
        t,
        rcode: ResponseCode::NoError,
        answer: answer.to_vec(),
        ns: vec![],
        extra: vec![],
    }
}

fn ok_extra(
    q: &'static str,
    t: RecordType,
    answer: &[&'static str],
    extra: &[&'static str],
) -> Case {
    Case {
        extra: extra.to_vec(),
        ..ok(q, t, answer)
    }
}

/// The name exists, but has no data of this type: NOERROR, SOA in authority.
fn nodata(q: &'static str, t: RecordType) -> Case {
    Case {
        ns: vec![SOA_RR],
        ..ok(q, t, &[])
    }
}

/// The name does not exist: NXDOMAIN, SOA in authority.
fn nx(q: &'static str, t: RecordType) -> Case {
    Case {
        rcode: ResponseCode::NXDomain,
        ..nodata(q, t)
    }
}

/// A record as a zone-file line without class; SOA without its (timestamp) serial.
fn render(r: &Record) -> String {
    match &r.data {
        RData::SOA(soa) => format!(
            "{} {} SOA {} {} {} {} {} {}",
            r.name, r.ttl, soa.mname, soa.rname, soa.refresh, soa.retry, soa.expire, soa.minimum
        ),
        data => format!("{} {} {} {}", r.name, r.ttl, r.record_type(), data),
    }
}

fn sorted(records: &[Record]) -> Vec<String> {
    let mut out: Vec<String> = records.iter().map(render).collect();
    out.sort();
    out
}

fn sorted_str(records: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = records.iter().map(|s| s.to_string()).collect();
    out.sort();
    out
}

fn ask(index: &Index, cfg: &ZoneConfig, q: &str, t: RecordType) -> Lookup {
    let name = Name::from_ascii(q).expect("qname");
    answer(index, cfg, &name, t, DNSClass::IN)
}

fn check(index: &Index, cfg: &ZoneConfig, cases: &[Case]) {
    let mut failures = Vec::new();
    for c in cases {
        let Lookup::Answer(a) = ask(index, cfg, c.q, c.t) else {
            failures.push(format!("{} {}: forwarded, expected an answer", c.q, c.t));
            continue;
        };
        let got = (
            a.rcode,
            sorted(&a.answers),
            sorted(&a.authority),
            sorted(&a.additionals),
        );
        let want = (
            c.rcode,
            sorted_str(&c.answer),
            sorted_str(&c.ns),
            sorted_str(&c.extra),
        );
        if got != want {
            failures.push(format!("{} {}:\n   got {got:?}\n  want {want:?}", c.q, c.t));
        }
        if !a.authoritative {
            failures.push(format!("{} {}: AA not set", c.q, c.t));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// CoreDNS `handler_test.go`: `commonDnsTestCases` and `dnsTestCases`, answers as CoreDNS gives
/// them (TTL 5), except where noted.
#[test]
fn coredns_handler_cases() {
    let svc1_a = "svc1.testns.svc.cluster.local. 5 A 10.0.0.1";
    let cases = vec![
        ok("svc1.testns.svc.cluster.local.", A, &[svc1_a]),
        ok(
            "svcempty.testns.svc.cluster.local.",
            A,
            &["svcempty.testns.svc.cluster.local. 5 A 10.0.0.1"],
        ),
        ok_extra(
            "svc1.testns.svc.cluster.local.",
            SRV,
            &["svc1.testns.svc.cluster.local. 5 SRV 0 100 80 svc1.testns.svc.cluster.local."],
            &[svc1_a],
        ),
        ok_extra(
            "svcempty.testns.svc.cluster.local.",
            SRV,
            &[
                "svcempty.testns.svc.cluster.local. 5 SRV 0 100 80 svcempty.testns.svc.cluster.local.",
            ],
            &["svcempty.testns.svc.cluster.local. 5 A 10.0.0.1"],
        ),
        ok_extra(
            "svc6.testns.svc.cluster.local.",
            SRV,
            &["svc6.testns.svc.cluster.local. 5 SRV 0 100 80 svc6.testns.svc.cluster.local."],
            &["svc6.testns.svc.cluster.local. 5 AAAA 1234:abcd::1"],
        ),
        ok_extra(
            "_http._tcp.svc1.testns.svc.cluster.local.",
            SRV,
            &[
                "_http._tcp.svc1.testns.svc.cluster.local. 5 SRV 0 100 80 svc1.testns.svc.cluster.local.",
            ],
            &[svc1_a],
        ),
        ok_extra(
            "_http._tcp.svcempty.testns.svc.cluster.local.",
            SRV,
            &[
                "_http._tcp.svcempty.testns.svc.cluster.local. 5 SRV 0 100 80 svcempty.testns.svc.cluster.local.",
            ],
            &["svcempty.testns.svc.cluster.local. 5 A 10.0.0.1"],
        ),
        ok(
            "hdls1.testns.svc.cluster.local.",
            A,
            &[
                "hdls1.testns.svc.cluster.local. 5 A 172.0.0.2",
                "hdls1.testns.svc.cluster.local. 5 A 172.0.0.3",
                "hdls1.testns.svc.cluster.local. 5 A 172.0.0.4",
                "hdls1.testns.svc.cluster.local. 5 A 172.0.0.5",
            ],
        ),
        ok(
            "hdlsprtls.testns.svc.cluster.local.",
            A,
            &["hdlsprtls.testns.svc.cluster.local. 5 A 172.0.0.20"],
        ),
        nodata("svc1.testns.svc.cluster.local.", AAAA),
        nx("svc0.testns.svc.cluster.local.", AAAA),
        nx("svc0.testns.svc.cluster.local.", A),
        nx("svc0.svc-nons.svc.cluster.local.", A),
        ok(
            "dns-version.cluster.local.",
            TXT,
            &["dns-version.cluster.local. 28800 TXT 1.1.0"],
        ),
        nodata("svc1.testns.svc.cluster.local.", TXT),
        nx("svc0.svc-nons.svc.cluster.local.", TXT),
        nx("bogusendpoint.hdls1.testns.svc.cluster.local.", A),
        nx("bogusendpoint.svc0.testns.svc.cluster.local.", A),
        ok(
            "svc6.testns.svc.cluster.local.",
            AAAA,
            &["svc6.testns.svc.cluster.local. 5 AAAA 1234:abcd::1"],
        ),
        ok_extra(
            "_http._tcp.svc6.testns.svc.cluster.local.",
            SRV,
            &[
                "_http._tcp.svc6.testns.svc.cluster.local. 5 SRV 0 100 80 svc6.testns.svc.cluster.local.",
            ],
            &["svc6.testns.svc.cluster.local. 5 AAAA 1234:abcd::1"],
        ),
        ok(
            "hdls1.testns.svc.cluster.local.",
            AAAA,
            &[
                "hdls1.testns.svc.cluster.local. 5 AAAA 5678:abcd::1",
                "hdls1.testns.svc.cluster.local. 5 AAAA 5678:abcd::2",
            ],
        ),
        nodata("svc.cluster.local.", A),
        nodata("pod.cluster.local.", A),
        nodata("testns.svc.cluster.local.", A),
        nodata("svc.cluster.local.", NS),
        nodata("testns.svc.cluster.local.", NS),
        nx("foo.cluster.local.", NS),
        nx("foo.svc.cluster.local.", NS),
        ok(
            "svc-dual-stack.testns.svc.cluster.local.",
            A,
            &["svc-dual-stack.testns.svc.cluster.local. 5 A 10.0.0.3"],
        ),
        ok(
            "svc-dual-stack.testns.svc.cluster.local.",
            AAAA,
            &["svc-dual-stack.testns.svc.cluster.local. 5 AAAA 10::3"],
        ),
        ok_extra(
            "svc-dual-stack.testns.svc.cluster.local.",
            SRV,
            &[
                "svc-dual-stack.testns.svc.cluster.local. 5 SRV 0 50 80 svc-dual-stack.testns.svc.cluster.local.",
            ],
            &[
                "svc-dual-stack.testns.svc.cluster.local. 5 A 10.0.0.3",
                "svc-dual-stack.testns.svc.cluster.local. 5 AAAA 10::3",
            ],
        ),
        nodata("svc1.testns.svc.cluster.local.", SOA),
        nx("endpoint.external.testns.svc.cluster.local.", CNAME),
        nx(
            "subdomain.subdomain.external.testns.svc.cluster.local.",
            CNAME,
        ),
        // dnsTestCases
        ok_extra(
            "_http._tcp.hdls1.testns.svc.cluster.local.",
            SRV,
            &[
                "_http._tcp.hdls1.testns.svc.cluster.local. 5 SRV 0 16 80 172-0-0-2.hdls1.testns.svc.cluster.local.",
                "_http._tcp.hdls1.testns.svc.cluster.local. 5 SRV 0 16 80 172-0-0-3.hdls1.testns.svc.cluster.local.",
                "_http._tcp.hdls1.testns.svc.cluster.local. 5 SRV 0 16 80 5678-abcd--1.hdls1.testns.svc.cluster.local.",
                "_http._tcp.hdls1.testns.svc.cluster.local. 5 SRV 0 16 80 5678-abcd--2.hdls1.testns.svc.cluster.local.",
                "_http._tcp.hdls1.testns.svc.cluster.local. 5 SRV 0 16 80 dup-name.hdls1.testns.svc.cluster.local.",
            ],
            &[
                "172-0-0-2.hdls1.testns.svc.cluster.local. 5 A 172.0.0.2",
                "172-0-0-3.hdls1.testns.svc.cluster.local. 5 A 172.0.0.3",
                "5678-abcd--1.hdls1.testns.svc.cluster.local. 5 AAAA 5678:abcd::1",
                "5678-abcd--2.hdls1.testns.svc.cluster.local. 5 AAAA 5678:abcd::2",
                "dup-name.hdls1.testns.svc.cluster.local. 5 A 172.0.0.4",
                "dup-name.hdls1.testns.svc.cluster.local. 5 A 172.0.0.5",
            ],
        ),
        ok(
            "5678-abcd--2.hdls1.testns.svc.cluster.local.",
            AAAA,
            &["5678-abcd--2.hdls1.testns.svc.cluster.local. 5 AAAA 5678:abcd::2"],
        ),
        ok(
            "5678-abcd--1.hdls1.testns.svc.cluster.local.",
            AAAA,
            &["5678-abcd--1.hdls1.testns.svc.cluster.local. 5 AAAA 5678:abcd::1"],
        ),
        ok(
            "172-0-0-20.hdlsprtls.testns.svc.cluster.local.",
            A,
            &["172-0-0-20.hdlsprtls.testns.svc.cluster.local. 5 A 172.0.0.20"],
        ),
        ok(
            "172-0-0-2.hdls1.testns.svc.cluster.local.",
            A,
            &["172-0-0-2.hdls1.testns.svc.cluster.local. 5 A 172.0.0.2"],
        ),
        ok(
            "172-0-0-3.hdls1.testns.svc.cluster.local.",
            A,
            &["172-0-0-3.hdls1.testns.svc.cluster.local. 5 A 172.0.0.3"],
        ),
        ok(
            "dup-name.hdls1.testns.svc.cluster.local.",
            A,
            &[
                "dup-name.hdls1.testns.svc.cluster.local. 5 A 172.0.0.4",
                "dup-name.hdls1.testns.svc.cluster.local. 5 A 172.0.0.5",
            ],
        ),
        ok(
            "external.testns.svc.cluster.local.",
            CNAME,
            &["external.testns.svc.cluster.local. 5 CNAME ext.interwebs.test."],
        ),
        ok(
            "external-to-service.testns.svc.cluster.local.",
            A,
            &[
                "external-to-service.testns.svc.cluster.local. 5 CNAME svc1.testns.svc.cluster.local.",
                svc1_a,
            ],
        ),
    ];
    check(&world(), &cfg(), &cases);
}

/// `dns.md` §1 rows not covered by CoreDNS's handler cases, and the apex (row 16).
#[test]
fn checklist_rows() {
    let cases = vec![
        // Row 2: ClusterIP A answers even with no endpoints; AAAA on v4-only is NODATA.
        ok(
            "multi.testns.svc.cluster.local.",
            A,
            &["multi.testns.svc.cluster.local. 5 A 10.0.0.4"],
        ),
        nodata("multi.testns.svc.cluster.local.", AAAA),
        // Row 3: SRV per named port; on the bare name all ports (CoreDNS), weight 100/3.
        ok_extra(
            "_dns._udp.multi.testns.svc.cluster.local.",
            SRV,
            &[
                "_dns._udp.multi.testns.svc.cluster.local. 5 SRV 0 100 53 multi.testns.svc.cluster.local.",
            ],
            &["multi.testns.svc.cluster.local. 5 A 10.0.0.4"],
        ),
        ok_extra(
            "multi.testns.svc.cluster.local.",
            SRV,
            &[
                "multi.testns.svc.cluster.local. 5 SRV 0 33 80 multi.testns.svc.cluster.local.",
                "multi.testns.svc.cluster.local. 5 SRV 0 33 53 multi.testns.svc.cluster.local.",
                "multi.testns.svc.cluster.local. 5 SRV 0 33 8080 multi.testns.svc.cluster.local.",
            ],
            &["multi.testns.svc.cluster.local. 5 A 10.0.0.4"],
        ),
        // Underscores are optional (CoreDNS strips them), protocol must match.
        ok_extra(
            "http.tcp.multi.testns.svc.cluster.local.",
            SRV,
            &[
                "http.tcp.multi.testns.svc.cluster.local. 5 SRV 0 100 80 multi.testns.svc.cluster.local.",
            ],
            &["multi.testns.svc.cluster.local. 5 A 10.0.0.4"],
        ),
        nx("_http._udp.multi.testns.svc.cluster.local.", SRV),
        nx("_nope._tcp.multi.testns.svc.cluster.local.", SRV),
        nx("_nope._tcp.multi.testns.svc.cluster.local.", A),
        // A port name is a name: A on it gives the ClusterIP (CoreDNS).
        ok(
            "_http._tcp.svc1.testns.svc.cluster.local.",
            A,
            &["_http._tcp.svc1.testns.svc.cluster.local. 5 A 10.0.0.1"],
        ),
        // Endpoint names also resolve under ClusterIP Services (CoreDNS).
        ok(
            "ep1a.svc1.testns.svc.cluster.local.",
            A,
            &["ep1a.svc1.testns.svc.cluster.local. 5 A 172.0.0.1"],
        ),
        // Row 5: no ready endpoints → NXDOMAIN; only ready ones are served.
        nx("notready.testns.svc.cluster.local.", A),
        nx("notready.testns.svc.cluster.local.", SRV),
        ok(
            "mixed.testns.svc.cluster.local.",
            A,
            &["mixed.testns.svc.cluster.local. 5 A 172.0.0.41"],
        ),
        nx("172-0-0-42.mixed.testns.svc.cluster.local.", A),
        // Portless headless: SRV has no records but the name exists.
        nodata("hdlsprtls.testns.svc.cluster.local.", SRV),
        // Row 10: pod hostname/subdomain through the endpoint hostname.
        ok(
            "web-0.sub.testns.svc.cluster.local.",
            A,
            &["web-0.sub.testns.svc.cluster.local. 5 A 172.0.0.30"],
        ),
        nx("172-0-0-30.sub.testns.svc.cluster.local.", A),
        // Row 12: publishNotReadyAddresses serves not-ready endpoints.
        ok(
            "publish.testns.svc.cluster.local.",
            A,
            &["publish.testns.svc.cluster.local. 5 A 172.0.0.43"],
        ),
        // Row 9: ExternalName to an IP gives no CNAME; no SRV on ExternalName.
        nx("external-ip.testns.svc.cluster.local.", A),
        nodata("external.testns.svc.cluster.local.", SRV),
        nodata("external.testns.svc.cluster.local.", TXT),
        nx("_http._tcp.external.testns.svc.cluster.local.", SRV),
        // Names that are too deep, or not under svc/pod.
        nx("a.b.c.d.e.f.svc.cluster.local.", A),
        nx("a.b.svc1.testns.svc.cluster.local.", A),
        nx("svc1.testns.foo.cluster.local.", A),
        // A namespace that has Services but no Namespace object is not exposed (CoreDNS).
        nx("svc1.unexposedns.svc.cluster.local.", A),
        nx("unexposedns.svc.cluster.local.", A),
        // Types without data on existing names are NODATA (CoreDNS's "fake A lookup").
        nodata("svc1.testns.svc.cluster.local.", MX),
        nodata("svc1.testns.svc.cluster.local.", PTR),
        nodata("svc6.testns.svc.cluster.local.", HINFO),
        nx("svc0.testns.svc.cluster.local.", HINFO),
        // Row 16: the apex (CoreDNS kubernetes_apex_test.go), and the NS name.
        ok(
            "cluster.local.",
            SOA,
            &[
                "cluster.local. 5 SOA ns.dns.cluster.local. hostmaster.cluster.local. 7200 1800 86400 5",
            ],
        ),
        ok_extra(
            "cluster.local.",
            NS,
            &["cluster.local. 5 NS ns.dns.cluster.local."],
            &["ns.dns.cluster.local. 5 A 10.0.0.10"],
        ),
        nodata("cluster.local.", A),
        nodata("cluster.local.", AAAA),
        nodata("cluster.local.", SRV),
        nodata("cluster.local.", HINFO),
        ok(
            "ns.dns.cluster.local.",
            A,
            &["ns.dns.cluster.local. 5 A 10.0.0.10"],
        ),
        nodata("ns.dns.cluster.local.", AAAA),
        // Deliberate difference: CoreDNS says NXDOMAIN for TXT on the apex and for non-TXT on
        // dns-version; a name that exists must not be denied (RFC 8020), so NODATA.
        nodata("cluster.local.", TXT),
        nodata("dns-version.cluster.local.", A),
    ];
    check(&world(), &cfg(), &cases);
}

/// Row 11: pod records in `pods insecure` mode (CoreDNS `handler_pod_insecure_test.go`).
#[test]
fn pods_insecure() {
    let cases = vec![
        ok(
            "10-240-0-1.podns.pod.cluster.local.",
            A,
            &["10-240-0-1.podns.pod.cluster.local. 5 A 10.240.0.1"],
        ),
        ok(
            "172-0-0-2.podns.pod.cluster.local.",
            A,
            &["172-0-0-2.podns.pod.cluster.local. 5 A 172.0.0.2"],
        ),
        nx("blah.podns.pod.cluster.local.", A),
        nx("blah.podns.pod.cluster.local.", AAAA),
        nx("blah.podns.pod.cluster.local.", HINFO),
        nx("blah.pod-nons.pod.cluster.local.", A),
        nodata("podns.pod.cluster.local.", A),
        nodata("10-240-0-1.podns.pod.cluster.local.", AAAA),
        ok(
            "fd00-1--5.podns.pod.cluster.local.",
            AAAA,
            &["fd00-1--5.podns.pod.cluster.local. 5 AAAA fd00:1::5"],
        ),
        nx("x.10-240-0-1.podns.pod.cluster.local.", A),
    ];
    check(&world(), &cfg(), &cases);
}

#[test]
fn pods_verified_and_disabled() {
    let mut cfg = cfg();
    cfg.pods = PodMode::Verified;
    check(
        &world(),
        &cfg,
        &[
            ok(
                "10-240-0-1.podns.pod.cluster.local.",
                A,
                &["10-240-0-1.podns.pod.cluster.local. 5 A 10.240.0.1"],
            ),
            nx("172-0-0-2.podns.pod.cluster.local.", A),
            nx("10-240-0-1.testns.pod.cluster.local.", A),
        ],
    );
    cfg.pods = PodMode::Disabled;
    check(
        &world(),
        &cfg,
        &[
            nx("10-240-0-1.podns.pod.cluster.local.", A),
            nx("podns.pod.cluster.local.", A),
        ],
    );
}

/// Row 13: case-insensitive matching, echoing the question's case (CoreDNS handler_case_test.go).
#[test]
fn case_is_echoed() {
    let cases = vec![
        Case {
            ns: vec![
                "ClUsTeR.lOcAl. 5 SOA ns.dns.ClUsTeR.lOcAl. hostmaster.ClUsTeR.lOcAl. 7200 1800 86400 5",
            ],
            ..nx("not-a-service.testns.svc.ClUsTeR.lOcAl.", A)
        },
        ok(
            "SvC1.TeStNs.SvC.cLuStEr.LoCaL.",
            A,
            &["SvC1.TeStNs.SvC.cLuStEr.LoCaL. 5 A 10.0.0.1"],
        ),
        ok_extra(
            "_HtTp._TcP.sVc1.TeStNs.SvC.cLuStEr.LoCaL.",
            SRV,
            &[
                "_HtTp._TcP.sVc1.TeStNs.SvC.cLuStEr.LoCaL. 5 SRV 0 100 80 svc1.testns.svc.cLuStEr.LoCaL.",
            ],
            &["svc1.testns.svc.cLuStEr.LoCaL. 5 A 10.0.0.1"],
        ),
        ok(
            "Cluster.local.",
            SOA,
            &[
                "Cluster.local. 5 SOA ns.dns.Cluster.local. hostmaster.Cluster.local. 7200 1800 86400 5",
            ],
        ),
        ok(
            "DUP-NAME.HDLS1.testns.svc.cluster.local.",
            A,
            &[
                "DUP-NAME.HDLS1.testns.svc.cluster.local. 5 A 172.0.0.4",
                "DUP-NAME.HDLS1.testns.svc.cluster.local. 5 A 172.0.0.5",
            ],
        ),
    ];
    check(&world(), &cfg(), &cases);
}

/// Rows 4 and 8: PTR for ClusterIPs and ready endpoints, v4 and v6; misses are forwarded
/// (kubeadm's `fallthrough in-addr.arpa ip6.arpa`).
#[test]
fn reverse() {
    let index = world();
    let cfg = cfg();
    let ptr = |q: &str| match ask(&index, &cfg, q, PTR) {
        Lookup::Answer(a) => {
            assert_eq!(a.rcode, ResponseCode::NoError, "{q}");
            assert!(a.authoritative, "{q}");
            Some(sorted(&a.answers))
        }
        Lookup::Forward => None,
    };
    assert_eq!(
        ptr("3.0.0.10.in-addr.arpa."),
        Some(vec![
            "3.0.0.10.in-addr.arpa. 5 PTR svc-dual-stack.testns.svc.cluster.local.".to_string()
        ])
    );
    let v6 = "3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.ip6.arpa.";
    assert_eq!(
        ptr(v6),
        Some(vec![format!(
            "{v6} 5 PTR svc-dual-stack.testns.svc.cluster.local."
        )])
    );
    assert_eq!(
        ptr("2.0.0.172.in-addr.arpa."),
        Some(vec![
            "2.0.0.172.in-addr.arpa. 5 PTR 172-0-0-2.hdls1.testns.svc.cluster.local.".to_string()
        ])
    );
    assert_eq!(
        ptr("4.0.0.172.in-addr.arpa."),
        Some(vec![
            "4.0.0.172.in-addr.arpa. 5 PTR dup-name.hdls1.testns.svc.cluster.local.".to_string()
        ])
    );
    let v6ep = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.c.b.a.8.7.6.5.ip6.arpa.";
    assert_eq!(
        ptr(v6ep),
        Some(vec![format!(
            "{v6ep} 5 PTR 5678-abcd--1.hdls1.testns.svc.cluster.local."
        )])
    );
    assert_eq!(
        ptr("30.0.0.172.in-addr.arpa."),
        Some(vec![
            "30.0.0.172.in-addr.arpa. 5 PTR web-0.sub.testns.svc.cluster.local.".to_string()
        ])
    );
    // Not-ready endpoints have no PTR unless the Service publishes them.
    assert_eq!(ptr("42.0.0.172.in-addr.arpa."), None);
    assert_eq!(
        ptr("43.0.0.172.in-addr.arpa."),
        Some(vec![
            "43.0.0.172.in-addr.arpa. 5 PTR 172-0-0-43.publish.testns.svc.cluster.local."
                .to_string()
        ])
    );
    // Unknown IPs, partial names and other types go upstream.
    assert_eq!(ptr("9.9.9.9.in-addr.arpa."), None);
    assert_eq!(ptr("0.0.10.in-addr.arpa."), None);
    assert_eq!(
        ask(&index, &cfg, "3.0.0.10.in-addr.arpa.", A),
        Lookup::Forward
    );
}

#[test]
fn outside_the_zone_is_forwarded() {
    let index = world();
    for q in [
        "example.com.",
        "local.",
        "cluster.local.example.com.",
        "svc1.testns.svc.cluster.localx.",
    ] {
        assert_eq!(ask(&index, &cfg(), q, A), Lookup::Forward, "{q}");
    }
}

#[test]
fn externalname_outside_the_zone_is_chased_upstream() {
    let Lookup::Answer(a) = ask(&world(), &cfg(), "external.testns.svc.cluster.local.", A) else {
        panic!("forwarded");
    };
    assert_eq!(
        sorted(&a.answers),
        vec!["external.testns.svc.cluster.local. 5 CNAME ext.interwebs.test."]
    );
    assert_eq!(
        a.chase,
        Some(Name::from_ascii("ext.interwebs.test.").expect("name"))
    );
    // In-zone targets are resolved here, CNAME first.
    let Lookup::Answer(a) = ask(
        &world(),
        &cfg(),
        "external-to-service.testns.svc.cluster.local.",
        A,
    ) else {
        panic!("forwarded");
    };
    assert_eq!(a.answers.first().map(Record::record_type), Some(CNAME));
    assert_eq!(a.chase, None);
}

#[test]
fn cname_loops_are_cut() {
    let index = index(
        vec![namespace("ns")],
        vec![
            external_name("ns", "a", "b.ns.svc.cluster.local"),
            external_name("ns", "b", "a.ns.svc.cluster.local"),
            external_name("ns", "self", "self.ns.svc.cluster.local"),
        ],
        vec![],
        vec![],
    );
    for q in ["a.ns.svc.cluster.local.", "self.ns.svc.cluster.local."] {
        let Lookup::Answer(a) = ask(&index, &cfg(), q, A) else {
            panic!("forwarded");
        };
        assert_eq!(a.rcode, ResponseCode::NoError, "{q}");
        assert!(a.answers.is_empty(), "{q}: {:?}", a.answers);
    }
}

#[test]
fn refused_and_not_synced() {
    let index = world();
    for t in [AXFR, IXFR] {
        let Lookup::Answer(a) = ask(&index, &cfg(), "cluster.local.", t) else {
            panic!("forwarded");
        };
        assert_eq!(a.rcode, ResponseCode::Refused);
    }
    let name = Name::from_ascii("svc1.testns.svc.cluster.local.").expect("name");
    let Lookup::Answer(a) = answer(&index, &cfg(), &name, A, DNSClass::CH) else {
        panic!("forwarded");
    };
    assert_eq!(a.rcode, ResponseCode::Refused);

    let mut unsynced = world();
    unsynced.set_synced(false);
    check(
        &unsynced,
        &cfg(),
        &[Case {
            rcode: ResponseCode::ServFail,
            ..nodata("svc1.testns.svc.cluster.local.", A)
        }],
    );
    assert_eq!(
        ask(&unsynced, &cfg(), "3.0.0.10.in-addr.arpa.", PTR),
        Lookup::Forward
    );
}

/// Row 15: TTL from config; the SOA minimum follows it (negative caching), its own TTL is capped
/// at 300 s; a different cluster domain works the same.
#[test]
fn ttl_and_domain_from_config() {
    let ip: IpAddr = "10.152.183.10".parse().expect("ip");
    let cfg = ZoneConfig::new("Example.Internal", 600, vec![ip]).expect("zone");
    let index = world();
    let Lookup::Answer(a) = ask(&index, &cfg, "svc1.testns.svc.example.internal.", A) else {
        panic!("forwarded");
    };
    assert_eq!(
        sorted(&a.answers),
        vec!["svc1.testns.svc.example.internal. 600 A 10.0.0.1"]
    );
    let Lookup::Answer(a) = ask(&index, &cfg, "nope.testns.svc.example.internal.", A) else {
        panic!("forwarded");
    };
    assert_eq!(
        sorted(&a.authority),
        vec![
            "example.internal. 300 SOA ns.dns.example.internal. hostmaster.example.internal. 7200 1800 86400 600"
        ]
    );
    assert_eq!(
        ask(&index, &cfg, "svc1.testns.svc.cluster.local.", A),
        Lookup::Forward
    );
}
