//! knet's lab: a real Kubernetes control plane (etcd, kube-apiserver,
//! kube-controller-manager, kube-scheduler) with network namespaces as nodes
//! and pods, the kubelet's job played by [`kubelet`] (CNI invoked exactly as a
//! container runtime does), and knet run on the nodes. Used by the
//! integration tests and by the `knet-lab` binary for a dev lab.
//!
//! The lab only creates things inside network namespaces it owns and names
//! (`knetlab-<id>-...`), starts only processes it records, and tears all of
//! it down on drop or, after a crash, at the next start (see [`sweep`]).
//! Nothing here changes the host's interfaces, routes or nftables.
//!
//! Start with [`Lab::start`] and [`LabOptions`].

pub mod apply;
pub mod bins;
pub mod certs;
pub mod cni;
pub mod config;
pub mod control_plane;
pub mod forwarder;
pub mod kubelet;
pub mod lab;
pub mod netns;
pub mod node;
pub mod process;
pub mod sweep;

pub use config::{CniMode, LabOptions, NodeSpec, Segment};
pub use lab::Lab;
pub use node::LabNode;
pub use process::ExecOutput;
