//! The `dns` feature as the daemon runs it: listening address, server, watches, live config.

pub mod service;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use knet_core::config::ClusterConfig;
use knet_core::watch::Watched;
use knet_core::{Feature, FeatureContext, FeatureError, FeatureId, StatusReporter};
use kube::Api;
use kube::api::DeleteParams;
use tokio_util::sync::CancellationToken;

use crate::address;
use crate::answer::ZoneConfig;
use crate::forward::{ForwardConfig, Forwarder, resolv_conf};
use crate::index::Snapshot;
use crate::metrics;
use crate::notrack;
use crate::server::{DnsServer, DnsState, ServerConfig};

/// The node-local address every node also answers on (NodeLocal DNSCache's conventional
/// link-local address), for clients that want to skip the Service IP.
pub const NODE_LOCAL_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(169, 254, 20, 10));
/// The DNS port.
pub const DNS_PORT: u16 = 53;
/// Changes arriving within this window are applied together.
const DEBOUNCE: Duration = Duration::from_millis(20);
/// How often the node's resolv.conf is re-read when no upstreams are configured.
const RESOLV_CONF_EVERY: Duration = Duration::from_secs(30);
/// How often upstreams are re-probed for forwarding loops.
const LOOP_PROBE_EVERY: Duration = Duration::from_secs(300);
/// How often the counters are copied into the daemon's metrics registry.
const METRICS_EVERY: Duration = Duration::from_secs(5);

/// The feature.
#[derive(Debug, Default)]
pub struct DnsFeature;

/// The `dns` feature, for the daemon's registry.
pub fn build() -> Box<dyn Feature> {
    Box::new(DnsFeature)
}

/// What the config says, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Settings {
    service_ip: IpAddr,
    zone: ZoneConfig,
    upstreams: Vec<SocketAddr>,
    /// `dns.upstream-nameservers` is set (otherwise the node's resolv.conf is followed).
    configured: bool,
}

impl Settings {
    fn from_config(cfg: &ClusterConfig) -> Result<Settings, FeatureError> {
        let service_ip = cfg.dns_service_ip();
        let zone = ZoneConfig::new(&cfg.dns.cluster_domain, cfg.dns.ttl, vec![service_ip])
            .map_err(|e| FeatureError::with("dns.cluster-domain", e))?;
        let configured = !cfg.dns.upstream_nameservers.is_empty();
        let upstreams = if configured {
            cfg.dns.upstream_nameservers.iter().map(|n| n.0).collect()
        } else {
            resolv_conf::node_upstreams()
        };
        Ok(Settings {
            service_ip,
            zone,
            upstreams,
            configured,
        })
    }

    fn listen_ips(&self) -> Vec<IpAddr> {
        vec![self.service_ip, NODE_LOCAL_IP]
    }
}

// === impl DnsFeature ===

impl Feature for DnsFeature {
    fn id(&self) -> FeatureId {
        FeatureId::Dns
    }

    fn run(
        &self,
        ctx: FeatureContext,
        status: StatusReporter,
        shutdown: CancellationToken,
    ) -> BoxFuture<'_, Result<(), FeatureError>> {
        Box::pin(run(ctx, status, shutdown))
    }

    fn cleanup(&self, ctx: FeatureContext) -> BoxFuture<'_, Result<(), FeatureError>> {
        Box::pin(cleanup(ctx))
    }
}

fn start_server(state: &DnsState, s: &Settings) -> Result<DnsServer, FeatureError> {
    let addrs = s
        .listen_ips()
        .into_iter()
        .map(|ip| SocketAddr::new(ip, DNS_PORT))
        .collect();
    let server = DnsServer::start(state.clone(), &ServerConfig::new(addrs))
        .map_err(|e| FeatureError::with("starting the dns server", e))?;
    state.forwarder().set_local_addrs(server.bound().to_vec());
    Ok(server)
}

fn probe_loops(forwarder: &Forwarder) {
    let f = forwarder.clone();
    tokio::spawn(async move { f.probe_loops().await });
}

/// Brings the index in line with the watch stores. Returns whether anything changed.
fn sync(
    state: &DnsState,
    svcs: &Watched<Service>,
    slices: &Watched<EndpointSlice>,
    nss: &Watched<Namespace>,
) -> bool {
    let snap = Snapshot {
        services: svcs.objects(),
        slices: slices.objects(),
        namespaces: nss.objects(),
        pods: None,
    };
    let plan = state.read_index().plan(&snap);
    if plan.is_empty() {
        return false;
    }
    let stats = state.write_index().apply(plan);
    tracing::debug!(
        upserted = stats.upserted,
        removed = stats.removed,
        "dns index synced"
    );
    true
}

