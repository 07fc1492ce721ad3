//! The services sync loop: any change of a Service, EndpointSlice, Node (shared watches) or of
//! the cluster config → wait [`DEBOUNCE`] → recompute and re-render only the Services whose
//! objects changed ([`Desired`]) → apply the difference as one nf_tables netlink batch
//! ([`NfSocket`]). A full `nft -f -` transaction, from a model recomputed from scratch, runs at
//! start, after a failure, when the static part changes and every [`RESYNC`], and repairs drift
//! (someone flushing a chain, a crash mid-way).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use knet_core::FeatureContext;
use tokio_util::sync::CancellationToken;

use ipnet::IpNet;
use k8s_openapi::jiff::Timestamp;
use knet_core::config::NodePortAddress;

use super::apply::Diff;
use super::base::{StaticConfig, TABLE};
use super::conntrack::{FlowCounts, deletions, flush};
use super::desired::{Desired, NodeInputs};
use super::exec::{nft_apply, nft_apply_full};
use super::health::{HealthServers, wanted};
use super::metrics;
use super::nfnl::NfSocket;
use super::socket_lb::{SocketLb, configured_cgroup};
use super::status::StatusLine;
use super::{ServicesError, route, sctp_supported};
use crate::feature::node_internal_ips;
use crate::kernel::Netlink;
use crate::peers::local_addresses;

/// How long to wait after a change for more changes before syncing.
pub const DEBOUNCE: Duration = Duration::from_millis(50);
/// Periodic full transaction.
pub const RESYNC: Duration = Duration::from_secs(60);
/// Wait before retrying a failed apply.
const RETRY: Duration = Duration::from_secs(2);
/// How long to wait for the first lists before syncing with what is there.
const FIRST_LIST: Duration = Duration::from_secs(30);

/// What the loop remembers between passes.
#[derive(Default)]
struct Applied {
    /// The desired state, updated incrementally.
    desired: Desired,
    /// Whether the kernel holds `desired` as of the last successful pass (otherwise the next
    /// pass is a full one).
    in_kernel: bool,
    /// The static part the kernel holds.
    static_config: Option<StaticConfig>,
    flows: FlowCounts,
    last_full: Option<Instant>,
    skipped: usize,
    /// The netlink socket for incremental batches (opened on first use).
    socket: Option<NfSocket>,
    /// Whether the pass in progress is a full one (for the metrics of a failed pass).
    full_pass: bool,
}

/// Runs the loop until `shutdown`.
pub async fn run(
    ctx: FeatureContext,
    netns: Option<PathBuf>,
    line: StatusLine,
    shutdown: CancellationToken,
) {
    let mut services = ctx.watches.get::<Service>();
    let mut slices = ctx.watches.get::<EndpointSlice>();
    let mut nodes = ctx.watches.get::<Node>();
    // Config changes (e.g. network.nodeport-addresses) wake the loop too.
    let mut config = ctx.config.clone();
    line.services("services: waiting for the Service and EndpointSlice lists".into());
    tokio::select! {
        () = shutdown.cancelled() => return,
        _ = async {
            services.wait_synced(FIRST_LIST).await;
            slices.wait_synced(FIRST_LIST).await;
        } => {}
    }
    let nl = match Netlink::open(netns.as_deref()).await {
        Ok(nl) => Some(nl),
        Err(error) => {
            tracing::warn!(%error, "services: no netlink connection; no service CIDR route");
            None
        }
    };
    let sctp = sctp_supported();
    let mut health = HealthServers::new(netns.as_deref());
    let mut applied = Applied::default();
    let mut lb = match configured_cgroup(&ctx.paths) {
        None => Lb::Off,
        Some(cgroup) => match SocketLb::attach(&cgroup) {
            Ok(lb) => {
                tracing::info!(cgroup = %cgroup.display(), "socket load balancing attached");
                Lb::On(lb)
            }
            Err(error) => {
                tracing::warn!(%error, "socket load balancing unavailable; nftables only");
                Lb::Failed(error.to_string())
            }
        },
    };
    loop {
        let pass = Pass {
            ctx: &ctx,
            netns: netns.as_deref(),
            nl: nl.as_ref(),
            sctp,
        };
        let wait = match pass
            .run(
                &services,
                &slices,
                &nodes,
                &mut applied,
                &mut health,
                &mut lb,
            )
            .await
        {
            Ok(msg) => {
                line.services(msg);
                RESYNC
            }
            Err(error) => {
                tracing::warn!(%error, "services sync failed");
                line.services(format!("services: failed: {error}"));
                metrics::sync_pass(0.0, applied.full_pass, false);
                applied.in_kernel = false;
                RETRY
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            alive = services.changed() => if !alive { return },
            alive = slices.changed() => if !alive { return },
            alive = nodes.changed() => if !alive { return },
            changed = config.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(wait) => continue,
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(DEBOUNCE) => {}
        }
    }
}

/// The socket load balancer's state.
enum Lb {
    /// Not configured (no cgroup given).
    Off,
    /// Attached.
    On(SocketLb),
    /// Configured but not loadable here (the reason).
    Failed(String),
}

struct Pass<'a> {
    ctx: &'a FeatureContext,
    netns: Option<&'a std::path::Path>,
    nl: Option<&'a Netlink>,
    sctp: bool,
}

// === impl Pass ===

