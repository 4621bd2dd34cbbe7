//! `dataforest-bench`: how fast the operator turns a burst (or a steady stream) of AiApps
//! into submitted apps, what each costs in API calls and Kubernetes requests, and the
//! operator's memory and CPU, on a fresh local control plane and the emulator per repeat.
//! Figures of all repeats are shown side by side as median and spread.

mod figures;
mod plots;
mod run;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use dataforest_common::duration::parse_duration;

use crate::figures::Summary;

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
    /// `burst` (as fast as the apiserver takes creates, 16 at once) or `rate:N` (N per
    /// second, steady).
    #[arg(long, value_parser = parse_arrival, default_value = "burst")]
    pub arrival: Arrival,
    /// Repeats, each on a fresh control plane.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// How long to watch the operator at rest once every AiApp has ended.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    pub rest: Duration,
    /// The operator binary (a release build: `make bench` builds it).
    #[arg(long, default_value = "target/release/dataforest-operator")]
    pub operator: PathBuf,
    /// Extra environment for the operator, `NAME=value` (e.g. `CONCURRENCY=32`).
    #[arg(long = "operator-env", value_parser = parse_env)]
    pub operator_env: Vec<(String, String)>,
    /// Where the figures of every repeat go, as JSON.
    #[arg(long, default_value = "target/bench/results.json")]
    pub json: PathBuf,
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
    anyhow::ensure!(
        args.operator.exists(),
        "{} does not exist: build it with `cargo build --release` (make bench does)",
        args.operator.display()
    );
    let assets = dataforest_testenv::Assets::locate()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let mut repeats = Vec::new();
    for repeat in 1..=args.repeats {
        eprintln!(
            "repeat {repeat} of {}: {} AiApps",
            args.repeats, args.aiapps
        );
        let figures = runtime.block_on(run::once(args, assets.clone()))?;
        eprintln!("{}", figures.one_line());
        repeats.push(figures);
    }
    let summary = Summary::of(args, &repeats);
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

#[cfg(test)]
mod tests {
    use super::*;

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
