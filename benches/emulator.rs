//! Emulator throughput and memory: signed submits per second over loopback HTTP, and the
//! process's resident memory while apps churn. Prints figures; asserts nothing about time.
//!
//! Run with `cargo bench --bench emulator` (`make bench`); under `cargo test` it runs one
//! small round. Knobs: `BENCH_SUBMITS` (per round, default
//! 20000), `BENCH_ROUNDS` (default 5), `BENCH_CONCURRENCY` (default 64).

use std::time::{Duration, Instant};

use dataforest_emulator::{Emulator, EmulatorConfig, Timeline};
use dataforest_operator::crd::{AiAppDocker, AiAppResource, AiAppSpec};
use dataforest_operator::dataforest::{
    ClientConfig, Credentials, DataForestClient, Operation, RetryPolicy, SubmitRequest,
};
use futures::StreamExt as _;

const AK: &str = "AKBENCH";
const SK: &str = "bench-secret";
const ACCOUNT: &str = "benchAccount0000000001";

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Resident set size of this process (emulator and client together), from procfs.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn request() -> SubmitRequest {
    let spec = AiAppSpec {
        ai_workspace_id: "6ZKSGoSJMMwctK257nxgiL".into(),
        name_prefix: None,
        queue_name: "gpu".into(),
        data: Default::default(),
        docker: AiAppDocker {
            image: "nvcr.io/nvidia/pytorch:24.01-py3".into(),
            command: "python train.py".into(),
            ..Default::default()
        },
        resource: AiAppResource {
            gpu_count: Some(1),
            ..Default::default()
        },
        credentials: None,
        deletion_policy: Default::default(),
        suspend: false,
        start_deadline_seconds: None,
        active_deadline_seconds: None,
        backoff_limit: 0,
    };
    SubmitRequest::from_spec(&spec, "bench")
}

async fn round(client: &DataForestClient, n: usize, concurrency: usize) -> (usize, Duration) {
    let body = request();
    let started = Instant::now();
    let ok = futures::stream::iter(0..n)
        .map(|_| async { client.submit(&body).await.is_ok() as usize })
        .buffer_unordered(concurrency)
        .fold(0, |sum, ok| async move { sum + ok })
        .await;
    (ok, started.elapsed())
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this as a smoke test
    // (one small round), which keeps `make test` quick and still proves the path works.
    let full = std::env::args().any(|arg| arg == "--bench");
    let submits = env_or("BENCH_SUBMITS", if full { 20_000 } else { 2_000 });
    let rounds = env_or("BENCH_ROUNDS", if full { 5 } else { 1 });
    let concurrency = env_or("BENCH_CONCURRENCY", 64);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        dataforest_operator::install_crypto_provider();
        let config = EmulatorConfig::default().with_account(AK, SK, ACCOUNT).with_timeline(Timeline::ZERO);
        let retain = config.retain_apps;
        let emulator = Emulator::start(config).await.expect("the emulator starts");
        let client_config = ClientConfig {
            endpoint: emulator.url(),
            retry: RetryPolicy::no_retries(),
            ..ClientConfig::default()
        };
        let client = DataForestClient::new(client_config, Credentials::new(AK, SK)).unwrap();
        round(&client, 1_000, concurrency).await;
        println!("emulator bench: {rounds} rounds of {submits} submits, concurrency {concurrency}, retain {retain} apps, 2 worker threads");
        println!("rss before churn: {:.1} MiB", rss_mib());
        for r in 1..=rounds {
            let (ok, elapsed) = round(&client, submits, concurrency).await;
            assert_eq!(ok, submits, "every submit to the emulator succeeds");
            let stats = emulator.stats();
            println!(
                "round {r}: {ok}/{submits} ok in {:.2}s = {:.0} submits/s; apps held {}, evicted {}; rss {:.1} MiB",
                elapsed.as_secs_f64(),
                ok as f64 / elapsed.as_secs_f64(),
                stats.apps_held,
                stats.apps_evicted,
                rss_mib()
            );
        }
        let stats = emulator.stats();
        println!(
            "total: {} submits ok, {} other outcomes; rss after churn: {:.1} MiB",
            stats.count(Operation::Submit, "ok"),
            stats.total(Operation::Submit) - stats.count(Operation::Submit, "ok"),
            rss_mib()
        );
        emulator.shutdown().await;
    });
}
