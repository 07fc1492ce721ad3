//! Serves a synthetic cluster zone on 127.0.0.1 for load tests with dnsperf:
//! `cargo run -p knet-dns --example bench_server --features test-util -- 5300 10000`
//! (port, number of Services). Writes the dnsperf query file to /tmp/knet-dns-queries.txt.

use std::sync::Arc;

use knet_dns::answer::ZoneConfig;
use knet_dns::fixture::{cluster_ip, ep, headless, namespace, slice};
use knet_dns::forward::{ForwardConfig, Forwarder};
use knet_dns::index::{Index, Snapshot};
use knet_dns::server::{DnsServer, DnsState, ServerConfig};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let port: u16 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(5300);
    let services: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let mut snap = Snapshot::default();
    let mut queries = String::new();
    for n in 0..10 {
        snap.namespaces
            .push(Arc::new(namespace(&format!("ns-{n}"))));
    }
    for s in 0..services {
        let ns = format!("ns-{}", s % 10);
        let name = format!("svc-{s}");
        let ip = format!("10.{}.{}.{}", 100 + (s >> 16), (s >> 8) & 255, s & 255);
        let http = [("http", "TCP", 80)];
        if s % 10 == 0 {
            snap.services.push(Arc::new(headless(&ns, &name, &http)));
            snap.slices.push(Arc::new(slice(
                &ns,
                &format!("{name}-x"),
                &name,
                &http,
                vec![ep(&ip)],
            )));
        } else {
            snap.services
                .push(Arc::new(cluster_ip(&ns, &name, &[&ip], &http)));
        }
        queries.push_str(&format!("{name}.{ns}.svc.cluster.local A\n"));
        if s % 4 == 0 {
            // Search-path misses, as ndots:5 produces them.
            queries.push_str(&format!(
                "{name}.{ns}.svc.cluster.local.svc.cluster.local A\n"
            ));
        }
    }
    std::fs::write("/tmp/knet-dns-queries.txt", queries).expect("write queries");
    let mut index = Index::new();
    index.sync(&snap);
    index.set_synced(true);
    let zone = ZoneConfig::new("cluster.local", 30, vec![]).expect("zone");
    let state = DnsState::with_index(index, zone, Forwarder::new(ForwardConfig::default()));
    let cfg = ServerConfig::new(vec![format!("127.0.0.1:{port}").parse().expect("addr")]);
    let server = DnsServer::start(state, &cfg).expect("start");
    println!("serving {services} Services on {:?}", server.bound());
    let _ = tokio::signal::ctrl_c().await;
    server.stop().await;
}
