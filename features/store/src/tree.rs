//! A keyspace in the store. Keys are strings; values are bytes or JSON.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::StoreError;

/// A named keyspace. Every mutation is flushed before it returns.
#[derive(Clone)]
pub struct Tree {
    name: String,
    inner: sled::Tree,
}

// === impl Tree ===

impl Tree {
    pub(crate) fn new(name: String, inner: sled::Tree) -> Tree {
        Tree { name, inner }
    }

    fn io(&self, op: &'static str, key: &str, source: sled::Error) -> StoreError {
        StoreError::Io {
            op,
            tree: self.name.clone(),
            key: key.to_owned(),
            source,
        }
    }

    fn flush(&self, key: &str) -> Result<(), StoreError> {
        self.inner
            .flush()
            .map(drop)
            .map_err(|e| self.io("flush", key, e))
    }

    /// Reads a value.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner
            .get(key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| self.io("get", key, e))
    }

    /// Reads a JSON value.
    pub fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        match self.get(key)? {
            None => Ok(None),
            Some(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|source| StoreError::Codec {
                        tree: self.name.clone(),
                        key: key.to_owned(),
                        source,
                    })
            }
        }
    }

    /// Writes a value durably.
    pub fn put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.inner
            .insert(key, value)
            .map_err(|e| self.io("put", key, e))?;
        self.flush(key)
    }

    /// Writes a JSON value durably.
    pub fn put_json<T: Serialize>(&self, key: &str, value: &T) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(value).map_err(|source| StoreError::Codec {
            tree: self.name.clone(),
            key: key.to_owned(),
            source,
        })?;
        self.put(key, &bytes)
    }

    /// Writes `value` only if `key` is absent, atomically and durably. Returns whether it wrote.
    /// Two callers racing for the same key: exactly one gets `true`.
    pub fn insert_if_absent(&self, key: &str, value: &[u8]) -> Result<bool, StoreError> {
        let swapped = self
            .inner
            .compare_and_swap(key, None::<&[u8]>, Some(value))
            .map_err(|e| self.io("compare-and-swap", key, e))?;
        if swapped.is_ok() {
            self.flush(key)?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// Removes `key` only if it still holds `expected`. Returns whether it removed.
    pub fn remove_if(&self, key: &str, expected: &[u8]) -> Result<bool, StoreError> {
        let swapped = self
            .inner
            .compare_and_swap(key, Some(expected), None::<&[u8]>)
            .map_err(|e| self.io("compare-and-swap", key, e))?;
        if swapped.is_ok() {
            self.flush(key)?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// Removes a key durably, returning the old value.
    pub fn remove(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let old = self
            .inner
            .remove(key)
            .map_err(|e| self.io("remove", key, e))?;
        self.flush(key)?;
        Ok(old.map(|v| v.to_vec()))
    }

    /// All entries whose key starts with `prefix`, in key order.
    pub fn scan_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for item in self.inner.scan_prefix(prefix) {
            let (k, v) = item.map_err(|e| self.io("scan", prefix, e))?;
            out.push((String::from_utf8_lossy(&k).into_owned(), v.to_vec()));
        }
        Ok(out)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Whether the tree is empty.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// The tree's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl std::fmt::Debug for Tree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tree").field("name", &self.name).finish()
    }
}

#[cfg(test)]
mod tests {
    use crate::Store;

    #[test]
    fn insert_if_absent_admits_exactly_one_writer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let t = store.tree("ips").expect("tree");
        let winners: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let t = t.clone();
                    s.spawn(move || {
                        t.insert_if_absent("10.1.0.5", format!("c{i}").as_bytes())
                            .expect("cas")
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| usize::from(h.join().expect("join")))
                .sum()
        });
        assert_eq!(winners, 1);
    }

    #[test]
    fn remove_if_only_removes_the_expected_owner() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let t = store.tree("ips").expect("tree");
        assert!(t.insert_if_absent("a", b"one").expect("cas"));
        assert!(!t.remove_if("a", b"two").expect("cas"));
        assert!(t.remove_if("a", b"one").expect("cas"));
        assert_eq!(t.get("a").expect("get"), None);
    }

    #[test]
    fn json_round_trip_and_prefix_scan() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let t = store.tree("t").expect("tree");
        t.put_json("p/1", &vec![1, 2]).expect("put");
        t.put_json("p/2", &vec![3]).expect("put");
        t.put_json("q/1", &vec![4]).expect("put");
        assert_eq!(
            t.get_json::<Vec<i32>>("p/1").expect("get"),
            Some(vec![1, 2])
        );
        let keys: Vec<_> = t
            .scan_prefix("p/")
            .expect("scan")
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, vec!["p/1", "p/2"]);
    }
}
