//! Transactions on `table inet knet-services`: a [`Diff`] (what changed since the last applied
//! ruleset, applied incrementally as an nf_tables netlink batch by
//! [`crate::services::nfnl`], or as `nft` text by [`Diff::script`]) and a full transaction
//! ([`FullScript`], `nft -f -` text made in chunks, so it streams to `nft` without ever being
//! whole in memory) that declares everything, refills every map and chain, and removes whatever
//! else is in the table (drift, leftovers of a crash).
//!
//! Order inside a transaction matters: sets and chains are created before rules reference them,
//! chains are filled before map elements point at them, and stale chains are flushed (dropping
//! their references) before they are deleted.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

use super::base::{MAPS, STATIC_CHAINS, StaticConfig, TABLE, static_part};
use super::fnv::hash_str;
use super::render::Ruleset;
use super::rule::{AffinitySet, ElemKey, Goto, Rule};

/// Elements per `add element` / `delete element` statement.
const ELEMENTS_PER_LINE: usize = 500;
/// A [`FullScript`] chunk is at least this long (but the last).
const CHUNK: usize = 256 * 1024;

/// Chain and set names currently in the kernel's table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelNames {
    /// Chains.
    pub chains: NameList,
    /// Sets (maps excluded).
    pub sets: NameList,
}

/// A list of names kept as one text, a name per line, with their hashes: 60k chain names cost
/// two allocations, not 60k.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameList {
    text: String,
    hashes: HashSet<u64>,
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

// === impl NameList ===

impl NameList {
    /// Adds `name` (once).
    pub fn insert(&mut self, name: &str) {
        if self.hashes.insert(hash_str(name)) {
            self.text.push_str(name);
            self.text.push('\n');
        }
    }

    /// Whether `name` is in the list. Decided by a 64-bit hash: a name that is not in the list
    /// but shares the hash of one that is counts as in it.
    pub fn contains(&self, name: &str) -> bool {
        self.hashes.contains(&hash_str(name))
    }

    /// The names, in the order they were added.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.text.lines()
    }

    /// How many names.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }
}

/// A transaction that makes the table exactly `next` (with the static part for `config`),
/// whatever `kernel` holds now, as one text (see [`FullScript`]).
pub fn full_script(kernel: &KernelNames, config: &StaticConfig, next: &Ruleset) -> String {
    let elements = next
        .elements
        .iter()
        .flat_map(|(map, els)| els.iter().map(move |(k, v)| (*map, k, v)));
    FullScript::new(kernel, config, std::iter::once(next), elements).collect()
}

/// A full transaction as `nft -f -` text, in chunks of about [`CHUNK`] bytes: the static part,
/// the maps flushed, then per part of the ruleset (a Service's, as the caller renders them one
/// at a time) its sets and chains, each chain filled (flushed first if the kernel has it); then
/// the map elements (all chains exist by then), and last every chain and set the kernel has
/// beyond what was declared, flushed and deleted. The parts' own map elements are ignored:
/// `elements` are the ones in force.
pub struct FullScript<'a, S, E> {
    kernel: &'a KernelNames,
    config: &'a StaticConfig,
    parts: S,
    elements: E,
    stage: Stage,
    buf: String,
    /// Per map (as [`MAPS`]): elements waiting for their `add element` line, and how many.
    pending: Vec<(String, usize)>,
    /// Hashes of the chains and sets declared so far.
    chains: HashSet<u64>,
    sets: HashSet<u64>,
    bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Start,
    Parts,
    Elements,
    End,
    Done,
}

// === impl FullScript ===

