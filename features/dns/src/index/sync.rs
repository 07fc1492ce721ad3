//! Level-triggered syncing: bring the index in line with a full snapshot of a watch store.
//!
//! Each sync is split in two so the write lock is held only briefly: [`Index::plan`] runs under a
//! read lock, compares resourceVersions and converts only the objects that changed;
//! [`Index::apply`] then applies that short list under the write lock.

use std::collections::HashSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::convert::{pod_ips, service_entry, slice_entry, slice_service, version};
use super::{Index, ServiceEntry, Slice};

/// What a sync changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SyncStats {
    /// Objects added or replaced.
    pub upserted: usize,
    /// Objects removed.
    pub removed: usize,
}

/// The changes needed to bring the index in line with a snapshot. `None` means remove.
#[derive(Debug, Default)]
pub struct Plan {
    services: Vec<(String, String, Option<ServiceEntry>)>,
    slices: Vec<(String, String, Option<SliceChange>)>,
    namespaces: Vec<(String, Option<String>)>,
    pods: Vec<(String, String, Option<PodChange>)>,
}

/// A slice's owning Service and new contents.
type SliceChange = (String, Slice);
/// A pod's resourceVersion and IPs.
type PodChange = (String, Vec<std::net::IpAddr>);

/// A snapshot of the watched objects, as the watch stores hand them out.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// Every Service.
    pub services: Vec<Arc<Service>>,
    /// Every EndpointSlice.
    pub slices: Vec<Arc<EndpointSlice>>,
    /// Every Namespace.
    pub namespaces: Vec<Arc<Namespace>>,
    /// Every Pod, or `None` when Pods are not watched (`pods insecure`).
    pub pods: Option<Vec<Arc<Pod>>>,
}

fn key<'a>(ns: &'a Option<String>, name: &'a Option<String>) -> Option<(&'a str, &'a str)> {
    Some((ns.as_deref()?, name.as_deref()?))
}

// === impl Plan ===

impl Plan {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
            && self.slices.is_empty()
            && self.namespaces.is_empty()
            && self.pods.is_empty()
    }
}

// === impl Index ===

impl Index {
    /// Works out what must change to match `snap`. Cheap when little changed.
    pub fn plan(&self, snap: &Snapshot) -> Plan {
        let mut plan = Plan::default();
        self.plan_namespaces(snap, &mut plan);
        self.plan_services(snap, &mut plan);
        self.plan_slices(snap, &mut plan);
        if let Some(pods) = &snap.pods {
            self.plan_pods(pods, &mut plan);
        }
        plan
    }

    /// Applies a plan from [`Index::plan`].
    pub fn apply(&mut self, plan: Plan) -> SyncStats {
        let mut stats = SyncStats::default();
        let mut count = |upsert: bool| {
            if upsert {
                stats.upserted += 1;
            } else {
                stats.removed += 1;
            }
        };
        for (name, version) in plan.namespaces {
            count(version.is_some());
            match version {
                Some(v) => self.upsert_namespace(&name, &v),
                None => self.remove_namespace(&name),
            }
        }
        for (ns, name, entry) in plan.services {
            count(entry.is_some());
            match entry {
                Some(entry) => self.put_service(&ns, &name, entry),
                None => self.remove_service(&ns, &name),
            }
        }
        for (ns, name, slice) in plan.slices {
            count(slice.is_some());
            match slice {
                Some((service, slice)) => self.put_slice(&ns, &name, &service, slice),
                None => self.remove_slice(&ns, &name),
            }
        }
        for (ns, name, pod) in plan.pods {
            count(pod.is_some());
            match pod {
                Some((version, ips)) => self.put_pod(&ns, &name, &version, ips),
                None => self.remove_pod(&ns, &name),
            }
        }
        stats
    }

    /// Plans and applies in one go (for tests and single-threaded use).
    pub fn sync(&mut self, snap: &Snapshot) -> SyncStats {
        let plan = self.plan(snap);
        self.apply(plan)
    }

    fn plan_namespaces(&self, snap: &Snapshot, plan: &mut Plan) {
        let mut seen = HashSet::with_capacity(snap.namespaces.len());
        for ns in &snap.namespaces {
            let Some(name) = ns.metadata.name.as_deref() else {
                continue;
            };
            seen.insert(name);
            let v = version(&ns.metadata.resource_version);
            let current = self.namespaces.get(name).filter(|n| n.exists);
            if current.is_none_or(|n| &*n.exists_version != v) {
                plan.namespaces.push((name.into(), Some(v.into())));
            }
        }
        for (name, entry) in &self.namespaces {
            if entry.exists && !seen.contains(&**name) {
                plan.namespaces.push((name.to_string(), None));
            }
        }
    }

    fn plan_services(&self, snap: &Snapshot, plan: &mut Plan) {
        let mut seen = HashSet::with_capacity(snap.services.len());
        for svc in &snap.services {
            let Some((ns, name)) = key(&svc.metadata.namespace, &svc.metadata.name) else {
                continue;
            };
            seen.insert((ns, name));
            let v = version(&svc.metadata.resource_version);
            let current = self.namespaces.get(ns).and_then(|n| n.services.get(name));
            if current.is_none_or(|s| &*s.version != v) {
                plan.services
                    .push((ns.into(), name.into(), Some(service_entry(svc))));
            }
        }
        for (ns, entry) in &self.namespaces {
            for name in entry.services.keys() {
                if !seen.contains(&(&**ns, &**name)) {
                    plan.services.push((ns.to_string(), name.to_string(), None));
                }
            }
        }
    }

    fn plan_slices(&self, snap: &Snapshot, plan: &mut Plan) {
        let mut seen = HashSet::with_capacity(snap.slices.len());
        for slice in &snap.slices {
            let Some((ns, name)) = key(&slice.metadata.namespace, &slice.metadata.name) else {
                continue;
            };
            let Some(service) = slice_service(slice) else {
                continue;
            };
            seen.insert((ns, name));
            let v = version(&slice.metadata.resource_version);
            let current = self.namespaces.get(ns).and_then(|n| {
                let owner = n.slice_owner.get(name)?;
                n.endpoints.get(owner)?.get(name)
            });
            if current.is_none_or(|s| &*s.version != v) {
                plan.slices.push((
                    ns.into(),
                    name.into(),
                    Some((service.into(), slice_entry(slice))),
                ));
            }
        }
        for (ns, entry) in &self.namespaces {
            for name in entry.slice_owner.keys() {
                if !seen.contains(&(&**ns, &**name)) {
                    plan.slices.push((ns.to_string(), name.to_string(), None));
                }
            }
        }
    }

    fn plan_pods(&self, pods: &[Arc<Pod>], plan: &mut Plan) {
        let mut seen = HashSet::with_capacity(pods.len());
        for pod in pods {
            let Some((ns, name)) = key(&pod.metadata.namespace, &pod.metadata.name) else {
                continue;
            };
            seen.insert((ns, name));
            let v = version(&pod.metadata.resource_version);
            let current = self.pod_versions.get(ns).and_then(|p| p.get(name));
            if current.is_none_or(|p| &*p.version != v) {
                plan.pods
                    .push((ns.into(), name.into(), Some((v.into(), pod_ips(pod)))));
            }
        }
        for (ns, names) in &self.pod_versions {
            for name in names.keys() {
                if !seen.contains(&(&**ns, &**name)) {
                    plan.pods.push((ns.to_string(), name.to_string(), None));
                }
            }
        }
    }
}
