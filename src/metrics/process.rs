//! The standard `process_*` metrics (CPU time, memory, file descriptors, start time) that
//! Prometheus' client libraries export, read from `/proc/self` at each scrape.
//!
//! Hand-written because prometheus-client has no process collector and the crates that
//! add one bring a whole `/proc` parser for six numbers. Linux only: elsewhere, and for
//! any file that cannot be read, the metric is left out rather than reported as 0.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

/// Clock ticks per second of `/proc/<pid>/stat`'s times: `USER_HZ`, which the kernel
/// fixes at 100 for user space on every architecture Linux runs this binary on (reading
/// `sysconf(_SC_CLK_TCK)` would need `unsafe` or a libc binding for the same answer).
const TICKS_PER_SECOND: f64 = 100.0;

/// Reads the process' figures from `/proc` when Prometheus scrapes.
#[derive(Debug, Default)]
pub struct ProcessCollector;

/// What one scrape read; each figure is None when its source could not be read.
#[derive(Debug, Default, PartialEq)]
struct Figures {
    cpu_seconds: Option<f64>,
    resident_bytes: Option<i64>,
    virtual_bytes: Option<i64>,
    open_fds: Option<i64>,
    max_fds: Option<i64>,
    start_time_seconds: Option<f64>,
}

impl Figures {
    fn read() -> Figures {
        let read = |path: &str| std::fs::read_to_string(path).ok();
        let stat = read("/proc/self/stat").and_then(|text| Stat::parse(&text));
        let status = read("/proc/self/status");
        let boot_time = read("/proc/stat").and_then(|text| boot_time(&text));
        Figures {
            cpu_seconds: stat
                .as_ref()
                .map(|s| (s.utime + s.stime) as f64 / TICKS_PER_SECOND),
            resident_bytes: status.as_deref().and_then(|s| status_kib(s, "VmRSS:")),
            virtual_bytes: status.as_deref().and_then(|s| status_kib(s, "VmSize:")),
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|entries| i64::try_from(entries.count()).unwrap_or(i64::MAX)),
            max_fds: read("/proc/self/limits").and_then(|text| max_open_files(&text)),
            start_time_seconds: stat
                .zip(boot_time)
                .map(|(s, boot)| boot as f64 + s.starttime as f64 / TICKS_PER_SECOND),
        }
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let figures = Figures::read();
        if let Some(seconds) = figures.cpu_seconds {
            ConstCounter::new(seconds).encode(encoder.encode_descriptor(
                "process_cpu",
                "Total user and system CPU time spent in seconds",
                Some(&Unit::Seconds),
                MetricType::Counter,
            )?)?;
        }
        let gauges = [
            (
                "process_resident_memory",
                "Resident memory size in bytes",
                Some(Unit::Bytes),
                figures.resident_bytes,
            ),
            (
                "process_virtual_memory",
                "Virtual memory size in bytes",
                Some(Unit::Bytes),
                figures.virtual_bytes,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                None,
                figures.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors",
                None,
                figures.max_fds,
            ),
        ];
        for (name, help, unit, value) in gauges {
            if let Some(value) = value {
                ConstGauge::new(value).encode(encoder.encode_descriptor(
                    name,
                    help,
                    unit.as_ref(),
                    MetricType::Gauge,
                )?)?;
            }
        }
        if let Some(seconds) = figures.start_time_seconds {
            ConstGauge::new(seconds).encode(encoder.encode_descriptor(
                "process_start_time",
                "Start time of the process since unix epoch in seconds",
                Some(&Unit::Seconds),
                MetricType::Gauge,
            )?)?;
        }
        Ok(())
    }
}

/// The fields of `/proc/<pid>/stat` the metrics need, in clock ticks.
#[derive(Debug, PartialEq)]
struct Stat {
    utime: u64,
    stime: u64,
    starttime: u64,
}

impl Stat {
    /// Fields 14, 15 and 22 (utime, stime, starttime). The second field, the command name
    /// in parentheses, may hold spaces and parentheses itself: count from the last `)`.
    fn parse(text: &str) -> Option<Stat> {
        let after_name = &text[text.rfind(')')? + 1..];
        // Field 3 (state) is the first after the name.
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3)?.parse().ok();
        Some(Stat {
            utime: field(14)?,
            stime: field(15)?,
            starttime: field(22)?,
        })
    }
}

/// A `Name:   1234 kB` line of `/proc/<pid>/status`, in bytes.
fn status_kib(status: &str, name: &str) -> Option<i64> {
    let line = status.lines().find(|l| l.starts_with(name))?;
    let mut words = line[name.len()..].split_whitespace();
    let kib: i64 = words.next()?.parse().ok()?;
    (words.next() == Some("kB")).then_some(kib.saturating_mul(1024))
}

/// The soft limit on open files from `/proc/<pid>/limits`; `unlimited` as `i64::MAX`.
fn max_open_files(limits: &str) -> Option<i64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    if soft == "unlimited" {
        Some(i64::MAX)
    } else {
        soft.parse().ok()
    }
}

/// The boot time (`btime`, seconds since the epoch) from `/proc/stat`.
fn boot_time(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_end_of_the_command_name() {
        // A command name with a space and a parenthesis of its own.
        let text = "4242 (tokio (rt) x) S 1 4242 4242 0 -1 4194560 5000 0 0 0 \
                    250 75 0 0 20 0 9 0 123456 200000000 3000 18446744073709551615 \
                    1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(
            Stat::parse(text),
            Some(Stat {
                utime: 250,
                stime: 75,
                starttime: 123456
            })
        );
        assert_eq!(Stat::parse("4242 (truncated) S 1"), None);
        assert_eq!(Stat::parse("no name at all"), None);
    }

    #[test]
    fn status_sizes_are_read_in_bytes() {
        let status = "Name:\tdataforest-oper\nVmSize:\t  123456 kB\nVmRSS:\t   20480 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(20480 * 1024));
        assert_eq!(status_kib(status, "VmSize:"), Some(123456 * 1024));
        assert_eq!(status_kib(status, "VmSwap:"), None);
        assert_eq!(status_kib("VmRSS:\t12 pages\n", "VmRSS:"), None);
    }

    #[test]
    fn the_soft_open_files_limit_is_the_max() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max cpu time              unlimited            unlimited            seconds   \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(max_open_files(limits), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(max_open_files(unlimited), Some(i64::MAX));
        assert_eq!(max_open_files("Max processes 10 10 processes\n"), None);
    }

    #[test]
    fn boot_time_is_read_from_btime() {
        assert_eq!(
            boot_time("cpu  1 2 3\nbtime 1700000000\nprocesses 9\n"),
            Some(1_700_000_000)
        );
        assert_eq!(boot_time("cpu  1 2 3\n"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_reads_plausible_figures() {
        let figures = Figures::read();
        let rss = figures.resident_bytes.expect("VmRSS");
        let size = figures.virtual_bytes.expect("VmSize");
        assert!(rss > 0 && size >= rss, "rss {rss}, virtual {size}");
        let open = figures.open_fds.expect("open fds");
        assert!(open >= 3, "stdin, stdout and stderr at least: {open}");
        assert!(figures.max_fds.expect("max fds") >= open);
        assert!(figures.cpu_seconds.expect("cpu") >= 0.0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let started = figures.start_time_seconds.expect("start time");
        // This test process started within the last day, not at the epoch or in the future.
        assert!(
            started <= now + 1.0 && started > now - 86_400.0,
            "{started} vs {now}"
        );
    }
}
