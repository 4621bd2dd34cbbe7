//! `dataforest-operator apps list|get|kill`: the remote side, for a person resolving an
//! AiApp in `Unknown` or looking for an app left running. Reads and kill retry as the
//! controller's calls do; kill is sent only with `--yes`.

use std::io::Write;

use super::api_args::ApiArgs;
use super::{BINARY, CliError, render};
use crate::dataforest::{ApiError, AppSummary, RetryPolicy};
use crate::plan::is_app_id;

/// Environment variable holding the Data Forest account id, which getList needs.
pub const ACCOUNT_ID_ENV: &str = "NCP_ACCOUNT_ID";

#[derive(clap::Subcommand, Debug, Clone)]
pub enum AppsCommand {
    /// List the account's apps (getList), oldest first.
    List(ListArgs),
    /// Show one app (getDetail): its state and each container with its log URL.
    Get(GetArgs),
    /// Kill one app (kill); asks for --yes, since it cannot be undone.
    Kill(KillArgs),
}

impl AppsCommand {
    /// The subcommand's name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            AppsCommand::List(_) => "list",
            AppsCommand::Get(_) => "get",
            AppsCommand::Kill(_) => "kill",
        }
    }
}

/// How `apps list` prints.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ListFormat {
    /// Columns for a person.
    #[default]
    Table,
    /// The items as a JSON array.
    Json,
}

/// How `apps get` prints.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DetailFormat {
    /// Fields and containers for a person.
    #[default]
    Text,
    /// The whole parsed answer as JSON.
    Json,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ListArgs {
    /// Data Forest account id of the access key (getList answers per account).
    #[arg(long, env = ACCOUNT_ID_ENV, value_name = "ID")]
    pub account_id: Option<String>,
    /// Only apps named `PREFIX-…`: the namePrefix an AiApp's status.submission shows.
    #[arg(long, value_name = "PREFIX")]
    pub prefix: Option<String>,
    /// Only apps that have not ended (state not FINISHED, FAILED or KILLED).
    #[arg(long)]
    pub live: bool,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: ListFormat,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(clap::Args, Debug, Clone)]
pub struct GetArgs {
    /// The app's id (Base62), as `apps list` or an AiApp's status.id shows it.
    pub id: String,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: DetailFormat,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(clap::Args, Debug, Clone)]
pub struct KillArgs {
    /// The app's id (Base62).
    pub id: String,
    /// Confirm: kill ends the app and cannot be undone. Without it nothing is sent.
    #[arg(long)]
    pub yes: bool,
    #[command(flatten)]
    pub api: ApiArgs,
}

/// Runs one `apps` subcommand, writing its result to `out`.
pub async fn execute(command: &AppsCommand, out: &mut impl Write) -> Result<(), CliError> {
    match command {
        AppsCommand::List(args) => list(args, out).await,
        AppsCommand::Get(args) => get(args, out).await,
        AppsCommand::Kill(args) => kill(args, out).await,
    }
}

async fn list(args: &ListArgs, out: &mut impl Write) -> Result<(), CliError> {
    let account_id = args
        .account_id
        .as_deref()
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .ok_or(CliError::MissingAccountId)?;
    let api = args.api.connect(RetryPolicy::default())?;
    let apps = api
        .client
        .list(account_id)
        .await
        .map_err(|error| api.failure(error, Some(account_id), |_| None))?;
    let apps = select(apps, args.prefix.as_deref(), args.live);
    let text = match args.output {
        ListFormat::Json => json(&apps),
        ListFormat::Table if apps.is_empty() => {
            // The note goes to stderr, as kubectl's does, so that stdout stays a table.
            eprintln!(
                "{}",
                nothing_found(account_id, args.prefix.as_deref(), args.live)
            );
            return Ok(());
        }
        ListFormat::Table => render::apps_table(&apps),
    };
    out.write_all(text.as_bytes()).map_err(CliError::Output)
}

/// The apps named `prefix-…` (when given) and not ended (with `live`), by start time,
/// oldest first; apps without a start time last; ties by id.
pub fn select(mut apps: Vec<AppSummary>, prefix: Option<&str>, live: bool) -> Vec<AppSummary> {
    // The operator's prefixes never hold '-', so `abc-` and `abc` mean the same; an empty
    // one, like every empty value, counts as unset.
    let prefix = prefix.map(|p| p.trim().trim_end_matches('-'));
    if let Some(prefix) = prefix.filter(|p| !p.is_empty()) {
        let named = format!("{prefix}-");
        apps.retain(|app| app.name.as_deref().is_some_and(|n| n.starts_with(&named)));
    }
    if live {
        apps.retain(|app| !app.is_terminal());
    }
    apps.sort_by(|a, b| {
        (a.started_at.is_none(), a.started_at, &a.id).cmp(&(
            b.started_at.is_none(),
            b.started_at,
            &b.id,
        ))
    });
    apps
}

