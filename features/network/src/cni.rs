//! The CNI plugin: spec types (versions, config, environment, results, errors) shared by the
//! plugin process and the daemon, and [`cni_main`], the plugin process itself.

mod config;
mod env;
mod error;
mod plugin;
mod result;
mod version;

pub use config::{Attachment, NetConf};
pub use env::{CniEnv, Command};
pub use error::{CniError, Code};
pub(crate) use plugin::check_version_allows;
pub use plugin::{PluginOutput, cni_main, run_plugin};
pub use result::{CniResult, Interface, IpConfig, Route};
pub use version::{SUPPORTED, Version, version_info};

#[cfg(test)]
mod tests;
