//! One emulated app: its lifecycle, computed from the clock (no timers, so a zero
//! timeline costs nothing and churn keeps memory flat), and its answers as Data Forest writes them.

use std::time::{Duration, Instant};

use jiff::{Timestamp, tz};
use serde::Serialize;
use serde_json::{Value, json};

use crate::request::SubmitBody;

/// Data Forest's way of saying "not finished": the epoch, in Korean time.
pub const NOT_FINISHED: &str = "1970-01-01T09:00:00+09:00";

/// Docker env var of a submitted app choosing its outcome: `SUCCEEDED` (default),
/// `FAILED` (state FAILED) or `FINISHED_FAILED` (state FINISHED, finalStatus FAILED).
pub const OUTCOME_ENV: &str = "DATAFOREST_EMULATOR_OUTCOME";
/// Docker env vars overriding the timeline of one app, in milliseconds.
pub const ACCEPTED_MS_ENV: &str = "DATAFOREST_EMULATOR_ACCEPTED_MS";
pub const RUNNING_MS_ENV: &str = "DATAFOREST_EMULATOR_RUNNING_MS";

/// How long an app stays in each live state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeline {
    pub accepted: Duration,
    pub running: Duration,
}

impl Default for Timeline {
    fn default() -> Self {
        Self {
            accepted: Duration::from_secs(1),
            running: Duration::from_secs(2),
        }
    }
}

impl Timeline {
    pub const ZERO: Timeline = Timeline {
        accepted: Duration::ZERO,
        running: Duration::ZERO,
    };
}

/// How an app that is not killed ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[clap(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Outcome {
    /// FINISHED / SUCCEEDED.
    #[default]
    Succeeded,
    /// FAILED / FAILED.
    Failed,
    /// FINISHED / FAILED, as YARN reports an application master that exits non-zero.
    FinishedFailed,
}

impl Outcome {
    pub(crate) fn parse(text: &str) -> Option<Outcome> {
        match text.trim().to_ascii_uppercase().as_str() {
            "SUCCEEDED" => Some(Outcome::Succeeded),
            "FAILED" => Some(Outcome::Failed),
            "FINISHED_FAILED" => Some(Outcome::FinishedFailed),
            _ => None,
        }
    }

    fn end_state(self) -> (&'static str, &'static str) {
        match self {
            Outcome::Succeeded => ("FINISHED", "SUCCEEDED"),
            Outcome::Failed => ("FAILED", "FAILED"),
            Outcome::FinishedFailed => ("FINISHED", "FAILED"),
        }
    }
}

/// The account an app belongs to.
#[derive(Clone, Debug)]
pub struct Owner {
    pub account_id: String,
    pub account_name: String,
}

/// One app held by the emulator.
#[derive(Clone, Debug)]
pub struct App {
    pub id: String,
    pub name: String,
    pub owner: Owner,
    pub(crate) request: SubmitBody,
    pub(crate) seq: u64,
    pub(crate) created: Instant,
    pub(crate) created_at: Timestamp,
    pub(crate) timeline: Timeline,
    pub(crate) outcome: Outcome,
    /// When the kill takes effect, as time from creation; later than the kill call
    /// itself under a `slowKill` fault, and the app is live until then.
    pub(crate) killed: Option<Duration>,
    pub(crate) listed_after: Instant,
}

/// Where an app is at one instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    pub state: &'static str,
    pub final_status: &'static str,
    /// Time from creation to the end, once ended.
    pub ended_after: Option<Duration>,
    pub running: bool,
}

impl App {
    pub fn status(&self, now: Instant) -> Status {
        let age = now.saturating_duration_since(self.created);
        let end = self.timeline.accepted + self.timeline.running;
        // A kill landing after the natural end (a slow one) is too late to change it.
        if let Some(at) = self.killed.filter(|at| *at < end && age >= *at) {
            return Status {
                state: "KILLED",
                final_status: "KILLED",
                ended_after: Some(at),
                running: false,
            };
        }
        if age < self.timeline.accepted {
            return Status {
                state: "ACCEPTED",
                final_status: "UNDEFINED",
                ended_after: None,
                running: false,
            };
        }
        if age < end {
            return Status {
                state: "RUNNING",
                final_status: "UNDEFINED",
                ended_after: None,
                running: true,
            };
        }
        let (state, final_status) = self.outcome.end_state();
        Status {
            state,
            final_status,
            ended_after: Some(end),
            running: false,
        }
    }

    pub fn is_terminal(&self, now: Instant) -> bool {
        self.status(now).ended_after.is_some()
    }

    /// Killed, but still live until the kill takes effect.
    pub fn kill_pending(&self, now: Instant) -> bool {
        self.killed.is_some() && !self.is_terminal(now)
    }

    fn yarn_app_id(&self, cluster: u64) -> String {
        format!("application_{cluster}_{:04}", self.seq)
    }

    fn container_id(&self, cluster: u64) -> String {
        format!("container_e01_{cluster}_{:04}_01_000002", self.seq)
    }