impl<'a, S, R, E> FullScript<'a, S, E>
where
    S: Iterator<Item = R>,
    R: Borrow<Ruleset>,
    E: Iterator<Item = (&'static str, &'a ElemKey, &'a Goto)>,
{
    /// The transaction from `kernel`'s names to `parts` and `elements` with the static part
    /// for `config`.
    pub fn new(
        kernel: &'a KernelNames,
        config: &'a StaticConfig,
        parts: S,
        elements: E,
    ) -> FullScript<'a, S, E> {
        FullScript {
            kernel,
            config,
            parts,
            elements,
            stage: Stage::Start,
            buf: String::with_capacity(CHUNK + 4096),
            pending: MAPS.iter().map(|_| (String::new(), 0)).collect(),
            chains: HashSet::new(),
            sets: HashSet::new(),
            bytes: 0,
        }
    }

    /// Per-service chains declared so far (all of them once the script is done).
    pub fn chains(&self) -> usize {
        self.chains.len()
    }

    /// Bytes of text made so far.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn step(&mut self) {
        match self.stage {
            Stage::Start => {
                self.buf.push_str(&static_part(self.config));
                for map in MAPS {
                    let _ = writeln!(self.buf, "flush map inet {TABLE} {map}");
                }
                self.stage = Stage::Parts;
            }
            Stage::Parts => match self.parts.next() {
                Some(part) => self.part(part.borrow()),
                None => self.stage = Stage::Elements,
            },
            Stage::Elements => match self.elements.next() {
                Some((map, key, verdict)) => self.element(map, key, verdict),
                None => {
                    for (map, (items, n)) in MAPS.iter().zip(&mut self.pending) {
                        if *n > 0 {
                            element_line(&mut self.buf, "add", map, items);
                            items.clear();
                            *n = 0;
                        }
                    }
                    self.stage = Stage::End;
                }
            },
            Stage::End => {
                self.stale();
                self.stage = Stage::Done;
            }
            Stage::Done => {}
        }
    }

    fn part(&mut self, r: &Ruleset) {
        let s = &mut self.buf;
        for (name, decl) in &r.sets {
            if self.sets.insert(hash_str(name)) {
                let _ = writeln!(s, "add set inet {TABLE} {name} {{ {decl} }}");
            }
        }
        for name in r.chains.keys() {
            let _ = writeln!(s, "add chain inet {TABLE} {name}");
        }
        for (name, rules) in &r.chains {
            self.chains.insert(hash_str(name));
            if self.kernel.chains.contains(name) {
                let _ = writeln!(s, "flush chain inet {TABLE} {name}");
            }
            fill(s, name, rules);
        }
    }

    fn element(&mut self, map: &'static str, key: &ElemKey, verdict: &Goto) {
        let Some(at) = MAPS.iter().position(|m| *m == map) else {
            return;
        };
        let (items, n) = &mut self.pending[at];
        if *n > 0 {
            items.push_str(", ");
        }
        let _ = write!(items, "{key} : {verdict}");
        *n += 1;
        if *n == ELEMENTS_PER_LINE {
            element_line(&mut self.buf, "add", map, items);
            items.clear();
            *n = 0;
        }
    }

    /// Flushes, then deletes, every chain the kernel has beyond the static part and what was
    /// declared; deletes such sets.
    fn stale(&mut self) {
        let s = &mut self.buf;
        let stale = || {
            self.kernel
                .chains
                .iter()
                .filter(|n| !STATIC_CHAINS.contains(n) && !self.chains.contains(&hash_str(n)))
        };
        for name in stale() {
            let _ = writeln!(s, "flush chain inet {TABLE} {name}");
        }
        for name in stale() {
            let _ = writeln!(s, "delete chain inet {TABLE} {name}");
        }
        for name in self.kernel.sets.iter() {
            if !self.sets.contains(&hash_str(name)) && !self.config.owns_set(name) {
                let _ = writeln!(s, "delete set inet {TABLE} {name}");
            }
        }
    }
}

impl<'a, S, R, E> Iterator for FullScript<'a, S, E>
where
    S: Iterator<Item = R>,
    R: Borrow<Ruleset>,
    E: Iterator<Item = (&'static str, &'a ElemKey, &'a Goto)>,
{
    type Item = String;

    fn next(&mut self) -> Option<String> {
        while self.buf.len() < CHUNK && self.stage != Stage::Done {
            self.step();
        }
        if self.buf.is_empty() {
            return None;
        }
        self.bytes += self.buf.len();
        Some(std::mem::replace(
            &mut self.buf,
            String::with_capacity(CHUNK + 4096),
        ))
    }
}

/// Removes the whole table (fine if it is absent).
pub fn delete_script() -> String {
    format!("table inet {TABLE} {{}}\ndelete table inet {TABLE}\n")
}

/// Chain and set names of `table inet knet-services` from an `nft` listing of tables
/// (`nft -t list table inet knet-services`, or [`crate::services::exec::nft_list_names`]'s).
pub fn parse_names(listing: &str) -> KernelNames {
    let mut names = KernelNames::default();
    let mut ours = false;
    for line in listing.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next(), words.next()) {
            (Some("table"), Some(family), Some(name), _) => {
                ours = family == "inet" && name == TABLE;
            }
            (Some("chain"), Some(n), Some("{"), _) if ours => names.chains.insert(n),
            (Some("set"), Some(n), Some("{"), _) if ours => names.sets.insert(n),
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
        element_line(s, verb, map, &chunk.join(", "));
    }
}

fn element_line(s: &mut String, verb: &str, map: &str, items: &str) {
    let _ = writeln!(s, "{verb} element inet {TABLE} {map} {{ {items} }}");
}

#[cfg(test)]
mod tests;
