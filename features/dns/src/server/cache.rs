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
//! Bounded in bytes: 16 shards (one short mutex each, so the per-core receive threads rarely
//! meet), each keeping its entries' bytes back to back in one buffer of at most `capacity / 16`
//! bytes, indexed by a small map. One buffer per shard, not two allocations per entry: entries
//! are made on the async runtime's threads between the normal path's short-lived allocations,
//! and thousands of small long-lived blocks there would pin a page each (tens of MiB of RSS for
//! 10k names). A full shard is compacted to the current generation's entries, or else emptied.

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
    shard_bytes: usize,
    hasher: RandomState,
    hits: AtomicU64,
}

/// One shard: entries by the 64-bit hash of their key (a colliding key replaces the entry; the
/// key is compared on every hit), their bytes in `data`.
#[derive(Debug, Default)]
struct Shard {
    entries: HashMap<u64, Entry, BuildHasherDefault<HashIsKey>>,
    /// Key then response of each entry, back to back; replaced entries leave garbage until the
    /// next compaction.
    data: Vec<u8>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    start: usize,
    key_len: u16,
    response_len: u16,
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
    /// A cache holding at most `capacity` bytes of requests and responses.
    pub fn new(capacity: usize) -> ResponseCache {
        ResponseCache {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            shard_bytes: capacity.div_ceil(SHARDS),
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
        let (stored_key, response) = shard.bytes(entry);
        if entry.generation != generation || stored_key != key {
            return None;
        }
        out.clear();
        out.extend_from_slice(response);
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
        let (Ok(key_len), Ok(response_len)) =
            (u16::try_from(key.len()), u16::try_from(response.len()))
        else {
            return;
        };
        let need = key.len() + response.len();
        if need > self.shard_bytes {
            return;
        }
        let (hash, shard) = self.locate(key);
        let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
        if shard.data.len() + need > self.shard_bytes {
            shard.compact(generation, hash);
            if shard.data.len() + need > self.shard_bytes {
                shard.entries.clear();
                shard.data.clear();
            }
        }
        if shard.data.capacity() == 0 {
            // All at once: one allocation per shard, its pages touched only as they fill.
            shard.data.reserve_exact(self.shard_bytes);
        }
        let start = shard.data.len();
        shard.data.extend_from_slice(key);
        shard.data.extend_from_slice(response);
        shard.entries.insert(
            hash,
            Entry {
                start,
                key_len,
                response_len,
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

// === impl Shard ===

impl Shard {
    /// An entry's key and response.
    fn bytes(&self, e: &Entry) -> (&[u8], &[u8]) {
        let key_end = e.start + usize::from(e.key_len);
        let end = key_end + usize::from(e.response_len);
        (&self.data[e.start..key_end], &self.data[key_end..end])
    }

    /// Keeps only the entries of `generation` (but the one `replacing`, about to be replaced),
    /// packed at the front of the buffer.
    fn compact(&mut self, generation: u64, replacing: u64) {
        let old = std::mem::take(&mut self.data);
        let mut data = Vec::with_capacity(old.capacity());
        self.entries
            .retain(|hash, e| e.generation == generation && *hash != replacing);
        for e in self.entries.values_mut() {
            let len = usize::from(e.key_len) + usize::from(e.response_len);
            let start = data.len();
            data.extend_from_slice(&old[e.start..e.start + len]);
            e.start = start;
        }
        self.data = data;
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
        let cache = ResponseCache::new(1 << 16);
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
        let cache = ResponseCache::new(1 << 16);
        cache.insert(&msg(1, b"q"), 3, &msg(1, b"a"), Outcome::NxDomain);
        let mut out = Vec::new();
        assert_eq!(cache.answer(&msg(2, b"q"), 4, &mut out), None);
        assert_eq!(cache.answer(&msg(2, b"Q"), 3, &mut out), None);
        assert_eq!(cache.answer(&msg(2, b"q2"), 3, &mut out), None);
        assert_eq!(cache.answer(&[0; 11], 3, &mut out), None);
    }

    #[test]
    fn bounded_in_bytes() {
        // 16 shards of 64 bytes: entries of 14 + 13 bytes, at most 2 per shard.
        let cache = ResponseCache::new(16 * 64);
        for i in 0..10_000u32 {
            cache.insert(
                &msg(1, &i.to_be_bytes()),
                1,
                &msg(1, b"a"),
                Outcome::Success,
            );
        }
        assert!(cache.len() <= 32, "{} entries", cache.len());
        assert!(!cache.is_empty());
        // Oversized requests and responses are not kept.
        let cache = ResponseCache::new(1 << 20);
        cache.insert(&msg(1, &[0; MAX_KEY]), 1, &msg(1, b"a"), Outcome::Success);
        cache.insert(
            &msg(1, b"q"),
            1,
            &msg(1, &[0; MAX_RESPONSE]),
            Outcome::Success,
        );
        assert!(cache.is_empty());
    }

    #[test]
    fn compaction_keeps_current_entries_intact() {
        // Room for a few entries per shard; replacing entries and adding new ones, with the
        // generation moving every 10 rounds, forces compactions and clears.
        let cache = ResponseCache::new(16 * 200);
        let mut out = Vec::new();
        for round in 0..50u32 {
            let generation = u64::from(round / 10);
            for i in 0..200u32 {
                let q = msg(9, &i.to_be_bytes());
                let a = msg(9, format!("answer-{i}-{round}").as_bytes());
                cache.insert(&q, generation, &a, Outcome::Success);
                // Whatever is kept is exactly what was stored last for that question.
                if cache.answer(&q, generation, &mut out).is_some() {
                    assert_eq!(out, a);
                }
            }
        }
        let mut held = 0;
        for i in 0..200u32 {
            let q = msg(3, &i.to_be_bytes());
            if cache.answer(&q, 4, &mut out).is_some() {
                held += 1;
                assert_eq!(out, msg(3, format!("answer-{i}-49").as_bytes()));
            }
        }
        assert!(held > 0);
    }
}
