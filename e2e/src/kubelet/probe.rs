//! Readiness probes, run the way the kubelet runs them: tcpSocket and
//! httpGet from the node's namespace to the pod IP, exec inside the pod.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::netns;

/// Runs one probe attempt; true on success.
pub async fn run(
    p: &Probe,
    c: &Container,
    ips: &[String],
    node_netns: &str,
    pod_netns: &str,
) -> bool {
    let t = u64::try_from(p.timeout_seconds.unwrap_or(1).max(1)).unwrap_or(1);
    let timeout = Duration::from_secs(t);
    let ip = ips.first().cloned().unwrap_or_default();
    let out = if let Some(h) = &p.http_get {
        let Some(port) = resolve_port(&h.port, c) else {
            return false;
        };
        let host = h.host.clone().unwrap_or_else(|| ip.clone());
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        let scheme = h.scheme.as_deref().unwrap_or("HTTP").to_lowercase();
        let path = h.path.clone().unwrap_or_else(|| "/".into());
        let url = format!("{scheme}://{host}:{port}{path}");
        let max = t.to_string();
        netns::exec(
            node_netns,
            &[
                "curl",
                "-sk",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                &max,
                &url,
            ],
            timeout + Duration::from_secs(2),
        )
        .await
        .ok()
        .filter(|o| o.success())
        .and_then(|o| o.stdout.trim().parse::<u16>().ok())
        .is_some_and(|code| (200..400).contains(&code))
    } else if let Some(tcp) = &p.tcp_socket {
        let Some(port) = resolve_port(&tcp.port, c) else {
            return false;
        };
        let host = tcp.host.clone().unwrap_or(ip);
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        let target = format!("TCP:{host}:{port},connect-timeout={t}");
        netns::exec(
            node_netns,
            &["socat", "-u", "OPEN:/dev/null", &target],
            timeout + Duration::from_secs(2),
        )
        .await
        .is_ok_and(|o| o.success())
    } else if let Some(cmd) = p.exec.as_ref().and_then(|e| e.command.clone()) {
        let argv: Vec<&str> = cmd.iter().map(String::as_str).collect();
        netns::exec(pod_netns, &argv, timeout)
            .await
            .is_ok_and(|o| o.success())
    } else {
        tracing::warn!(container = %c.name, "unsupported probe type (grpc?): treated as failing");
        false
    };
    tracing::debug!(container = %c.name, ok = out, "readiness probe");
    out
}

/// A probe's port: a number, or the name of one of the container's ports.
fn resolve_port(port: &IntOrString, c: &Container) -> Option<i32> {
    match port {
        IntOrString::Int(p) => Some(*p),
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.container_port),
    }
}
