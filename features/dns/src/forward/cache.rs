//! A bounded, TTL-respecting cache of forwarded answers (like CoreDNS's `cache` plugin).
//!
//! Two caches, positive and negative (NXDOMAIN and NODATA), of `capacity` entries each, split
//! into shards behind their own mutex. An entry lives for the smallest TTL of its answer records
//! (positive, capped at 3600 s) or for the SOA's negative TTL (capped at 1800 s), at least 5 s;
//! answers served from it have their TTLs reduced by the time spent in the cache. A full shard
//! first drops expired entries, then an arbitrary one.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use hickory_server::proto::op::{Message, ResponseCode};
use hickory_server::proto::rr::{RData, Record, RecordType};

use super::upstream::Question;

const SHARDS: usize = 16;
const MAX_POSITIVE_TTL: u32 = 3600;
const MAX_NEGATIVE_TTL: u32 = 1800;
const MIN_TTL: u32 = 5;
/// Negative answers without an SOA (so without a negative TTL) are kept this long.
const DEFAULT_NEGATIVE_TTL: u32 = 5;

/// A cached (or fresh) forwarded answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cached {
    /// The upstream's response code.
    pub rcode: ResponseCode,
    /// The AD flag the upstream set.
    pub authentic_data: bool,
    /// Answer section.
    pub answers: Vec<Record>,
    /// Authority section.
    pub authorities: Vec<Record>,
    /// Additional section (without OPT).
    pub additionals: Vec<Record>,
}

#[derive(Debug)]
struct Entry {
    stored: Instant,
    expires: Instant,
    answer: Cached,
}

type Shard = Mutex<HashMap<Question, Entry>>;

/// The positive and negative caches.
#[derive(Debug)]
pub struct Cache {
    positive: Vec<Shard>,
    negative: Vec<Shard>,
    per_shard: usize,
}

// === impl Cached ===

impl Cached {
    /// The parts of an upstream message we pass on.
    pub fn from_message(msg: Message) -> Cached {
        Cached {
            rcode: msg.metadata.response_code,
            authentic_data: msg.metadata.authentic_data,
            answers: msg.answers,
            authorities: msg.authorities,
            additionals: msg.additionals,
        }
    }

    fn is_negative(&self) -> bool {
        self.rcode == ResponseCode::NXDomain
            || (self.rcode == ResponseCode::NoError && self.answers.is_empty())
    }

    /// How long this may be cached, or `None` if it must not be.
    fn ttl(&self) -> Option<u32> {
        if self.is_negative() {
            let soa = self.authorities.iter().find_map(|r| match &r.data {
                RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
                _ => None,
            });
            return Some(
                soa.unwrap_or(DEFAULT_NEGATIVE_TTL)
                    .clamp(MIN_TTL, MAX_NEGATIVE_TTL),
            );
        }
        if self.rcode != ResponseCode::NoError {
            // SERVFAIL, REFUSED...: not cached, so the next try can reach another upstream.
            return None;
        }
        let ttl = self
            .answers
            .iter()
            .chain(&self.authorities)
            .chain(
                self.additionals
                    .iter()
                    .filter(|r| r.record_type() != RecordType::OPT),
            )
            .map(|r| r.ttl)
            .min()
            .unwrap_or(MIN_TTL);
        Some(ttl.clamp(MIN_TTL, MAX_POSITIVE_TTL))
    }

    fn aged(&self, age: u32) -> Cached {
        let age_all = |records: &[Record]| {
            records
                .iter()
                .map(|r| {
                    let mut r = r.clone();
                    r.ttl = r.ttl.saturating_sub(age);
                    r
                })
                .collect()
        };
        Cached {
            rcode: self.rcode,
            authentic_data: self.authentic_data,
            answers: age_all(&self.answers),
            authorities: age_all(&self.authorities),
            additionals: age_all(&self.additionals),
        }
    }
}

// === impl Cache ===

