//! The services sync loop: any change of a Service, EndpointSlice or Node (shared watches) →
//! wait [`DEBOUNCE`] → compute the service table → render → apply only the difference from the
//! last applied ruleset as one nft transaction; a full transaction at start, after a failure and
//! every [`RESYNC`] repairs drift (someone flushing a chain, a crash mid-way).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use knet_core::FeatureContext;
use tokio_util::sync::CancellationToken;

use super::apply::{diff_script, full_script, parse_names};
use super::conntrack::{Flow, flush, stale, udp_flows};
use super::exec::{nft_apply, nft_list};
use super::health::{HealthServers, wanted};
use super::model::ServiceTable;
use super::render::{Ruleset, TABLE};
use super::socket_lb::{SocketLb, configured_cgroup};
use super::status::StatusLine;
use super::{ServicesError, route, sctp_supported};
use crate::feature::node_internal_ips;
use crate::kernel::Netlink;

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
    ruleset: Option<Ruleset>,
    flows: BTreeSet<Flow>,
    last_full: Option<Instant>,
    skipped: usize,
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
                applied.ruleset = None;
                RETRY
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            alive = services.changed() => if !alive { return },
            alive = slices.changed() => if !alive { return },
            alive = nodes.changed() => if !alive { return },
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
        let svcs = services.objects();
        let eps = slices.objects();
        let table = ServiceTable::build(
            svcs.iter().map(AsRef::as_ref),
            eps.iter().map(AsRef::as_ref),
            &self.ctx.node_name,
            self.sctp,
        );
        if table.skipped.len() != applied.skipped {
            applied.skipped = table.skipped.len();
            for k in &table.skipped {
                tracing::warn!(
                    service = %format!("{}/{}", k.namespace, k.name),
                    port = %k.port_name,
                    "skipping an SCTP port: this kernel has no SCTP support"
                );
            }
        }
        let ruleset = Ruleset::render(&table, cfg.pod_cidr.cidrs());
        let computed = t0.elapsed();

        if let Some(nl) = self.nl {
            let me = nodes
                .objects()
                .into_iter()
                .find(|n| n.metadata.name.as_deref() == Some(self.ctx.node_name.as_str()));
            let ips: Vec<IpAddr> = me.as_deref().map(node_internal_ips).unwrap_or_default();
            for ip in ips {
                if let Err(error) = route::ensure(nl, cfg.service_cidr.cidrs(), ip).await {
                    tracing::warn!(%error, "cannot add a route for the service CIDR");
                }
            }
        }

        let full =
            applied.ruleset.is_none() || applied.last_full.is_none_or(|t| t.elapsed() >= RESYNC);
        let t1 = Instant::now();
        let script = match (&applied.ruleset, full) {
            (Some(prev), false) => diff_script(prev, &ruleset),
            _ => full_script(&parse_names(&nft_list(self.netns).await?), &ruleset),
        };
        if !script.is_empty() {
            nft_apply(self.netns, &script).await?;
        }
        let apply = t1.elapsed();
        if full {
            applied.last_full = Some(Instant::now());
        }
        let flows = udp_flows(&table);
        flush(self.netns, &stale(&applied.flows, &flows)).await;
        applied.flows = flows;
        health.sync(&wanted(&table)).await;
        let dataplane = match lb {
            Lb::Off => "nftables".to_owned(),
            Lb::Failed(why) => format!("nftables (socket LB unavailable: {why})"),
            Lb::On(sock) => {
                sock.sync(&table)?;
                "nftables + socket LB".to_owned()
            }
        };
        tracing::debug!(
            ports = table.ports.len(),
            chains = ruleset.chains.len(),
            elements = ruleset.element_count(),
            full,
            bytes = script.len(),
            ?computed,
            ?apply,
            "services synced"
        );
        let msg = format!(
            "services: {dataplane}, {} service ports (table inet {TABLE})",
            table.ports.len()
        );
        applied.ruleset = Some(ruleset);
        Ok(msg)
    }
}
