//! Another CNI's config in the CNI conf dir: container runtimes use the first config in name
//! order, so a second CNI's file would silently take pods away from knet (or knet from it).

use std::path::Path;

use knet_core::paths::CNI_CONFLIST_NAME;

use super::{Check, CheckId};

/// Errors if `dir` holds a CNI network config that is not knet's.
pub fn check_cni_conf_dir(dir: &Path) -> Check {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Check::ok(
                CheckId::CniConfDir,
                format!("{} does not exist yet; knet will create it", dir.display()),
            );
        }
        Err(e) => {
            return Check::error(
                CheckId::CniConfDir,
                format!(
                    "cannot read the CNI conf dir {}: {e}; fix its permissions or pick another --cni-conf-dir",
                    dir.display()
                ),
            );
        }
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| !t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    let foreign = foreign_configs(&names);
    match foreign.first() {
        None => Check::ok(
            CheckId::CniConfDir,
            format!("no other CNI config in {}", dir.display()),
        ),
        Some(first) => {
            let path = dir.join(first);
            let network = network_name(&path)
                .map(|n| format!(" (network {n:?})"))
                .unwrap_or_default();
            let more = match foreign.len() {
                1 => String::new(),
                n => format!(" and {} more", n - 1),
            };
            Check::error(
                CheckId::CniConfDir,
                format!(
                    "another CNI's config {}{network}{more} is in the CNI conf dir: remove it (uninstall that CNI), or pick another --cni-conf-dir",
                    path.display()
                ),
            )
        }
    }
}

/// File names a container runtime would load as a CNI network config, other than knet's.
/// Hidden files (our own temp files among them) are ignored, as runtimes ignore them too.
pub(crate) fn foreign_configs(names: &[String]) -> Vec<String> {
    names
        .iter()
        .filter(|n| !n.starts_with('.') && n.as_str() != CNI_CONFLIST_NAME)
        .filter(|n| {
            Path::new(n.as_str())
                .extension()
                .is_some_and(|e| e == "conf" || e == "conflist" || e == "json")
        })
        .cloned()
        .collect()
}

fn network_name(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.get("name")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn only_runtime_loadable_non_knet_files_count() {
        let found = foreign_configs(&names(&[
            "05-knet.conflist",
            ".05-knet.conflist.123.tmp",
            "10-flannel.conflist",
            "87-podman.conf",
            "99-loopback.json",
            "README",
            "calico-kubeconfig",
        ]));
        assert_eq!(
            found,
            names(&["10-flannel.conflist", "87-podman.conf", "99-loopback.json"])
        );
        assert!(foreign_configs(&names(&["05-knet.conflist"])).is_empty());
    }
}
