//! The command line (clap).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use knet_bootstrap::SocketLbChoice;
use knet_core::paths::{self, Paths, SocketLbCgroup, env};

/// knet gives a Kubernetes node all of its networking: pod networking, Service load-balancing
/// without kube-proxy, network policy, DNS, load-balancer IPs, ingress and Gateway API.
#[derive(Debug, Parser)]
#[command(name = "knet", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub node: NodeArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Where this node keeps things; each flag has an environment variable so several nodes can
/// share one machine.
#[derive(Debug, Args, Clone)]
pub struct NodeArgs {
    /// Durable state (store, bootstrap marker).
    #[arg(long, global = true, env = env::STATE_DIR, default_value = paths::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Runtime files (the daemon's API socket).
    #[arg(long, global = true, env = env::RUN_DIR, default_value = paths::DEFAULT_RUN_DIR)]
    pub run_dir: PathBuf,
    /// CNI network config directory.
    #[arg(long, global = true, env = env::CNI_CONF_DIR, default_value = paths::DEFAULT_CNI_CONF_DIR)]
    pub cni_conf_dir: PathBuf,
    /// CNI plugin binary directory.
    #[arg(long, global = true, env = env::CNI_BIN_DIR, default_value = paths::DEFAULT_CNI_BIN_DIR)]
    pub cni_bin_dir: PathBuf,
    /// Kubeconfig for this node (default: $KUBECONFIG, ~/.kube/config, in-cluster).
    #[arg(long, global = true, env = env::KUBECONFIG)]
    pub kubeconfig: Option<PathBuf>,
    /// This node's name, as the Node object is named (default: the hostname).
    #[arg(long, global = true, env = env::NODE_NAME)]
    pub node_name: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Prepare this node and start the knet daemon.
    ///
    /// Runs preflight checks, installs the CNI config and plugin, sets sysctls, stores the
    /// cluster config (or adopts the one already in the cluster), starts the daemon and waits
    /// until the enabled features are ready. Safe to run twice.
    #[command(
        after_help = "Examples:\n  sudo knet bootstrap\n  sudo knet bootstrap --file knet.yaml --kubeconfig /etc/kubernetes/kubelet.conf\n  sudo knet bootstrap --interactive"
    )]
    Bootstrap(BootstrapArgs),
    /// Run the node agent in the foreground (what the systemd unit / snap service runs).
    #[command(
        after_help = "Examples:\n  sudo knet daemon\n  KNET_LOG=debug sudo knet daemon --kubeconfig /etc/kubernetes/kubelet.conf"
    )]
    Daemon,
    /// Enable features, live, on every node.
    #[command(
        after_help = "Examples:\n  sudo knet enable ingress\n  sudo knet enable load-balancer gateway"
    )]
    Enable(FeatureArgs),
    /// Disable features, live, on every node; removes everything they installed.
    #[command(after_help = "Examples:\n  sudo knet disable gateway")]
    Disable(FeatureArgs),
    /// Set cluster config keys (`<feature>.<key>=<value>`), live, on every node.
    #[command(
        after_help = "Examples:\n  sudo knet set dns.upstream-nameservers=9.9.9.9,149.112.112.112\n  sudo knet set load-balancer.cidrs=192.0.2.0/28 load-balancer.l2-mode=true"
    )]
    Set(SetArgs),
    /// Print the cluster config, a feature's section, or one key.
    #[command(
        after_help = "Examples:\n  sudo knet get\n  sudo knet get dns\n  sudo knet get dns.cluster-domain"
    )]
    Get(GetArgs),
    /// Show each feature's state on this node.
    #[command(
        after_help = "Examples:\n  sudo knet status\n  sudo knet status --wait-ready --timeout 2m\n  sudo knet status --output-format json"
    )]
    Status(StatusArgs),
    /// Remove everything knet put on this node: features' links, routes, nftables tables and
    /// addresses, pod interfaces, the daemon, the CNI config and plugin, the store.
    ///
    /// Stops the daemon (systemd unit or detached), runs every feature's cleanup, deletes the
    /// remaining pod veths, then removes the CNI conflist and plugin, the bootstrap marker and the
    /// store. The cluster-wide config (ConfigMap kube-system/knet-config) is left for the other
    /// nodes. Safe to run twice; `knet bootstrap` prepares the node again.
    #[command(
        after_help = "Examples:\n  sudo knet reset\n  sudo knet reset --state-dir /var/lib/knet-n2 --run-dir /run/knet-n2\n  knet reset --from-snap-service   (the snap remove hook)"
    )]
    Reset(ResetArgs),
    /// Print knet's version.
    Version,
}

