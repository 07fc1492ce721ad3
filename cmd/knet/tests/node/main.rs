//! The knet binary on a lab node, against a real kube-apiserver: the daemon, the CLI round
//! trips, config persistence across restarts, and every bad input getting one clear line.
//! Needs root and the lab's control plane (`make deps`); fails, never skips, without them.

mod support;

mod bad_input;
mod daemon;
mod dns;
mod network;
mod reset;
mod services;
