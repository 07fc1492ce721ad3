//! eBPF socket-level load balancing: `bpf/sock_lb.c`'s cgroup hooks (connect4/6, sendmsg4/6,
//! recvmsg4/6, getpeername4/6) loaded with aya and attached to one cgroup v2 directory, with
//! the service maps filled from the same service ports as nftables. A connection from a
//! process in that cgroup to a ClusterIP is made straight to a backend, so it costs what a
//! connection to the pod IP costs; nftables stays in place for everything else (other
//! processes, external traffic, Services with affinity or without endpoints).
//!
//! Nothing is pinned: the programs and maps live as long as the [`SocketLb`] (dropping it, or
//! the daemon exiting, detaches them; new connections then take the nftables path).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use aya::maps::HashMap as BpfHashMap;
use aya::programs::{CgroupAttachMode, CgroupSockAddr};
use aya::{Ebpf, EbpfLoader};

use super::ServicesError;
use super::model::{Proto, ServicePort, Target};

/// Environment variable naming the cgroup v2 directory to attach to (or `off`).
pub const CGROUP_ENV: &str = knet_core::paths::env::SOCKET_LB_CGROUP;
/// File in the state dir naming it (when the variable is unset); `knet bootstrap` writes it.
pub const CGROUP_FILE: &str = knet_core::paths::SOCKET_LB_CGROUP_FILE;

/// The compiled object (empty when clang was missing at build time).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sock_lb.o"));

const PROGRAMS: [&str; 8] = [
    "knet_connect4",
    "knet_sendmsg4",
    "knet_recvmsg4",
    "knet_getpeername4",
    "knet_connect6",
    "knet_sendmsg6",
    "knet_recvmsg6",
    "knet_getpeername6",
];

/// IPv4 service map entries: `svc_key4` → `svc_val4` (see the C structs).
pub type Entries4 = BTreeMap<[u8; 12], [u8; 8]>;
/// IPv6 service map entries: `svc_key6` → `svc_val6`.
pub type Entries6 = BTreeMap<[u8; 24], [u8; 20]>;

/// Loaded and attached programs, and what their maps hold.
pub struct SocketLb {
    ebpf: Ebpf,
    cgroup: PathBuf,
    v4: Entries4,
    v6: Entries6,
}

impl std::fmt::Debug for SocketLb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketLb")
            .field("cgroup", &self.cgroup)
            .field("v4", &self.v4.len())
            .field("v6", &self.v6.len())
            .finish_non_exhaustive()
    }
}

/// The cgroup to attach to: `$KNET_SOCKET_LB_CGROUP`, else the path in
/// `<state-dir>/socket-lb-cgroup`; none (or `off`) means socket load balancing is off. An
/// unreadable or invalid setting is logged and treated as off.
pub fn configured_cgroup(paths: &knet_core::paths::Paths) -> Option<PathBuf> {
    match knet_core::paths::SocketLbCgroup::configured(paths) {
        Ok(knet_core::paths::SocketLbCgroup::Cgroup(p)) => Some(p),
        Ok(knet_core::paths::SocketLbCgroup::Off) => None,
        Err(error) => {
            tracing::warn!(%error, "socket load balancing off");
            None
        }
    }
}

