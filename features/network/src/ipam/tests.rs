use std::collections::HashSet;

use super::*;

fn open() -> (tempfile::TempDir, Store, Ipam) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open store");
    let ipam = Ipam::open(&store).expect("open ipam");
    (dir, store, ipam)
}

fn net(s: &str) -> IpNet {
    s.parse().expect("cidr")
}

#[test]
fn allocates_skipping_network_and_broadcast() {
    let (_d, _s, ipam) = open();
    let pool = net("10.1.0.0/30");
    let a = ipam.allocate(pool, &Owner::new("a", "eth0")).expect("a");
    let b = ipam.allocate(pool, &Owner::new("b", "eth0")).expect("b");
    assert_eq!(a.to_string(), "10.1.0.1");
    assert_eq!(b.to_string(), "10.1.0.2");
    let err = ipam
        .allocate(pool, &Owner::new("c", "eth0"))
        .expect_err("pool of two is full");
    assert!(matches!(err, IpamError::Exhausted { used: 2, .. }), "{err}");
}

#[test]
fn add_is_idempotent_per_container_and_interface() {
    let (_d, _s, ipam) = open();
    let pool = net("10.1.0.0/24");
    let owner = Owner::new("c1", "eth0");
    let first = ipam.allocate(pool, &owner).expect("first");
    let again = ipam.allocate(pool, &owner).expect("again");
    assert_eq!(first, again);
    let other_if = ipam
        .allocate(pool, &Owner::new("c1", "net1"))
        .expect("second interface");
    assert_ne!(first, other_if);
}

#[test]
fn dual_stack_lookup_and_release() {
    let (_d, _s, ipam) = open();
    let owner = Owner::new("c1", "eth0");
    let v4 = ipam.allocate(net("10.1.0.0/24"), &owner).expect("v4");
    let v6 = ipam.allocate(net("fd01::/120"), &owner).expect("v6");
    assert_eq!(v6.to_string(), "fd01::1");
    assert_eq!(ipam.lookup(&owner).expect("lookup"), vec![v4, v6]);
    let released = ipam.release(&owner).expect("release");
    assert_eq!(released.len(), 2);
    assert!(ipam.lookup(&owner).expect("lookup").is_empty());
    assert!(ipam.release(&owner).expect("release twice").is_empty());
}

#[test]
fn released_addresses_are_not_reused_immediately() {
    let (_d, _s, ipam) = open();
    let pool = net("10.1.0.0/24");
    let a = ipam.allocate(pool, &Owner::new("a", "eth0")).expect("a");
    ipam.release(&Owner::new("a", "eth0")).expect("release");
    let b = ipam.allocate(pool, &Owner::new("b", "eth0")).expect("b");
    assert_ne!(a, b, "the cursor moves on past a just-released address");
}

#[test]
fn gc_releases_only_stale_owners() {
    let (_d, _s, ipam) = open();
    let pool = net("10.1.0.0/24");
    for id in ["keep", "gone1", "gone2"] {
        ipam.allocate(pool, &Owner::new(id, "eth0")).expect("alloc");
    }
    let released = ipam
        .release_where(|o| o.container_id != "keep")
        .expect("gc");
    assert_eq!(released.len(), 2);
    let left: Vec<_> = ipam
        .allocations()
        .expect("list")
        .into_iter()
        .map(|(_, o)| o.container_id)
        .collect();
    assert_eq!(left, vec!["keep"]);
}

#[test]
fn allocations_survive_reopening_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = net("10.1.0.0/24");
    let first = {
        let store = Store::open(dir.path()).expect("open");
        let ipam = Ipam::open(&store).expect("ipam");
        ipam.allocate(pool, &Owner::new("a", "eth0")).expect("a")
    };
    let store = Store::open(dir.path()).expect("reopen");
    let ipam = Ipam::open(&store).expect("ipam");
    let b = ipam.allocate(pool, &Owner::new("b", "eth0")).expect("b");
    assert_ne!(
        first, b,
        "a fresh cursor must still skip the stored address"
    );
    assert_eq!(
        ipam.allocate(pool, &Owner::new("a", "eth0"))
            .expect("a again"),
        first
    );
}

#[test]
fn concurrent_allocations_never_share_an_address() {
    let (_d, _s, ipam) = open();
    let pool = net("10.1.0.0/24");
    let ips: Vec<IpAddr> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let ipam = &ipam;
                s.spawn(move || {
                    (0..25)
                        .map(|i| {
                            ipam.allocate(pool, &Owner::new(format!("c{t}-{i}"), "eth0"))
                                .expect("alloc")
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("join"))
            .collect()
    });
    let unique: HashSet<_> = ips.iter().collect();
    assert_eq!(unique.len(), 200);
    assert_eq!(ipam.allocations().expect("list").len(), 200);
}

#[test]
fn tiny_pools_are_refused() {
    let (_d, _s, ipam) = open();
    let err = ipam
        .allocate(net("10.1.0.0/31"), &Owner::new("a", "eth0"))
        .expect_err("a /31 holds no pods");
    assert!(matches!(err, IpamError::TooSmall(_)));
}

#[test]
fn large_ipv6_pools_allocate_without_scanning_the_pool() {
    let (_d, _s, ipam) = open();
    let ip = ipam
        .allocate(net("fd01::/64"), &Owner::new("a", "eth0"))
        .expect("alloc");
    assert_eq!(ip.to_string(), "fd01::1");
}
