//! The AiApp CRD against the real apiserver: accepted, served, status subresource.

use anyhow::{Context, Result};
use dataforest_operator::crd::{AiApp, AiAppSpec, AiAppStatus, FIELD_MANAGER, Phase};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Resource};
use libtest_mimic::Failed;

use crate::fixture::{self, CRD_NAME, ensure};

fn sample_spec() -> Result<AiAppSpec> {
    Ok(serde_json::from_value(serde_json::json!({
        "aiWorkspaceId": "6ZKSGoSJMMwctK257nxgiL",
        "docker": {"image": "nvcr.io/nvidia/pytorch:24.01-py3", "command": "python train.py"},
        "resource": {"gpuCount": 1, "gpuModel": "T4"},
        "credentials": {"secretName": "ncp-credentials"},
    }))?)
}

pub fn the_generated_crd_is_accepted_and_established() -> Result<(), Failed> {
    fixture::run("crd-established", |ctx| async move {
        let crd = Api::<CustomResourceDefinition>::all(ctx.client)
            .get(CRD_NAME)
            .await?;
        let status = crd.status.context("the CRD has no status")?;
        let conditions = status.conditions.unwrap_or_default();
        for wanted in ["Established", "NamesAccepted"] {
            let condition = conditions.iter().find(|c| c.type_ == wanted);
            ensure(condition.is_some_and(|c| c.status == "True"), || {
                format!("condition {wanted} is not True: {conditions:?}")
            })?;
        }
        let names = status.accepted_names.context("no accepted names")?;
        ensure(names.plural == "aiapps", || {
            format!("plural {}", names.plural)
        })?;
        ensure(
            names.short_names == Some(vec!["aiapp".to_owned(), "aia".to_owned()]),
            || format!("short names {:?}", names.short_names),
        )?;
        ensure(
            names.categories == Some(vec!["dataforest".to_owned()]),
            || format!("categories {:?}", names.categories),
        )?;
        let version = &crd.spec.versions[0];
        ensure(
            version.name == "v1alpha1" && version.served && version.storage,
            || format!("version {}", version.name),
        )?;
        ensure(
            version
                .subresources
                .as_ref()
                .is_some_and(|s| s.status.is_some()),
            || "no status subresource".to_owned(),
        )
    })
}

