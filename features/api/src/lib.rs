//! The node daemon's local API: JSON over HTTP/1.1 on a unix socket in the run dir.
//!
//! Owns the wire types, the client the CLI and the CNI plugin use, and the server plumbing the
//! daemon mounts its router on. The socket is created mode 0600, so only root talks to the
//! daemon. Routes (all JSON):
//!
//! | method | path | body | answer |
//! |---|---|---|---|
//! | GET | `/v1/status` | | [`knet_core::NodeStatus`] |
//! | GET | `/v1/config` | | [`ConfigAnswer`] |
//! | POST | `/v1/config/set` | [`SetRequest`] | [`ConfigAnswer`] |
//! | POST | `/v1/features/enable`, `/v1/features/disable` | [`FeaturesRequest`] | [`ConfigAnswer`] |
//! | any | `/v1/feature/<name>/<path>` | feature-defined | feature-defined |
//! | GET | `/healthz`, `/readyz` | | `ok` or the reason |
//! | GET | `/metrics` | | Prometheus text |
//!
//! Errors are `{"error": "..."}` with a 4xx/5xx status; the message is one line that says what
//! to do.

// Libraries log with tracing; only the binary prints.
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod client;
mod server;
mod wire;

pub use client::{Client, ClientError};
pub use server::{Router, serve};
pub use wire::{ConfigAnswer, ErrorBody, FeaturesRequest, SetRequest};
