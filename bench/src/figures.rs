//! The figures of one repeat of one operator, and of all repeats as median and spread,
//! the operators side by side.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::{Args, Arrival};

/// What one repeat of one operator measured. `None` is a figure the operator cannot give
/// (only ours has an Event queue; kopf serves no reconcile count).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Figures {
    /// Which operator: `dataforest`, `controller-runtime`, `kopf`.
    pub operator: String,
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
    pub events_sent_s: Option<f64>,
    /// Data Forest calls per AiApp, by operation.
    pub api_calls_per_aiapp: BTreeMap<String, f64>,
    /// Kubernetes requests per AiApp by resource (`aiapps`, `aiapps/status`, `events`…)
    /// and kind (`writes`, `reads`), from `apiserver_request_total`.
    pub kube_per_aiapp: BTreeMap<String, f64>,
    pub peak_rss_mb: f64,
    /// Events the operator dropped because its queue of Events to send was full.
    pub events_dropped: Option<f64>,
    /// The operator's CPU seconds, from its start to every AiApp ending.
    pub cpu_s: f64,
    /// kube-apiserver's and etcd's CPU over the same window, per AiApp, in ms: what the
    /// operator's requests (and the bench's creates and watch, the same for every
    /// operator) cost the control plane, which shares the machine's cores.
    pub apiserver_cpu_ms_per_aiapp: f64,
    pub etcd_cpu_ms_per_aiapp: f64,
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
    /// Until it holds the lease (or says it is ready, for an operator without one).
    pub leading_s: f64,
    /// Until its cache synced and it reconciled every AiApp once, by its own count.
    pub reconciled_s: Option<f64>,
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
            "  {}: {:.1} created/s, {:.1} submitted/s, create-to-id p50 {:.2}s p99 {:.2}s, peak RSS {:.1} MB, CPU {:.1}s",
            self.operator,
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

/// The median, min and max of one figure over an operator's repeats.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// `None` when no repeat gave the figure.
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut values = values.to_vec();
        values.sort_by(f64::total_cmp);
        Some(Spread {
            median: percentile(&values, 0.5),
            min: *values.first()?,
            max: *values.last()?,
        })
    }
}

/// Every repeat of every operator, and each figure as median [min – max] per operator.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub aiapps: usize,
    pub api_latency_ms: u128,
    /// How long each app ran once accepted.
    pub running_ms: u128,
    pub arrival: Arrival,
    /// Extra environment of dataforest-operator (the baselines run with their defaults).
    pub operator_env: Vec<(String, String)>,
    pub machine: String,
    /// The operators in the order of the table's columns.
    pub operators: Vec<String>,
    /// Every repeat of every operator; each names its operator.
    pub repeats: Vec<Figures>,
    /// Operator to figure name to its spread; `null` where the figure does not apply.
    pub spread: BTreeMap<String, BTreeMap<String, Option<Spread>>>,
}

/// The rows of one repeat, named with a sort key before the first space. `kube` lists
/// every Kubernetes request kind any repeat saw: one an operator never made is 0 for it.
fn rows(f: &Figures, kube: &BTreeSet<String>) -> Vec<(String, Option<f64>)> {
    let mut rows: Vec<(String, Option<f64>)> = Vec::new();
    let mut add = |name: &str, value: Option<f64>| rows.push((name.to_owned(), value));
    add("01 created/s", Some(f.create_rate));
    add(
        "02 submitted/s (first create to last id)",
        Some(f.submitted_rate),
    );
    add("03 create-to-id p50 s", Some(f.percentile(0.5)));
    add("04 create-to-id p95 s", Some(f.percentile(0.95)));
    add("05 create-to-id p99 s", Some(f.percentile(0.99)));
    add("06 create-to-id max s", Some(f.percentile(1.0)));
    add("07 until all terminal s", Some(f.all_terminal_s));
    add("07 until every Event sent s", f.events_sent_s);
    for (op, n) in &f.api_calls_per_aiapp {
        add(&format!("08 API {op} per AiApp"), Some(*n));
    }
    for what in kube {
        let n = f.kube_per_aiapp.get(what).copied().unwrap_or(0.0);
        add(&format!("09 kube {what} per AiApp"), Some(n));
    }
    add("09 Events dropped (queue full)", f.events_dropped);
    add("10 peak RSS MB", Some(f.peak_rss_mb));
    add("11 CPU s", Some(f.cpu_s));
    add(
        "11 kube-apiserver CPU ms per AiApp",
        Some(f.apiserver_cpu_ms_per_aiapp),
    );
    add("11 etcd CPU ms per AiApp", Some(f.etcd_cpu_ms_per_aiapp));
    add("12 at rest: API calls", Some(f.rest_api_calls as f64));
    add("13 at rest: kube writes", Some(f.rest_kube_writes as f64));
    add("14 at rest: CPU s", Some(f.rest_cpu_s));
    add(
        "15 apiserver capacity: status patches/s",
        Some(f.apiserver_status_patches_per_s),
    );
    add("16 restart: leading s", Some(f.restart.leading_s));
    add(
        "17 restart: every AiApp reconciled s",
        f.restart.reconciled_s,
    );
    add("18 restart: API calls", Some(f.restart.api_calls as f64));
    add(
        "19 restart: kube writes",
        Some(f.restart.kube_writes as f64),
    );
    rows
}

