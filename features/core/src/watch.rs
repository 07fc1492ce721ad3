//! One shared watch per Kubernetes resource kind, serving every feature.
//!
//! [`Watches::get`] starts a kube-rs reflector for a kind the first time any feature asks for it
//! and hands every later caller the same store. Each watch also bumps a generation counter on
//! every event, which features use to run a debounced, level-triggered sync: wait for a change,
//! read the whole store, compute the desired state, diff against the kernel, apply.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

mod slim;

/// The daemon's shared watches. Cheap to clone.
#[derive(Clone)]
pub struct Watches {
    client: kube::Client,
    kinds: Arc<Mutex<HashMap<TypeId, Box<dyn Any + Send + Sync>>>>,
    health: Arc<Mutex<ApiHealth>>,
    shutdown: CancellationToken,
}

/// What the watches know about the API server's reachability.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiHealth {
    /// The last watch error, cleared when a watch next succeeds.
    pub last_error: Option<String>,
}

/// A shared, continuously updated view of every object of kind `K`.
#[derive(Clone)]
pub struct Watched<K: Resource<DynamicType = ()> + Clone + 'static> {
    /// The objects.
    pub store: Store<K>,
    generation: watch::Receiver<u64>,
    /// Set once the first full list has been applied. (kube's `Store::wait_until_ready` wakes
    /// only one of several concurrent waiters, and features share stores, so we track it here.)
    synced: watch::Receiver<bool>,
}

impl std::fmt::Debug for Watches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watches").finish_non_exhaustive()
    }
}

// === impl Watches ===

impl Watches {
    /// Watches that live until `shutdown` is cancelled.
    pub fn new(client: kube::Client, shutdown: CancellationToken) -> Watches {
        Watches {
            client,
            kinds: Arc::default(),
            health: Arc::default(),
            shutdown,
        }
    }

    /// The shared watch of every `K` in the cluster, started on first use.
    pub fn get<K>(&self) -> Watched<K>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        let mut kinds = self.kinds.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(existing) = kinds
            .get(&TypeId::of::<K>())
            .and_then(|b| b.downcast_ref::<Watched<K>>())
        {
            return existing.clone();
        }
        let watched = self.start::<K>();
        kinds.insert(TypeId::of::<K>(), Box::new(watched.clone()));
        watched
    }

    fn start<K>(&self) -> Watched<K>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        let (reader, writer) = reflector::store::<K>();
        let (tx, rx) = watch::channel(0u64);
        let (synced_tx, synced_rx) = watch::channel(false);
        let api: Api<K> = Api::all(self.client.clone());
        let health = self.health.clone();
        let shutdown = self.shutdown.clone();
        let kind = K::kind(&()).into_owned();
        let stream = watcher(api, watcher::Config::default().any_semantic())
            .default_backoff()
            .modify(slim::slim)
            .reflect(writer);
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            loop {
                let next = tokio::select! {
                    () = shutdown.cancelled() => break,
                    next = stream.next() => next,
                };
                match next {
                    Some(Ok(event)) => {
                        if matches!(event, watcher::Event::InitDone) {
                            synced_tx.send_replace(true);
                        }
                        health
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .last_error = None;
                        tx.send_modify(|g| *g = g.wrapping_add(1));
                    }
                    Some(Err(error)) => {
                        tracing::warn!(%error, kind, "watch failed; retrying with backoff");
                        health
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .last_error = Some(format!("watching {kind}: {error}"));
                    }
                    None => break,
                }
            }
        });
        Watched {
            store: reader,
            generation: rx,
            synced: synced_rx,
        }
    }

    /// Whether the API server answered the watches lately.
    pub fn health(&self) -> ApiHealth {
        self.health
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The client the watches use.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }
}

// === impl Watched ===

impl<K: Resource<DynamicType = ()> + Clone + 'static> Watched<K> {
    /// Waits until the first full list has arrived (bounded by `timeout`). Returns whether it did.
    pub async fn wait_synced(&self, timeout: Duration) -> bool {
        let mut synced = self.synced.clone();
        tokio::time::timeout(timeout, synced.wait_for(|s| *s))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Whether the first full list has arrived.
    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Waits for the next change after the last one this handle saw. Returns false if the watch
    /// ended (daemon shutting down).
    pub async fn changed(&mut self) -> bool {
        self.generation.changed().await.is_ok()
    }

    /// Every object, as a snapshot.
    pub fn objects(&self) -> Vec<Arc<K>> {
        self.store.state()
    }
}
