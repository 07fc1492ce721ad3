//! The operations: ADD, DEL, CHECK, STATUS, GC, and the start-up reconcile.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;

use super::{CniHandler, internal, wiring};
use crate::cni::{CniEnv, CniError, CniResult, Code, Interface, IpConfig, NetConf, Route};
use crate::ipam::{IpamError, Owner};
use crate::kernel::{
    HOST_MAC, PodWiring, check_pod, format_mac, gateway_for, host_veth_name, host_veths,
    pods_in_kernel, unwire_pod, wire_pod,
};

// === impl CniHandler ===

impl CniHandler {
    pub(super) async fn add(
        &self,
        env: &CniEnv,
        conf: &NetConf,
        owner: &Owner,
    ) -> Result<serde_json::Value, CniError> {
        let network = self.network();
        if network.pod_cidrs.is_empty() {
            return Err(CniError::new(
                Code::TRY_AGAIN_LATER,
                "this node has no pod CIDR yet",
            )
            .details(
                "knet waits for the Node's spec.podCIDRs or its own allocation; check `knet status`",
            ));
        }
        let mut addrs = Vec::new();
        for pool in &network.pod_cidrs {
            match self.ipam.allocate(*pool, owner) {
                Ok(ip) => addrs.push(ip),
                Err(e) => {
                    self.release_quietly(owner);
                    return Err(match e {
                        IpamError::Exhausted { .. } => {
                            CniError::new(Code::POOL_EXHAUSTED, e.to_string())
                                .details("delete unused pods, or give the node a larger pod CIDR")
                        }
                        other => internal(other),
                    });
                }
            }
        }
        let host_if = host_veth_name(&env.container_id, &env.ifname);
        let w = PodWiring {
            host_if: host_if.clone(),
            pod_if: env.ifname.clone(),
            netns: PathBuf::from(&env.netns),
            addrs: addrs.clone(),
            mtu: network.mtu,
            owner: (env.container_id.clone(), env.ifname.clone()),
        };
        let pod_mac = match wire_pod(&self.node, self.node_ns.as_deref(), &w).await {
            Ok(mac) => mac,
            Err(e) => {
                if let Err(error) = unwire_pod(&self.node, &host_if, None, &env.ifname).await {
                    tracing::warn!(%error, "rolling back a failed ADD");
                }
                self.release_quietly(owner);
                return Err(wiring(e));
            }
        };
        tracing::info!(container = %env.container_id, ips = ?addrs, veth = %host_if, "pod attached");
        Ok(render(env, conf, &host_if, &pod_mac, &addrs, network.mtu))
    }

    pub(super) async fn del(&self, env: &CniEnv, owner: &Owner) -> Result<(), CniError> {
        let host_if = host_veth_name(&env.container_id, &env.ifname);
        let netns = (!env.netns.is_empty()).then(|| Path::new(&env.netns));
        unwire_pod(&self.node, &host_if, netns, &env.ifname)
            .await
            .map_err(wiring)?;
        let released = self.ipam.release(owner).map_err(internal)?;
        tracing::info!(container = %env.container_id, ips = ?released, "pod detached");
        Ok(())
    }

    pub(super) async fn check(
        &self,
        env: &CniEnv,
        conf: &NetConf,
        owner: &Owner,
    ) -> Result<(), CniError> {
        let addrs = self.ipam.lookup(owner).map_err(internal)?;
        if addrs.is_empty() {
            return Err(CniError::new(
                Code::UNKNOWN_CONTAINER,
                format!(
                    "knet has no attachment for container {} interface {}",
                    env.container_id, env.ifname
                ),
            ));
        }
        if let Some(prev) = &conf.prev_result {
            let mut expected: Vec<IpAddr> = CniResult::addresses_of(prev)?
                .iter()
                .map(IpNet::addr)
                .collect();
            let mut held = addrs.clone();
            expected.sort();
            held.sort();
            if expected != held {
                return Err(CniError::new(
                    Code::CHECK_FAILED,
                    "the pod's addresses differ from the previous result",
                )
                .details(format!("prevResult has {expected:?}, knet holds {held:?}")));
            }
        }
        let w = PodWiring {
            host_if: host_veth_name(&env.container_id, &env.ifname),
            pod_if: env.ifname.clone(),
            netns: PathBuf::from(&env.netns),
            addrs,
            // The MTU may have been changed live since ADD; it is not a fault.
            mtu: 0,
            owner: (env.container_id.clone(), env.ifname.clone()),
        };
        let problems = check_pod(&self.node, &w).await.map_err(wiring)?;
        if problems.is_empty() {
            Ok(())
        } else {
            Err(
                CniError::new(Code::CHECK_FAILED, "the pod's network is broken")
                    .details(problems.join("; ")),
            )
        }
    }