/// The map entries for these service ports: ClusterIP ports with endpoints and without
/// affinity.
pub fn entries<'a>(ports: impl IntoIterator<Item = &'a ServicePort>) -> (Entries4, Entries6) {
    let mut v4 = Entries4::new();
    let mut v6 = Entries6::new();
    for p in ports {
        let (Some(vip), Target::Endpoints(eps)) = (p.cluster_ip, &p.cluster) else {
            continue;
        };
        if p.affinity.is_some() || p.key.proto == Proto::Sctp {
            continue;
        }
        let proto: u8 = if p.key.proto == Proto::Tcp { 6 } else { 17 };
        let eps: Vec<_> = eps
            .iter()
            .filter(|e| e.ip.is_ipv4() == vip.is_ipv4())
            .collect();
        let Ok(count) = u16::try_from(eps.len()) else {
            continue;
        };
        for (slot, ep) in std::iter::once(None)
            .chain(eps.iter().map(Some))
            .enumerate()
        {
            let slot = u32::try_from(slot).unwrap_or(u32::MAX);
            match vip {
                IpAddr::V4(ip) => {
                    let mut k = [0u8; 12];
                    k[..4].copy_from_slice(&ip.octets());
                    k[4..6].copy_from_slice(&p.port.to_be_bytes());
                    k[6] = proto;
                    k[8..].copy_from_slice(&slot.to_ne_bytes());
                    let mut v = [0u8; 8];
                    match ep.map(|e| (e.ip, e.port)) {
                        Some((IpAddr::V4(bip), bport)) => {
                            v[..4].copy_from_slice(&bip.octets());
                            v[4..6].copy_from_slice(&bport.to_be_bytes());
                        }
                        _ => v[6..].copy_from_slice(&count.to_ne_bytes()),
                    }
                    v4.insert(k, v);
                }
                IpAddr::V6(ip) => {
                    let mut k = [0u8; 24];
                    k[..16].copy_from_slice(&ip.octets());
                    k[16..18].copy_from_slice(&p.port.to_be_bytes());
                    k[18] = proto;
                    k[20..].copy_from_slice(&slot.to_ne_bytes());
                    let mut v = [0u8; 20];
                    match ep.map(|e| (e.ip, e.port)) {
                        Some((IpAddr::V6(bip), bport)) => {
                            v[..16].copy_from_slice(&bip.octets());
                            v[16..18].copy_from_slice(&bport.to_be_bytes());
                        }
                        _ => v[18..].copy_from_slice(&count.to_ne_bytes()),
                    }
                    v6.insert(k, v);
                }
            }
        }
    }
    (v4, v6)
}

// === impl SocketLb ===

impl SocketLb {
    /// Loads the programs and attaches them to `cgroup` (a cgroup v2 directory).
    pub fn attach(cgroup: &Path) -> Result<SocketLb, ServicesError> {
        let err =
            |what: &str, e: &dyn std::fmt::Display| ServicesError::Bpf(format!("{what}: {e}"));
        if OBJECT.is_empty() {
            return Err(ServicesError::Bpf(
                "this build has no BPF object (clang was missing at build time)".into(),
            ));
        }
        let fd = std::fs::File::open(cgroup)
            .map_err(|e| err(&format!("opening cgroup {}", cgroup.display()), &e))?;
        let mut ebpf = EbpfLoader::new()
            .load(OBJECT)
            .map_err(|e| err("loading the socket LB object", &e))?;
        for name in PROGRAMS {
            let prog: &mut CgroupSockAddr = ebpf
                .program_mut(name)
                .ok_or_else(|| ServicesError::Bpf(format!("program {name} missing")))?
                .try_into()
                .map_err(|e| err(name, &e))?;
            prog.load()
                .map_err(|e| err(&format!("loading {name}"), &e))?;
            // A bpf_link (kernel >= 5.7) coexists with other programs whatever the mode; the
            // mode flags are only valid for the legacy attach, where Single is the default.
            prog.attach(&fd, CgroupAttachMode::Single)
                .map_err(|e| err(&format!("attaching {name}"), &e))?;
        }
        Ok(SocketLb {
            ebpf,
            cgroup: cgroup.to_path_buf(),
            v4: Entries4::new(),
            v6: Entries6::new(),
        })
    }

    /// The cgroup the programs are attached to.
    pub fn cgroup(&self) -> &Path {
        &self.cgroup
    }

