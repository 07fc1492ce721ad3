//! knet's node-local durable state: IP allocations, CNI results per container, what each feature
//! installed, and the last cluster config seen.
//!
//! Owns the on-disk database under the state dir. sled is an implementation detail behind
//! [`Store`] and [`Tree`]; nothing else in knet names sled. Every mutating call is flushed to
//! disk before it returns, so an acknowledged write survives `kill -9` (measured in
//! `tests/kill9.rs`). Compare-and-swap ([`Tree::insert_if_absent`]) is what makes IP allocation
//! race-free across concurrent CNI calls and restarts.
//!
//! This crate must not know about Kubernetes, features or the kernel.

// Libraries log with tracing; only the binary prints.
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod error;
mod store;
mod tree;

pub use error::StoreError;
pub use store::{Recovery, Store};
pub use tree::Tree;
