//! tracing set-up: `KNET_LOG` filter (default `info` for the daemon, `warn` without the
//! Kubernetes client's own error logs otherwise),
//! `KNET_LOG_FORMAT=plain|json`, logs to stderr.

use knet_core::paths::env;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber.
pub fn init(daemon: bool) {
    // The CLI prints its own one-line errors; library logs would only repeat them.
    let default = if daemon {
        // hickory logs every request at info.
        "info,hickory_server=warn,hickory_proto=warn"
    } else {
        "warn,kube_client=off,kube_runtime=off,knet_bootstrap=warn"
    };
    let filter = EnvFilter::try_from_env(env::LOG).unwrap_or_else(|_| EnvFilter::new(default));
    let json = std::env::var(env::LOG_FORMAT).is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