    /// Common fields of submit, getDetail and getList answers.
    fn common(&self, now: Instant) -> (Status, serde_json::Map<String, Value>) {
        let status = self.status(now);
        let age = now.saturating_duration_since(self.created);
        let elapsed = status.ended_after.unwrap_or(age);
        let finished_at = match status.ended_after {
            Some(after) => kst(self.created_at + after),
            None => NOT_FINISHED.to_owned(),
        };
        let mut m = serde_json::Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("accountName".into(), json!(self.owner.account_name));
        m.insert("name".into(), json!(self.name));
        m.insert("queueName".into(), json!(self.request.queue_name));
        m.insert("startedAt".into(), json!(kst(self.created_at)));
        m.insert("finishedAt".into(), json!(finished_at));
        m.insert("state".into(), json!(status.state));
        m.insert("finalStatus".into(), json!(status.final_status));
        (
            status,
            m.into_iter()
                .chain([("elapsedMillis".into(), json!(elapsed.as_millis() as u64))])
                .collect(),
        )
    }

    /// The submit answer: always ACCEPTED, as the documented example, whatever the timeline.
    pub fn submit_json(&self) -> Value {
        let (_, mut m) = self.common(self.created);
        m.insert("state".into(), json!("ACCEPTED"));
        m.insert("finalStatus".into(), json!("UNDEFINED"));
        m.insert("finishedAt".into(), json!(NOT_FINISHED));
        m.insert("elapsedMillis".into(), json!(0));
        m.insert("success".into(), json!(true));
        m.insert("message".into(), json!("success"));
        Value::Object(m)
    }

    pub fn detail_json(&self, now: Instant, cluster: u64, base_url: &str) -> Value {
        let (status, mut m) = self.common(now);
        m.insert("success".into(), json!(true));
        m.insert("message".into(), json!("success"));
        m.insert("appId".into(), json!(self.yarn_app_id(cluster)));
        let mut containers = serde_json::Map::new();
        let started_running = now.saturating_duration_since(self.created) >= self.timeline.accepted;
        if started_running && status.state != "KILLED"
            || status.state == "KILLED" && self.killed >= Some(self.timeline.accepted)
        {
            let container_id = self.container_id(cluster);
            containers.insert(
                container_id.clone(),
                json!({
                    "component": "worker",
                    "containerId": container_id,
                    "cpuCount": self.request.resource.cpu_count.unwrap_or(1),
                    "createdAt": kst(self.created_at + self.timeline.accepted),
                    "dockerImage": self.request.docker.image,
                    "logUrl": format!("{base_url}/_emulator/logs/{}", self.id),
                    "memoryMb": self.request.resource.memory_mb.unwrap_or(15 * 1024),
                    "status": if status.running { "RUNNING" } else { "COMPLETE" },
                }),
            );
        }
        m.insert("containers".into(), Value::Object(containers));
        Value::Object(m)
    }

    pub fn list_item_json(&self, now: Instant, cluster: u64) -> Value {
        let (status, mut m) = self.common(now);
        m.remove("elapsedMillis");
        let modified = match status.ended_after {
            Some(after) => self.created_at + after,
            None if status.running => self.created_at + self.timeline.accepted,
            None => self.created_at,
        };
        m.insert("appId".into(), json!(self.yarn_app_id(cluster)));
        m.insert("disabled".into(), json!(false));
        m.insert("modifiedAt".into(), json!(kst(modified)));
        m.insert(
            "workspaceName".into(),
            json!(self.request.ai_workspace_id.to_ascii_lowercase()),
        );
        Value::Object(m)
    }

    pub fn snapshot(&self, now: Instant) -> AppSnapshot {
        let status = self.status(now);
        AppSnapshot {
            id: self.id.clone(),
            name: self.name.clone(),
            name_prefix: self.request.name_prefix.clone(),
            account_id: self.owner.account_id.clone(),
            ai_workspace_id: self.request.ai_workspace_id.clone(),
            image: self.request.docker.image.clone(),
            env: self.request.docker.env.clone(),
            state: status.state.to_owned(),
            final_status: status.final_status.to_owned(),
            started_at: self.created_at,
            killed: self.killed.is_some(),
            listed: now >= self.listed_after,
        }
    }

    pub fn log_text(&self, now: Instant) -> String {
        let status = self.status(now);
        format!(
            "[emulator] app {} ({}) image {}\n[emulator] command: {}\n[emulator] state {} final status {}\n",
            self.id,
            self.name,
            self.request.docker.image,
            self.request.docker.command,
            status.state,
            status.final_status
        )
    }
}

/// What tests see of an app (`GET /_emulator/apps`, `EmulatorHandle::apps`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppSnapshot {
    pub id: String,
    pub name: String,
    pub name_prefix: String,
    pub account_id: String,
    pub ai_workspace_id: String,
    pub image: String,
    /// `docker.env` as submitted: what the container would get.
    pub env: std::collections::BTreeMap<String, String>,
    pub state: String,
    pub final_status: String,
    pub started_at: Timestamp,
    /// Kill was called while it was live.
    pub killed: bool,
    /// getList shows it (the listing lag is over).
    pub listed: bool,
}

/// RFC 3339 in Korean time with milliseconds, as Data Forest writes timestamps.
pub fn kst(ts: Timestamp) -> String {
    let offset = tz::TimeZone::fixed(tz::offset(9));
    ts.to_zoned(offset)
        .strftime("%Y-%m-%dT%H:%M:%S%.3f%:z")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_written_in_korean_time_with_milliseconds() {
        let ts: Timestamp = "2022-08-01T02:08:33.086Z".parse().unwrap();
        assert_eq!(kst(ts), "2022-08-01T11:08:33.086+09:00");
        assert_eq!(kst(Timestamp::UNIX_EPOCH), "1970-01-01T09:00:00.000+09:00");
    }
}
