//! `dataforest-bench`: how fast the operator turns a burst (or a steady stream) of AiApps
//! into submitted apps, what each costs in API calls and Kubernetes requests, and the
//! operator's memory and CPU, on a fresh local control plane and the emulator per repeat,
//! against baseline operators run the same way in the same run. Figures of all repeats
//! are shown as median and spread, one column per operator.

mod figures;
mod operators;
mod plots;
mod run;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use dataforest_common::duration::parse_duration;

use crate::figures::Summary;
use crate::operators::{Kind, parse_operators};

/// Benchmark of dataforest-operator against a real kube-apiserver and the emulator.
#[derive(Parser, Debug, Clone)]
#[command(name = "dataforest-bench")]
pub struct Args {
    /// AiApps created per repeat.
    #[arg(long, default_value_t = 300)]
    pub aiapps: usize,
    /// The emulator's latency before every API answer.
    #[arg(long, value_parser = parse_duration, default_value = "0ms")]
    pub api_latency: Duration,
    /// How long each app runs once accepted (the emulator's timeline): the default keeps
    /// polls overlapping the submits; minutes show the cost of following many running apps.
    #[arg(long, value_parser = parse_duration, default_value = "3s")]
    pub running: Duration,
    /// `burst` (as fast as the apiserver takes creates, 16 at once) or `rate:N` (N per
    /// second, steady).
    #[arg(long, value_parser = parse_arrival, default_value = "burst")]
    pub arrival: Arrival,
    /// Repeats, each operator on a fresh control plane in each.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// The operators to compare, comma-separated: `dataforest` (ours, `--operator`),
    /// `controller-runtime` (bench/baseline/controller-runtime, built once by
    /// hack/baseline-controller-runtime.sh), `kopf` (bench/baseline/kopf, by
    /// hack/baseline-kopf.sh).
    #[arg(long, value_parser = parse_operator_list, default_value = "dataforest,controller-runtime")]
    pub operators: OperatorList,
    /// How long to watch the operator at rest once every AiApp has ended.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    pub rest: Duration,
    /// The operator binary (a release build: `make bench` builds it).
    #[arg(long, default_value = "target/release/dataforest-operator")]
    pub operator: PathBuf,
    /// Extra environment for our operator, `NAME=value` (e.g. `CONCURRENCY=32`); the
    /// baselines run with their defaults.
    #[arg(long = "operator-env", value_parser = parse_env)]
    pub operator_env: Vec<(String, String)>,
    /// Where the figures of every repeat go, as JSON.
    #[arg(long, default_value = "target/bench/results.json")]
    pub json: PathBuf,
}

/// The operators of `--operators`, in the order given.
#[derive(Clone, Debug)]
pub struct OperatorList(pub Vec<Kind>);

fn parse_operator_list(text: &str) -> Result<OperatorList, String> {
    parse_operators(text).map(OperatorList)
}

/// How AiApps arrive.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub enum Arrival {
    Burst,
    Rate(u32),
}

fn parse_arrival(text: &str) -> Result<Arrival, String> {
    match text.split_once(':') {
        None if text == "burst" => Ok(Arrival::Burst),
        Some(("rate", n)) => match n.parse::<u32>() {
            Ok(n) if n > 0 => Ok(Arrival::Rate(n)),
            _ => Err(format!("{text:?}: the rate must be a whole number above 0")),
        },
        _ => Err(format!("{text:?} is neither `burst` nor `rate:N`")),
    }
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{text:?} is not NAME=value"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    dataforest_operator::install_crypto_provider();
    match bench(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("dataforest-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn bench(args: &Args) -> anyhow::Result<()> {
    let kinds = &args.operators.0;
    // Every binary first: a baseline's first build takes minutes, and a failed one
    // should stop the run before any repeat.
    let binaries = kinds
        .iter()
        .map(|kind| operators::binary(*kind, &args.operator))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let assets = dataforest_testenv::Assets::locate()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let mut repeats = Vec::new();
    for repeat in 1..=args.repeats {
        for i in run_order(kinds.len(), repeat) {
            let kind = kinds[i];
            eprintln!(
                "repeat {repeat} of {}: {} on {} AiApps",
                args.repeats,
                kind.name(),
                args.aiapps
            );
            let figures = runtime
                .block_on(run::once(args, kind, &binaries[i], assets.clone()))
                .with_context(|| format!("repeat {repeat} of {}", kind.name()))?;
            eprintln!("{}", figures.one_line());
            repeats.push(figures);
        }
    }
    let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
    let summary = Summary::of(args, &names, &repeats);
    println!("{}", summary.table());
    if let Some(folder) = args.json.parent() {
        std::fs::create_dir_all(folder)?;
    }
    std::fs::write(&args.json, serde_json::to_string_pretty(&summary)?)?;
    eprintln!("figures of every repeat: {}", args.json.display());
    let folder = args.json.parent().unwrap_or(Path::new(""));
    let plots = plots::write_plots(&summary, folder).with_context(|| {
        format!(
            "the figures are in {}, but plotting them failed",
            args.json.display()
        )
    })?;
    for plot in plots {
        eprintln!("plot: {}", plot.display());
    }
    Ok(())
}

/// The order of the operators in repeat `repeat` (from 1): each repeat starts with the
/// next one, so that no operator always runs first on a cold machine.
fn run_order(operators: usize, repeat: usize) -> Vec<usize> {
    (0..operators)
        .map(|i| (i + repeat - 1) % operators)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_repeat_starts_with_the_next_operator() {
        assert_eq!(run_order(2, 1), [0, 1]);
        assert_eq!(run_order(2, 2), [1, 0]);
        assert_eq!(run_order(3, 3), [2, 0, 1]);
        assert_eq!(run_order(1, 5), [0]);
    }

    #[test]
    fn operators_default_to_ours_and_controller_runtime() {
        let args = Args::parse_from(["dataforest-bench"]);
        assert_eq!(
            args.operators.0,
            [Kind::Dataforest, Kind::ControllerRuntime]
        );
        let args = Args::parse_from(["dataforest-bench", "--operators", "dataforest"]);
        assert_eq!(args.operators.0, [Kind::Dataforest]);
        assert!(Args::try_parse_from(["dataforest-bench", "--operators", "nope"]).is_err());
    }

    #[test]
    fn arrivals_read_burst_or_a_positive_rate() {
        assert!(matches!(parse_arrival("burst"), Ok(Arrival::Burst)));
        assert!(matches!(parse_arrival("rate:50"), Ok(Arrival::Rate(50))));
        for bad in ["rate:0", "rate:x", "steady", "rate"] {
            assert!(parse_arrival(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_env("CONCURRENCY=32"),
            Ok(("CONCURRENCY".into(), "32".into()))
        );
        assert!(parse_env("CONCURRENCY").is_err());
    }
}