impl Cache {
    /// Caches of up to `capacity` positive and `capacity` negative answers.
    pub fn new(capacity: usize) -> Cache {
        let shard = || (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect();
        Cache {
            positive: shard(),
            negative: shard(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    fn shard<'a>(shards: &'a [Shard], q: &Question) -> Option<&'a Shard> {
        use std::hash::{Hash, Hasher};
        // DefaultHasher::new() has fixed keys, so a question always lands in the same shard.
        let mut h = std::hash::DefaultHasher::new();
        q.hash(&mut h);
        let n = u64::try_from(shards.len()).ok()?;
        shards.get(usize::try_from(h.finish() % n).ok()?)
    }

    /// A live answer for `q`, with TTLs aged.
    pub fn get(&self, q: &Question, now: Instant) -> Option<Cached> {
        for shards in [&self.positive, &self.negative] {
            let shard = Cache::shard(shards, q)?;
            let mut map = shard.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(entry) = map.get(q) {
                if entry.expires > now {
                    let age = now.duration_since(entry.stored).as_secs();
                    return Some(entry.answer.aged(u32::try_from(age).unwrap_or(u32::MAX)));
                }
                map.remove(q);
            }
        }
        None
    }

    /// Stores `answer` for `q` if it may be cached.
    pub fn put(&self, q: &Question, answer: &Cached, now: Instant) {
        let Some(ttl) = answer.ttl() else {
            return;
        };
        let shards = if answer.is_negative() {
            &self.negative
        } else {
            &self.positive
        };
        let Some(shard) = Cache::shard(shards, q) else {
            return;
        };
        let mut map = shard.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= self.per_shard && !map.contains_key(q) {
            map.retain(|_, e| e.expires > now);
            if map.len() >= self.per_shard
                && let Some(victim) = map.keys().next().cloned()
            {
                map.remove(&victim);
            }
        }
        map.insert(
            q.clone(),
            Entry {
                stored: now,
                expires: now + Duration::from_secs(u64::from(ttl)),
                answer: answer.clone(),
            },
        );
    }

    /// Number of entries (positive, negative), live or not yet evicted.
    pub fn len(&self) -> (usize, usize) {
        let count = |shards: &[Shard]| {
            shards
                .iter()
                .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
                .sum()
        };
        (count(&self.positive), count(&self.negative))
    }

    /// Empties both caches (upstreams changed).
    pub fn clear(&self) {
        for shard in self.positive.iter().chain(&self.negative) {
            shard.lock().unwrap_or_else(PoisonError::into_inner).clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hickory_server::proto::rr::rdata::{A, SOA};
    use hickory_server::proto::rr::{DNSClass, Name};

    use super::*;

    fn q(i: u32) -> Question {
        Question {
            name: Name::from_ascii(format!("n{i}.example.test.")).expect("name"),
            qtype: RecordType::A,
            qclass: DNSClass::IN,
            dnssec_ok: false,
        }
    }

    fn positive(ttl: u32) -> Cached {
        let name = Name::from_ascii("n.example.test.").expect("name");
        Cached {
            rcode: ResponseCode::NoError,
            authentic_data: false,
            answers: vec![Record::from_rdata(
                name,
                ttl,
                RData::A(A(Ipv4Addr::new(192, 0, 2, 1))),
            )],
            authorities: vec![],
            additionals: vec![],
        }
    }

    fn nxdomain(minimum: u32) -> Cached {
        let zone = Name::from_ascii("example.test.").expect("name");
        let soa = SOA::new(zone.clone(), zone.clone(), 1, 3600, 600, 86400, minimum);
        Cached {
            rcode: ResponseCode::NXDomain,
            authentic_data: false,
            answers: vec![],
            authorities: vec![Record::from_rdata(zone, 3600, RData::SOA(soa))],
            additionals: vec![],
        }
    }

    #[test]
    fn both_caches_are_bounded() {
        let cache = Cache::new(64);
        let now = Instant::now();
        for i in 0..10_000 {
            cache.put(&q(i), &positive(300), now);
            cache.put(&q(i + 100_000), &nxdomain(60), now);
        }
        let (pos, neg) = cache.len();
        assert!(pos <= 64 && neg <= 64, "{pos} {neg}");
        assert!(pos > 0 && neg > 0);
    }

    #[test]
    fn entries_age_and_expire() {
        let cache = Cache::new(64);
        let t0 = Instant::now();
        cache.put(&q(1), &positive(30), t0);
        cache.put(&q(2), &nxdomain(10), t0);
        let later = t0 + Duration::from_secs(12);
        let hit = cache.get(&q(1), later).expect("positive still cached");
        assert_eq!(
            hit.answers[0].ttl, 18,
            "TTLs are aged by the time in the cache"
        );
        assert_eq!(
            cache.get(&q(2), later),
            None,
            "the SOA minimum (10 s) bounds NXDOMAIN"
        );
        assert_eq!(cache.get(&q(1), t0 + Duration::from_secs(31)), None);
        // SERVFAIL is never cached; TTLs are clamped to at least 5 s.
        let servfail = Cached {
            rcode: ResponseCode::ServFail,
            ..positive(30)
        };
        cache.put(&q(3), &servfail, t0);
        assert_eq!(cache.get(&q(3), t0), None);
        cache.put(&q(4), &positive(0), t0);
        assert!(cache.get(&q(4), t0 + Duration::from_secs(4)).is_some());
        assert!(cache.get(&q(4), t0 + Duration::from_secs(6)).is_none());
    }
}