pub fn an_aiapp_can_be_created_read_back_and_given_a_status() -> Result<(), Failed> {
    fixture::run("aiapp-roundtrip", |ctx| async move {
        let aiapps: Api<AiApp> = Api::namespaced(ctx.client, &ctx.namespace);
        let created = aiapps
            .create(&PostParams::default(), &AiApp::new("train", sample_spec()?))
            .await?;
        let uid = created.meta().uid.clone().context("no uid")?;

        let read = aiapps.get("train").await?;
        ensure(read.spec.queue_name == "gpu", || {
            format!(
                "queueName should default to gpu, got {}",
                read.spec.queue_name
            )
        })?;
        ensure(
            read.spec.docker.image == "nvcr.io/nvidia/pytorch:24.01-py3",
            || format!("image {}", read.spec.docker.image),
        )?;
        ensure(read.status.is_none(), || {
            "a new AiApp has no status".to_owned()
        })?;

        let status = AiAppStatus {
            phase: Some(Phase::Accepted),
            id: Some("dN2vdAwrCMZdUzGKKiFy6Z".into()),
            state: Some("ACCEPTED".into()),
            final_status: Some("UNDEFINED".into()),
            observed_generation: read.meta().generation,
            ..AiAppStatus::default()
        };
        let patch = serde_json::json!({
            "apiVersion": "dataforest.dev/v1alpha1",
            "kind": "AiApp",
            "status": status,
        });
        aiapps
            .patch_status(
                "train",
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await?;

        let read = aiapps.get("train").await?;
        ensure(read.meta().uid.as_deref() == Some(uid.as_str()), || {
            "uid changed".to_owned()
        })?;
        ensure(read.status.as_ref() == Some(&status), || {
            format!("status read back {:?}, wrote {status:?}", read.status)
        })?;
        // The status subresource keeps status writes from touching the spec.
        ensure(read.spec == created.spec, || {
            "status write changed the spec".to_owned()
        })
    })
}

pub fn kubectl_shows_the_printer_columns_and_short_name() -> Result<(), Failed> {
    fixture::run("kubectl-columns", |ctx| async move {
        let aiapps: Api<AiApp> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
        let created = aiapps
            .create(
                &PostParams::default(),
                &AiApp::new("columns", sample_spec()?),
            )
            .await?;
        let status = AiAppStatus {
            phase: Some(Phase::Running),
            reason: Some("Unauthorized".into()),
            attempt: Some(2),
            id: Some("dN2vdAwrCMZdUzGKKiFy6Z".into()),
            state: Some("RUNNING".into()),
            final_status: Some("UNDEFINED".into()),
            message: Some("the keys were refused".to_owned()),
            observed_generation: created.meta().generation,
            ..AiAppStatus::default()
        };
        let patch = serde_json::json!({
            "apiVersion": "dataforest.dev/v1alpha1", "kind": "AiApp", "status": status,
        });
        aiapps
            .patch_status(
                "columns",
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await?;
        let table = |wide: bool| -> Result<Vec<Vec<String>>> {
            let mut kubectl = ctx.kubectl();
            // The shorter alias a person types.
            kubectl.args(["get", "aia", "-n", &ctx.namespace]);
            if wide {
                kubectl.args(["-o", "wide"]);
            }
            let output = kubectl.output()?;
            anyhow::ensure!(
                output.status.success(),
                "kubectl failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            // Columns are two or more blanks apart; a header may hold one blank.
            Ok(String::from_utf8_lossy(&output.stdout)
                .lines()
                .map(|line| {
                    line.split("  ")
                        .map(str::trim)
                        .filter(|cell| !cell.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .collect())
        };
        let narrow = table(false)?;
        ensure(
            narrow.first().map(Vec::as_slice)
                == Some(
                    &["NAME", "PHASE", "REASON", "GPUS", "ATTEMPT", "AGE"].map(String::from)[..],
                ),
            || format!("columns {narrow:?}"),
        )?;
        let row = narrow.get(1).cloned().unwrap_or_default();
        ensure(
            row.get(..5)
                == Some(&["columns", "Running", "Unauthorized", "1", "2"].map(String::from)[..]),
            || format!("row {row:?}"),
        )?;
        let wide = table(true)?;
        let header = wide.first().cloned().unwrap_or_default();
        ensure(
            header
                == [
                    "NAME",
                    "PHASE",
                    "REASON",
                    "GPUS",
                    "ATTEMPT",
                    "AGE",
                    "APP ID",
                    "STATE",
                    "FINAL STATUS",
                    "MESSAGE",
                ]
                .map(String::from),
            || format!("wide columns {header:?}"),
        )?;
        let row = wide.get(1).cloned().unwrap_or_default();
        ensure(
            row.get(6..)
                == Some(
                    &[
                        "dN2vdAwrCMZdUzGKKiFy6Z",
                        "RUNNING",
                        "UNDEFINED",
                        "the keys were refused",
                    ]
                    .map(String::from)[..],
                ),
            || format!("wide row {row:?}"),
        )
    })
}

pub fn kubectl_explain_says_what_each_phase_means() -> Result<(), Failed> {
    fixture::run("kubectl-explain", |ctx| async move {
        let explain = |field: &str| -> Result<String> {
            let output = ctx.kubectl().args(["explain", field]).output()?;
            anyhow::ensure!(
                output.status.success(),
                "kubectl explain {field} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        };
        let phase = explain("aiapp.status.phase")?;
        for meaning in [
            "- Pending: Not submitted yet",
            "- Unknown: Not an end",
            "- Suspended: `spec.suspend` is set",
            "- Killed: Terminal: the app was killed",
        ] {
            ensure(phase.contains(meaning), || {
                format!("no {meaning:?} in:\n{phase}")
            })?;
        }
        let policy = explain("aiapp.spec.deletionPolicy")?;
        ensure(policy.contains("- Orphan: Leave the app running"), || {
            format!("deletionPolicy values not explained:\n{policy}")
        })?;
        let outcome = explain("aiapp.status.attempts.outcome")?;
        ensure(outcome.contains("- NotListed: "), || {
            format!("attempt outcomes not explained:\n{outcome}")
        })
    })
}
