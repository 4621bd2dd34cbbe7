//! What the apiserver's admission does with the AiApp CRD's schema and CEL rules, with no
//! operator running: invalid specs are refused naming the field, defaults are filled in,
//! submitted fields are immutable, and the rest stays editable.
//!
//! Invalid objects go through `Api<DynamicObject>` as raw JSON, so that they can hold what
//! the Rust types would never produce, and so that no default is filled in client-side.

use anyhow::{Context, Result, anyhow, bail};
use dataforest_operator::crd::{AiApp, DeletionPolicy};
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::Status;
use kube::{Api, Resource};
use libtest_mimic::Failed;
use serde_json::{Value, json};

use crate::fixture::{self, ensure};

const WORKSPACE: &str = "6ZKSGoSJMMwctK257nxgiL";

/// A valid spec with every field the table below breaks set to something valid.
fn valid_spec() -> Value {
    json!({
        "aiWorkspaceId": WORKSPACE,
        "namePrefix": "train",
        "queueName": "gpu",
        "data": {
            "input": [{"hdfs": "/user/e2e/input", "path": "/data/input"}],
            "output": [{"hdfs": "/user/e2e/output", "path": "/data/output", "overwrite": true}],
        },
        "docker": {
            "image": "nvcr.io/nvidia/pytorch:24.01-py3",
            "command": "python train.py",
            "env": {"EPOCHS": "3"},
            "exposeTcpPorts": [8888],
        },
        "resource": {"gpuCount": 1, "gpuModel": "T4"},
        "credentials": {"secretName": "ncp-credentials"},
        "deletionPolicy": "Kill",
    })
}

/// `valid_spec` with one thing changed.
fn spec_with(edit: impl FnOnce(&mut Value)) -> Value {
    let mut spec = valid_spec();
    edit(&mut spec);
    spec
}

/// Removes `key` from the object at `value`.
fn remove(value: &mut Value, key: &str) {
    value
        .as_object_mut()
        .expect("the spec is built as JSON objects")
        .remove(key);
}

/// AiApps as raw JSON: nothing is checked or defaulted on the client.
fn dynamic_aiapps(ctx: &fixture::TestContext) -> Api<DynamicObject> {
    Api::namespaced_with(
        ctx.client.clone(),
        &ctx.namespace,
        &ApiResource::erase::<AiApp>(&()),
    )
}

fn dynamic_aiapp(name: &str, spec: Value) -> Result<DynamicObject> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "dataforest.dev/v1alpha1",
        "kind": "AiApp",
        "metadata": {"name": name},
        "spec": spec,
    }))?)
}

/// The apiserver's refusal of a request; an error if it was accepted or failed otherwise.
fn refusal<T>(result: kube::Result<T>) -> Result<Box<Status>> {
    match result {
        Ok(_) => bail!("the apiserver accepted it"),
        Err(kube::Error::Api(status)) => Ok(status),
        Err(other) => Err(anyhow!(other).context("the request failed without an API answer")),
    }
}

/// Checks that `status` is a 422 Invalid whose message contains every one of `wanted`.
fn ensure_invalid(status: &Status, wanted: &[&str]) -> Result<()> {
    ensure(status.code == 422 && status.reason == "Invalid", || {
        format!(
            "expected 422 Invalid, got {} {}: {}",
            status.code, status.reason, status.message
        )
    })?;
    for text in wanted {
        ensure(status.message.contains(text), || {
            format!("the message does not say {text:?}: {}", status.message)
        })?;
    }
    Ok(())
}

