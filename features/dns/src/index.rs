//! The in-memory view of the cluster that DNS answers come from.
//!
//! Built from Services, EndpointSlices (discovery.k8s.io/v1), Namespaces and, optionally, Pods.
//! Objects are converted once, on arrival, into compact entries keyed by lowercase namespace and
//! name, so a query costs a couple of hash lookups and no allocation until records are built.
//! Updates are incremental: [`Index::sync_services`] and friends compare resourceVersions against a
//! store snapshot and touch only what changed, so a watch event costs O(changed objects) of work
//! under the write lock. A reverse map (IP → owners) serves PTR queries.

mod convert;
mod sync;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

pub use sync::{Plan, Snapshot, SyncStats};

/// Everything the answer logic reads. Cheap to update one object at a time.
#[derive(Debug, Default)]
pub struct Index {
    namespaces: HashMap<Box<str>, NsEntry>,
    reverse: HashMap<IpAddr, Vec<ReverseEntry>>,
    pods: HashMap<IpAddr, Vec<Arc<str>>>,
    /// Pods by namespace, then name (`pods verified` only).
    pod_versions: HashMap<Box<str>, HashMap<Box<str>, PodSeen>>,
    synced: bool,
    serial: u32,
}

/// One namespace's objects.
#[derive(Debug, Default)]
pub(crate) struct NsEntry {
    /// The namespace name, shared by this namespace's reverse entries and pods.
    pub(crate) name: Arc<str>,
    /// The Namespace object itself is known (CoreDNS answers nothing in unknown namespaces).
    pub(crate) exists: bool,
    pub(crate) exists_version: Box<str>,
    pub(crate) services: HashMap<Box<str>, ServiceEntry>,
    /// EndpointSlices by owning Service name, then by slice name.
    pub(crate) endpoints: HashMap<Box<str>, HashMap<Box<str>, Slice>>,
    /// Slice name → owning Service name, so a slice whose label changes is moved cleanly.
    pub(crate) slice_owner: HashMap<Box<str>, Box<str>>,
}

/// A Service, reduced to what DNS needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServiceEntry {
    pub(crate) kind: ServiceKind,
    pub(crate) ports: Vec<Port>,
    pub(crate) publish_not_ready: bool,
    pub(crate) version: Box<str>,
}

/// How a Service is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ServiceKind {
    /// A virtual IP per family.
    ClusterIp(Vec<IpAddr>),
    /// `clusterIP: None`: answered with endpoint IPs.
    Headless,
    /// A CNAME to this name (already known not to be an IP address).
    ExternalName(Box<str>),
    /// An ExternalName whose target is an IP, or a Service without usable IPs: CoreDNS gives
    /// NXDOMAIN for these.
    Unanswerable,
}

/// A Service or EndpointSlice port. Names and protocols are lowercase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Port {
    pub(crate) name: Box<str>,
    pub(crate) protocol: Box<str>,
    /// `None` stands for "no port" (a portless headless Service); never shown in SRV records.
    pub(crate) port: Option<u16>,
}

/// An EndpointSlice, reduced to what DNS needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Slice {
    pub(crate) ports: Vec<Port>,
    pub(crate) endpoints: Vec<Endpoint>,
    pub(crate) version: Box<str>,
}

/// One address of an EndpointSlice endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub(crate) ip: IpAddr,
    /// `endpoint.hostname`, lowercase; when unset the name is the dashed IP.
    pub(crate) hostname: Option<Box<str>>,
    /// `conditions.ready` (unset counts as ready).
    pub(crate) ready: bool,
}

/// Who owns an IP, for PTR answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReverseEntry {
    pub(crate) namespace: Arc<str>,
    pub(crate) service: Arc<str>,
    pub(crate) kind: ReverseKind,
}

/// What kind of owner a [`ReverseEntry`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReverseKind {
    /// The IP is the Service's ClusterIP.
    ClusterIp,
    /// The IP is an endpoint of the Service, in slice `slice`.
    Endpoint {
        slice: Arc<str>,
        hostname: Option<Box<str>>,
        ready: bool,
    },
}

#[derive(Debug)]
struct PodSeen {
    version: Box<str>,
    ips: Vec<IpAddr>,
}

// === impl Index ===

impl Index {
    /// An empty index that has not synced yet.
    pub fn new() -> Index {
        Index::default()
    }

