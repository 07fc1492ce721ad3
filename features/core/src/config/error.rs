//! Errors of configuration parsing, validation and updates.

/// A configuration document, key or value was rejected. Each message says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The YAML document did not parse or had unknown keys.
    #[error("invalid config: {0}")]
    Parse(String),
    /// A key that does not exist.
    #[error("unknown key {key:?}: valid keys are {valid}")]
    UnknownKey {
        /// What the user typed.
        key: String,
        /// The keys that exist, comma-separated.
        valid: String,
    },
    /// A value that does not fit its key.
    #[error("invalid value {value:?} for {key}: {reason}")]
    InvalidValue {
        /// The key.
        key: String,
        /// What the user typed.
        value: String,
        /// Why it is wrong and what is expected.
        reason: String,
    },
    /// A key that cannot change after bootstrap.
    #[error(
        "{key} cannot change after bootstrap (it is {current}); to use {wanted}, rebuild the cluster"
    )]
    Immutable {
        /// The key.
        key: &'static str,
        /// Its bootstrapped value.
        current: String,
        /// The value asked for.
        wanted: String,
    },
    /// A feature was enabled without one it needs, or one that others need was disabled.
    #[error("{0}")]
    Dependency(String),
    /// `knet set` was given something that is not `key=value`.
    #[error("expected <feature>.<key>=<value>, got {0:?}")]
    NotAnAssignment(String),
}