pub fn invalid_aiapps_are_refused_at_admission_naming_the_field() -> Result<(), Failed> {
    fixture::run("admission-invalid", |ctx| async move {
        let aiapps = dynamic_aiapps(&ctx);
        // The base of every case is itself valid, so each refusal is for the one change.
        aiapps
            .create(
                &PostParams::default(),
                &dynamic_aiapp("baseline", valid_spec())?,
            )
            .await
            .context("the valid baseline spec was refused")?;

        let cases: Vec<(&str, Value, &str)> = vec![
            (
                "backoffLimit above 10",
                spec_with(|s| s["backoffLimit"] = json!(11)),
                "spec.backoffLimit",
            ),
            (
                "negative backoffLimit",
                spec_with(|s| s["backoffLimit"] = json!(-1)),
                "spec.backoffLimit",
            ),
            (
                "backoffLimit with a namePrefix the user set",
                spec_with(|s| s["backoffLimit"] = json!(2)),
                "spec.backoffLimit",
            ),
            (
                "startDeadlineSeconds of 0",
                spec_with(|s| s["startDeadlineSeconds"] = json!(0)),
                "spec.startDeadlineSeconds",
            ),
            (
                "activeDeadlineSeconds of 0",
                spec_with(|s| s["activeDeadlineSeconds"] = json!(0)),
                "spec.activeDeadlineSeconds",
            ),
            (
                "aiWorkspaceId longer than 22 characters",
                spec_with(|s| s["aiWorkspaceId"] = json!(format!("{WORKSPACE}x"))),
                "spec.aiWorkspaceId",
            ),
            (
                "aiWorkspaceId with a non-Base62 character",
                spec_with(|s| s["aiWorkspaceId"] = json!("6ZKSGoSJ-MMwctK257nxgi")),
                "spec.aiWorkspaceId",
            ),
            (
                "aiWorkspaceId missing",
                spec_with(|s| remove(s, "aiWorkspaceId")),
                "spec.aiWorkspaceId",
            ),
            (
                "namePrefix of 1 character",
                spec_with(|s| s["namePrefix"] = json!("a")),
                "spec.namePrefix",
            ),
            (
                "namePrefix of 9 characters",
                spec_with(|s| s["namePrefix"] = json!("abcdefghi")),
                "spec.namePrefix",
            ),
            (
                "namePrefix with upper-case letters",
                spec_with(|s| s["namePrefix"] = json!("Train")),
                "spec.namePrefix",
            ),
            (
                "namePrefix with a dash",
                spec_with(|s| s["namePrefix"] = json!("my-app")),
                "spec.namePrefix",
            ),
            (
                "resource.gpuCount 0",
                spec_with(|s| s["resource"]["gpuCount"] = json!(0)),
                "spec.resource.gpuCount",
            ),
            (
                "resource.gpuCount 9",
                spec_with(|s| s["resource"]["gpuCount"] = json!(9)),
                "spec.resource.gpuCount",
            ),
            (
                "docker.image missing",
                spec_with(|s| remove(&mut s["docker"], "image")),
                "spec.docker.image",
            ),
            (
                "docker.image empty",
                spec_with(|s| s["docker"]["image"] = json!("")),
                "spec.docker.image",
            ),
            (
                "docker.command missing",
                spec_with(|s| remove(&mut s["docker"], "command")),
                "spec.docker.command",
            ),
            (
                "docker.exposeTcpPorts with port 0",
                spec_with(|s| s["docker"]["exposeTcpPorts"] = json!([8888, 0])),
                "spec.docker.exposeTcpPorts[1]",
            ),
            (
                "docker.exposeTcpPorts with port 70000",
                spec_with(|s| s["docker"]["exposeTcpPorts"] = json!([70000])),
                "spec.docker.exposeTcpPorts[0]",
            ),
            (
                "docker.env with 65 entries",
                spec_with(|s| {
                    s["docker"]["env"] = (0..65)
                        .map(|i| (format!("VAR_{i}"), json!("x")))
                        .collect::<serde_json::Map<_, _>>()
                        .into()
                }),
                "spec.docker.env",
            ),
            (
                "data.input with 17 items",
                spec_with(|s| {
                    s["data"]["input"] = (0..17)
                        .map(|i| json!({"hdfs": format!("/user/e2e/in{i}"), "path": format!("/data/in{i}")}))
                        .collect();
                }),
                "spec.data.input",
            ),
            (
                "credentials.secretName not a DNS name",
                spec_with(|s| s["credentials"]["secretName"] = json!("NCP_Credentials")),
                "spec.credentials.secretName",
            ),
            (
                "deletionPolicy Delete, not in the enum",
                spec_with(|s| s["deletionPolicy"] = json!("Delete")),
                "spec.deletionPolicy",
            ),
            (
                "queueName with a space",
                spec_with(|s| s["queueName"] = json!("gpu queue")),
                "spec.queueName",
            ),
        ];

        let mut failures = Vec::new();
        for (index, (case, spec, field)) in cases.into_iter().enumerate() {
            let result = aiapps
                .create(
                    &PostParams::default(),
                    &dynamic_aiapp(&format!("invalid-{index}"), spec)?,
                )
                .await;
            let checked = refusal(result).and_then(|status| {
                ensure_invalid(&status, &[field])?;
                // Only the broken field is blamed.
                // (After a bounds error the apiserver also says, with no field, that it
                // skipped the CEL rules; that note is not blame.)
                let causes = status.details.map(|d| d.causes).unwrap_or_default();
                let blamed: Vec<&str> = causes
                    .iter()
                    .map(|c| c.field.as_str())
                    .filter(|f| !f.is_empty() && *f != "<nil>")
                    .collect();
                ensure(
                    !blamed.is_empty() && blamed.iter().all(|f| f.starts_with(field)),
                    || format!("the causes should all name {field}: {causes:?}"),
                )
            });
            if let Err(error) = checked {
                failures.push(format!("{case}: {error:#}"));
            }
        }
        ensure(failures.is_empty(), || {
            format!(
                "{} case(s) not refused as expected:\n  {}",
                failures.len(),
                failures.join("\n  ")
            )
        })
    })
}