    /// Whether every watch has delivered its first full list. Until then cluster names get
    /// SERVFAIL, as in CoreDNS.
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// Marks the index as synced (or not).
    pub fn set_synced(&mut self, synced: bool) {
        self.synced = synced;
    }

    /// The SOA serial: the Unix time of the last change, like CoreDNS.
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// Number of Services and endpoint addresses held, for logs and tests.
    pub fn counts(&self) -> (usize, usize) {
        let services = self.namespaces.values().map(|n| n.services.len()).sum();
        let endpoints = self
            .namespaces
            .values()
            .flat_map(|n| n.endpoints.values())
            .flat_map(|s| s.values())
            .map(|s| s.endpoints.len())
            .sum();
        (services, endpoints)
    }

    pub(crate) fn namespace(&self, name: &str) -> Option<&NsEntry> {
        self.namespaces.get(name).filter(|n| n.exists)
    }

    pub(crate) fn service(&self, ns: &str, name: &str) -> Option<&ServiceEntry> {
        self.namespaces.get(ns)?.services.get(name)
    }

    pub(crate) fn reverse(&self, ip: &IpAddr) -> &[ReverseEntry] {
        self.reverse.get(ip).map_or(&[], Vec::as_slice)
    }

    pub(crate) fn pod_namespaces(&self, ip: &IpAddr) -> &[Arc<str>] {
        self.pods.get(ip).map_or(&[], Vec::as_slice)
    }

    fn touch(&mut self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        // Serial arithmetic wraps (RFC 1982); truncation is what CoreDNS does too.
        let now = (now & u64::from(u32::MAX)) as u32;
        self.serial = now.max(self.serial.wrapping_add(1));
    }

    fn ns_mut(&mut self, ns: &str) -> &mut NsEntry {
        self.namespaces.entry(ns.into()).or_insert_with(|| NsEntry {
            name: ns.into(),
            ..NsEntry::default()
        })
    }

    fn gc_namespace(&mut self, ns: &str) {
        if self.namespaces.get(ns).is_some_and(NsEntry::is_empty) {
            self.namespaces.remove(ns);
        }
    }

    // --- Namespaces ---

    /// Records that a Namespace exists.
    pub fn upsert_namespace(&mut self, name: &str, version: &str) {
        let entry = self.ns_mut(name);
        if !entry.exists || &*entry.exists_version != version {
            entry.exists = true;
            entry.exists_version = version.into();
            self.touch();
        }
    }

    /// Records that a Namespace is gone.
    pub fn remove_namespace(&mut self, name: &str) {
        if let Some(entry) = self.namespaces.get_mut(name)
            && entry.exists
        {
            entry.exists = false;
            entry.exists_version = "".into();
            self.gc_namespace(name);
            self.touch();
        }
    }

    // --- Services ---

    pub(crate) fn put_service(&mut self, ns: &str, name: &str, entry: ServiceEntry) {
        let entry_ns = self.ns_mut(ns);
        let ns_arc = entry_ns.name.clone();
        let name_arc: Arc<str> = name.into();
        let old = entry_ns.services.insert(name.into(), entry.clone());
        if let Some(old) = old {
            self.unindex_cluster_ips(&old, &ns_arc, &name_arc);
        }
        if let ServiceKind::ClusterIp(ips) = &entry.kind {
            for ip in ips {
                self.reverse
                    .entry(*ip)
                    .or_insert_with(|| Vec::with_capacity(1))
                    .push(ReverseEntry {
                        namespace: ns_arc.clone(),
                        service: name_arc.clone(),
                        kind: ReverseKind::ClusterIp,
                    });
            }
        }
        self.touch();
    }

    /// Forgets a Service.
    pub fn remove_service(&mut self, ns: &str, name: &str) {
        let Some(old) = self
            .namespaces
            .get_mut(ns)
            .and_then(|n| n.services.remove(name))
        else {
            return;
        };
        self.unindex_cluster_ips(&old, &Arc::from(ns), &Arc::from(name));
        self.gc_namespace(ns);
        self.touch();
    }

    fn unindex_cluster_ips(&mut self, old: &ServiceEntry, ns: &Arc<str>, name: &Arc<str>) {
        if let ServiceKind::ClusterIp(ips) = &old.kind {
            for ip in ips {
                self.unindex_reverse(*ip, |e| {
                    e.kind == ReverseKind::ClusterIp && e.namespace == *ns && e.service == *name
                });
            }
        }
    }