impl Summary {
    /// `operators` in column order; `repeats` of all of them, each naming its operator.
    pub fn of(args: &Args, operators: &[&str], repeats: &[Figures]) -> Summary {
        let kube: BTreeSet<String> = repeats
            .iter()
            .flat_map(|f| f.kube_per_aiapp.keys().cloned())
            .collect();
        let mut spread = BTreeMap::new();
        for operator in operators {
            let mut values: BTreeMap<String, Vec<f64>> = BTreeMap::new();
            for f in repeats.iter().filter(|f| f.operator == *operator) {
                for (name, value) in rows(f, &kube) {
                    // A figure that does not apply stays a row, with no values.
                    values.entry(name).or_default().extend(value);
                }
            }
            let figures = values
                .into_iter()
                .map(|(name, values)| (name, Spread::of(&values)))
                .collect();
            spread.insert((*operator).to_owned(), figures);
        }
        Summary {
            aiapps: args.aiapps,
            api_latency_ms: args.api_latency.as_millis(),
            running_ms: args.running.as_millis(),
            arrival: args.arrival,
            operator_env: args.operator_env.clone(),
            machine: machine(),
            operators: operators.iter().map(|o| (*o).to_owned()).collect(),
            repeats: repeats.to_vec(),
            spread,
        }
    }

    /// How many repeats `operator` had.
    pub fn repeats_of(&self, operator: &str) -> usize {
        self.repeats
            .iter()
            .filter(|f| f.operator == operator)
            .count()
    }

    /// One Markdown table, padded so that it also reads in a terminal: the figures as
    /// rows, one column per operator with the median and, over several repeats, the
    /// min–max in brackets; `n/a` where a figure does not apply to an operator.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let repeats: Vec<String> = self
            .operators
            .iter()
            .map(|o| format!("{o} {}", self.repeats_of(o)))
            .collect();
        let _ = writeln!(
            out,
            "{} AiApps, API latency {} ms, apps run {} ms, arrival {:?}, repeats per operator: {}, dataforest env {:?}; {}\n",
            self.aiapps,
            self.api_latency_ms,
            self.running_ms,
            self.arrival,
            repeats.join(", "),
            self.operator_env,
            self.machine
        );
        let names: BTreeSet<&String> = self.spread.values().flat_map(|f| f.keys()).collect();
        let mut table: Vec<Vec<String>> = Vec::new();
        let mut header = vec!["figure".to_owned()];
        header.extend(self.operators.iter().map(|o| {
            if self.repeats_of(o) > 1 {
                format!("{o}: median (min–max)")
            } else {
                o.clone()
            }
        }));
        table.push(header);
        for name in names {
            let mut row = vec![
                name.split_once(' ')
                    .map_or(name.as_str(), |(_, n)| n)
                    .to_owned(),
            ];
            for operator in &self.operators {
                let spread = self.spread.get(operator).and_then(|f| f.get(name)).copied();
                row.push(cell(spread.flatten()));
            }
            table.push(row);
        }
        let columns = table[0].len();
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                table
                    .iter()
                    .map(|r| r[c].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: Vec<String>| {
            let cells: Vec<String> = cells
                .into_iter()
                .zip(&widths)
                .map(|(text, width)| format!("{text:<width$}"))
                .collect();
            format!("| {} |", cells.join(" | "))
        };
        let mut rows = table.into_iter();
        if let Some(header) = rows.next() {
            let _ = writeln!(out, "{}", line(header));
            let _ = writeln!(
                out,
                "{}",
                line(widths.iter().map(|w| "-".repeat((*w).max(3))).collect())
            );
        }
        for row in rows {
            let _ = writeln!(out, "{}", line(row));
        }
        out
    }
}