pub fn a_minimal_aiapp_gets_its_defaults_from_the_apiserver() -> Result<(), Failed> {
    fixture::run("admission-defaults", |ctx| async move {
        let aiapps = dynamic_aiapps(&ctx);
        // Raw JSON, so the defaults cannot come from the Rust types' serde defaults.
        let minimal = json!({
            "aiWorkspaceId": WORKSPACE,
            "docker": {"image": "busybox", "command": "true"},
        });
        aiapps
            .create(&PostParams::default(), &dynamic_aiapp("minimal", minimal)?)
            .await?;
        let read = aiapps.get("minimal").await?;
        let spec = &read.data["spec"];
        ensure(spec["queueName"] == json!("gpu"), || {
            format!("queueName should default to gpu: {spec}")
        })?;
        ensure(spec["deletionPolicy"] == json!("Kill"), || {
            format!("deletionPolicy should default to Kill: {spec}")
        })?;
        ensure(spec.get("namePrefix").is_none(), || {
            format!("namePrefix should stay absent, for the operator to derive: {spec}")
        })?;
        ensure(spec.get("credentials").is_none(), || {
            format!("credentials should stay absent: {spec}")
        })?;
        // The typed view agrees.
        let typed = Api::<AiApp>::namespaced(ctx.client.clone(), &ctx.namespace)
            .get("minimal")
            .await?;
        ensure(
            typed.spec.queue_name == "gpu" && typed.spec.deletion_policy == DeletionPolicy::Kill,
            || format!("typed spec {:?}", typed.spec),
        )
    })
}

