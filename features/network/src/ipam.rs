//! Durable IP address management: one store tree per IP family, keyed by address, valued by the
//! owning attachment (container id + interface name).
//!
//! Every allocation is a compare-and-swap insert of a key that must be absent, flushed before it
//! returns, so an address is never handed out twice: not to two concurrent ADDs, and not after a
//! `kill -9` of the daemon (the store is the only truth; nothing is cached across calls except a
//! cursor that only decides where the search starts).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Mutex, PoisonError};

use ipnet::IpNet;
use knet_store::{Store, StoreError, Tree};
use serde::{Deserialize, Serialize};

/// Store tree of IPv4 allocations.
pub const TREE_V4: &str = "network-ipam-v4";
/// Store tree of IPv6 allocations.
pub const TREE_V6: &str = "network-ipam-v6";

/// How many candidates one allocation tries before giving up (bounds the search in a huge IPv6
/// pool).
const MAX_PROBES: u128 = 1 << 16;

/// Who holds an address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Owner {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
}

/// Why an allocation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IpamError {
    /// Every address of the pool is taken.
    #[error("no free address left in the node's pod CIDR {pool} ({used} in use)")]
    Exhausted {
        /// The pool.
        pool: IpNet,
        /// Addresses in use.
        used: usize,
    },
    /// The pool is too small to hold pods.
    #[error("the pod CIDR {0} is too small to allocate pod addresses from")]
    TooSmall(IpNet),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The node's address allocator. Cheap to clone; clones share the store.
#[derive(Debug)]
pub struct Ipam {
    v4: Tree,
    v6: Tree,
    cursor: Mutex<HashMap<IpNet, u128>>,
}

// === impl Owner ===

impl Owner {
    /// An owner.
    pub fn new(container_id: impl Into<String>, ifname: impl Into<String>) -> Owner {
        Owner {
            container_id: container_id.into(),
            ifname: ifname.into(),
        }
    }

    fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

// === impl Ipam ===

impl Ipam {
    /// Opens the allocation trees.
    pub fn open(store: &Store) -> Result<Ipam, IpamError> {
        Ok(Ipam {
            v4: store.tree(TREE_V4)?,
            v6: store.tree(TREE_V6)?,
            cursor: Mutex::default(),
        })
    }

    fn tree(&self, v4: bool) -> &Tree {
        if v4 { &self.v4 } else { &self.v6 }
    }

    /// An address from `pool` for `owner`: the one it already holds in that pool (ADD is
    /// idempotent), or a free one claimed atomically.
    pub fn allocate(&self, pool: IpNet, owner: &Owner) -> Result<IpAddr, IpamError> {
        let tree = self.tree(pool.addr().is_ipv4());
        let entries = self.entries(tree)?;
        if let Some((ip, _)) = entries
            .iter()
            .find(|(ip, o)| o == owner && pool.contains(ip))
        {
            return Ok(*ip);
        }
        let (first, last) = usable_range(pool)?;
        let size = last - first + 1;
        let start = {
            let cursor = self.cursor.lock().unwrap_or_else(PoisonError::into_inner);
            cursor.get(&pool).copied().unwrap_or(first)
        };
        let value = owner.encode();
        for probe in 0..size.min(MAX_PROBES) {
            let n = first + (start.saturating_sub(first) + probe) % size;
            let ip = to_ip(pool, n);
            if tree.insert_if_absent(&ip.to_string(), &value)? {
                self.cursor
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(pool, if n >= last { first } else { n + 1 });
                tracing::debug!(%ip, container = %owner.container_id, "address allocated");
                return Ok(ip);
            }
        }
        Err(IpamError::Exhausted {
            pool,
            used: entries.iter().filter(|(ip, _)| pool.contains(ip)).count(),
        })
    }

    /// Records that `owner` holds `ip` (found in the kernel after the store was lost). Returns
    /// whether it was missing; an address already held by someone else is left alone.
    pub fn adopt(&self, ip: IpAddr, owner: &Owner) -> Result<bool, IpamError> {
        Ok(self
            .tree(ip.is_ipv4())
            .insert_if_absent(&ip.to_string(), &owner.encode())?)
    }

    /// The addresses `owner` holds, IPv4 first.
    pub fn lookup(&self, owner: &Owner) -> Result<Vec<IpAddr>, IpamError> {
        let mut out = Vec::new();
        for tree in [&self.v4, &self.v6] {
            out.extend(
                self.entries(tree)?
                    .into_iter()
                    .filter(|(_, o)| o == owner)
                    .map(|(ip, _)| ip),
            );
        }
        Ok(out)
    }

    /// Releases every address `owner` holds; returns them. Releasing nothing is not an error.
    pub fn release(&self, owner: &Owner) -> Result<Vec<IpAddr>, IpamError> {
        self.release_where(|o| o == owner)
    }

    /// Releases every address whose owner `stale` says is gone (GC); returns them.
    pub fn release_where(&self, stale: impl Fn(&Owner) -> bool) -> Result<Vec<IpAddr>, IpamError> {
        let mut released = Vec::new();
        for tree in [&self.v4, &self.v6] {
            for (key, raw) in tree.scan_prefix("")? {
                let Ok(owner) = serde_json::from_slice::<Owner>(&raw) else {
                    continue;
                };
                if stale(&owner)
                    && tree.remove_if(&key, &raw)?
                    && let Ok(ip) = key.parse::<IpAddr>()
                {
                    tracing::debug!(%ip, container = %owner.container_id, "address released");
                    released.push(ip);
                }
            }
        }
        Ok(released)
    }

    /// Every allocation of both families.
    pub fn allocations(&self) -> Result<Vec<(IpAddr, Owner)>, IpamError> {
        let mut out = self.entries(&self.v4)?;
        out.extend(self.entries(&self.v6)?);
        Ok(out)
    }

    fn entries(&self, tree: &Tree) -> Result<Vec<(IpAddr, Owner)>, IpamError> {
        Ok(tree
            .scan_prefix("")?
            .into_iter()
            .filter_map(|(k, v)| {
                let ip = k.parse().ok()?;
                let owner = serde_json::from_slice(&v).ok()?;
                Some((ip, owner))
            })
            .collect())
    }
}

/// The first and last allocatable host numbers of a pool: the network address is reserved (it is
/// the node's VXLAN endpoint address), and so is the IPv4 broadcast address.
fn usable_range(pool: IpNet) -> Result<(u128, u128), IpamError> {
    match pool {
        IpNet::V4(n) if n.prefix_len() <= 30 => Ok((
            u128::from(u32::from(n.network())) + 1,
            u128::from(u32::from(n.broadcast())) - 1,
        )),
        IpNet::V6(n) if n.prefix_len() <= 126 => {
            Ok((u128::from(n.network()) + 1, u128::from(n.broadcast())))
        }
        _ => Err(IpamError::TooSmall(pool)),
    }
}

fn to_ip(pool: IpNet, n: u128) -> IpAddr {
    match pool {
        IpNet::V4(_) => IpAddr::V4(Ipv4Addr::from(u32::try_from(n).unwrap_or(u32::MAX))),
        IpNet::V6(_) => IpAddr::V6(Ipv6Addr::from(n)),
    }
}

#[cfg(test)]
mod tests;