/// `75.91`, `75.91 (69.60–78.83)` when repeats differ, or `n/a`.
fn cell(spread: Option<Spread>) -> String {
    match spread {
        None => "n/a".to_owned(),
        Some(s) if s.min == s.max => format!("{:.2}", s.median),
        Some(s) => format!("{:.2} ({:.2}–{:.2})", s.median, s.min, s.max),
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

    fn args() -> Args {
        use clap::Parser as _;
        Args::parse_from(["dataforest-bench"])
    }

    fn figures(operator: &str, submitted_rate: f64, kube: &[(&str, f64)]) -> Figures {
        Figures {
            operator: operator.to_owned(),
            aiapps: 10,
            submitted_rate,
            kube_per_aiapp: kube.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
            ..Figures::default()
        }
    }

    /// The cells of the table's row whose figure is `name`.
    fn row(table: &str, name: &str) -> Vec<String> {
        let line = table
            .lines()
            .find(|l| l.trim_start_matches("| ").starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no row {name:?} in\n{table}"));
        line.trim_matches(|c| c == '|' || c == ' ')
            .split(" | ")
            .skip(1)
            .map(|c| c.trim().to_owned())
            .collect()
    }

    #[test]
    fn the_table_has_a_column_per_operator_with_median_and_spread() {
        let repeats = [
            figures("dataforest", 70.0, &[("aiapps writes", 2.0)]),
            figures("controller-runtime", 30.0, &[("events writes", 3.0)]),
            figures("dataforest", 80.0, &[("aiapps writes", 2.0)]),
            figures("controller-runtime", 30.0, &[("events writes", 3.0)]),
            figures("dataforest", 75.0, &[("aiapps writes", 2.0)]),
        ];
        let summary = Summary::of(&args(), &["dataforest", "controller-runtime"], &repeats);
        let table = summary.table();
        let header = table.lines().nth(2).expect("a header");
        assert!(header.contains("dataforest: median (min–max)"), "{header}");
        assert!(
            header.contains("controller-runtime: median (min–max)"),
            "{header}"
        );
        assert!(header.find("dataforest").unwrap() < header.find("controller-runtime").unwrap());
        assert_eq!(
            row(&table, "submitted/s (first create to last id)"),
            ["75.00 (70.00–80.00)", "30.00"]
        );
        // A request kind one operator never made is 0 for it, not missing.
        assert_eq!(
            row(&table, "kube events writes per AiApp"),
            ["0.00", "3.00"]
        );
        assert_eq!(
            row(&table, "kube aiapps writes per AiApp"),
            ["2.00", "0.00"]
        );
        // What an operator cannot measure says so.
        assert_eq!(row(&table, "Events dropped (queue full)"), ["n/a", "n/a"]);
        assert_eq!(
            row(&table, "restart: every AiApp reconciled s"),
            ["n/a", "n/a"]
        );
        // Padded: every line of the table is as long as the header.
        let width = header.chars().count();
        for line in table.lines().skip(2) {
            assert_eq!(line.chars().count(), width, "{line}");
        }
        // Markdown: a separator of dashes under the header.
        let separator = table.lines().nth(3).unwrap();
        assert!(separator.starts_with("| ---"), "{separator}");
        assert!(
            separator.chars().all(|c| matches!(c, '|' | '-' | ' ')),
            "{separator}"
        );
    }

    #[test]
    fn the_json_keeps_every_repeat_and_null_for_what_does_not_apply() {
        let mut ours = figures("dataforest", 70.0, &[]);
        ours.events_dropped = Some(0.0);
        let repeats = [ours, figures("controller-runtime", 30.0, &[])];
        let summary = Summary::of(&args(), &["dataforest", "controller-runtime"], &repeats);
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(json["repeats"].as_array().unwrap().len(), 2);
        assert_eq!(json["repeats"][1]["operator"], "controller-runtime");
        let dropped = "09 Events dropped (queue full)";
        assert_eq!(json["spread"]["dataforest"][dropped]["median"], 0.0);
        assert!(json["spread"]["controller-runtime"][dropped].is_null());
        let table = summary.table();
        assert_eq!(row(&table, "Events dropped (queue full)"), ["0.00", "n/a"]);
    }
}
