//! The desired services state, kept between syncs and updated incrementally: each pass
//! fingerprints every Service with its EndpointSlices (uid and resourceVersion, which the API
//! server changes on every write) and recomputes and diffs only the Services whose fingerprint
//! changed, so a one-endpoint change costs O(that Service), not O(all Services). A change of
//! what every Service depends on ([`NodeInputs`]: node name, pod CIDRs, InternalIPs, SCTP) recomputes
//! everything.
//!
//! Per Service only its model (the [`ServicePort`]s) is kept, not its rendered chains: the
//! rules of a changed Service's previous version are rendered again from its previous ports to
//! diff against, and a full transaction renders each Service as it streams it to `nft`
//! ([`Desired::rendered`]). Rendering is a pure function of the ports and [`NodeInputs`].
//!
//! Chains and affinity sets are named after their Service, so each belongs to exactly one
//! Service. Map elements may be claimed by several (two Services listing the same external IP
//! and port); the claim of the greatest `namespace/name` wins, as in a full render, where later
//! Services overwrite earlier ones. The claims (with their verdicts) are kept, one small list
//! per element.

use std::collections::{BTreeMap, HashMap, hash_map};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;

use super::apply::Diff;
use super::base::MAPS;
use super::fnv::Fnv;
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

/// `(namespace, name)`; the namespace is shared by the Services it holds.
type ServiceId = (Arc<str>, Arc<str>);

/// Hash maps keyed by names, hashed with [`Fnv`] (the per-pass scan hashes every Service).
type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv>>;

/// A map element: which map, which key.
type ElementId = (&'static str, ElemKey);

/// Who claims one map element, sorted by Service: the last claim is in force.
type Claims = Vec<(ServiceId, Goto)>;

/// What one Service contributes.
#[derive(Debug, Default)]
struct Entry {
    fingerprint: u64,
    /// A hash of name and resourceVersion per EndpointSlice (to tell which slices changed).
    slices: Box<[u64]>,
    table: ServiceTable,
    /// Chains its rules have (for the counts).
    chains: usize,
    /// The pass that last saw the Service (to find deleted ones).
    seen: u64,
}

/// The desired service table per Service, and the map elements' claims.
#[derive(Debug, Default)]
pub struct Desired {
    inputs: Option<NodeInputs>,
    /// namespace → name → entry.
    services: FxMap<Arc<str>, FxMap<Arc<str>, Entry>>,
    claims: FxMap<ElementId, Claims>,
    /// Chains of all Services.
    chains: usize,
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
type Touched = BTreeMap<ElementId, Option<Goto>>;

/// The [`NodeInputs`] of the state before a pass and after it (rules of a Service's previous
/// version are rendered with the inputs they were computed with).
struct Inputs<'a> {
    before: Option<&'a NodeInputs>,
    after: &'a NodeInputs,
}

// === impl Desired ===

impl Desired {
    /// The whole desired ruleset, rendered (for checks and tests: a full transaction streams
    /// [`Desired::rendered`] and [`Desired::elements`] instead).
    pub fn ruleset(&self) -> Ruleset {
        let mut all = Ruleset::default();
        for m in MAPS {
            all.elements.insert(m, BTreeMap::new());
        }
        for r in self.rendered() {
            all.chains.extend(r.chains);
            all.sets.extend(r.sets);
        }
        for (map, key, verdict) in self.elements() {
            all.elements
                .entry(map)
                .or_default()
                .insert(*key, verdict.clone());
        }
        all
    }

    /// Each Service's chains and sets, rendered one Service at a time (their map elements
    /// too, but [`Desired::elements`] says which claims are in force).
    pub fn rendered(&self) -> Rendered<'_> {
        Rendered {
            inputs: self.inputs.as_ref(),
            namespaces: self.services.values(),
            services: None,
        }
    }

    /// Every map element in force, with its verdict.
    pub fn elements(&self) -> Elements<'_> {
        Elements(self.claims.iter())
    }

    /// Number of map elements in force.
    pub fn element_count(&self) -> usize {
        self.claims.len()
    }

    /// Number of per-service chains.
    pub fn chain_count(&self) -> usize {
        self.chains
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
        let before = self.inputs.replace(inputs.clone());
        if before.as_ref() != Some(inputs) {
            update.all = true;
        }
        let inputs = Inputs {
            before: before.as_ref(),
            after: inputs,
        };
        self.pass += 1;
        let pass = self.pass;
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
            let entry = self
                .services
                .get_mut(ns.as_str())
                .and_then(|m| m.get_mut(name.as_str()));
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
            let next = Entry {
                fingerprint,
                slices: slices.iter().map(|s| slice_version(&s.metadata)).collect(),
                table: service_ports(svc, &slices, &inputs.after.node, inputs.after.sctp),
                chains: 0,
                seen: pass,
            };
            let id = self.id(ns, name);
            self.replace(&id, Some(next), &inputs, &mut touched, &mut update, diff);
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
            self.replace(&id, None, &inputs, &mut touched, &mut update, diff);
        }
        self.settle_elements(touched, &mut update.diff, diff);
        update
    }

    fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.services.values().flat_map(HashMap::values)
    }

    /// The id of Service `ns/name`, sharing the namespace (and the name) held already.
    fn id(&self, ns: &str, name: &str) -> ServiceId {
        match self.services.get_key_value(ns) {
            Some((ns, m)) => (
                ns.clone(),
                m.get_key_value(name)
                    .map_or_else(|| Arc::from(name), |(n, _)| n.clone()),
            ),
            None => (Arc::from(ns), Arc::from(name)),
        }
    }

    /// Swaps Service `id`'s entry for `next` (None: removed): chains and sets into the diff
    /// directly (the previous version rendered again), element claims into `touched`.
    fn replace(
        &mut self,
        id: &ServiceId,
        next: Option<Entry>,
        inputs: &Inputs<'_>,
        touched: &mut Touched,
        update: &mut Update,
        diff: bool,
    ) {
        update.recomputed += 1;
        let old = match self.services.get_mut(&id.0) {
            Some(m) => m.remove(&id.1),
            None => None,
        };
        let old_rules = match (&old, inputs.before) {
            (Some(e), Some(before)) => render(&e.table, before),
            _ => Ruleset::default(),
        };
        let mut next = next;
        let new_rules = next
            .as_ref()
            .map_or_else(Ruleset::default, |e| render(&e.table, inputs.after));
        if let Some(e) = &mut next {
            e.chains = new_rules.chains.len();
        }
        let old_chains = old.as_ref().map_or(0, |e| e.chains);
        self.chains = self.chains.saturating_sub(old_chains) + new_rules.chains.len();
        if diff {
            update.diff.add_chains_and_sets(&old_rules, &new_rules);
        }
        for (map, els) in &old_rules.elements {
            for key in els.keys() {
                let el = (*map, *key);
                self.touch(touched, el);
                if let Some(c) = self.claims.get_mut(&el) {
                    c.retain(|(s, _)| s != id);
                }
            }
        }
        for (map, els) in new_rules.elements {
            for (key, verdict) in els {
                let el = (map, key);
                self.touch(touched, el);
                // Nearly always the only claim: room for one.
                let c = self
                    .claims
                    .entry(el)
                    .or_insert_with(|| Vec::with_capacity(1));
                match c.binary_search_by(|(s, _)| s.cmp(id)) {
                    Ok(i) => c[i].1 = verdict,
                    Err(i) => c.insert(i, (id.clone(), verdict)),
                }
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

    fn touch(&self, touched: &mut Touched, el: ElementId) {
        touched.entry(el).or_insert_with(|| {
            self.claims
                .get(&el)
                .and_then(|c| c.last())
                .map(|(_, v)| v.clone())
        });
    }

    /// Diffs the verdict in force before and after the pass for every touched element.
    fn settle_elements(&mut self, touched: Touched, out: &mut Diff, diff: bool) {
        for (el, before) in touched {
            let claims = self.claims.get(&el);
            let now = claims.and_then(|c| c.last()).map(|(_, v)| v.clone());
            if claims.is_some_and(Vec::is_empty) {
                self.claims.remove(&el);
            }
            if now == before || !diff {
                continue;
            }
            if before.is_some() {
                out.elements_del.push(el);
            }
            if let Some(v) = now {
                out.elements_add.push((el.0, el.1, v));
            }
        }
    }
}

/// The iterator of [`Desired::rendered`]. (Named iterators, not `impl Iterator`: without a
/// destructor, a transaction built from them lets go of the [`Desired`] at its last use.)
#[derive(Debug)]
pub struct Rendered<'a> {
    inputs: Option<&'a NodeInputs>,
    namespaces: hash_map::Values<'a, Arc<str>, FxMap<Arc<str>, Entry>>,
    services: Option<hash_map::Values<'a, Arc<str>, Entry>>,
}

impl Iterator for Rendered<'_> {
    type Item = Ruleset;

    fn next(&mut self) -> Option<Ruleset> {
        let inputs = self.inputs?;
        loop {
            if let Some(e) = self.services.as_mut().and_then(Iterator::next) {
                return Some(render(&e.table, inputs));
            }
            self.services = Some(self.namespaces.next()?.values());
        }
    }
}

