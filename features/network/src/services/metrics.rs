//! The services dataplane's metrics, kube-proxy's two latency histograms under knet's prefix
//! (rendered by the daemon at `/metrics` through `knet_core::metrics`):
//!
//! - [`SYNC_DURATION`] (kube-proxy: `kubeproxy_sync_proxy_rules_duration_seconds`): one sync
//!   pass, from reading the watched objects to the kernel acknowledging the change;
//! - [`PROGRAMMING_DURATION`] (kube-proxy: `kubeproxy_network_programming_duration_seconds`):
//!   from the change in the cluster (the EndpointSlice's
//!   `endpoints.kubernetes.io/last-change-trigger-time`) to its rules being in the kernel.
//!
//! Buckets are kube-proxy's: exponential from 1 ms for syncs, and 0.25 s to 5 min for
//! programming latency (coarser than kube-proxy's 80 buckets, same range).

use knet_core::metrics;

/// Sync pass duration histogram.
pub const SYNC_DURATION: &str = "knet_services_sync_proxy_rules_duration_seconds";
/// Change-to-programmed latency histogram.
pub const PROGRAMMING_DURATION: &str = "knet_services_network_programming_duration_seconds";
/// Sync passes by kind (`full` nft transaction or `incremental` netlink batch) and result.
pub const SYNCS: &str = "knet_services_syncs_total";

/// 1 ms · 2^k, k = 0..14 (kube-proxy's `ExponentialBuckets(0.001, 2, 15)`).
const SYNC_BUCKETS: [&str; 15] = [
    "0.001", "0.002", "0.004", "0.008", "0.016", "0.032", "0.064", "0.128", "0.256", "0.512",
    "1.024", "2.048", "4.096", "8.192", "16.384",
];
const PROGRAMMING_BUCKETS: [&str; 12] = [
    "0.25", "0.5", "1", "2", "3", "5", "10", "20", "30", "60", "120", "300",
];

/// Records one sync pass.
pub fn sync_pass(seconds: f64, full: bool, ok: bool) {
    metrics::inc(
        SYNCS,
        &[
            ("kind", if full { "full" } else { "incremental" }),
            ("result", if ok { "ok" } else { "error" }),
        ],
    );
    if ok {
        histogram(SYNC_DURATION, &SYNC_BUCKETS, seconds);
    }
}

/// Records the latency of one programmed change.
pub fn programmed(seconds: f64) {
    histogram(PROGRAMMING_DURATION, &PROGRAMMING_BUCKETS, seconds.max(0.0));
}

/// A Prometheus histogram: cumulative `_bucket{le}` counters (every bucket present from the
/// first observation), `_sum` and `_count`.
fn histogram(name: &str, buckets: &[&str], seconds: f64) {
    let bucket = format!("{name}_bucket");
    for le in buckets {
        let within = le.parse::<f64>().is_ok_and(|b| seconds <= b);
        metrics::add(&bucket, &[("le", le)], if within { 1.0 } else { 0.0 });
    }
    metrics::inc(&bucket, &[("le", "+Inf")]);
    metrics::observe(name, &[], seconds);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_count_cumulatively_with_every_bucket_present() {
        programmed(1.5);
        programmed(0.1);
        let get = |le: &str| metrics::get(&format!("{PROGRAMMING_DURATION}_bucket"), &[("le", le)]);
        assert_eq!(get("0.25"), Some(1.0));
        assert_eq!(get("1"), Some(1.0));
        assert_eq!(get("2"), Some(2.0));
        assert_eq!(get("300"), Some(2.0));
        assert_eq!(get("+Inf"), Some(2.0));
        assert_eq!(
            metrics::get(&format!("{PROGRAMMING_DURATION}_count"), &[]),
            Some(2.0)
        );
        let text = metrics::render();
        assert!(
            text.contains(&format!("{PROGRAMMING_DURATION}_sum 1.6")),
            "{text}"
        );
    }
}
