//! The daemon side of CNI: the local API handler behind `/v1/feature/network/cni/*`, which
//! allocates addresses, wires pods, checks and tears them down, and garbage-collects.

mod ops;

use std::net::IpAddr;
use std::path::PathBuf;

use futures::future::BoxFuture;
use ipnet::IpNet;
use knet_core::{ApiHandler, ApiRequest, ApiResponse};
use serde_json::Value;
use tokio::sync::{Mutex, watch};

use crate::cni::{CniError, Code, Command};
use crate::ipam::{Ipam, Owner};
use crate::kernel::{KernelError, Netlink};
use crate::wire::{CniErrorBody, CniRequest, http_status};

/// Lock stripes serialising calls for the same attachment (a runtime retrying ADD while its
/// first ADD still runs must not get two addresses).
const STRIPES: usize = 64;

/// What the handler needs to know about the node, updated live by the feature.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeNetwork {
    /// This node's pod CIDRs (one per family); empty until known.
    pub pod_cidrs: Vec<IpNet>,
    /// MTU of new pod interfaces.
    pub mtu: u32,
}

/// The CNI request handler. Register it with `ctx.api.register(FeatureId::Network, ..)`.
pub struct CniHandler {
    ipam: Ipam,
    node: Netlink,
    node_ns: Option<PathBuf>,
    network: watch::Receiver<NodeNetwork>,
    stripes: Vec<Mutex<()>>,
}

impl std::fmt::Debug for CniHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CniHandler")
            .field("node_ns", &self.node_ns)
            .finish_non_exhaustive()
    }
}

// === impl CniHandler ===

impl CniHandler {
    /// A handler wiring pods into the node namespace `node_ns` (the daemon's own when `None`;
    /// tests pass a namespace they created). Must be called inside a tokio runtime.
    pub async fn new(
        ipam: Ipam,
        node_ns: Option<PathBuf>,
        network: watch::Receiver<NodeNetwork>,
    ) -> Result<CniHandler, KernelError> {
        let node = Netlink::open(node_ns.as_deref()).await?;
        Ok(CniHandler {
            ipam,
            node,
            node_ns,
            network,
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
        })
    }

    /// Serves one CNI call: the result JSON for ADD, `None` for the others, or a CNI error.
    pub async fn call(&self, req: CniRequest) -> Result<Option<Value>, CniError> {
        let bytes = serde_json::to_vec(&req.config).map_err(internal)?;
        let conf = crate::cni::NetConf::parse(&bytes)?;
        crate::cni::check_version_allows(req.command, conf.version)?;
        match req.command {
            Command::Add | Command::Del | Command::Check => {
                if req.env.container_id.is_empty() || req.env.ifname.is_empty() {
                    return Err(CniError::new(
                        Code::INVALID_ENV,
                        format!("{} needs CNI_CONTAINERID and CNI_IFNAME", req.command),
                    ));
                }
                let owner = Owner::new(&req.env.container_id, &req.env.ifname);
                let _guard = self.stripe(&owner).lock().await;
                match req.command {
                    Command::Add => self.add(&req.env, &conf, &owner).await.map(Some),
                    Command::Del => self.del(&req.env, &owner).await.map(|()| None),
                    _ => self.check(&req.env, &conf, &owner).await.map(|()| None),
                }
            }
            Command::Status => self.status().map(|()| None),
            Command::Gc => self.gc(&conf).await.map(|()| None),
            Command::Version => Ok(Some(crate::cni::version_info())),
        }
    }

    fn stripe(&self, owner: &Owner) -> &Mutex<()> {
        let name = crate::kernel::host_veth_name(&owner.container_id, &owner.ifname);
        let n = name.bytes().fold(0usize, |acc, b| {
            acc.wrapping_mul(31).wrapping_add(usize::from(b))
        });
        &self.stripes[n % STRIPES]
    }

    /// The addresses an attachment holds (for tests and diagnostics).
    pub fn addresses_of(&self, container_id: &str, ifname: &str) -> Result<Vec<IpAddr>, CniError> {
        self.ipam
            .lookup(&Owner::new(container_id, ifname))
            .map_err(internal)
    }

    fn network(&self) -> NodeNetwork {
        self.network.borrow().clone()
    }
}

impl ApiHandler for CniHandler {
    fn handle(&self, req: ApiRequest) -> BoxFuture<'_, ApiResponse> {
        Box::pin(async move {
            let answer = match (req.method.as_str(), req.path.trim_start_matches('/')) {
                ("POST", p) if p.starts_with("cni/") => {
                    match serde_json::from_slice::<CniRequest>(&req.body) {
                        Ok(r) => self.call(r).await,
                        Err(e) => Err(CniError::new(
                            Code::DECODING_FAILURE,
                            "the daemon could not decode the plugin's request",
                        )
                        .details(e.to_string())),
                    }
                }
                ("GET", "allocations") => {
                    return match self.ipam.allocations() {
                        Ok(all) => ApiResponse {
                            status: 200,
                            body: allocations_json(&all).into_bytes(),
                        },
                        Err(e) => ApiResponse {
                            status: 500,
                            body: serde_json::to_vec(&knet_api::ErrorBody {
                                error: format!("reading the address store: {e}"),
                            })
                            .unwrap_or_default(),
                        },
                    };
                }
                _ => {
                    return ApiResponse {
                        status: 404,
                        body: serde_json::to_vec(&knet_api::ErrorBody {
                            error: format!(
                                "the network feature has no {} {}: use POST cni/<command> or GET allocations",
                                req.method, req.path
                            ),
                        })
                        .unwrap_or_default(),
                    };
                }
            };
            match answer {
                Ok(v) => ApiResponse {
                    status: 200,
                    body: v.map(|v| v.to_string().into_bytes()).unwrap_or_default(),
                },
                Err(e) => ApiResponse {
                    status: http_status(&e),
                    body: serde_json::to_vec(&CniErrorBody::from(&e)).unwrap_or_default(),
                },
            }
        })
    }
}

/// `GET allocations`: every address the node's store holds and who holds it, as
/// `[{"ip": "10.1.3.7", "containerId": "...", "ifname": "eth0"}, ...]` (for diagnostics and the
/// lab's no-leak checks).
fn allocations_json(all: &[(IpAddr, Owner)]) -> String {
    let rows: Vec<Value> = all
        .iter()
        .map(|(ip, o)| {
            serde_json::json!({"ip": ip.to_string(), "containerId": o.container_id, "ifname": o.ifname})
        })
        .collect();
    Value::Array(rows).to_string()
}

/// Any unexpected failure, as a CNI error.
pub(crate) fn internal(e: impl std::fmt::Display) -> CniError {
    CniError::new(Code::INTERNAL, "knet could not complete the request").details(e.to_string())
}

/// A kernel failure while wiring.
pub(crate) fn wiring(e: KernelError) -> CniError {
    CniError::new(Code::WIRING_FAILED, "setting up the pod's network failed").details(e.to_string())
}
