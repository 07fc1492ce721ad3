//! knet's shared core: what every feature and the daemon agree on.
//!
//! Owns the feature names ([`FeatureId`]), the one typed cluster configuration document
//! ([`config::ClusterConfig`]) with its defaults, validation and `knet set`/`knet get` key
//! whitelist, the [`Feature`] trait every in-process module implements, the context handed to
//! features (node identity, paths, store, Kubernetes client and the shared watches), and the
//! status rows `knet status` prints, and [`slim_pod::SlimPod`], the part of a Pod the shared
//! Pod watch keeps.
//!
//! Architecture invariants: features depend on this crate and never on each other; this crate
//! never touches the kernel.

// Libraries log with tracing; only the binary prints.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod cni_conf;
pub mod config;
mod feature;
mod feature_id;
pub mod metrics;
pub mod paths;
pub mod slim_pod;
mod status;
pub mod watch;

pub use feature::{
    ApiHandler, ApiRegistry, ApiRequest, ApiResponse, Feature, FeatureContext, FeatureError,
    StatusReporter,
};
pub use feature_id::{FeatureId, UnknownFeature};
pub use status::{FeatureState, FeatureStatus, NodeStatus};
