//! The desired services ruleset, kept between syncs and updated incrementally: each pass
//! fingerprints every Service with its EndpointSlices (uid and resourceVersion, which the API
//! server changes on every write) and recomputes, re-renders and diffs only the Services whose
//! fingerprint changed, so a one-endpoint change costs O(that Service), not O(all Services).
//! A change of what every Service depends on ([`NodeInputs`]: node name, pod CIDRs, SCTP)
//! recomputes everything.
//!
//! Chains and affinity sets are named after their Service, so each belongs to exactly one
//! Service. Map elements may be claimed by several (two Services listing the same external IP
//! and port); the claim of the greatest `namespace/name` wins, as in a full render, where later
//! Services overwrite earlier ones.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;

use super::apply::Diff;
use super::base::MAPS;
use super::model::{PortKey, SERVICE_NAME_LABEL, ServicePort, ServiceTable, service_ports};
use super::render::Ruleset;
use super::rule::{ElemKey, Goto};

/// The annotation the EndpointSlice controller sets to when the change it reflects happened
/// (kube-proxy's start point for `network_programming_duration_seconds`).
pub const TRIGGER_TIME_ANNOTATION: &str = "endpoints.kubernetes.io/last-change-trigger-time";

/// What every Service's rules depend on besides its own objects (a change recomputes all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInputs {
    /// This node's name (which endpoints are local).
    pub node: String,
    /// Whether the kernel has SCTP.
    pub sctp: bool,
    /// The pod CIDRs (pods short-circuit `externalTrafficPolicy: Local`).
    pub pod_cidrs: Vec<IpNet>,
    /// The node's own addresses (its InternalIPs; for `loadBalancerSourceRanges`).
    pub node_ips: Vec<IpAddr>,
}

/// `(namespace, name)`.
type ServiceId = (String, String);

/// Hash maps keyed by names, hashed with [`Fx`] (the per-pass scan hashes every Service).
type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<Fx>>;

/// What one Service contributes.
#[derive(Debug, Default)]
struct Entry {
    fingerprint: u64,
    /// resourceVersion per EndpointSlice name (to tell which slices changed).
    slices: BTreeMap<String, String>,
    table: ServiceTable,
    rules: Ruleset,
    /// The pass that last saw the Service (to find deleted ones).
    seen: u64,
}

