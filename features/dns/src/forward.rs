//! Forwarding names outside the cluster zone to upstream resolvers.
//!
//! A cache in front ([`cache`]); a cap on queries in flight (over it: REFUSED, like CoreDNS's
//! `max_concurrent`); upstreams tried from a random start, healthy ones first, failing over to
//! the next on error or timeout; an upstream that fails [`upstream::MAX_FAILS`] times in a row is
//! unhealthy and probed with `. NS` every 500 ms until it answers; UDP answers with TC set are
//! asked again over TCP. Loops are detected by sending each upstream a probe for a random name:
//! if that name comes back to our own server, the upstream forwards to us and is not used.

pub mod cache;
pub mod resolv_conf;
pub mod upstream;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};

use hickory_server::proto::op::ResponseCode;
use hickory_server::proto::rr::{DNSClass, Name, RecordType};
use tokio::sync::Semaphore;

pub use cache::Cached;
pub use upstream::{Question, Upstream};

/// Forwarding limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardConfig {
    /// Queries forwarded at once; more are REFUSED (CoreDNS `max_concurrent 1000`).
    pub max_concurrent: usize,
    /// Per-upstream attempt timeout (CoreDNS `read_timeout` 2 s).
    pub attempt_timeout: Duration,
    /// Upstreams tried per query.
    pub max_attempts: usize,
    /// Entries in each of the positive and negative caches (CoreDNS: 9984).
    pub cache_capacity: usize,
    /// Interval of health checks of an unhealthy upstream.
    pub health_interval: Duration,
}

/// Why a query could not be forwarded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardError {
    /// Too many queries in flight.
    #[error("too many forwarded queries in flight")]
    Overloaded,
    /// No usable upstream is configured.
    #[error("no upstream nameservers")]
    NoUpstreams,
    /// Every upstream tried failed.
    #[error("all upstreams failed")]
    Failed,
}

/// A forwarded answer and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded {
    /// The answer.
    pub answer: Cached,
    /// Served from the cache.
    pub cached: bool,
}

/// Upstream state for status and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamStatus {
    /// Address.
    pub addr: SocketAddr,
    /// Answering.
    pub healthy: bool,
    /// Sends our queries back to us.
    pub looping: bool,
    /// Failed exchanges so far.
    pub failures: u64,
}

/// The forwarder. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Forwarder {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cfg: ForwardConfig,
    upstreams: RwLock<Arc<[Arc<Upstream>]>>,
    /// Our own listening addresses: never upstreams.
    local: RwLock<Vec<SocketAddr>>,
    cache: cache::Cache,
    in_flight: Semaphore,
    probes: Mutex<HashMap<Name, Weak<Upstream>>>,
    probes_active: AtomicUsize,
}

// === impl ForwardConfig ===

impl Default for ForwardConfig {
    fn default() -> Self {
        ForwardConfig {
            max_concurrent: 1000,
            attempt_timeout: Duration::from_secs(2),
            max_attempts: 3,
            cache_capacity: 9984,
            health_interval: Duration::from_millis(500),
        }
    }
}

// === impl Forwarder ===

impl Forwarder {
    /// A forwarder with no upstreams yet.
    pub fn new(cfg: ForwardConfig) -> Forwarder {
        Forwarder {
            inner: Arc::new(Inner {
                cache: cache::Cache::new(cfg.cache_capacity),
                in_flight: Semaphore::new(cfg.max_concurrent),
                cfg,
                upstreams: RwLock::new(Arc::from(Vec::new())),
                local: RwLock::new(Vec::new()),
                probes: Mutex::new(HashMap::new()),
                probes_active: AtomicUsize::new(0),
            }),
        }
    }

    /// Declares our own listening addresses, which are dropped from the upstream list.
    pub fn set_local_addrs(&self, addrs: Vec<SocketAddr>) {
        *self
            .inner
            .local
            .write()
            .unwrap_or_else(PoisonError::into_inner) = addrs;
        let current: Vec<SocketAddr> = self.snapshot().iter().map(|u| u.addr).collect();
        self.set_upstreams(current);
    }

    /// Replaces the upstream list, keeping the state of upstreams that stay. Returns whether it
    /// changed (the cache is emptied when it does).
    pub fn set_upstreams(&self, addrs: Vec<SocketAddr>) -> bool {
        let local = self
            .inner
            .local
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let old = self.snapshot();
        let mut new: Vec<Arc<Upstream>> = Vec::new();
        for addr in addrs {
            if local.contains(&addr) {
                tracing::warn!(upstream = %addr, "ignoring upstream nameserver: it is this server");
                continue;
            }
            if new.iter().any(|u| u.addr == addr) {
                continue;
            }
            let kept = old.iter().find(|u| u.addr == addr).cloned();
            new.push(kept.unwrap_or_else(|| Arc::new(Upstream::new(addr))));
        }
        let changed =
            new.len() != old.len() || new.iter().zip(old.iter()).any(|(a, b)| a.addr != b.addr);
        if changed {
            *self
                .inner
                .upstreams
                .write()
                .unwrap_or_else(PoisonError::into_inner) = Arc::from(new);
            self.inner.cache.clear();
        }
        changed
    }

