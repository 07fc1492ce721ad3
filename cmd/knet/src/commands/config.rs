//! `knet enable`, `knet disable`, `knet set`, `knet get`.

use std::process::ExitCode;

use knet_api::{ConfigAnswer, FeaturesRequest, SetRequest};
use knet_core::FeatureId;
use knet_core::config::get_key;

use crate::cli::NodeArgs;
use crate::output;

pub async fn toggle(node: &NodeArgs, features: Vec<String>, on: bool) -> anyhow::Result<ExitCode> {
    // Reject unknown names before talking to the daemon, with the list of valid ones.
    for f in &features {
        f.parse::<FeatureId>()?;
    }
    let path = if on {
        "/v1/features/enable"
    } else {
        "/v1/features/disable"
    };
    let _: ConfigAnswer = node
        .client()
        .post(
            path,
            &FeaturesRequest {
                features: features.clone(),
            },
        )
        .await?;
    println!(
        "{} {}.",
        features.join(", "),
        if on { "enabled" } else { "disabled" }
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn set(node: &NodeArgs, assignments: Vec<String>) -> anyhow::Result<ExitCode> {
    // Validate locally first so a typo fails fast, even with the daemon down.
    let defaults = knet_core::config::ClusterConfig::default();
    for a in &assignments {
        if let Err(
            e @ (knet_core::config::ConfigError::UnknownKey { .. }
            | knet_core::config::ConfigError::NotAnAssignment(_)),
        ) = knet_core::config::set_key(&defaults, a)
        {
            return Err(e.into());
        }
    }
    let _: ConfigAnswer = node
        .client()
        .post(
            "/v1/config/set",
            &SetRequest {
                assignments: assignments.clone(),
            },
        )
        .await?;
    println!("Set {}.", assignments.join(", "));
    Ok(ExitCode::SUCCESS)
}

pub async fn get(node: &NodeArgs, key: Option<String>) -> anyhow::Result<ExitCode> {
    let answer: ConfigAnswer = node.client().get("/v1/config").await?;
    let v = get_key(&answer.config, key.as_deref().unwrap_or(""))?;
    print!("{}", output::value(&v)?);
    Ok(ExitCode::SUCCESS)
}