    pub(super) fn status(&self) -> Result<(), CniError> {
        if self.network().pod_cidrs.is_empty() {
            return Err(CniError::new(
                Code::NOT_AVAILABLE,
                "this node has no pod CIDR yet",
            ));
        }
        Ok(())
    }

    pub(super) async fn gc(&self, conf: &NetConf) -> Result<(), CniError> {
        let Some(valid) = &conf.valid_attachments else {
            return Err(CniError::new(
                Code::INVALID_CONFIG,
                "GC needs \"cni.dev/valid-attachments\"",
            ));
        };
        let keep: HashSet<Owner> = valid
            .iter()
            .map(|a| Owner::new(&a.container_id, &a.ifname))
            .collect();
        let keep_veths: HashSet<String> = keep
            .iter()
            .map(|o| host_veth_name(&o.container_id, &o.ifname))
            .collect();
        for name in host_veths(&self.node.handle).await.map_err(wiring)? {
            if !keep_veths.contains(&name) {
                tracing::info!(veth = %name, "gc: deleting a stale pod veth");
                crate::kernel::delete_link(&self.node.handle, &name)
                    .await
                    .map_err(wiring)?;
            }
        }
        let released = self
            .ipam
            .release_where(|o| !keep.contains(o))
            .map_err(internal)?;
        if !released.is_empty() {
            tracing::info!(ips = ?released, "gc: released stale addresses");
        }
        Ok(())
    }

    /// Releases addresses whose host veth is gone: left by a DEL served while the daemon was
    /// down, or by a crash in the middle of an ADD. Run before the handler is registered, so no
    /// ADD is in flight.
    pub async fn reconcile(&self) -> Result<Vec<IpAddr>, CniError> {
        // A lost or rebuilt store: take back every address the kernel says a pod still has, so
        // it can never be handed out twice.
        for ((container_id, ifname), ips) in
            pods_in_kernel(&self.node.handle).await.map_err(wiring)?
        {
            let owner = Owner::new(container_id, ifname);
            for ip in ips {
                if self.ipam.adopt(ip, &owner).map_err(internal)? {
                    tracing::warn!(%ip, container = %owner.container_id,
                        "re-adopted an address the store had lost, from the kernel");
                    knet_core::metrics::inc("knet_ipam_readopted_total", &[]);
                }
            }
        }
        let present: HashSet<String> = host_veths(&self.node.handle)
            .await
            .map_err(wiring)?
            .into_iter()
            .collect();
        let released = self
            .ipam
            .release_where(|o| !present.contains(&host_veth_name(&o.container_id, &o.ifname)))
            .map_err(internal)?;
        if !released.is_empty() {
            tracing::info!(ips = ?released, "released addresses of pods that are gone");
        }
        Ok(released)
    }

    fn release_quietly(&self, owner: &Owner) {
        if let Err(error) = self.ipam.release(owner) {
            tracing::warn!(%error, "releasing the addresses of a failed ADD");
        }
    }
}

fn render(
    env: &CniEnv,
    conf: &NetConf,
    host_if: &str,
    pod_mac: &str,
    addrs: &[IpAddr],
    mtu: u32,
) -> serde_json::Value {
    let mut result = CniResult {
        interfaces: vec![
            Interface {
                name: host_if.to_owned(),
                mac: format_mac(&HOST_MAC),
                sandbox: None,
                mtu: Some(mtu),
            },
            Interface {
                name: env.ifname.clone(),
                mac: pod_mac.to_owned(),
                sandbox: Some(env.netns.clone()),
                mtu: Some(mtu),
            },
        ],
        dns: conf.dns.clone(),
        ..CniResult::default()
    };
    for ip in addrs {
        let prefix = if ip.is_ipv4() { 32 } else { 128 };
        if let Ok(address) = IpNet::new(*ip, prefix) {
            result.ips.push(IpConfig {
                address,
                gateway: Some(gateway_for(*ip)),
                interface: Some(1),
            });
        }
        let default: IpNet = if ip.is_ipv4() {
            IpNet::V4(ipnet::Ipv4Net::default())
        } else {
            IpNet::V6(ipnet::Ipv6Net::default())
        };
        result.routes.push(Route {
            dst: default,
            gw: Some(gateway_for(*ip)),
        });
    }
    result.render(conf.version)
}
