//! Query counters and latency histograms: plain atomics, rendered in Prometheus text format.
//!
//! Updated on every query, so no locks and no allocation: a fixed array of counters indexed by
//! (zone, result) and a fixed-bucket latency histogram per zone. [`render`] produces the
//! `/metrics` text; [`publish`] copies the totals into `knet_core::metrics` for the daemon.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Where a query was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// The cluster zone, from the index.
    Cluster,
    /// Forwarded upstream (or answered from the forward cache).
    Forward,
}

/// How a query ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// NOERROR with answers.
    Success,
    /// NOERROR without answers.
    NoData,
    /// NXDOMAIN.
    NxDomain,
    /// SERVFAIL.
    ServFail,
    /// REFUSED (zone transfers, forwarding over the concurrency limit).
    Refused,
    /// FORMERR, NOTIMP, BADVERS and other errors.
    Other,
}

const ZONES: [(Zone, &str); 2] = [(Zone::Cluster, "cluster"), (Zone::Forward, "forward")];
const OUTCOMES: [(Outcome, &str); 6] = [
    (Outcome::Success, "success"),
    (Outcome::NoData, "nodata"),
    (Outcome::NxDomain, "nxdomain"),
    (Outcome::ServFail, "servfail"),
    (Outcome::Refused, "refused"),
    (Outcome::Other, "other"),
];
/// Histogram bucket upper bounds, in microseconds.
const BUCKETS_US: [u64; 10] = [
    50, 100, 250, 500, 1_000, 2_500, 10_000, 50_000, 250_000, 1_000_000,
];

