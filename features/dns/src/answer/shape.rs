//! Parsing a name under the zone into what it asks for (CoreDNS `parse.go`).

/// What a name under the cluster zone refers to. Labels are lowercase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Shape<'a> {
    /// The zone apex.
    Apex,
    /// `svc.<zone>` or `pod.<zone>`: empty non-terminals.
    Root,
    /// `dns-version.<zone>`.
    DnsVersion,
    /// `ns.dns.<zone>`: the name in the NS record.
    NsName,
    /// `<ns>.svc.<zone>` or `<ns>.pod.<zone>`.
    Namespace { ns: &'a str, pod: bool },
    /// `[<endpoint>.|_<port>._<proto>.]<svc>.<ns>.svc.<zone>`.
    Service {
        ns: &'a str,
        svc: &'a str,
        endpoint: Option<&'a str>,
        port: Option<(&'a str, &'a str)>,
    },
    /// `<dashed-ip>.<ns>.pod.<zone>`.
    Pod { ns: &'a str, pod: &'a str },
    /// Anything else: NXDOMAIN.
    Invalid,
}

// === impl Shape ===

impl<'a> Shape<'a> {
    /// Parses the labels left of the zone (left to right, lowercase).
    pub(super) fn parse(labels: &[&'a [u8]]) -> Shape<'a> {
        let mut segs: [&str; 5] = [""; 5];
        if labels.len() > segs.len() {
            return Shape::Invalid;
        }
        for (seg, label) in segs.iter_mut().zip(labels) {
            match std::str::from_utf8(label) {
                Ok(s) => *seg = s,
                Err(_) => return Shape::Invalid,
            }
        }
        let segs = &segs[..labels.len()];
        match segs {
            [] => Shape::Apex,
            ["svc" | "pod"] => Shape::Root,
            ["dns-version"] => Shape::DnsVersion,
            ["ns", "dns"] => Shape::NsName,
            [.., kind] if *kind != "svc" && *kind != "pod" => Shape::Invalid,
            [ns, kind] => Shape::Namespace {
                ns,
                pod: *kind == "pod",
            },
            [pod, ns, "pod"] => Shape::Pod { ns, pod },
            [.., "pod"] => Shape::Invalid,
            [svc, ns, _] => Shape::Service {
                ns,
                svc,
                endpoint: None,
                port: None,
            },
            [endpoint, svc, ns, _] => Shape::Service {
                ns,
                svc,
                endpoint: Some(endpoint),
                port: None,
            },
            [port, proto, svc, ns, _] => Shape::Service {
                ns,
                svc,
                endpoint: None,
                port: Some((strip_underscore(port), strip_underscore(proto))),
            },
            _ => Shape::Invalid,
        }
    }
}

/// `_http` → `http`; CoreDNS accepts the labels with or without the underscore.
fn strip_underscore(s: &str) -> &str {
    s.strip_prefix('_').unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(name: &str) -> Shape<'_> {
        let labels: Vec<&[u8]> = if name.is_empty() {
            Vec::new()
        } else {
            name.split('.').map(str::as_bytes).collect()
        };
        Shape::parse(&labels)
    }

    #[test]
    fn shapes() {
        assert_eq!(parse(""), Shape::Apex);
        assert_eq!(parse("svc"), Shape::Root);
        assert_eq!(parse("pod"), Shape::Root);
        assert_eq!(parse("foo"), Shape::Invalid);
        assert_eq!(parse("dns-version"), Shape::DnsVersion);
        assert_eq!(parse("ns.dns"), Shape::NsName);
        assert_eq!(parse("a.dns"), Shape::Invalid);
        assert_eq!(
            parse("testns.svc"),
            Shape::Namespace {
                ns: "testns",
                pod: false
            }
        );
        assert_eq!(
            parse("testns.pod"),
            Shape::Namespace {
                ns: "testns",
                pod: true
            }
        );
        assert_eq!(
            parse("1-2-3-4.testns.pod"),
            Shape::Pod {
                ns: "testns",
                pod: "1-2-3-4"
            }
        );
        assert_eq!(parse("x.1-2-3-4.testns.pod"), Shape::Invalid);
        assert_eq!(
            parse("_http._tcp.s.n.svc"),
            Shape::Service {
                ns: "n",
                svc: "s",
                endpoint: None,
                port: Some(("http", "tcp"))
            }
        );
        assert_eq!(
            parse("http.tcp.s.n.svc"),
            Shape::Service {
                ns: "n",
                svc: "s",
                endpoint: None,
                port: Some(("http", "tcp"))
            }
        );
        assert_eq!(
            parse("ep.s.n.svc"),
            Shape::Service {
                ns: "n",
                svc: "s",
                endpoint: Some("ep"),
                port: None
            }
        );
        assert_eq!(parse("a.b.c.s.n.svc"), Shape::Invalid);
    }
}
