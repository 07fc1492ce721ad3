//! knet-bootstrap's integration tests. They run as root: kernel probes, namespaces and sysctls
//! are real, always inside network namespaces the tests create (the host's own network is
//! only read). The Kubernetes API is an in-process fake (`support/apiserver.rs`); the same
//! scenarios run against the lab's real apiserver through `knet_bootstrap::testing`.

#![expect(
    clippy::print_stderr,
    reason = "tests show what they saw with --nocapture"
)]

mod cluster_config;
mod daemon;
mod flow;
mod install;
mod preflight;
mod snap;
mod support;
mod sysctl;
