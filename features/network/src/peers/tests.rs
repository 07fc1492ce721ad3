use super::*;

fn net(s: &str) -> IpNet {
    s.parse().expect("cidr")
}

fn peers() -> Vec<Peer> {
    vec![
        Peer {
            name: "near".into(),
            pod_cidrs: vec![net("10.1.1.0/24"), net("fd01::100/120")],
            node_ips: vec!["192.168.1.11".parse().expect("ip")],
        },
        Peer {
            name: "far".into(),
            pod_cidrs: vec![net("10.1.2.0/24")],
            node_ips: vec!["192.168.2.12".parse().expect("ip")],
        },
    ]
}

#[test]
fn auto_routes_natively_on_link_and_tunnels_otherwise() {
    let routes = plan(NetworkMode::Auto, &[net("192.168.1.10/24")], &peers());
    assert_eq!(routes.len(), 3);
    assert_eq!(
        routes[0].path,
        Path::Native {
            via: "192.168.1.11".parse().expect("ip")
        }
    );
    // IPv6 pods behind an IPv4-only node: only the overlay reaches them.
    assert!(matches!(routes[1].path, Path::Vxlan { vtep, .. } if vtep.to_string() == "fd01::100"));
    assert_eq!(
        routes[2].path,
        Path::Vxlan {
            underlay: "192.168.2.12".parse().expect("ip"),
            vtep: "10.1.2.0".parse().expect("ip"),
            mac: [0x0e, 0x6b, 192, 168, 2, 12],
        }
    );
}

#[test]
fn native_and_vxlan_modes_are_uniform() {
    let native = plan(NetworkMode::Native, &[net("192.168.1.10/24")], &peers());
    assert!(native.iter().all(|r| matches!(r.path, Path::Native { .. })));
    assert_eq!(
        native.len(),
        2,
        "no IPv6 node address for the IPv6 pod CIDR"
    );
    let vxlan = plan(NetworkMode::Vxlan, &[net("192.168.1.10/24")], &peers());
    assert_eq!(vxlan.len(), 3);
    assert!(vxlan.iter().all(|r| matches!(r.path, Path::Vxlan { .. })));
}

#[test]
fn mtu_leaves_room_for_the_overlay() {
    use knet_core::config::Mtu;
    assert_eq!(pod_mtu(NetworkMode::Auto, Mtu::Auto, 1500), 1450);
    assert_eq!(pod_mtu(NetworkMode::Vxlan, Mtu::Auto, 9000), 8950);
    assert_eq!(pod_mtu(NetworkMode::Native, Mtu::Auto, 1500), 1500);
    assert_eq!(pod_mtu(NetworkMode::Auto, Mtu::Bytes(1400), 1500), 1400);
}
