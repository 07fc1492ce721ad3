//! Turning [`Ruleset`]s into `nft -f -` transactions: an incremental one that touches only what
//! changed since the last applied ruleset, and a full one that declares everything, refills every
//! map and chain, and removes whatever else is in the table (drift, leftovers of a crash).
//!
//! Order inside a transaction matters: sets and chains are created before rules reference them,
//! chains are filled before map elements point at them, and stale chains are flushed (dropping
//! their references) before they are deleted.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::render::{MAPS, Ruleset, STATIC_CHAINS, TABLE, static_part};

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

/// The transaction from `prev` (applied) to `next`.
pub fn diff_script(prev: &Ruleset, next: &Ruleset) -> String {
    let mut s = String::new();
    for (name, body) in &next.sets {
        if prev.sets.get(name) != Some(body) {
            let _ = writeln!(s, "add set inet {TABLE} {name} {{ {body} }}");
        }
    }
    let changed: Vec<(&String, &Vec<String>)> = next
        .chains
        .iter()
        .filter(|(n, rules)| prev.chains.get(*n) != Some(*rules))
        .collect();
    for (name, _) in &changed {
        if !prev.chains.contains_key(*name) {
            let _ = writeln!(s, "add chain inet {TABLE} {name}");
        }
    }
    for (name, rules) in &changed {
        if prev.chains.contains_key(*name) {
            let _ = writeln!(s, "flush chain inet {TABLE} {name}");
        }
        fill(&mut s, name, rules);
    }
    for map in MAPS {
        let empty = BTreeMap::new();
        let old = prev.elements.get(map).unwrap_or(&empty);
        let new = next.elements.get(map).unwrap_or(&empty);
        let gone: Vec<String> = old
            .iter()
            .filter(|(k, v)| new.get(*k) != Some(*v))
            .map(|(k, _)| k.clone())
            .collect();
        let added: Vec<String> = new
            .iter()
            .filter(|(k, v)| old.get(*k) != Some(*v))
            .map(|(k, v)| format!("{k} : {v}"))
            .collect();
        elements(&mut s, "delete", map, &gone);
        elements(&mut s, "add", map, &added);
    }
    let stale: Vec<&String> = prev
        .chains
        .keys()
        .filter(|n| !next.chains.contains_key(*n))
        .collect();
    drop_chains(&mut s, &stale);
    for name in prev.sets.keys().filter(|n| !next.sets.contains_key(*n)) {
        let _ = writeln!(s, "delete set inet {TABLE} {name}");
    }
    s
}

/// A transaction that makes the table exactly `next`, whatever `kernel` holds now.
pub fn full_script(kernel: &KernelNames, next: &Ruleset) -> String {
    let mut s = static_part();
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
    for (name, body) in &next.sets {
        let _ = writeln!(s, "add set inet {TABLE} {name} {{ {body} }}");
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
    for name in kernel.sets.iter().filter(|n| !next.sets.contains_key(*n)) {
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

fn fill(s: &mut String, chain: &str, rules: &[String]) {
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

fn drop_chains(s: &mut String, stale: &[&String]) {
    for name in stale {
        let _ = writeln!(s, "flush chain inet {TABLE} {name}");
    }
    for name in stale {
        let _ = writeln!(s, "delete chain inet {TABLE} {name}");
    }
}

#[cfg(test)]
mod tests;
