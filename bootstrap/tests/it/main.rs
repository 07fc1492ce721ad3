//! knet-bootstrap's integration tests. They run as root: kernel probes, namespaces and sysctls
//! are real, always inside network namespaces the tests create or the lab's nodes (the host's
//! own network is only read). The Kubernetes API is the lab's real kube-apiserver
//! (`support/lab.rs`, knet-e2e) and the daemon is the real `knet daemon` (target/debug/knet,
//! built by `make test`). Without root, the lab's control plane (`make deps`), the knet binary
//! or squashfs-tools, the tests fail saying what is missing; nothing is skipped.

mod cluster_config;
mod daemon;
mod flow;
mod install;
mod preflight;
mod snap;
mod support;
mod sysctl;
