//! The watch of the operator's default credentials Secret (`--default-credentials-secret`):
//! that one Secret, in the operator's own namespace, by metadata only and by name (a
//! field selector, so RBAC can grant read of that name alone). A change wakes every AiApp
//! that uses it (no `spec.credentials`, in a namespace the default serves) and tells
//! `secrets_seen` the Secret's version, as the watch of AiApps' own Secrets does.
//!
//! Its own stream, not the AiApps' Secret watch: that one may watch other namespaces only,
//! or all of them with RBAC a namespaced install does not have.

use futures::stream::{self, BoxStream, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tracing::warn;

use super::Context;
use crate::crd::AiApp;
use crate::credentials::DefaultSecret;

/// What the default Secret's watch yields.
pub(super) type Trigger = BoxStream<'static, Result<PartialObjectMeta<Secret>, watcher::Error>>;

/// The default Secret's changes (metadata only); a stream that never yields when the
/// operator has no default Secret. Errors (RBAC, apiserver) are logged and retried with
/// back-off: they never carry a value of the Secret.
pub(super) fn watch(client: &Client, default: Option<&DefaultSecret>) -> Trigger {
    let Some(default) = default else {
        return stream::pending().boxed();
    };
    // `Api<PartialObjectMeta<_>>`: kube asks the apiserver for metadata only.
    let secrets: Api<PartialObjectMeta<Secret>> =
        Api::namespaced(client.clone(), &default.namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={}", default.name));
    let secret = format!("{}/{}", default.namespace, default.name);
    watcher(secrets, config)
        .default_backoff()
        .touched_objects()
        .inspect(move |item| {
            if let Err(error) = item {
                warn!(%secret, %error, "watching the default credentials Secret failed; retrying");
            }
        })
        .boxed()
}

/// Records the Secret's version and returns the AiApps that use it.
pub(super) fn wakes(ctx: &Context, secret: &PartialObjectMeta<Secret>) -> Vec<ObjectRef<AiApp>> {
    let Some(default) = ctx.config.credentials.default_secret() else {
        return Vec::new();
    };
    let namespace = secret.namespace().unwrap_or_default();
    let name = secret.name_any();
    if namespace != default.namespace || name != default.name {
        return Vec::new();
    }
    ctx.secrets_seen
        .saw(&namespace, &name, secret.resource_version());
    let watched = &ctx.config.namespaces;
    ctx.store
        .state()
        .into_iter()
        .filter(|app| app.spec.credentials.is_none())
        .filter(|app| {
            let namespace = app.namespace().unwrap_or_default();
            default.serves(&namespace) && (watched.is_empty() || watched.contains(&namespace))
        })
        .map(|app| ObjectRef::from_obj(app.as_ref()))
        .collect()
}