/// One series: metric name, labels, value.
pub type Series = (String, Vec<(&'static str, String)>, f64);

/// The counters.
#[derive(Debug)]
pub struct Metrics {
    requests: [[AtomicU64; 6]; 2],
    buckets: [[AtomicU64; BUCKETS_US.len() + 1]; 2],
    sum_us: [AtomicU64; 2],
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    forward_overloaded: AtomicU64,
    loops_detected: AtomicU64,
}

static METRICS: Metrics = Metrics::new();

/// The process-wide counters.
pub fn global() -> &'static Metrics {
    &METRICS
}

fn zone_index(zone: Zone) -> usize {
    match zone {
        Zone::Cluster => 0,
        Zone::Forward => 1,
    }
}

fn outcome_index(outcome: Outcome) -> usize {
    OUTCOMES
        .iter()
        .position(|(o, _)| *o == outcome)
        .unwrap_or(5)
}

// === impl Metrics ===

impl Metrics {
    const fn new() -> Metrics {
        Metrics {
            requests: [const { [const { AtomicU64::new(0) }; 6] }; 2],
            buckets: [const { [const { AtomicU64::new(0) }; BUCKETS_US.len() + 1] }; 2],
            sum_us: [const { AtomicU64::new(0) }; 2],
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
            forward_overloaded: AtomicU64::new(0),
            loops_detected: AtomicU64::new(0),
        }
    }

    /// Counts one answered query.
    pub fn record(&self, zone: Zone, outcome: Outcome, took: Duration) {
        let z = zone_index(zone);
        self.requests[z][outcome_index(outcome)].fetch_add(1, Ordering::Relaxed);
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let bucket = BUCKETS_US
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(BUCKETS_US.len());
        self.buckets[z][bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_us[z].fetch_add(us, Ordering::Relaxed);
    }

    /// Counts a forward-cache lookup.
    pub fn cache(&self, hit: bool) {
        let c = if hit {
            &self.cache_hits
        } else {
            &self.cache_misses
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a query refused because too many were in flight.
    pub fn overloaded(&self) {
        self.forward_overloaded.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a detected forwarding loop.
    pub fn loop_detected(&self) {
        self.loops_detected.fetch_add(1, Ordering::Relaxed);
    }

    /// Queries counted for `zone` with `outcome`.
    pub fn requests(&self, zone: Zone, outcome: Outcome) -> u64 {
        self.requests[zone_index(zone)][outcome_index(outcome)].load(Ordering::Relaxed)
    }

    /// Every series as (name, labels, value).
    pub fn series(&self) -> Vec<Series> {
        let mut out = Vec::new();
        for (zone, zname) in ZONES {
            let z = zone_index(zone);
            for (i, (_, oname)) in OUTCOMES.iter().enumerate() {
                let n = self.requests[z][i].load(Ordering::Relaxed);
                out.push((
                    "knet_dns_requests_total".to_string(),
                    vec![("zone", zname.to_string()), ("result", oname.to_string())],
                    n as f64,
                ));
            }
            let mut cumulative = 0;
            for (i, bound) in BUCKETS_US
                .iter()
                .map(|b| Some(*b))
                .chain([None])
                .enumerate()
            {
                cumulative += self.buckets[z][i].load(Ordering::Relaxed);
                let le = bound.map_or("+Inf".to_string(), |b| format!("{}", b as f64 / 1e6));
                out.push((
                    "knet_dns_request_duration_seconds_bucket".to_string(),
                    vec![("zone", zname.to_string()), ("le", le)],
                    cumulative as f64,
                ));
            }
            out.push((
                "knet_dns_request_duration_seconds_count".to_string(),
                vec![("zone", zname.to_string())],
                cumulative as f64,
            ));
            out.push((
                "knet_dns_request_duration_seconds_sum".to_string(),
                vec![("zone", zname.to_string())],
                self.sum_us[z].load(Ordering::Relaxed) as f64 / 1e6,
            ));
        }
        let plain = [
            ("knet_dns_forward_cache_hits_total", &self.cache_hits),
            ("knet_dns_forward_cache_misses_total", &self.cache_misses),
            (
                "knet_dns_forward_overloaded_total",
                &self.forward_overloaded,
            ),
            (
                "knet_dns_forward_loops_detected_total",
                &self.loops_detected,
            ),
        ];
        for (name, v) in plain {
            out.push((
                name.to_string(),
                Vec::new(),
                v.load(Ordering::Relaxed) as f64,
            ));
        }
        out
    }
}

/// Every counter in Prometheus text exposition format.
pub fn render() -> String {
    let mut out = String::new();
    for (name, labels, value) in global().series() {
        out.push_str(&name);
        if !labels.is_empty() {
            out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{k}=\"{v}\"");
            }
            out.push('}');
        }
        let _ = writeln!(out, " {value}");
    }
    out
}

/// Copies the totals into the daemon's registry (`knet_core::metrics`), which serves /metrics,
/// with `fast_path_hits`, the UDP queries answered from the response cache (counted there).
pub fn publish(fast_path_hits: u64) {
    for (name, labels, value) in global().series() {
        let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        knet_core::metrics::set(&name, &labels, value);
    }
    knet_core::metrics::set(FAST_PATH_SERIES, &[], fast_path_hits as f64);
}

/// UDP queries answered from the response cache (also counted in `knet_dns_requests_total`).
pub const FAST_PATH_SERIES: &str = "knet_dns_udp_fast_path_total";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histogram() {
        let m = Metrics::new();
        m.record(Zone::Cluster, Outcome::Success, Duration::from_micros(70));
        m.record(Zone::Cluster, Outcome::NxDomain, Duration::from_secs(3));
        let series = m.series();
        let get = |name: &str, want: &[(&str, &str)]| {
            series
                .iter()
                .find(|(n, l, _)| {
                    n == name
                        && want
                            .iter()
                            .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
                })
                .map(|s| s.2)
        };
        assert_eq!(
            get(
                "knet_dns_requests_total",
                &[("zone", "cluster"), ("result", "success")]
            ),
            Some(1.0)
        );
        assert_eq!(
            get(
                "knet_dns_request_duration_seconds_bucket",
                &[("zone", "cluster"), ("le", "0.0001")]
            ),
            Some(1.0)
        );
        assert_eq!(
            get(
                "knet_dns_request_duration_seconds_bucket",
                &[("zone", "cluster"), ("le", "+Inf")]
            ),
            Some(2.0)
        );
        assert!(render().contains("knet_dns_requests_total{zone=\"forward\",result=\"servfail\"}"));
    }
}