impl Pass<'_> {
    async fn run(
        &self,
        services: &knet_core::watch::Watched<Service>,
        slices: &knet_core::watch::Watched<EndpointSlice>,
        nodes: &knet_core::watch::Watched<Node>,
        applied: &mut Applied,
        health: &mut HealthServers,
        lb: &mut Lb,
    ) -> Result<String, ServicesError> {
        let t0 = Instant::now();
        let cfg = self.ctx.current_config();
        let me = nodes
            .objects()
            .into_iter()
            .find(|n| n.metadata.name.as_deref() == Some(self.ctx.node_name.as_str()));
        let node_ips: Vec<IpAddr> = me.as_deref().map(node_internal_ips).unwrap_or_default();
        let inputs = NodeInputs {
            node: self.ctx.node_name.clone(),
            sctp: self.sctp,
            pod_cidrs: cfg.pod_cidr.cidrs().to_vec(),
            node_ips: node_ips.clone(),
        };
        let static_config = self
            .static_config(&cfg.network.nodeport_addresses, &node_ips)
            .await;
        let full = !applied.in_kernel
            || applied.static_config.as_ref() != Some(&static_config)
            || applied.last_full.is_none_or(|t| t.elapsed() >= RESYNC);
        applied.full_pass = full;
        if full {
            // Recompute everything from scratch as well: the resync also repairs any drift of
            // the incremental model.
            applied.desired.reset();
        }
        let svcs = services.objects();
        let eps = slices.objects();
        let update = applied.desired.update(
            svcs.iter().map(AsRef::as_ref),
            eps.iter().map(AsRef::as_ref),
            &inputs,
            !full,
        );
        let desired = &applied.desired;
        let skipped = desired.skipped().count();
        if skipped != applied.skipped {
            applied.skipped = skipped;
            for k in desired.skipped() {
                tracing::warn!(
                    service = %format!("{}/{}", k.namespace, k.name),
                    port = %k.port_name,
                    "skipping an SCTP port: this kernel has no SCTP support"
                );
            }
        }
        let computed = t0.elapsed();

        if let Some(nl) = self.nl {
            for ip in node_ips {
                if let Err(error) = route::ensure(nl, cfg.service_cidr.cidrs(), ip).await {
                    tracing::warn!(%error, "cannot add a route for the service CIDR");
                }
            }
        }

        let t1 = Instant::now();
        let (how, size) = if full {
            let size = nft_apply_full(self.netns, &static_config, desired).await?;
            applied.static_config = Some(static_config);
            applied.last_full = Some(Instant::now());
            ("nft", size)
        } else {
            self.apply_incremental(&mut applied.socket, &update.diff)
                .await?
        };
        applied.in_kernel = true;
        let apply = t1.elapsed();
        metrics::sync_pass(t0.elapsed().as_secs_f64(), full, true);
        let now = Timestamp::now();
        for t in &update.triggers {
            metrics::programmed(now.duration_since(*t).as_secs_f64());
        }
        // Stale UDP conntrack entries and the socket load balancer follow the recomputed
        // Services only, unless everything was recomputed.
        let every = full || update.all;
        let gone = if every {
            let flows = FlowCounts::of(desired.per_service());
            let gone = applied.flows.gone(&flows);
            applied.flows = flows;
            gone
        } else {
            let mut gone = Vec::new();
            for (before, after) in &update.changed {
                gone.extend(applied.flows.change(before, after));
            }
            gone
        };
        flush(self.netns, &deletions(&gone)).await;
        health.sync(&wanted(desired.ports())).await;
        let dataplane = match lb {
            Lb::Off => "nftables".to_owned(),
            Lb::Failed(why) => format!("nftables (socket LB unavailable: {why})"),
            Lb::On(sock) => {
                if every {
                    sock.sync(desired.ports())?;
                } else {
                    for (before, after) in &update.changed {
                        sock.update(before, after)?;
                    }
                }
                "nftables + socket LB".to_owned()
            }
        };
        let ports = desired.ports().count();
        tracing::debug!(
            ports,
            recomputed = update.recomputed,
            chains = desired.chain_count(),
            elements = desired.element_count(),
            full,
            how,
            size,
            ?computed,
            ?apply,
            total = ?t0.elapsed(),
            "services synced"
        );
        Ok(format!(
            "services: {dataplane}, {ports} service ports (table inet {TABLE})"
        ))
    }

    /// The static part for `network.nodeport-addresses`. The node's local addresses are
    /// listed only when a CIDR needs them; if that fails, the CIDRs match nothing (NodePorts
    /// never answer on more addresses than configured).
    async fn static_config(&self, list: &[NodePortAddress], node_ips: &[IpAddr]) -> StaticConfig {
        let mut local = Vec::new();
        if StaticConfig::needs_local_addresses(list) {
            let listed = match self.nl {
                Some(nl) => local_addresses(nl).await.map_err(|e| e.to_string()),
                None => Err("no netlink connection".to_owned()),
            };
            match listed {
                Ok(nets) => local = nets.iter().map(IpNet::addr).collect(),
                Err(error) => {
                    tracing::warn!(%error, "cannot list the node's addresses for NodePorts");
                }
            }
        }
        StaticConfig::for_node_ports(list, node_ips, &local)
    }

    /// Applies `diff` as a netlink batch (as `nft` text if no netlink socket can be opened);
    /// how, and the size sent.
    async fn apply_incremental(
        &self,
        socket: &mut Option<NfSocket>,
        diff: &Diff,
    ) -> Result<(&'static str, usize), ServicesError> {
        if diff.is_empty() {
            return Ok(("nothing", 0));
        }
        if socket.is_none() {
            match NfSocket::open(self.netns).await {
                Ok(s) => *socket = Some(s),
                Err(error) => tracing::warn!(%error, "no nf_tables netlink socket; using nft"),
            }
        }
        match socket {
            Some(s) => {
                let (_, bytes) = s.apply(diff).inspect_err(|_| *socket = None)?;
                Ok(("netlink", bytes))
            }
            None => {
                let script = diff.script();
                nft_apply(self.netns, &script).await?;
                Ok(("nft", script.len()))
            }
        }
    }
}
