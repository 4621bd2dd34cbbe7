//! The figures of one repeat, and of all repeats as median and spread.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::{Args, Arrival};

/// What one repeat measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Figures {
    pub aiapps: usize,
    /// AiApps created per second, first create to last.
    pub create_rate: f64,
    /// AiApps per second from the first create to the last `status.id`.
    pub submitted_rate: f64,
    /// Create to `status.id`, in seconds, sorted.
    pub create_to_id: Vec<f64>,
    /// When each AiApp first showed `status.id`, in seconds after the first create, sorted.
    pub id_at_s: Vec<f64>,
    /// First create to the last AiApp ending.
    pub all_terminal_s: f64,
    /// First create to the operator's queue of Events empty.
    pub events_sent_s: f64,
    /// Data Forest calls per AiApp, by operation.
    pub api_calls_per_aiapp: BTreeMap<String, f64>,
    /// Kubernetes requests per AiApp by resource (`aiapps`, `aiapps/status`, `events`…)
    /// and kind (`writes`, `reads`), from `apiserver_request_total`.
    pub kube_per_aiapp: BTreeMap<String, f64>,
    pub peak_rss_mb: f64,
    /// Events the operator dropped because its queue of Events to send was full.
    pub events_dropped: f64,
    /// The operator's CPU seconds, from its start to every AiApp ending.
    pub cpu_s: f64,
    /// At rest, every AiApp ended: what happened over the rest window.
    pub rest_api_calls: u64,
    pub rest_kube_writes: u64,
    pub rest_cpu_s: f64,
    /// Status patches per second the apiserver took from a plain client with 16
    /// requests at once, the operator stopped: what any operator could get.
    pub apiserver_status_patches_per_s: f64,
    /// A new operator process over the ended AiApps.
    pub restart: Restart,
}

/// A restart over ended AiApps, timed from the new process's start.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Restart {
    /// Until it holds the lease.
    pub leading_s: f64,
    /// Until its cache synced and it reconciled every AiApp once.
    pub reconciled_s: f64,
    /// Data Forest calls and Kubernetes writes (leases aside) it made meanwhile: 0 and 0.
    pub api_calls: u64,
    pub kube_writes: u64,
}

impl Figures {
    pub fn percentile(&self, q: f64) -> f64 {
        percentile(&self.create_to_id, q)
    }

    pub fn one_line(&self) -> String {
        format!(
            "  {:.1} created/s, {:.1} submitted/s, create-to-id p50 {:.2}s p99 {:.2}s, peak RSS {:.1} MB, CPU {:.1}s",
            self.create_rate,
            self.submitted_rate,
            self.percentile(0.5),
            self.percentile(0.99),
            self.peak_rss_mb,
            self.cpu_s
        )
    }
}

/// The `q` quantile of sorted `values` (nearest rank); 0 when empty.
pub fn percentile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let rank = (q * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

/// Every repeat, and each figure as median [min – max] across them.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub aiapps: usize,
    pub api_latency_ms: u128,
    pub arrival: Arrival,
    pub operator_env: Vec<(String, String)>,
    pub machine: String,
    pub repeats: Vec<Figures>,
    /// Figure name to (median, min, max).
    pub spread: BTreeMap<String, (f64, f64, f64)>,
}

impl Summary {
    pub fn of(args: &Args, repeats: &[Figures]) -> Summary {
        let mut rows: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        let mut add = |name: &str, value: f64| rows.entry(name.to_owned()).or_default().push(value);
        for f in repeats {
            add("01 created/s", f.create_rate);
            add("02 submitted/s (first create to last id)", f.submitted_rate);
            add("03 create-to-id p50 s", f.percentile(0.5));
            add("04 create-to-id p95 s", f.percentile(0.95));
            add("05 create-to-id p99 s", f.percentile(0.99));
            add("06 create-to-id max s", f.percentile(1.0));
            add("07 until all terminal s", f.all_terminal_s);
            add("07 until every Event sent s", f.events_sent_s);
            for (op, n) in &f.api_calls_per_aiapp {
                add(&format!("08 API {op} per AiApp"), *n);
            }
            for (what, n) in &f.kube_per_aiapp {
                add(&format!("09 kube {what} per AiApp"), *n);
            }
            add("09 Events dropped (queue full)", f.events_dropped);
            add("10 peak RSS MB", f.peak_rss_mb);
            add("11 CPU s", f.cpu_s);
            add("12 at rest: API calls", f.rest_api_calls as f64);
            add("13 at rest: kube writes", f.rest_kube_writes as f64);
            add("14 at rest: CPU s", f.rest_cpu_s);
            add(
                "15 apiserver capacity: status patches/s",
                f.apiserver_status_patches_per_s,
            );
            add("16 restart: leading s", f.restart.leading_s);
            add(
                "17 restart: every AiApp reconciled s",
                f.restart.reconciled_s,
            );
            add("18 restart: API calls", f.restart.api_calls as f64);
            add("19 restart: kube writes", f.restart.kube_writes as f64);
        }
        let spread = rows
            .into_iter()
            .map(|(name, mut values)| {
                values.sort_by(f64::total_cmp);
                let median = percentile(&values, 0.5);
                (name, (median, values[0], values[values.len() - 1]))
            })
            .collect();
        Summary {
            aiapps: args.aiapps,
            api_latency_ms: args.api_latency.as_millis(),
            arrival: args.arrival,
            operator_env: args.operator_env.clone(),
            machine: machine(),
            repeats: repeats.to_vec(),
            spread,
        }
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} AiApps, API latency {} ms, arrival {:?}, {} repeats, operator env {:?}; {}\n",
            self.aiapps,
            self.api_latency_ms,
            self.arrival,
            self.repeats.len(),
            self.operator_env,
            self.machine
        );
        let _ = writeln!(
            out,
            "| figure | median | min | max |\n| --- | --- | --- | --- |"
        );
        for (name, (median, min, max)) in &self.spread {
            let name = name.split_once(' ').map_or(name.as_str(), |(_, n)| n);
            let _ = writeln!(out, "| {name} | {median:.2} | {min:.2} | {max:.2} |");
        }
        out
    }
}

/// CPU model and count, for the record.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    format!("{cores} cores, {model}")
}

/// Seconds of a duration, for figures.
pub fn secs(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 0.5), 50.0);
        assert_eq!(percentile(&values, 0.99), 99.0);
        assert_eq!(percentile(&values, 1.0), 100.0);
        assert_eq!(percentile(&values, 0.0), 1.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