/// The desired ruleset and service table, per Service.
#[derive(Debug, Default)]
pub struct Desired {
    inputs: Option<NodeInputs>,
    /// namespace → name → entry.
    services: FxMap<String, FxMap<String, Entry>>,
    merged: Ruleset,
    claims: HashMap<(&'static str, ElemKey), BTreeMap<ServiceId, Goto>>,
    pass: u64,
}

/// What one [`Desired::update`] did.
#[derive(Debug, Default)]
pub struct Update {
    /// The changes to the ruleset (empty unless asked for).
    pub diff: Diff,
    /// Services recomputed (changed, added or removed).
    pub recomputed: usize,
    /// Whether every Service was recomputed (first update, or [`NodeInputs`] changed).
    pub all: bool,
    /// Trigger times of the EndpointSlices that changed (not on a full recompute).
    pub triggers: Vec<Timestamp>,
    /// The service ports of each recomputed Service, before and after (not on a full
    /// recompute), for the parts of the dataplane that follow per-Service changes.
    pub changed: Vec<(Vec<ServicePort>, Vec<ServicePort>)>,
}

/// Element claims touched in one pass, with the verdict in force before it.
type Touched = BTreeMap<(&'static str, ElemKey), Option<Goto>>;

// === impl Desired ===

impl Desired {
    /// The whole desired ruleset.
    pub fn ruleset(&self) -> &Ruleset {
        &self.merged
    }

    /// Every service port (in no particular order).
    pub fn ports(&self) -> impl Iterator<Item = &ServicePort> {
        self.entries().flat_map(|e| e.table.ports.iter())
    }

    /// Every Service's ports.
    pub fn per_service(&self) -> impl Iterator<Item = &[ServicePort]> {
        self.entries().map(|e| e.table.ports.as_slice())
    }

    /// Ports skipped because the kernel lacks their protocol.
    pub fn skipped(&self) -> impl Iterator<Item = &PortKey> {
        self.entries().flat_map(|e| e.table.skipped.iter())
    }

    /// A copy of the whole service table, sorted as [`ServiceTable::build`] sorts it.
    pub fn table(&self) -> ServiceTable {
        let mut t = ServiceTable {
            ports: self.ports().cloned().collect(),
            skipped: self.skipped().cloned().collect(),
        };
        t.ports.sort_by(|a, b| a.key.cmp(&b.key));
        t.skipped.sort();
        t
    }

    /// Forgets everything: the next update recomputes every Service.
    pub fn reset(&mut self) {
        *self = Desired::default();
    }

    /// Brings the desired state up to date with `services` and `slices`. With `diff`, the
    /// returned [`Update`] holds the changes to apply to a kernel that has the previous state.
    pub fn update<'a>(
        &mut self,
        services: impl IntoIterator<Item = &'a Service>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
        inputs: &NodeInputs,
        diff: bool,
    ) -> Update {
        let mut update = Update::default();
        if self.inputs.as_ref() != Some(inputs) {
            update.all = true;
            self.inputs = Some(inputs.clone());
        }
        self.pass += 1;
        let pass = self.pass;
        for m in MAPS {
            self.merged.elements.entry(m).or_default();
        }
        let mut by_service: FxMap<(&str, &str), Vec<&EndpointSlice>> = FxMap::default();
        for s in slices {
            let labels = s.metadata.labels.as_ref();
            if let (Some(ns), Some(svc)) = (
                s.metadata.namespace.as_deref(),
                labels.and_then(|l| l.get(SERVICE_NAME_LABEL)),
            ) {
                by_service.entry((ns, svc.as_str())).or_default().push(s);
            }
        }
        let mut touched = Touched::new();
        for svc in services {
            let (Some(ns), Some(name)) = (&svc.metadata.namespace, &svc.metadata.name) else {
                continue;
            };
            let mut slices = by_service
                .remove(&(ns.as_str(), name.as_str()))
                .unwrap_or_default();
            slices.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
            let fingerprint = fingerprint(svc, &slices);
            let entry = self.services.get_mut(ns).and_then(|m| m.get_mut(name));
            match entry {
                Some(e) if e.fingerprint == fingerprint && !update.all => {
                    e.seen = pass;
                    continue;
                }
                Some(e) if !update.all => {
                    update.triggers.extend(changed_triggers(&e.slices, &slices));
                }
                _ => {}
            }
            let table = service_ports(svc, &slices, &inputs.node, inputs.sctp);
            let rules = Ruleset::render_ports(&table.ports, &inputs.pod_cidrs, &inputs.node_ips);
            let next = Entry {
                fingerprint,
                slices: slices
                    .iter()
                    .map(|s| {
                        let m = &s.metadata;
                        (
                            m.name.clone().unwrap_or_default(),
                            m.resource_version.clone().unwrap_or_default(),
                        )
                    })
                    .collect(),
                table,
                rules,
                seen: pass,
            };
            let id = (ns.clone(), name.clone());
            self.replace(&id, Some(next), &mut touched, &mut update, diff);
        }
        let gone: Vec<ServiceId> = self
            .services
            .iter()
            .flat_map(|(ns, m)| {
                m.iter()
                    .filter(|(_, e)| e.seen != pass)
                    .map(|(n, _)| (ns.clone(), n.clone()))
            })
            .collect();
        for id in gone {
            self.replace(&id, None, &mut touched, &mut update, diff);
        }
        self.settle_elements(touched, &mut update.diff, diff);
        update
    }

    fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.services.values().flat_map(HashMap::values)
    }