fn nothing_found(account_id: &str, prefix: Option<&str>, live: bool) -> String {
    let mut note = format!(
        "no {}apps in account {account_id}",
        if live { "live " } else { "" }
    );
    if let Some(prefix) = prefix {
        note.push_str(&format!(" named {}-…", prefix.trim_end_matches('-')));
    }
    note
}

async fn get(args: &GetArgs, out: &mut impl Write) -> Result<(), CliError> {
    let id = app_id(&args.id)?;
    let api = args.api.connect(RetryPolicy::default())?;
    let detail = api
        .client
        .get_detail(id)
        .await
        .map_err(|error| api.failure(error, None, not_found_hint))?;
    let text = match args.output {
        DetailFormat::Json => format!("{}\n", to_json(&detail)),
        DetailFormat::Text => render::app_detail(&detail),
    };
    out.write_all(text.as_bytes()).map_err(CliError::Output)
}

async fn kill(args: &KillArgs, out: &mut impl Write) -> Result<(), CliError> {
    let id = app_id(&args.id)?;
    if !args.yes {
        return Err(CliError::KillNotConfirmed { id: id.to_owned() });
    }
    let api = args.api.connect(RetryPolicy::default())?;
    let answer = api
        .client
        .kill(id)
        .await
        .map_err(|error| api.failure(error, None, not_found_hint))?;
    let said = answer.message.as_deref().unwrap_or("no message");
    writeln!(
        out,
        "kill sent for app {id}; Data Forest answered: {said}.\n\
         It may take a while to show the app KILLED: `{BINARY} apps get {id}` shows its state."
    )
    .map_err(CliError::Output)
}

/// An id worth sending: anything else cannot name an app, and nothing is sent for it.
fn app_id(id: &str) -> Result<&str, CliError> {
    let id = id.trim();
    if is_app_id(id) {
        Ok(id)
    } else {
        Err(CliError::NotAnAppId { id: id.to_owned() })
    }
}

fn not_found_hint(error: &ApiError) -> Option<String> {
    error.is_not_found().then(|| {
        "no such app for this access key: check the id, and that the keys are of the account that owns \
         the app; an app past Data Forest's retention is gone"
            .to_owned()
    })
}

fn json(apps: &[AppSummary]) -> String {
    format!("{}\n", to_json(apps))
}

fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string_pretty(value).expect("parsed answers always serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(id: &str, name: &str, state: &str, started: Option<&str>) -> AppSummary {
        AppSummary {
            id: Some(id.into()),
            name: Some(name.into()),
            state: Some(state.into()),
            started_at: started.map(|s| s.parse().unwrap()),
            ..AppSummary::default()
        }
    }

    fn ids(apps: &[AppSummary]) -> Vec<&str> {
        apps.iter().filter_map(|a| a.id.as_deref()).collect()
    }

    fn sample() -> Vec<AppSummary> {
        vec![
            app(
                "late",
                "abc-2222-2222",
                "RUNNING",
                Some("2026-01-02T00:00:00Z"),
            ),
            app("nostart", "abc-3333-3333", "ACCEPTED", None),
            app(
                "early",
                "abc-1111-1111",
                "FINISHED",
                Some("2026-01-01T00:00:00Z"),
            ),
            app(
                "longer",
                "abcd-4444-4444",
                "RUNNING",
                Some("2026-01-03T00:00:00Z"),
            ),
        ]
    }

    #[test]
    fn apps_are_sorted_by_start_time_with_unknown_starts_last() {
        assert_eq!(
            ids(&select(sample(), None, false)),
            ["early", "late", "longer", "nostart"]
        );
    }

    #[test]
    fn a_prefix_matches_the_name_up_to_its_dash_and_only_that() {
        let expected = ["early", "late", "nostart"];
        assert_eq!(ids(&select(sample(), Some("abc"), false)), expected);
        assert_eq!(ids(&select(sample(), Some("abc-"), false)), expected);
        assert_eq!(ids(&select(sample(), Some("abcd"), false)), ["longer"]);
        assert!(select(sample(), Some("ab"), false).is_empty());
        assert_eq!(select(sample(), Some(""), false).len(), 4);
    }

    #[test]
    fn live_keeps_only_apps_that_have_not_ended() {
        assert_eq!(
            ids(&select(sample(), Some("abc"), true)),
            ["late", "nostart"]
        );
    }

    #[test]
    fn only_a_base62_id_is_sent() {
        assert_eq!(
            app_id(" dN2vdAwrCMZdUzGKKiFy6Z ").unwrap(),
            "dN2vdAwrCMZdUzGKKiFy6Z"
        );
        for bad in ["", "a-b", "../x", "x".repeat(23).as_str()] {
            assert_eq!(app_id(bad).unwrap_err().exit_code(), 2, "{bad:?}");
        }
    }
}
