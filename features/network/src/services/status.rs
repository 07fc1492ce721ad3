//! The `network` status row, shared by the network sync loop and the services sync loop: the
//! network part first, then what the services dataplane is doing, e.g.
//! `pod CIDR 10.1.3.0/24, ...; services: nftables, 12 service ports`.

use std::sync::{Arc, Mutex, PoisonError};

use knet_core::StatusReporter;

/// The row's two parts.
#[derive(Clone, Debug)]
pub struct StatusLine {
    reporter: StatusReporter,
    parts: Arc<Mutex<Parts>>,
}

#[derive(Debug, Default)]
struct Parts {
    /// The network part when the network loop last succeeded.
    network: Option<String>,
    services: String,
}

// === impl StatusLine ===

impl StatusLine {
    /// A line writing to `reporter`.
    pub fn new(reporter: StatusReporter) -> StatusLine {
        StatusLine {
            reporter,
            parts: Arc::default(),
        }
    }

    /// The network loop succeeded with `msg`.
    pub fn network_ready(&self, msg: String) {
        let mut p = self.parts.lock().unwrap_or_else(PoisonError::into_inner);
        p.network = Some(msg);
        self.reporter.ready(render(&p));
    }

    /// The network loop is not ready (it reports its own state).
    pub fn network_not_ready(&self) {
        self.parts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .network = None;
    }

    /// The services part changed.
    pub fn services(&self, msg: String) {
        let mut p = self.parts.lock().unwrap_or_else(PoisonError::into_inner);
        if p.services == msg {
            return;
        }
        p.services = msg;
        if p.network.is_some() {
            self.reporter.ready(render(&p));
        }
    }
}

fn render(p: &Parts) -> String {
    match (&p.network, p.services.is_empty()) {
        (Some(n), true) => n.clone(),
        (Some(n), false) => format!("{n}; {}", p.services),
        (None, _) => String::new(),
    }
}
