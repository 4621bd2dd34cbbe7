//! What `apps list` and `apps get` print for a person: a table to scan, and one app's
//! fields with its containers. Pure: text in, text out.

use std::fmt::Write as _;

use k8s_openapi::jiff::Timestamp;

use crate::dataforest::{AppDetail, AppSummary};

/// Shown for a field Data Forest did not give.
pub const ABSENT: &str = "-";

const LIST_HEADER: [&str; 6] = ["ID", "NAME", "STATE", "FINAL STATUS", "STARTED", "FINISHED"];

/// The apps as a table: a header, then one row per app in the given order, columns as
/// wide as their widest cell and two spaces apart, no trailing blanks.
pub fn apps_table(apps: &[AppSummary]) -> String {
    let rows: Vec<[String; 6]> = apps
        .iter()
        .map(|app| {
            [
                text(app.id.as_deref()),
                text(app.name.as_deref()),
                text(app.state.as_deref()),
                text(app.final_status.as_deref()),
                time(app.started_at),
                time(app.finished_at),
            ]
        })
        .collect();
    let header = LIST_HEADER.map(str::to_owned);
    let mut widths = [0; 6];
    for row in std::iter::once(&header).chain(&rows) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut table = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(widths) {
            let _ = write!(line, "{cell:<width$}  ");
        }
        table.push_str(line.trim_end());
        table.push('\n');
    }
    table
}

/// One app as `field: value` lines in the API's own field names, then its containers,
/// each with its status and log URL.
pub fn app_detail(app: &AppDetail) -> String {
    let elapsed = app
        .elapsed_millis
        .and_then(|ms| u64::try_from(ms).ok())
        .map(|ms| dataforest_common::duration::display(std::time::Duration::from_millis(ms)));
    let fields = [
        ("id", text(app.id.as_deref())),
        ("name", text(app.name.as_deref())),
        ("appId", text(app.app_id.as_deref())),
        ("accountName", text(app.account_name.as_deref())),
        ("queueName", text(app.queue_name.as_deref())),
        ("state", text(app.state.as_deref())),
        ("finalStatus", text(app.final_status.as_deref())),
        ("startedAt", time(app.started_at)),
        ("finishedAt", time(app.finished_at)),
        ("elapsed", text(elapsed.as_deref())),
    ];
    let mut out = String::new();
    for (name, value) in fields {
        let _ = writeln!(out, "{:<13}{value}", format!("{name}:"));
    }
    if app.containers.is_empty() {
        out.push_str("containers:  none yet\n");
        return out;
    }
    out.push_str("containers:\n");
    for (key, container) in &app.containers {
        let _ = writeln!(out, "  {key}:");
        let fields = [
            ("component", text(container.component.as_deref())),
            ("status", text(container.status.as_deref())),
            ("dockerImage", text(container.docker_image.as_deref())),
            ("createdAt", time(container.created_at)),
            ("logUrl", text(container.log_url.as_deref())),
        ];
        for (name, value) in fields {
            let _ = writeln!(out, "    {:<13}{value}", format!("{name}:"));
        }
    }
    out
}

fn text(value: Option<&str>) -> String {
    value
        .filter(|v| !v.trim().is_empty())
        .unwrap_or(ABSENT)
        .to_owned()
}

/// A time as Data Forest gave it, in UTC (`2023-05-17T01:44:47.805Z`).
fn time(value: Option<Timestamp>) -> String {
    value.map_or_else(|| ABSENT.to_owned(), |ts| ts.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataforest::Container;

    fn summary(id: &str, name: &str, state: &str, finished: Option<&str>) -> AppSummary {
        AppSummary {
            id: Some(id.into()),
            name: Some(name.into()),
            state: Some(state.into()),
            final_status: Some("UNDEFINED".into()),
            started_at: Some("2026-01-02T03:04:05.678Z".parse().unwrap()),
            finished_at: finished.map(|f| f.parse().unwrap()),
            ..AppSummary::default()
        }
    }

    #[test]
    fn the_table_aligns_its_columns_and_shows_absent_times_as_a_dash() {
        let table = apps_table(&[
            summary("id1", "abc-1111-2222", "RUNNING", None),
            summary(
                "id22",
                "longername-3333-4444",
                "FINISHED",
                Some("2026-01-02T04:00:00Z"),
            ),
        ]);
        let expected = "\
ID    NAME                  STATE     FINAL STATUS  STARTED                   FINISHED
id1   abc-1111-2222         RUNNING   UNDEFINED     2026-01-02T03:04:05.678Z  -
id22  longername-3333-4444  FINISHED  UNDEFINED     2026-01-02T03:04:05.678Z  2026-01-02T04:00:00Z
";
        assert_eq!(table, expected);
    }

    #[test]
    fn an_item_without_fields_fills_every_cell_with_a_dash() {
        let table = apps_table(&[AppSummary::default()]);
        let row = table.lines().nth(1).unwrap();
        assert_eq!(row.split_whitespace().collect::<Vec<_>>(), vec!["-"; 6]);
    }

    #[test]
    fn the_detail_shows_each_container_with_its_status_and_log_url() {
        let mut app = AppDetail {
            id: Some("id1".into()),
            state: Some("RUNNING".into()),
            elapsed_millis: Some(90_000),
            ..AppDetail::default()
        };
        app.containers.insert(
            "container_1".into(),
            Container {
                status: Some("RUNNING".into()),
                log_url: Some("http://logs/id1".into()),
                ..Container::default()
            },
        );
        let text = app_detail(&app);
        assert!(text.starts_with("id:          id1\n"), "{text}");
        assert!(text.contains("state:       RUNNING\n"), "{text}");
        assert!(text.contains("finishedAt:  -\n"), "{text}");
        assert!(text.contains("elapsed:     1m 30s\n"), "{text}");
        assert!(text.contains("  container_1:\n"), "{text}");
        assert!(text.contains("    status:      RUNNING\n"), "{text}");
        assert!(
            text.contains("    logUrl:      http://logs/id1\n"),
            "{text}"
        );
    }

    #[test]
    fn an_app_without_containers_says_so() {
        let text = app_detail(&AppDetail::default());
        assert!(text.ends_with("containers:  none yet\n"), "{text}");
    }
}
