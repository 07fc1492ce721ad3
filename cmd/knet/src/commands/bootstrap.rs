//! `knet bootstrap`: prepare this node and start the daemon.

use std::io::{BufRead, Read, Write};
use std::process::ExitCode;

use anyhow::Context;
use knet_bootstrap::{BootstrapOptions, DaemonStart, Outcome};

use crate::cli::{BootstrapArgs, NodeArgs};

pub async fn run(node: &NodeArgs, args: BootstrapArgs) -> anyhow::Result<ExitCode> {
    let config_file = match &args.file {
        Some(p) if p.as_os_str() == "-" => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading the config from stdin")?;
            Some(s)
        }
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("cannot read the config file {}", p.display()))?,
        ),
        None if args.interactive => Some(interactive()?),
        None => None,
    };
    let mut opts = BootstrapOptions::new(node.paths(), node.node_name()?);
    opts.kubeconfig = node.kubeconfig.clone();
    opts.config_file = config_file;
    opts.knet_binary = std::env::current_exe().context("cannot locate the knet binary")?;
    opts.ready_timeout = args.timeout;
    opts.socket_lb = args.socket_lb_cgroup;
    opts.start_daemon = if args.no_start {
        DaemonStart::None
    } else {
        DaemonStart::Auto
    };
    let outcome = knet_bootstrap::bootstrap(opts, &mut |step| println!("{step}")).await?;
    match outcome {
        Outcome::AlreadyBootstrapped => {
            println!(
                "This node is already bootstrapped; the daemon is running. Use `knet status`."
            );
        }
        Outcome::Bootstrapped { .. } => println!("Bootstrapped. Use `knet status` to watch it."),
    }
    Ok(ExitCode::SUCCESS)
}

/// Asks for the features and CIDRs, like `k8s bootstrap --interactive`, and returns a config
/// document. Empty answers take the defaults.
fn interactive() -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let mut ask = |q: &str, default: &str| -> anyhow::Result<String> {
        print!("{q} [{default}]: ");
        std::io::stdout().flush()?;
        let answer = lines.next().transpose()?.unwrap_or_default();
        let answer = answer.trim();
        Ok(if answer.is_empty() {
            default.to_owned()
        } else {
            answer.to_owned()
        })
    };
    let features = ask(
        "Which features to enable (network, network-policy, dns, load-balancer, ingress, gateway)?",
        "network, network-policy, dns",
    )?;
    let pod = ask("Pod CIDR?", "10.1.0.0/16")?;
    let svc = ask("Service CIDR?", "10.152.183.0/24")?;
    let wanted: Vec<&str> = features
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let mut doc = format!("pod-cidr: {pod}\nservice-cidr: {svc}\n");
    for id in knet_core::FeatureId::ALL {
        doc.push_str(&format!(
            "{id}:\n  enabled: {}\n",
            wanted.contains(&id.as_str())
        ));
    }
    for w in &wanted {
        w.parse::<knet_core::FeatureId>()?;
    }
    Ok(doc)
}
