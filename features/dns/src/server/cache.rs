//! The UDP fast path's memory: encoded responses to cluster-zone questions.
//!
//! An entry is keyed by the request's bytes after the 2-byte ID (flags, counts, the question in
//! the client's spelling, the EDNS record), and holds the exact bytes the normal path (the
//! hickory-server request handler) sent for it, stamped with the generation of the index and zone
//! config they were computed from. A request with the same bytes gets those bytes back with its
//! own ID, so the fast path's answer is the normal path's by construction: case echo, EDNS,
//! truncation, TTLs and the SOA serial included. Only the handler decides what may be stored (the
//! cluster zone, answered from memory alone, over UDP); [`DnsState`](super::DnsState) bumps the
//! generation on every index or zone change, which makes every older entry a miss.
//!
//! Bounded: 16 shards (one short mutex each, so the per-core receive threads rarely meet), each
//! holding at most `capacity / 16` entries. A full shard first drops stale generations, then
//! everything.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::metrics::Outcome;

/// Shards of the cache.
const SHARDS: usize = 16;
/// Requests longer than this are not cached (a plain question with an EDNS record is ~60 bytes).
pub(crate) const MAX_KEY: usize = 300;
/// Responses longer than this are not cached (the UDP answers that matter are short).
const MAX_RESPONSE: usize = 1232;

/// Encoded responses by request bytes.
#[derive(Debug)]
pub struct ResponseCache {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    hasher: RandomState,
    hits: AtomicU64,
}

/// One shard: entries by the 64-bit hash of their key (a colliding key replaces the entry; the
/// key is compared on every hit).
#[derive(Debug, Default)]
struct Shard {
    entries: HashMap<u64, Entry, BuildHasherDefault<HashIsKey>>,
}

#[derive(Debug)]
struct Entry {
    key: Box<[u8]>,
    response: Box<[u8]>,
    generation: u64,
    outcome: Outcome,
}

/// The map's keys are already hashes.
#[derive(Debug, Default)]
struct HashIsKey(u64);

impl Hasher for HashIsKey {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

// === impl ResponseCache ===

impl ResponseCache {
    /// A cache of at most about `capacity` responses.
    pub fn new(capacity: usize) -> ResponseCache {
        ResponseCache {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            hasher: RandomState::new(),
            hits: AtomicU64::new(0),
        }
    }

    fn locate(&self, key: &[u8]) -> (u64, &Mutex<Shard>) {
        let hash = self.hasher.hash_one(key);
        // The low bits pick the map bucket; the high bits pick the shard.
        let shard = usize::try_from(hash >> 60).unwrap_or(0) % SHARDS;
        (hash, &self.shards[shard])
    }

    /// The cached response to `request` (a whole DNS message) made at `generation`: written to
    /// `out` with the request's ID, and its outcome returned.
    pub fn answer(&self, request: &[u8], generation: u64, out: &mut Vec<u8>) -> Option<Outcome> {
        let (id, key) = split(request)?;
        let (hash, shard) = self.locate(key);
        let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = shard.entries.get(&hash)?;
        if entry.generation != generation || *entry.key != *key {
            return None;
        }
        out.clear();
        out.extend_from_slice(&entry.response);
        out[..2].copy_from_slice(id);
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(entry.outcome)
    }

    /// Requests answered from the cache so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Remembers that the normal path answered `request` with `response` at `generation`.
    pub fn insert(&self, request: &[u8], generation: u64, response: &[u8], outcome: Outcome) {
        let Some((_, key)) = split(request) else {
            return;
        };
        if key.len() > MAX_KEY || response.len() < 12 || response.len() > MAX_RESPONSE {
            return;
        }
        let (hash, shard) = self.locate(key);
        let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
        if shard.entries.len() >= self.per_shard && !shard.entries.contains_key(&hash) {
            shard.entries.retain(|_, e| e.generation == generation);
            if shard.entries.len() >= self.per_shard {
                shard.entries.clear();
            }
        }
        shard.entries.insert(
            hash,
            Entry {
                key: key.into(),
                response: response.into(),
                generation,
                outcome,
            },
        );
    }

    /// Entries held (stale ones included).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entries
                    .len()
            })
            .sum()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A message's ID and the rest of it (the key). `None` for anything shorter than a header.
fn split(message: &[u8]) -> Option<(&[u8], &[u8])> {
    (message.len() >= 12).then(|| message.split_at(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: u16, rest: &[u8]) -> Vec<u8> {
        let mut m = id.to_be_bytes().to_vec();
        m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        m.extend_from_slice(rest);
        m
    }

    #[test]
    fn hit_returns_the_response_with_the_new_id() {
        let cache = ResponseCache::new(64);
        let req = msg(7, b"question");
        let resp = msg(7, b"answer-bytes");
        cache.insert(&req, 3, &resp, Outcome::Success);
        let mut out = Vec::new();
        let again = msg(0xbeef, b"question");
        assert_eq!(cache.answer(&again, 3, &mut out), Some(Outcome::Success));
        assert_eq!(out, msg(0xbeef, b"answer-bytes"));
        assert_eq!(cache.hits(), 1);
    }

    #[test]
    fn other_generations_and_other_bytes_miss() {
        let cache = ResponseCache::new(64);
        cache.insert(&msg(1, b"q"), 3, &msg(1, b"a"), Outcome::NxDomain);
        let mut out = Vec::new();
        assert_eq!(cache.answer(&msg(2, b"q"), 4, &mut out), None);
        assert_eq!(cache.answer(&msg(2, b"Q"), 3, &mut out), None);
        assert_eq!(cache.answer(&msg(2, b"q2"), 3, &mut out), None);
        assert_eq!(cache.answer(&[0; 11], 3, &mut out), None);
    }

    #[test]
    fn bounded() {
        let cache = ResponseCache::new(64);
        for i in 0..10_000u32 {
            cache.insert(
                &msg(1, &i.to_be_bytes()),
                1,
                &msg(1, b"a"),
                Outcome::Success,
            );
        }
        assert!(cache.len() <= 64, "{} entries", cache.len());
        assert!(!cache.is_empty());
        // Oversized requests and responses are not kept.
        let cache = ResponseCache::new(64);
        cache.insert(&msg(1, &[0; MAX_KEY]), 1, &msg(1, b"a"), Outcome::Success);
        cache.insert(
            &msg(1, b"q"),
            1,
            &msg(1, &[0; MAX_RESPONSE]),
            Outcome::Success,
        );
        assert!(cache.is_empty());
    }
}
