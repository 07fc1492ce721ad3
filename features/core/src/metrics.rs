//! A tiny process-wide metrics registry rendered in Prometheus text format at `/metrics`.
//!
//! Counters and gauges are keyed by name and labels. Features record what they do
//! (`knet_feature_syncs_total{feature="dns"}`), the daemon renders everything.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Mutex, OnceLock, PoisonError};

fn registry() -> &'static Mutex<BTreeMap<String, f64>> {
    static REGISTRY: OnceLock<Mutex<BTreeMap<String, f64>>> = OnceLock::new();
    REGISTRY.get_or_init(Mutex::default)
}

fn key(name: &str, labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return name.to_owned();
    }
    let mut k = String::from(name);
    k.push('{');
    for (i, (l, v)) in labels.iter().enumerate() {
        if i > 0 {
            k.push(',');
        }
        let v = v
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        let _ = write!(k, "{l}=\"{v}\"");
    }
    k.push('}');
    k
}

/// Adds `by` to a counter.
pub fn add(name: &str, labels: &[(&str, &str)], by: f64) {
    let mut reg = registry().lock().unwrap_or_else(PoisonError::into_inner);
    *reg.entry(key(name, labels)).or_insert(0.0) += by;
}

/// Adds one to a counter.
pub fn inc(name: &str, labels: &[(&str, &str)]) {
    add(name, labels, 1.0);
}

/// Sets a gauge.
pub fn set(name: &str, labels: &[(&str, &str)], value: f64) {
    let mut reg = registry().lock().unwrap_or_else(PoisonError::into_inner);
    reg.insert(key(name, labels), value);
}

/// Records one duration observation as `<name>_count` and `<name>_sum` (seconds).
pub fn observe(name: &str, labels: &[(&str, &str)], seconds: f64) {
    let mut reg = registry().lock().unwrap_or_else(PoisonError::into_inner);
    *reg.entry(key(&format!("{name}_count"), labels))
        .or_insert(0.0) += 1.0;
    *reg.entry(key(&format!("{name}_sum"), labels))
        .or_insert(0.0) += seconds;
}

/// Reads a value (for tests and status).
pub fn get(name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    registry()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&key(name, labels))
        .copied()
}

/// Everything, in Prometheus text exposition format.
pub fn render() -> String {
    let reg = registry().lock().unwrap_or_else(PoisonError::into_inner);
    let mut out = String::new();
    for (k, v) in reg.iter() {
        let _ = writeln!(out, "{k} {v}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_gauges_and_observations_render() {
        inc("knet_test_total", &[("feature", "dns")]);
        add("knet_test_total", &[("feature", "dns")], 2.0);
        set("knet_test_gauge", &[], 7.0);
        observe("knet_test_seconds", &[("feature", "x\"y")], 0.5);
        assert_eq!(get("knet_test_total", &[("feature", "dns")]), Some(3.0));
        let text = render();
        assert!(
            text.contains("knet_test_total{feature=\"dns\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("knet_test_gauge 7\n"), "{text}");
        assert!(
            text.contains("knet_test_seconds_count{feature=\"x\\\"y\"} 1\n"),
            "{text}"
        );
    }
}