    /// Makes the maps hold the entries of these service ports; returns how many services
    /// they hold.
    pub fn sync<'a>(
        &mut self,
        ports: impl IntoIterator<Item = &'a ServicePort>,
    ) -> Result<usize, ServicesError> {
        let (v4, v6) = entries(ports);
        update(&mut self.ebpf, "knet_svc_v4", &self.v4, &v4, 8)?;
        update(&mut self.ebpf, "knet_svc_v6", &self.v6, &v6, 18)?;
        let services = count_slot0(&v4, 8) + count_slot0(&v6, 20);
        self.v4 = v4;
        self.v6 = v6;
        Ok(services)
    }

    /// Applies the change of one Service's ports, from `before` to `after`, to the maps (the
    /// rest of the maps stays as it is).
    pub fn update(
        &mut self,
        before: &[ServicePort],
        after: &[ServicePort],
    ) -> Result<(), ServicesError> {
        let (b4, b6) = entries(before);
        let (a4, a6) = entries(after);
        update(&mut self.ebpf, "knet_svc_v4", &b4, &a4, 8)?;
        update(&mut self.ebpf, "knet_svc_v6", &b6, &a6, 18)?;
        patch(&mut self.v4, &b4, a4);
        patch(&mut self.v6, &b6, a6);
        Ok(())
    }
}

/// `current` minus `old`'s keys plus `new`.
fn patch<const K: usize, const V: usize>(
    current: &mut BTreeMap<[u8; K], [u8; V]>,
    old: &BTreeMap<[u8; K], [u8; V]>,
    new: BTreeMap<[u8; K], [u8; V]>,
) {
    for k in old.keys() {
        current.remove(k);
    }
    current.extend(new);
}

fn count_slot0<const K: usize, const V: usize>(m: &BTreeMap<[u8; K], [u8; V]>, at: usize) -> usize {
    m.keys().filter(|k| k[at..at + 4] == [0, 0, 0, 0]).count()
}

/// Backends first, then the slot-0 counts (so a count never points at a missing slot), then
/// removals.
fn update<const K: usize, const V: usize>(
    ebpf: &mut Ebpf,
    name: &str,
    old: &BTreeMap<[u8; K], [u8; V]>,
    new: &BTreeMap<[u8; K], [u8; V]>,
    slot_at: usize,
) -> Result<(), ServicesError>
where
    [u8; K]: aya::Pod,
    [u8; V]: aya::Pod,
{
    let map = ebpf
        .map_mut(name)
        .ok_or_else(|| ServicesError::Bpf(format!("map {name} missing")))?;
    let mut map: BpfHashMap<_, [u8; K], [u8; V]> =
        BpfHashMap::try_from(map).map_err(|e| ServicesError::Bpf(format!("{name}: {e}")))?;
    let slot0 = |k: &[u8; K]| k[slot_at..slot_at + 4] == [0, 0, 0, 0];
    for pass_slot0 in [false, true] {
        for (k, v) in new.iter().filter(|(k, _)| slot0(k) == pass_slot0) {
            if old.get(k) != Some(v) {
                map.insert(k, v, 0)
                    .map_err(|e| ServicesError::Bpf(format!("{name} insert: {e}")))?;
            }
        }
    }
    for k in old.keys().filter(|k| !new.contains_key(*k)) {
        map.remove(k)
            .map_err(|e| ServicesError::Bpf(format!("{name} remove: {e}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn entries_hold_a_count_slot_and_one_slot_per_backend_in_network_order() {
        let svc: k8s_openapi::api::core::v1::Service = serde_json::from_value(json!({
            "metadata": {"namespace": "ns", "name": "web"},
            "spec": {"clusterIP": "10.152.183.5",
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}))
        .expect("svc");
        let slice: k8s_openapi::api::discovery::v1::EndpointSlice = serde_json::from_value(json!({
                "metadata": {"namespace": "ns", "name": "web-1",
                             "labels": {"kubernetes.io/service-name": "web"}},
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                "endpoints": [{"addresses": ["10.1.0.5"]}, {"addresses": ["10.1.0.6"]}]}))
        .expect("slice");
        let table = crate::services::model::ServiceTable::build([&svc], [&slice], "n", false);
        let (v4, v6) = entries(&table);
        assert!(v6.is_empty());
        assert_eq!(v4.len(), 3);
        let mut key = [10, 152, 183, 5, 0, 80, 6, 0, 0, 0, 0, 0];
        assert_eq!(v4[&key][6..], 2u16.to_ne_bytes());
        key[8..].copy_from_slice(&1u32.to_ne_bytes());
        assert_eq!(v4[&key], [10, 1, 0, 5, 0x1f, 0x90, 0, 0]);
        assert_eq!(count_slot0(&v4, 8), 1);
    }
}