    fn unindex_reverse(&mut self, ip: IpAddr, matches: impl Fn(&ReverseEntry) -> bool) {
        if let Some(list) = self.reverse.get_mut(&ip) {
            list.retain(|e| !matches(e));
            if list.is_empty() {
                self.reverse.remove(&ip);
            }
        }
    }

    // --- EndpointSlices ---

    pub(crate) fn put_slice(&mut self, ns: &str, slice_name: &str, service: &str, slice: Slice) {
        self.remove_slice_quiet(ns, slice_name);
        let ns_arc = self.ns_mut(ns).name.clone();
        let svc_arc: Arc<str> = service.into();
        let slice_arc: Arc<str> = slice_name.into();
        for ep in &slice.endpoints {
            self.reverse
                .entry(ep.ip)
                .or_insert_with(|| Vec::with_capacity(1))
                .push(ReverseEntry {
                    namespace: ns_arc.clone(),
                    service: svc_arc.clone(),
                    kind: ReverseKind::Endpoint {
                        slice: slice_arc.clone(),
                        hostname: ep.hostname.clone(),
                        ready: ep.ready,
                    },
                });
        }
        let entry = self.ns_mut(ns);
        entry.slice_owner.insert(slice_name.into(), service.into());
        entry
            .endpoints
            .entry(service.into())
            .or_default()
            .insert(slice_name.into(), slice);
        self.touch();
    }

    /// Forgets an EndpointSlice.
    pub fn remove_slice(&mut self, ns: &str, slice_name: &str) {
        if self.remove_slice_quiet(ns, slice_name) {
            self.gc_namespace(ns);
            self.touch();
        }
    }

    fn remove_slice_quiet(&mut self, ns: &str, slice_name: &str) -> bool {
        let Some(entry) = self.namespaces.get_mut(ns) else {
            return false;
        };
        let Some(owner) = entry.slice_owner.remove(slice_name) else {
            return false;
        };
        let mut removed = None;
        if let Some(slices) = entry.endpoints.get_mut(&owner) {
            removed = slices.remove(slice_name);
            if slices.is_empty() {
                entry.endpoints.remove(&owner);
            }
        }
        if let Some(old) = removed {
            for ep in &old.endpoints {
                self.unindex_reverse(ep.ip, |e| {
                    matches!(&e.kind, ReverseKind::Endpoint { slice, .. } if &**slice == slice_name)
                        && &*e.namespace == ns
                });
            }
        }
        true
    }

    // --- Pods ---

    pub(crate) fn put_pod(&mut self, ns: &str, name: &str, version: &str, ips: Vec<IpAddr>) {
        self.remove_pod(ns, name);
        let ns_arc = self.ns_mut(ns).name.clone();
        for ip in &ips {
            self.pods
                .entry(*ip)
                .or_insert_with(|| Vec::with_capacity(1))
                .push(ns_arc.clone());
        }
        self.pod_versions.entry(ns.into()).or_default().insert(
            name.into(),
            PodSeen {
                version: version.into(),
                ips,
            },
        );
    }

    /// Forgets a Pod.
    pub fn remove_pod(&mut self, ns: &str, name: &str) {
        let Some(pods) = self.pod_versions.get_mut(ns) else {
            return;
        };
        let Some(seen) = pods.remove(name) else {
            return;
        };
        if pods.is_empty() {
            self.pod_versions.remove(ns);
            self.gc_namespace(ns);
        }
        for ip in seen.ips {
            if let Some(list) = self.pods.get_mut(&ip) {
                if let Some(pos) = list.iter().position(|n| &**n == ns) {
                    list.swap_remove(pos);
                }
                if list.is_empty() {
                    self.pods.remove(&ip);
                }
            }
        }
    }
}

// === impl NsEntry ===

impl NsEntry {
    fn is_empty(&self) -> bool {
        !self.exists && self.services.is_empty() && self.slice_owner.is_empty()
    }

    /// The slices of a Service.
    pub(crate) fn slices(&self, service: &str) -> impl Iterator<Item = &Slice> {
        self.endpoints
            .get(service)
            .into_iter()
            .flat_map(HashMap::values)
    }
}

#[cfg(test)]
mod tests;