    fn snapshot(&self) -> Arc<[Arc<Upstream>]> {
        self.inner
            .upstreams
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The upstreams and their state.
    pub fn status(&self) -> Vec<UpstreamStatus> {
        self.snapshot()
            .iter()
            .map(|u| UpstreamStatus {
                addr: u.addr,
                healthy: u.healthy(),
                looping: u.looping(),
                failures: u.failures.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Entries in the (positive, negative) caches.
    pub fn cache_len(&self) -> (usize, usize) {
        self.inner.cache.len()
    }

    /// Resolves `q` upstream (or from the cache). `tcp`: the client asked over TCP, so a large
    /// answer is wanted in full.
    pub async fn resolve(&self, q: &Question, tcp: bool) -> Result<Forwarded, ForwardError> {
        let now = Instant::now();
        if let Some(answer) = self.inner.cache.get(q, now) {
            return Ok(Forwarded {
                answer,
                cached: true,
            });
        }
        let _permit = self
            .inner
            .in_flight
            .try_acquire()
            .map_err(|_| ForwardError::Overloaded)?;
        let order = self.order();
        if order.is_empty() {
            return Err(ForwardError::NoUpstreams);
        }
        let mut last_answer = None;
        for up in order.iter().take(self.inner.cfg.max_attempts.max(1)) {
            match up.exchange(q, tcp, self.inner.cfg.attempt_timeout).await {
                Ok(msg) => {
                    up.succeeded();
                    let answer = Cached::from_message(msg);
                    if matches!(answer.rcode, ResponseCode::ServFail | ResponseCode::Refused) {
                        // Try the next upstream; pass this on if none does better.
                        last_answer = Some(answer);
                        continue;
                    }
                    self.inner.cache.put(q, &answer, Instant::now());
                    return Ok(Forwarded {
                        answer,
                        cached: false,
                    });
                }
                Err(error) => {
                    tracing::debug!(upstream = %up.addr, %error, name = %q.name, "upstream query failed");
                    if up.failed() {
                        tracing::warn!(upstream = %up.addr, %error, "upstream nameserver unhealthy; checking it");
                        self.spawn_health_check(up);
                    }
                }
            }
        }
        last_answer
            .map(|answer| Forwarded {
                answer,
                cached: false,
            })
            .ok_or(ForwardError::Failed)
    }

    /// Upstreams to try, in order: healthy ones from a random start, then unhealthy ones
    /// (all down: try them anyway, like CoreDNS). Looping upstreams are never used.
    fn order(&self) -> Vec<Arc<Upstream>> {
        let all = self.snapshot();
        let usable: Vec<&Arc<Upstream>> = all.iter().filter(|u| !u.looping()).collect();
        if usable.is_empty() {
            return Vec::new();
        }
        let start = rand::random::<u32>() as usize % usable.len();
        let rotated = usable.iter().cycle().skip(start).take(usable.len());
        let (mut healthy, unhealthy): (Vec<Arc<Upstream>>, Vec<Arc<Upstream>>) =
            rotated.map(|u| Arc::clone(u)).partition(|u| u.healthy());
        healthy.extend(unhealthy);
        healthy
    }

    fn spawn_health_check(&self, up: &Arc<Upstream>) {
        let weak = Arc::downgrade(up);
        let interval = self.inner.cfg.health_interval;
        let timeout = self.inner.cfg.attempt_timeout;
        let probe = Question {
            name: Name::root(),
            qtype: RecordType::NS,
            qclass: DNSClass::IN,
            dnssec_ok: false,
        };
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                // The upstream was removed from the config: stop.
                let Some(up) = weak.upgrade() else {
                    return;
                };
                if up.exchange(&probe, false, timeout).await.is_ok() {
                    tracing::info!(upstream = %up.addr, "upstream nameserver healthy again");
                    up.succeeded();
                    up.check_done();
                    return;
                }
            }
        });
    }

    /// Whether `name` is one of our loop probes; if so, the upstream it was sent to forwards to
    /// us, and it is marked as looping. Called for every query the server receives, so the
    /// common case (no probe out) is one atomic load.
    pub fn is_loop_probe(&self, name: &Name) -> bool {
        if self.inner.probes_active.load(Ordering::Relaxed) == 0 {
            return false;
        }
        let probes = self
            .inner
            .probes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(up) = probes.get(name) else {
            return false;
        };
        if let Some(up) = up.upgrade()
            && !up.looping()
        {
            tracing::error!(
                upstream = %up.addr,
                "forwarding loop: this upstream sends queries back to this server; not using it \
                 (set dns.upstream-nameservers to resolvers that do not forward to the cluster DNS)"
            );
            up.set_looping(true);
        }
        true
    }

    /// Sends every upstream a query for a random name and waits for the answers; an upstream
    /// whose probe arrives back at our server is marked as looping (see
    /// [`Forwarder::is_loop_probe`]). Upstreams that were looping are re-tested and cleared if
    /// the loop is gone.
    pub async fn probe_loops(&self) {
        let upstreams = self.snapshot();
        let mut tasks = Vec::new();
        for up in upstreams.iter() {
            let name = match Name::from_ascii(format!(
                "knet-loop-probe-{:016x}.{:08x}.",
                rand::random::<u64>(),
                rand::random::<u32>()
            )) {
                Ok(name) => name,
                Err(_) => continue,
            };
            self.inner
                .probes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(name.clone(), Arc::downgrade(up));
            self.inner.probes_active.fetch_add(1, Ordering::Relaxed);
            let was_looping = up.looping();
            up.set_looping(false);
            let up = Arc::clone(up);
            let timeout = self.inner.cfg.attempt_timeout;
            let forwarder = self.clone();
            tasks.push(tokio::spawn(async move {
                let q = Question {
                    name: name.clone(),
                    qtype: RecordType::HINFO,
                    qclass: DNSClass::IN,
                    dnssec_ok: false,
                };
                let _ = up.exchange(&q, false, timeout).await;
                forwarder
                    .inner
                    .probes
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&name);
                forwarder.inner.probes_active.fetch_sub(1, Ordering::Relaxed);
                if was_looping && !up.looping() {
                    tracing::info!(upstream = %up.addr, "forwarding loop through this upstream is gone");
                }
            }));
        }
        for task in tasks {
            let _ = task.await;
        }
    }
}

#[cfg(test)]
mod tests;
