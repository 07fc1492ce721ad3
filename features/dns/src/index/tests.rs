use std::net::IpAddr;
use std::sync::Arc;

use super::*;
use crate::fixture::{cluster_ip, ep, ep_host, headless, namespace, pod, slice};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn snap() -> Snapshot {
    Snapshot {
        namespaces: vec![Arc::new(namespace("ns"))],
        services: vec![
            Arc::new(cluster_ip("ns", "a", &["10.0.0.1"], &[("http", "TCP", 80)])),
            Arc::new(headless("ns", "h", &[])),
        ],
        slices: vec![Arc::new(slice(
            "ns",
            "h-1",
            "h",
            &[],
            vec![ep("172.0.0.1"), ep_host("172.0.0.2", "x")],
        ))],
        pods: Some(vec![Arc::new(pod("ns", "p", "172.0.0.1"))]),
    }
}

#[test]
fn sync_adds_then_changes_nothing() {
    let mut index = Index::new();
    let first = index.sync(&snap());
    assert_eq!(
        first,
        SyncStats {
            upserted: 5,
            removed: 0
        }
    );
    assert_eq!(index.counts(), (2, 2));
    assert_eq!(index.reverse(&ip("10.0.0.1")).len(), 1);
    assert_eq!(index.reverse(&ip("172.0.0.2")).len(), 1);
    assert_eq!(index.pod_namespaces(&ip("172.0.0.1")).len(), 1);
    // Same resourceVersions: nothing to do.
    assert!(index.plan(&snap()).is_empty());
}

#[test]
fn sync_removes_what_is_gone() {
    let mut index = Index::new();
    index.sync(&snap());
    let stats = index.sync(&Snapshot {
        pods: Some(vec![]),
        ..Snapshot::default()
    });
    assert_eq!(
        stats,
        SyncStats {
            upserted: 0,
            removed: 5
        }
    );
    assert_eq!(index.counts(), (0, 0));
    assert!(index.reverse.is_empty(), "{:?}", index.reverse);
    assert!(index.pods.is_empty());
    assert!(index.namespaces.is_empty(), "empty namespaces are dropped");
}

#[test]
fn changed_objects_replace_their_reverse_entries() {
    let mut index = Index::new();
    index.sync(&snap());
    let mut s = snap();
    let mut svc = cluster_ip("ns", "a", &["10.0.0.9"], &[("http", "TCP", 80)]);
    svc.metadata.resource_version = Some("2".into());
    let mut sl = slice("ns", "h-1", "h", &[], vec![ep("172.0.0.3")]);
    sl.metadata.resource_version = Some("2".into());
    s.services[0] = Arc::new(svc);
    s.slices[0] = Arc::new(sl);
    let stats = index.sync(&s);
    assert_eq!(
        stats,
        SyncStats {
            upserted: 2,
            removed: 0
        }
    );
    assert!(index.reverse(&ip("10.0.0.1")).is_empty());
    assert_eq!(index.reverse(&ip("10.0.0.9")).len(), 1);
    assert!(index.reverse(&ip("172.0.0.1")).is_empty());
    assert!(index.reverse(&ip("172.0.0.2")).is_empty());
    assert_eq!(index.reverse(&ip("172.0.0.3")).len(), 1);
}

#[test]
fn slice_that_changes_service_moves() {
    let mut index = Index::new();
    index.sync(&snap());
    let mut moved = slice("ns", "h-1", "a", &[], vec![ep("172.0.0.1")]);
    moved.metadata.resource_version = Some("2".into());
    index.upsert_slice(&moved);
    let ns = index.namespace("ns").expect("ns");
    assert_eq!(ns.slices("h").count(), 0);
    assert_eq!(ns.slices("a").count(), 1);
    assert_eq!(index.reverse(&ip("172.0.0.1")).len(), 1);
    assert_eq!(&*index.reverse(&ip("172.0.0.1"))[0].service, "a");
}

#[test]
fn serial_moves_on_change() {
    let mut index = Index::new();
    index.sync(&snap());
    let before = index.serial();
    index.remove_service("ns", "a");
    assert!(index.serial() > before);
    let again = index.serial();
    index.remove_service("ns", "a");
    assert_eq!(index.serial(), again, "a no-op does not bump the serial");
}

#[test]
fn namespace_object_gates_existence() {
    let mut index = Index::new();
    index.upsert_service(&cluster_ip("late", "a", &["10.0.0.1"], &[]));
    assert!(index.namespace("late").is_none());
    index.upsert_namespace_object(&namespace("late"));
    assert!(index.namespace("late").is_some());
    index.remove_namespace("late");
    assert!(index.namespace("late").is_none());
    assert_eq!(
        index.counts().0,
        1,
        "the Service stays until its own delete arrives"
    );
}