    /// Swaps Service `id`'s entry for `next` (None: removed): chains and sets directly,
    /// element claims into `touched`.
    fn replace(
        &mut self,
        id: &ServiceId,
        next: Option<Entry>,
        touched: &mut Touched,
        update: &mut Update,
        diff: bool,
    ) {
        update.recomputed += 1;
        let old = match self.services.get_mut(&id.0) {
            Some(m) => m.remove(&id.1),
            None => None,
        };
        let empty = Ruleset::default();
        let old_rules = old.as_ref().map_or(&empty, |e| &e.rules);
        let new_rules = next.as_ref().map_or(&empty, |e| &e.rules);
        if diff {
            update.diff.add_chains_and_sets(old_rules, new_rules);
        }
        for name in old_rules.chains.keys() {
            self.merged.chains.remove(name);
        }
        for name in old_rules.sets.keys() {
            self.merged.sets.remove(name);
        }
        for (name, rules) in &new_rules.chains {
            self.merged.chains.insert(name.clone(), rules.clone());
        }
        for (name, decl) in &new_rules.sets {
            self.merged.sets.insert(name.clone(), *decl);
        }
        for (map, els) in &old_rules.elements {
            for key in els.keys() {
                self.touch(touched, map, *key);
                if let Some(c) = self.claims.get_mut(&(*map, *key)) {
                    c.remove(id);
                }
            }
        }
        for (map, els) in &new_rules.elements {
            for (key, verdict) in els {
                self.touch(touched, map, *key);
                self.claims
                    .entry((*map, *key))
                    .or_default()
                    .insert(id.clone(), verdict.clone());
            }
        }
        if !update.all {
            update.changed.push((
                old.map(|e| e.table.ports).unwrap_or_default(),
                next.as_ref()
                    .map(|e| e.table.ports.clone())
                    .unwrap_or_default(),
            ));
        }
        if let Some(e) = next {
            self.services
                .entry(id.0.clone())
                .or_default()
                .insert(id.1.clone(), e);
        } else if self.services.get(&id.0).is_some_and(HashMap::is_empty) {
            self.services.remove(&id.0);
        }
    }

    fn touch(&self, touched: &mut Touched, map: &'static str, key: ElemKey) {
        touched.entry((map, key)).or_insert_with(|| {
            self.merged
                .elements
                .get(map)
                .and_then(|m| m.get(&key))
                .cloned()
        });
    }

    /// Makes the merged elements follow the claims for every touched key.
    fn settle_elements(&mut self, touched: Touched, out: &mut Diff, diff: bool) {
        for ((map, key), before) in touched {
            let claims = self.claims.get(&(map, key));
            let now = claims.and_then(|c| c.values().next_back()).cloned();
            if claims.is_some_and(BTreeMap::is_empty) {
                self.claims.remove(&(map, key));
            }
            if now == before {
                continue;
            }
            let els = self.merged.elements.entry(map).or_default();
            if before.is_some() && diff {
                out.elements_del.push((map, key));
            }
            match now {
                Some(v) => {
                    if diff {
                        out.elements_add.push((map, key, v.clone()));
                    }
                    els.insert(key, v);
                }
                None => {
                    els.remove(&key);
                }
            }
        }
    }
}

/// A hash of the Service's and its slices' identities and versions. Objects without a
/// resourceVersion (never the case for objects from the API server) hash their contents.
fn fingerprint(svc: &Service, slices: &[&EndpointSlice]) -> u64 {
    let mut h = Fx::default();
    version(&svc.metadata, svc, &mut h);
    for s in slices {
        version(&s.metadata, *s, &mut h);
    }
    h.finish()
}

fn version<T: serde::Serialize>(meta: &ObjectMeta, obj: &T, h: &mut Fx) {
    meta.name.hash(h);
    meta.uid.hash(h);
    match &meta.resource_version {
        Some(rv) => rv.hash(h),
        None => serde_json::to_vec(obj).unwrap_or_default().hash(h),
    }
}

/// FNV-1a (64 bit): a small, fast, non-cryptographic hasher for short names. The names and
/// versions it hashes come from the API server; a fingerprint collision would only delay an
/// update until the next full resync, which recomputes everything.
#[derive(Debug, Clone, Copy)]
struct Fx(u64);

impl Default for Fx {
    fn default() -> Fx {
        Fx(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Trigger times of the slices that are new or have a new resourceVersion.
fn changed_triggers(before: &BTreeMap<String, String>, now: &[&EndpointSlice]) -> Vec<Timestamp> {
    now.iter()
        .filter(|s| {
            let m = &s.metadata;
            before.get(m.name.as_deref().unwrap_or_default()) != m.resource_version.as_ref()
        })
        .filter_map(|s| {
            s.metadata
                .annotations
                .as_ref()?
                .get(TRIGGER_TIME_ANNOTATION)
        })
        .filter_map(|t| t.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests;
