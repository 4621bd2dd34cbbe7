//! The operators the bench compares: ours and the baselines (a plain controller-runtime
//! operator, a kopf one), where each binary comes from, and how each shows that it leads
//! and that it has reconciled, since only ours has the `dataforest_operator_*` metrics.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context;
use serde::Serialize;

/// One operator under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// dataforest-operator, this repository's.
    Dataforest,
    /// bench/baseline/controller-runtime: Go, 16 workers, no marker protocol.
    ControllerRuntime,
    /// bench/baseline/kopf: Python, kopf.
    Kopf,
}

/// How the bench knows a started operator is ready to reconcile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// It holds this Lease (in the watched namespace) under its POD_NAME.
    Lease(&'static str),
    /// It printed a line starting with this on stdout (kopf has no Lease).
    Line(&'static str),
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Dataforest, Kind::ControllerRuntime, Kind::Kopf];

    /// The name on the command line, in tables, JSON and plots.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Dataforest => "dataforest",
            Kind::ControllerRuntime => "controller-runtime",
            Kind::Kopf => "kopf",
        }
    }

    /// The hack script that builds a baseline and prints its path; ours is `--operator`.
    fn script(self) -> Option<&'static str> {
        match self {
            Kind::Dataforest => None,
            Kind::ControllerRuntime => Some("hack/baseline-controller-runtime.sh"),
            Kind::Kopf => Some("hack/baseline-kopf.sh"),
        }
    }

    pub fn readiness(self) -> Readiness {
        match self {
            Kind::Dataforest => Readiness::Lease("dataforest-operator"),
            Kind::ControllerRuntime => Readiness::Lease("dataforest-baseline-controller-runtime"),
            Kind::Kopf => Readiness::Line("dataforest-kopf-baseline ready"),
        }
    }

    /// The metric (summed over its labels) that counts finished reconciles, if the
    /// operator serves one: the restart is "done" when it reaches the AiApps' count.
    pub fn reconciles_metric(self) -> Option<&'static str> {
        match self {
            Kind::Dataforest => Some("dataforest_operator_reconcile_duration_seconds_count"),
            Kind::ControllerRuntime => Some("controller_runtime_reconcile_total"),
            Kind::Kopf => None,
        }
    }

    /// Whether Events go through a queue with `dataforest_operator_events_queued` and
    /// `dataforest_operator_events_dropped_total` (ours only).
    pub fn has_event_queue(self) -> bool {
        self == Kind::Dataforest
    }

    /// The process's arguments: ours has subcommands, the baselines take none.
    pub fn args(self) -> &'static [&'static str] {
        match self {
            Kind::Dataforest => &["run"],
            Kind::ControllerRuntime | Kind::Kopf => &[],
        }
    }
}

/// Reads `--operators`: a comma-separated list of known names, each at most once.
pub fn parse_operators(text: &str) -> Result<Vec<Kind>, String> {
    let mut kinds = Vec::new();
    for name in text.split(',').map(str::trim) {
        let kind = Kind::ALL
            .into_iter()
            .find(|k| k.name() == name)
            .ok_or_else(|| {
                let known: Vec<_> = Kind::ALL.iter().map(|k| k.name()).collect();
                format!("{name:?} is not an operator; known: {}", known.join(", "))
            })?;
        if kinds.contains(&kind) {
            return Err(format!("{name} is named twice"));
        }
        kinds.push(kind);
    }
    Ok(kinds)
}

/// The executable of `kind`: `ours` for dataforest-operator, else what the baseline's
/// hack script prints (it builds the baseline once; its progress shows on stderr).
pub fn binary(kind: Kind, ours: &Path) -> anyhow::Result<PathBuf> {
    let Some(script) = kind.script() else {
        anyhow::ensure!(
            ours.exists(),
            "{} does not exist: build it with `cargo build --release` (make bench does)",
            ours.display()
        );
        return Ok(ours.to_owned());
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(script);
    anyhow::ensure!(
        script.exists(),
        "{} does not exist: the {} baseline is not in this checkout",
        script.display(),
        kind.name()
    );
    let output = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    anyhow::ensure!(
        output.status.success(),
        "{} failed ({})",
        script.display(),
        output.status
    );
    let path = PathBuf::from(String::from_utf8(output.stdout)?.trim());
    anyhow::ensure!(
        path.exists(),
        "{} printed {:?}, which does not exist",
        script.display(),
        path
    );
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_are_a_comma_list_of_known_names() {
        assert_eq!(
            parse_operators("dataforest,controller-runtime"),
            Ok(vec![Kind::Dataforest, Kind::ControllerRuntime])
        );
        assert_eq!(parse_operators("dataforest"), Ok(vec![Kind::Dataforest]));
        assert_eq!(
            parse_operators("kopf, dataforest"),
            Ok(vec![Kind::Kopf, Kind::Dataforest])
        );
        let unknown = parse_operators("dataforest,operator-sdk").unwrap_err();
        assert!(unknown.contains("operator-sdk"), "{unknown}");
        assert!(unknown.contains("controller-runtime"), "{unknown}");
        assert!(parse_operators("").is_err());
        assert!(parse_operators("dataforest,").is_err());
        let twice = parse_operators("kopf,kopf").unwrap_err();
        assert!(twice.contains("twice"), "{twice}");
    }

    #[test]
    fn only_ours_has_an_event_queue_and_kopf_no_reconcile_count() {
        assert!(Kind::Dataforest.has_event_queue());
        assert!(!Kind::ControllerRuntime.has_event_queue());
        assert_eq!(Kind::Kopf.reconciles_metric(), None);
        assert_eq!(
            Kind::ControllerRuntime.reconciles_metric(),
            Some("controller_runtime_reconcile_total")
        );
    }
}