pub fn each_submitted_field_is_immutable_and_the_error_says_to_recreate() -> Result<(), Failed> {
    fixture::run("admission-immutable", |ctx| async move {
        let aiapps = dynamic_aiapps(&ctx);
        let created = aiapps
            .create(
                &PostParams::default(),
                &dynamic_aiapp("submitted", valid_spec())?,
            )
            .await?;
        let mut without_prefix = valid_spec();
        remove(&mut without_prefix, "namePrefix");
        aiapps
            .create(
                &PostParams::default(),
                &dynamic_aiapp("unprefixed", without_prefix)?,
            )
            .await?;
        // `namePrefix: null` (the schema allows it) reads as no prefix, like absent.
        let mut null_prefix = valid_spec();
        null_prefix["namePrefix"] = Value::Null;
        aiapps
            .create(
                &PostParams::default(),
                &dynamic_aiapp("null-prefix", null_prefix)?,
            )
            .await?;

        let changes: Vec<(&str, &str, Value, &str)> = vec![
            (
                "changing aiWorkspaceId",
                "submitted",
                json!({"aiWorkspaceId": "7ZKSGoSJMMwctK257nxgiL"}),
                "spec.aiWorkspaceId",
            ),
            (
                "changing namePrefix",
                "submitted",
                json!({"namePrefix": "other"}),
                "spec.namePrefix",
            ),
            (
                "changing queueName",
                "submitted",
                json!({"queueName": "cpu"}),
                "spec.queueName",
            ),
            (
                "changing data",
                "submitted",
                json!({"data": {"input": [{"hdfs": "/user/e2e/other", "path": "/data/input"}]}}),
                "spec.data",
            ),
            (
                "changing docker",
                "submitted",
                json!({"docker": {"image": "nvcr.io/nvidia/pytorch:24.02-py3"}}),
                "spec.docker",
            ),
            (
                "changing resource",
                "submitted",
                json!({"resource": {"gpuCount": 2}}),
                "spec.resource",
            ),
            (
                "removing namePrefix",
                "submitted",
                json!({"namePrefix": null}),
                "spec.namePrefix",
            ),
            (
                "adding namePrefix",
                "unprefixed",
                json!({"namePrefix": "added"}),
                "spec.namePrefix",
            ),
            (
                "setting a namePrefix that was null",
                "null-prefix",
                json!({"namePrefix": "added"}),
                "spec.namePrefix",
            ),
        ];

        let mut failures = Vec::new();
        for (change, name, spec_patch, field) in changes {
            let result = aiapps
                .patch(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": spec_patch})),
                )
                .await;
            let checked = refusal(result)
                .and_then(|status| ensure_invalid(&status, &[field, "delete and recreate"]));
            if let Err(error) = checked {
                failures.push(format!("{change}: {error:#}"));
            }
        }
        ensure(failures.is_empty(), || {
            format!(
                "{} change(s) not refused as expected:\n  {}",
                failures.len(),
                failures.join("\n  ")
            )
        })?;

        // Nothing got through.
        let read = aiapps.get("submitted").await?;
        ensure(read.data["spec"] == created.data["spec"], || {
            format!(
                "the spec changed: {} became {}",
                created.data["spec"], read.data["spec"]
            )
        })?;
        ensure(read.meta().generation == Some(1), || {
            format!("generation {:?}", read.meta().generation)
        })
    })
}

pub fn credentials_deletion_policy_suspend_and_deadlines_stay_mutable() -> Result<(), Failed> {
    fixture::run("admission-mutable", |ctx| async move {
        let aiapps = dynamic_aiapps(&ctx);
        let created = aiapps
            .create(
                &PostParams::default(),
                &dynamic_aiapp("mutable", valid_spec())?,
            )
            .await?;
        ensure(
            created.data["spec"]["deletionPolicy"] == json!("Kill"),
            || format!("created with {}", created.data["spec"]),
        )?;

        for (what, spec_patch) in [
            (
                "deletionPolicy Kill to Orphan",
                json!({"deletionPolicy": "Orphan"}),
            ),
            (
                "credentials.secretName",
                json!({"credentials": {"secretName": "team-b.ncp-credentials"}}),
            ),
            (
                "suspend and deadlines",
                json!({"suspend": true, "startDeadlineSeconds": 600, "activeDeadlineSeconds": 3600}),
            ),
        ] {
            aiapps
                .patch(
                    "mutable",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": spec_patch})),
                )
                .await
                .with_context(|| format!("changing {what} was refused"))?;
        }

        let read = Api::<AiApp>::namespaced(ctx.client.clone(), &ctx.namespace)
            .get("mutable")
            .await?;
        ensure(read.spec.deletion_policy == DeletionPolicy::Orphan, || {
            format!("deletionPolicy read back {:?}", read.spec.deletion_policy)
        })?;
        let secret_name = read
            .spec
            .credentials
            .as_ref()
            .map(|c| c.secret_name.as_str());
        ensure(secret_name == Some("team-b.ncp-credentials"), || {
            format!("credentials.secretName read back {secret_name:?}")
        })?;
        ensure(
            read.spec.suspend
                && read.spec.start_deadline_seconds == Some(600)
                && read.spec.active_deadline_seconds == Some(3600),
            || format!("the job knobs read back {:?}", read.spec),
        )?;
        ensure(read.meta().generation == Some(4), || {
            format!(
                "three accepted spec changes should make generation 4, got {:?}",
                read.meta().generation
            )
        })
    })
}
