//! Transactions on `table inet knet-services`: a [`Diff`] (what changed since the last applied
//! ruleset, applied incrementally as an nf_tables netlink batch by
//! [`crate::services::nfnl`], or as `nft` text by [`Diff::script`]) and a full transaction
//! ([`full_script`], `nft -f -` text) that declares everything, refills every map and chain, and
//! removes whatever else is in the table (drift, leftovers of a crash).
//!
//! Order inside a transaction matters: sets and chains are created before rules reference them,
//! chains are filled before map elements point at them, and stale chains are flushed (dropping
//! their references) before they are deleted.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::base::{MAPS, STATIC_CHAINS, StaticConfig, TABLE, static_part};
use super::render::Ruleset;
use super::rule::{AffinitySet, ElemKey, Goto, Rule};

/// Elements per `add element` / `delete element` statement.
const ELEMENTS_PER_LINE: usize = 500;

/// Chain and set names currently in the kernel's table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelNames {
    /// Chains.
    pub chains: BTreeSet<String>,
    /// Sets (maps excluded).
    pub sets: BTreeSet<String>,
}

/// The changes that turn one ruleset into another, in the order they must be applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    /// 1. Sets to create.
    pub sets_add: Vec<(String, AffinitySet)>,
    /// 2. New chains to create (filled below).
    pub chains_add: Vec<String>,
    /// 3. Chains to fill: name, rules, and whether the chain exists and must be flushed first.
    pub chains_fill: Vec<(String, Vec<Rule>, bool)>,
    /// 4. Map elements to delete (before the additions, so a changed verdict is delete + add).
    pub elements_del: Vec<(&'static str, ElemKey)>,
    /// 5. Map elements to add.
    pub elements_add: Vec<(&'static str, ElemKey, Goto)>,
    /// 6. Chains to flush, then delete.
    pub chains_del: Vec<String>,
    /// 7. Sets to delete.
    pub sets_del: Vec<String>,
}

// === impl Diff ===

impl Diff {
    /// The changes from `prev` (applied) to `next`.
    pub fn between(prev: &Ruleset, next: &Ruleset) -> Diff {
        let mut d = Diff::default();
        d.add_chains_and_sets(prev, next);
        for map in MAPS {
            let empty = BTreeMap::new();
            let old = prev.elements.get(map).unwrap_or(&empty);
            let new = next.elements.get(map).unwrap_or(&empty);
            for (k, v) in old {
                if new.get(k) != Some(v) {
                    d.elements_del.push((map, *k));
                }
            }
            for (k, v) in new {
                if old.get(k) != Some(v) {
                    d.elements_add.push((map, *k, v.clone()));
                }
            }
        }
        d
    }

    /// Adds the chain and set changes from `prev` to `next` (both may be parts of rulesets).
    pub fn add_chains_and_sets(&mut self, prev: &Ruleset, next: &Ruleset) {
        for (name, decl) in &next.sets {
            if prev.sets.get(name) != Some(decl) {
                self.sets_add.push((name.clone(), *decl));
            }
        }
        for (name, rules) in &next.chains {
            match prev.chains.get(name) {
                Some(old) if old == rules => {}
                Some(_) => self.chains_fill.push((name.clone(), rules.clone(), true)),
                None => {
                    self.chains_add.push(name.clone());
                    self.chains_fill.push((name.clone(), rules.clone(), false));
                }
            }
        }
        for name in prev.chains.keys() {
            if !next.chains.contains_key(name) {
                self.chains_del.push(name.clone());
            }
        }
        for name in prev.sets.keys() {
            if !next.sets.contains_key(name) {
                self.sets_del.push(name.clone());
            }
        }
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.sets_add.is_empty()
            && self.chains_add.is_empty()
            && self.chains_fill.is_empty()
            && self.elements_del.is_empty()
            && self.elements_add.is_empty()
            && self.chains_del.is_empty()
            && self.sets_del.is_empty()
    }

    /// How many objects (sets, chains, rules, elements) the diff touches.
    pub fn size(&self) -> usize {
        self.sets_add.len()
            + self.chains_add.len()
            + self
                .chains_fill
                .iter()
                .map(|(_, rules, _)| rules.len() + 1)
                .sum::<usize>()
            + self.elements_del.len()
            + self.elements_add.len()
            + self.chains_del.len()
            + self.sets_del.len()
    }

    /// The same changes as `nft -f -` text.
    pub fn script(&self) -> String {
        let mut s = String::new();
        for (name, decl) in &self.sets_add {
            let _ = writeln!(s, "add set inet {TABLE} {name} {{ {decl} }}");
        }
        for name in &self.chains_add {
            let _ = writeln!(s, "add chain inet {TABLE} {name}");
        }
        for (name, rules, flush) in &self.chains_fill {
            if *flush {
                let _ = writeln!(s, "flush chain inet {TABLE} {name}");
            }
            fill(&mut s, name, rules);
        }
        for map in MAPS {
            let gone: Vec<String> = self
                .elements_del
                .iter()
                .filter(|(m, _)| *m == map)
                .map(|(_, k)| k.to_string())
                .collect();
            let added: Vec<String> = self
                .elements_add
                .iter()
                .filter(|(m, _, _)| *m == map)
                .map(|(_, k, v)| format!("{k} : {v}"))
                .collect();
            elements(&mut s, "delete", map, &gone);
            elements(&mut s, "add", map, &added);
        }
        for name in &self.chains_del {
            let _ = writeln!(s, "flush chain inet {TABLE} {name}");
        }
        for name in &self.chains_del {
            let _ = writeln!(s, "delete chain inet {TABLE} {name}");
        }
        for name in &self.sets_del {
            let _ = writeln!(s, "delete set inet {TABLE} {name}");
        }
        s
    }
}

/// The `nft` text of the transaction from `prev` (applied) to `next`.
pub fn diff_script(prev: &Ruleset, next: &Ruleset) -> String {
    Diff::between(prev, next).script()
}

/// A transaction that makes the table exactly `next` (with the static part for `config`),
/// whatever `kernel` holds now.
pub fn full_script(kernel: &KernelNames, config: &StaticConfig, next: &Ruleset) -> String {
    let mut s = static_part(config);
    for map in MAPS {
        let _ = writeln!(s, "flush map inet {TABLE} {map}");
    }
    let stale: Vec<&String> = kernel
        .chains
        .iter()
        .filter(|n| !next.chains.contains_key(*n) && !STATIC_CHAINS.contains(&n.as_str()))
        .collect();
    // Stale chains may be referenced by chains we refill: flush them first.
    for name in &stale {
        let _ = writeln!(s, "flush chain inet {TABLE} {name}");
    }
    for (name, decl) in &next.sets {
        let _ = writeln!(s, "add set inet {TABLE} {name} {{ {decl} }}");
    }
    for name in next.chains.keys() {
        let _ = writeln!(s, "add chain inet {TABLE} {name}");
    }
    for (name, rules) in &next.chains {
        if kernel.chains.contains(name) {
            let _ = writeln!(s, "flush chain inet {TABLE} {name}");
        }
        fill(&mut s, name, rules);
    }
    for map in MAPS {
        if let Some(els) = next.elements.get(map) {
            let added: Vec<String> = els.iter().map(|(k, v)| format!("{k} : {v}")).collect();
            elements(&mut s, "add", map, &added);
        }
    }
    for name in &stale {
        let _ = writeln!(s, "delete chain inet {TABLE} {name}");
    }
    for name in kernel
        .sets
        .iter()
        .filter(|n| !next.sets.contains_key(*n) && !config.owns_set(n))
    {
        let _ = writeln!(s, "delete set inet {TABLE} {name}");
    }
    s
}

/// Removes the whole table (fine if it is absent).
pub fn delete_script() -> String {
    format!("table inet {TABLE} {{}}\ndelete table inet {TABLE}\n")
}

/// Chain and set names from `nft -t list table inet knet-services`.
pub fn parse_names(listing: &str) -> KernelNames {
    let mut names = KernelNames::default();
    for line in listing.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("chain"), Some(n), Some("{")) => {
                names.chains.insert(n.to_owned());
            }
            (Some("set"), Some(n), Some("{")) => {
                names.sets.insert(n.to_owned());
            }
            _ => {}
        }
    }
    names
}

fn fill(s: &mut String, chain: &str, rules: &[Rule]) {
    for r in rules {
        let _ = writeln!(s, "add rule inet {TABLE} {chain} {r}");
    }
}

fn elements(s: &mut String, verb: &str, map: &str, items: &[String]) {
    for chunk in items.chunks(ELEMENTS_PER_LINE) {
        let _ = writeln!(
            s,
            "{verb} element inet {TABLE} {map} {{ {} }}",
            chunk.join(", ")
        );
    }
}

#[cfg(test)]
mod tests;