/// The iterator of [`Desired::elements`].
#[derive(Debug)]
pub struct Elements<'a>(hash_map::Iter<'a, ElementId, Claims>);

impl<'a> Iterator for Elements<'a> {
    type Item = (&'static str, &'a ElemKey, &'a Goto);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let ((map, key), claims) = self.0.next()?;
            if let Some((_, verdict)) = claims.last() {
                return Some((map, key, verdict));
            }
        }
    }
}

/// One Service's rules.
fn render(table: &ServiceTable, inputs: &NodeInputs) -> Ruleset {
    Ruleset::render_ports(&table.ports, &inputs.pod_cidrs, &inputs.node_ips)
}

/// A hash of the Service's and its slices' identities and versions. Objects without a
/// resourceVersion (never the case for objects from the API server) hash their contents.
fn fingerprint(svc: &Service, slices: &[&EndpointSlice]) -> u64 {
    let mut h = Fnv::default();
    version(&svc.metadata, svc, &mut h);
    for s in slices {
        version(&s.metadata, *s, &mut h);
    }
    h.finish()
}

fn version<T: serde::Serialize>(meta: &ObjectMeta, obj: &T, h: &mut Fnv) {
    meta.name.hash(h);
    meta.uid.hash(h);
    match &meta.resource_version {
        Some(rv) => rv.hash(h),
        None => serde_json::to_vec(obj).unwrap_or_default().hash(h),
    }
}

/// What tells one version of an EndpointSlice from another: a hash of its name and
/// resourceVersion.
fn slice_version(m: &ObjectMeta) -> u64 {
    let mut h = Fnv::default();
    m.name.hash(&mut h);
    m.resource_version.hash(&mut h);
    h.finish()
}

/// Trigger times of the slices that are new or have a new resourceVersion.
fn changed_triggers(before: &[u64], now: &[&EndpointSlice]) -> Vec<Timestamp> {
    now.iter()
        .filter(|s| !before.contains(&slice_version(&s.metadata)))
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
