//! The index at scale: 10k Services and 50k pods (as endpoints, and as Pods for `pods verified`).
//!
//! Measures heap bytes with a counting allocator and prints them with the time a no-op resync and
//! an incremental change take; asserts only generous memory bounds, never times.
#![expect(
    unsafe_code,
    reason = "a counting allocator must implement GlobalAlloc"
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use hickory_server::proto::rr::{DNSClass, Name, RecordType};
use knet_dns::answer::{Lookup, ZoneConfig, answer};
use knet_dns::fixture::{cluster_ip, ep, headless, namespace, pod, slice};
use knet_dns::index::{Index, Snapshot};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; we only count bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const SERVICES: usize = 10_000;
const PODS_PER_SERVICE: usize = 5;
const NAMESPACES: usize = 100;

fn v4(n: usize) -> String {
    format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255)
}

fn snapshot() -> Snapshot {
    let mut snap = Snapshot {
        pods: Some(Vec::new()),
        ..Snapshot::default()
    };
    for n in 0..NAMESPACES {
        snap.namespaces
            .push(Arc::new(namespace(&format!("ns-{n}"))));
    }
    let http = [("http", "TCP", 80), ("metrics", "TCP", 9090)];
    for s in 0..SERVICES {
        let ns = format!("ns-{}", s % NAMESPACES);
        let name = format!("service-{s}");
        let svc = if s % 10 == 0 {
            headless(&ns, &name, &http)
        } else {
            cluster_ip(&ns, &name, &[&v4(1_000_000 + s)], &http)
        };
        snap.services.push(Arc::new(svc));
        let mut eps = Vec::new();
        for p in 0..PODS_PER_SERVICE {
            let ip = v4(s * PODS_PER_SERVICE + p);
            eps.push(ep(&ip));
            if let Some(pods) = snap.pods.as_mut() {
                pods.push(Arc::new(pod(&ns, &format!("{name}-{p}"), &ip)));
            }
        }
        snap.slices.push(Arc::new(slice(
            &ns,
            &format!("{name}-abcde"),
            &name,
            &http,
            eps,
        )));
    }
    snap
}

fn mib(bytes: isize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[test]
fn ten_thousand_services_fifty_thousand_pods() {
    let before_objects = LIVE.load(Ordering::Relaxed);
    let snap = snapshot();
    let objects = LIVE.load(Ordering::Relaxed) - before_objects;

    // `pods insecure` (what the feature runs): no Pod watch.
    let before_lean = LIVE.load(Ordering::Relaxed);
    let mut lean = Index::new();
    lean.sync(&Snapshot {
        pods: None,
        ..snap.clone()
    });
    let lean_bytes = LIVE.load(Ordering::Relaxed) - before_lean;
    drop(lean);

    let before_index = LIVE.load(Ordering::Relaxed);
    let start = Instant::now();
    let mut index = Index::new();
    let stats = index.sync(&snap);
    let full = start.elapsed();
    index.set_synced(true);
    let index_bytes = LIVE.load(Ordering::Relaxed) - before_index;

    assert_eq!(
        stats.upserted,
        NAMESPACES + 2 * SERVICES + SERVICES * PODS_PER_SERVICE
    );
    assert_eq!(index.counts(), (SERVICES, SERVICES * PODS_PER_SERVICE));

    let start = Instant::now();
    let plan = index.plan(&snap);
    let noop = start.elapsed();
    assert!(plan.is_empty());

    // One Service changes: only it is converted and applied.
    let mut changed = snap.clone();
    let mut svc = cluster_ip("ns-1", "service-1", &["10.200.0.1"], &[]);
    svc.metadata.resource_version = Some("2".into());
    changed.services[1] = Arc::new(svc);
    let start = Instant::now();
    let stats = index.sync(&changed);
    let one = start.elapsed();
    assert_eq!(stats.upserted, 1);

    let cfg = ZoneConfig::new("cluster.local", 30, vec![]).expect("zone");
    let name = Name::from_ascii("service-2.ns-2.svc.cluster.local.").expect("name");
    let queries = 100_000u32;
    let start = Instant::now();
    for _ in 0..queries {
        let Lookup::Answer(a) = answer(&index, &cfg, &name, RecordType::A, DNSClass::IN) else {
            panic!("forwarded");
        };
        assert_eq!(a.answers.len(), 1);
    }
    let per_query = start.elapsed() / queries;

    println!(
        "index: {SERVICES} Services, {} endpoints: {:.1} MiB; with {} Pods indexed too \
         (pods verified): {:.1} MiB; the k8s objects themselves {:.1} MiB; \
         full sync {full:?}, no-op resync {noop:?}, one change {one:?}, answer {per_query:?}/query",
        SERVICES * PODS_PER_SERVICE,
        mib(lean_bytes),
        SERVICES * PODS_PER_SERVICE,
        mib(index_bytes),
        mib(objects),
    );
    // CoreDNS's sizing rule gives (50k + 10k) / 1000 + 54 = 114 MB for this cluster.
    assert!(
        mib(index_bytes) < 64.0,
        "index uses {:.1} MiB",
        mib(index_bytes)
    );
    assert!(
        mib(lean_bytes) < 32.0,
        "index uses {:.1} MiB",
        mib(lean_bytes)
    );
}
