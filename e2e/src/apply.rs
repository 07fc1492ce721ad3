//! Creating API objects from YAML: multi-document, any kind (resolved through
//! discovery, so CRDs work once established), server-side applied.

use anyhow::{Context, Result};
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::discovery::{self, Scope};
use kube::{Api, Client, ResourceExt};
use serde::Deserialize;

/// Field manager the lab applies with.
pub const FIELD_MANAGER: &str = "knet-lab";

/// Applies every document in `yaml`; namespaced objects without a namespace
/// go to `default_ns`. Returns the applied objects as the server has them.
pub async fn apply_yaml(
    client: &Client,
    yaml: &str,
    default_ns: &str,
) -> Result<Vec<DynamicObject>> {
    let mut applied = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let value = serde_yaml::Value::deserialize(doc).context("parsing YAML")?;
        if value.is_null() {
            continue;
        }
        let obj: DynamicObject =
            serde_yaml::from_value(value).context("YAML document is not an API object")?;
        let types = obj
            .types
            .clone()
            .context("object without apiVersion/kind")?;
        let gvk = kube::api::GroupVersionKind::try_from(&types)?;
        let name = obj.name_any();
        let (ar, caps) = discovery::pinned_kind(client, &gvk)
            .await
            .with_context(|| format!("resolving {}/{}", types.api_version, types.kind))?;
        let api: Api<DynamicObject> = match caps.scope {
            Scope::Cluster => Api::all_with(client.clone(), &ar),
            Scope::Namespaced => {
                let ns = obj.namespace().unwrap_or_else(|| default_ns.to_owned());
                Api::namespaced_with(client.clone(), &ns, &ar)
            }
        };
        let out = api
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&obj),
            )
            .await
            .with_context(|| format!("applying {} {name}", types.kind))?;
        applied.push(out);
    }
    Ok(applied)
}