async fn run(
    ctx: FeatureContext,
    status: StatusReporter,
    shutdown: CancellationToken,
) -> Result<(), FeatureError> {
    let mut config = ctx.config.clone();
    let mut current = Settings::from_config(&ctx.current_config())?;
    status.starting("adding the listening addresses");
    address::ensure(&current.listen_ips())
        .await
        .map_err(|e| FeatureError::with("adding the dns addresses to lo", e))?;
    notrack::apply(&current.listen_ips())
        .await
        .map_err(|e| FeatureError::with("exempting dns from conntrack", e))?;
    let forwarder = Forwarder::new(ForwardConfig::default());
    forwarder.set_upstreams(current.upstreams.clone());
    if current.upstreams.is_empty() {
        tracing::warn!(
            "no upstream nameservers (set dns.upstream-nameservers): names outside the cluster get SERVFAIL"
        );
    }
    let state = DnsState::new(current.zone.clone(), forwarder.clone());
    let mut server = start_server(&state, &current)?;
    probe_loops(&forwarder);
    let mut service_stop = shutdown.child_token();
    tokio::spawn(service::keep_ensured(
        ctx.client.clone(),
        current.service_ip,
        service_stop.clone(),
    ));

    let mut svcs = ctx.watches.get::<Service>();
    let mut slices = ctx.watches.get::<EndpointSlice>();
    let mut nss = ctx.watches.get::<Namespace>();
    status.starting(format!(
        "at {}: waiting for the Service, EndpointSlice and Namespace watches",
        current.service_ip
    ));
    // Serve meanwhile: forwarding works, cluster names get SERVFAIL until the first sync.
    loop {
        let wait = Duration::from_millis(500);
        let synced = svcs.wait_synced(wait).await
            && slices.wait_synced(wait).await
            && nss.wait_synced(wait).await;
        if synced {
            break;
        }
        if shutdown.is_cancelled() {
            service_stop.cancel();
            server.stop().await;
            return Ok(());
        }
    }
    sync(&state, &svcs, &slices, &nss);
    state.write_index().set_synced(true);
    let (services, endpoints) = state.read_index().counts();
    tracing::info!(services, endpoints, ip = %current.service_ip, "dns serving the cluster zone");
    status.ready(format!("at {}", current.service_ip));

    let mut metrics_tick = tokio::time::interval(METRICS_EVERY);
    let mut resolv_tick = tokio::time::interval(RESOLV_CONF_EVERY);
    let mut loop_tick = tokio::time::interval(LOOP_PROBE_EVERY);
    loop {
        let dirty = tokio::select! {
            () = shutdown.cancelled() => break,
            alive = svcs.changed() => alive,
            alive = slices.changed() => alive,
            alive = nss.changed() => alive,
            changed = config.changed() => {
                if changed.is_err() {
                    break;
                }
                let cfg: Arc<ClusterConfig> = config.borrow_and_update().clone();
                match Settings::from_config(&cfg) {
                    Ok(new) => {
                        if new.service_ip != current.service_ip {
                            address::ensure(&new.listen_ips())
                                .await
                                .map_err(|e| FeatureError::with("moving the dns address", e))?;
                            notrack::apply(&new.listen_ips())
                                .await
                                .map_err(|e| FeatureError::with("exempting dns from conntrack", e))?;
                            server.stop().await;
                            server = start_server(&state, &new)?;
                            service_stop.cancel();
                            service_stop = shutdown.child_token();
                            tokio::spawn(service::keep_ensured(ctx.client.clone(), new.service_ip, service_stop.clone()));
                            status.ready(format!("at {}", new.service_ip));
                        }
                        apply_settings(&state, &current, &new);
                        current = new;
                    }
                    Err(error) => tracing::warn!(%error, "ignoring dns config change"),
                }
                false
            }
            _ = metrics_tick.tick() => {
                metrics::publish(state.responses().hits());
                false
            }
            _ = resolv_tick.tick() => {
                if !current.configured {
                    let found = resolv_conf::node_upstreams();
                    if found != current.upstreams {
                        tracing::info!(upstreams = ?found, "node resolv.conf changed");
                        current.upstreams = found.clone();
                        if forwarder.set_upstreams(found) {
                            probe_loops(&forwarder);
                        }
                    }
                }
                false
            }
            _ = loop_tick.tick() => {
                probe_loops(&forwarder);
                false
            }
        };
        if dirty {
            tokio::time::sleep(DEBOUNCE).await;
            sync(&state, &svcs, &slices, &nss);
        }
    }
    service_stop.cancel();
    server.stop().await;
    Ok(())
}

/// Applies zone and upstream changes that need no new listeners.
fn apply_settings(state: &DnsState, old: &Settings, new: &Settings) {
    if new.zone != old.zone {
        tracing::info!(domain = %new.zone.zone, ttl = new.zone.ttl, "dns zone config changed");
        state.set_zone(new.zone.clone());
    }
    if new.upstreams != old.upstreams && state.forwarder().set_upstreams(new.upstreams.clone()) {
        tracing::info!(upstreams = ?new.upstreams, "dns upstreams changed");
        probe_loops(state.forwarder());
    }
}

async fn cleanup(ctx: FeatureContext) -> Result<(), FeatureError> {
    let cfg = ctx.current_config();
    let v6: Vec<IpAddr> = [cfg.dns_service_ip()]
        .into_iter()
        .filter(IpAddr::is_ipv6)
        .collect();
    address::remove_all(&v6)
        .await
        .map_err(|e| FeatureError::with("removing the dns addresses from lo", e))?;
    notrack::remove()
        .await
        .map_err(|e| FeatureError::with("removing the knet-dns nftables table", e))?;
    // The Service is cluster-wide; every node's cleanup tries, the first delete wins.
    let api: Api<Service> = Api::namespaced(ctx.client.clone(), service::NAMESPACE);
    match api.get_opt(service::NAME).await {
        Ok(Some(svc)) if service::is_ours(&svc) => {
            if let Err(error) = api.delete(service::NAME, &DeleteParams::default()).await {
                tracing::warn!(%error, "cannot delete Service kube-system/knet-dns");
            }
        }
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "cannot check Service kube-system/knet-dns"),
    }
    Ok(())
}