#[derive(Debug, Args)]
pub struct BootstrapArgs {
    /// Cluster config YAML (`-` for stdin); omitted keys take their defaults.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Ask for the features and CIDRs instead of using defaults.
    #[arg(long, conflicts_with = "file")]
    pub interactive: bool,
    /// How long to wait for the features to become ready.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Don't start the daemon (for images and tests that run `knet daemon` themselves).
    #[arg(long)]
    pub no_start: bool,
    /// Where the eBPF socket load balancer attaches: `auto` (the cgroup v2 root, so every pod
    /// and host process), `off` (nftables alone), or one cgroup v2 directory.
    #[arg(long, value_name = "auto|off|PATH", default_value = "auto", env = env::SOCKET_LB_CGROUP,
          value_parser = parse_socket_lb)]
    pub socket_lb_cgroup: SocketLbChoice,
}

#[derive(Debug, Args)]
pub struct ResetArgs {
    /// Take the paths, node name and kubeconfig from the snap daemon service's drop-in that
    /// `knet bootstrap` wrote (what the snap remove hook uses); outside a snap, or without a
    /// drop-in, the flags and environment apply.
    #[arg(long)]
    pub from_snap_service: bool,
    /// How long each feature's cleanup may take.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct FeatureArgs {
    /// Features: network, network-policy, dns, load-balancer, ingress, gateway.
    #[arg(required = true, value_name = "FEATURE")]
    pub features: Vec<String>,
}

#[derive(Debug, Args)]
pub struct SetArgs {
    /// `<feature>.<key>=<value>` assignments (lists are comma-separated).
    #[arg(required = true, value_name = "KEY=VALUE")]
    pub assignments: Vec<String>,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// Nothing for everything, `<feature>` for a section, `<feature>.<key>` for one value.
    pub key: Option<String>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Wait until every enabled feature is ready.
    #[arg(long)]
    pub wait_ready: bool,
    /// How long --wait-ready waits.
    #[arg(long, default_value = "90s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Plain)]
    pub output_format: OutputFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Plain,
    Json,
    Yaml,
}

// === impl Command ===

impl Command {
    pub fn is_daemon(&self) -> bool {
        matches!(self, Command::Daemon)
    }
}

// === impl NodeArgs ===

impl NodeArgs {
    pub fn paths(&self) -> Paths {
        Paths {
            state_dir: self.state_dir.clone(),
            run_dir: self.run_dir.clone(),
            cni_conf_dir: self.cni_conf_dir.clone(),
            cni_bin_dir: self.cni_bin_dir.clone(),
        }
    }

    pub fn node_name(&self) -> anyhow::Result<String> {
        if let Some(n) = &self.node_name {
            return Ok(n.clone());
        }
        let host = nix::unistd::gethostname()
            .map_err(|e| anyhow::anyhow!("cannot read the hostname ({e}); pass --node-name"))?;
        Ok(host.to_string_lossy().to_lowercase())
    }

    pub fn client(&self) -> knet_api::Client {
        knet_api::Client::new(self.paths().socket())
    }
}

/// Parses `auto`, `off` or an absolute cgroup v2 path.
pub fn parse_socket_lb(s: &str) -> Result<SocketLbChoice, String> {
    if s.trim() == "auto" {
        return Ok(SocketLbChoice::Auto);
    }
    match SocketLbCgroup::parse(s)? {
        SocketLbCgroup::Off => Ok(SocketLbChoice::Off),
        SocketLbCgroup::Cgroup(p) => Ok(SocketLbChoice::Cgroup(p)),
    }
}

/// Parses `90s`, `2m`, `1h`, `500ms` or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as 90s, 2m or 1h"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("{s:?} is not a duration such as 90s, 2m or 1h")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("15"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5d").is_err());
    }

    #[test]
    fn socket_lb_choices_parse() {
        assert_eq!(parse_socket_lb("auto"), Ok(SocketLbChoice::Auto));
        assert_eq!(parse_socket_lb("off"), Ok(SocketLbChoice::Off));
        assert_eq!(
            parse_socket_lb("/sys/fs/cgroup/kubepods"),
            Ok(SocketLbChoice::Cgroup("/sys/fs/cgroup/kubepods".into()))
        );
        assert!(parse_socket_lb("kubepods").is_err());
    }
}
