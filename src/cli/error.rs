//! Why `submit` or an `apps` command failed, and its exit status: 2 for bad input or
//! refused credentials (fix something, then run it again), 1 when the API failed.

use std::io;
use std::path::PathBuf;

use super::BINARY;
use super::api_args::{ACCESS_KEY_ENV, SECRET_KEY_ENV};
use super::apps::ACCOUNT_ID_ENV;
use crate::dataforest::validate::InvalidSpec;
use crate::dataforest::{ApiError, ClientBuildError};

/// Exit status of bad input: nothing sent, or the keys refused.
pub const EXIT_BAD_INPUT: u8 = 2;
/// Exit status of a failed API call.
pub const EXIT_API_FAILED: u8 = 1;

/// A failure of a command that calls the API. No variant holds a secret key.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("no access key: set {ACCESS_KEY_ENV} or pass --access-key")]
    MissingAccessKey,
    #[error("no secret key: set {SECRET_KEY_ENV} or pass --secret-key-file PATH (or --secret-key)")]
    MissingSecretKey,
    #[error("cannot read the secret key file {path}: {source}")]
    SecretKeyFile { path: PathBuf, source: io::Error },
    #[error("the secret key file {path} is empty")]
    EmptySecretKeyFile { path: PathBuf },
    #[error(
        "getList needs the account id: set {ACCOUNT_ID_ENV} or pass --account-id (the Data Forest account of the access key)"
    )]
    MissingAccountId,
    #[error("{id:?} is not a Data Forest app id (Base62, at most 22 characters)")]
    NotAnAppId { id: String },
    #[error(
        "nothing sent: kill ends app {id} and cannot be undone. Look at it first with `{BINARY} apps get {id}`, \
         then run `{BINARY} apps kill {id} --yes`"
    )]
    KillNotConfirmed { id: String },
    #[error("cannot read {source_name}: {source}")]
    ReadManifest {
        source_name: String,
        source: io::Error,
    },
    #[error("{source_name}: {problem}")]
    Manifest {
        source_name: String,
        problem: String,
    },
    #[error("{0}")]
    InvalidSpec(#[from] InvalidSpec),
    #[error("{0}")]
    Client(#[from] ClientBuildError),
    /// The gateway or Data Forest refused the keys (or, for getList, the account id).
    #[error(
        "Data Forest refused the credentials (access key {access_key}{}): {error}; check {ACCESS_KEY_ENV} / \
         {SECRET_KEY_ENV} (or --access-key / --secret-key-file){}",
        account_id.as_deref().map(|id| format!(", account id {id}")).unwrap_or_default(),
        if account_id.is_some() { ", and that the account id is the access key's own" } else { "" }
    )]
    Refused {
        access_key: String,
        account_id: Option<String>,
        // Boxed: an ApiError is large, and every Result of the CLI carries this type.
        error: Box<ApiError>,
    },
    /// Any other failed call; `hint` tells what to do about it.
    #[error("{error}{}", hint.as_deref().map(|h| format!(" ({h})")).unwrap_or_default())]
    Api {
        error: Box<ApiError>,
        hint: Option<String>,
    },
    #[error("cannot write the output: {0}")]
    Output(#[source] io::Error),
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] io::Error),
}

impl CliError {
    /// A failed call: refused keys are bad input; the rest is the API's failure, with
    /// `hint` (asked only then) telling what to do.
    pub fn from_api(
        error: ApiError,
        access_key: &str,
        account_id: Option<&str>,
        hint: impl FnOnce(&ApiError) -> Option<String>,
    ) -> Self {
        if error.is_unauthorized() {
            // Only Data Forest's own 403 can be about the account; the gateway's refusal
            // is about the keys alone.
            let about_account = matches!(error, ApiError::Service { .. });
            return CliError::Refused {
                access_key: access_key.to_owned(),
                account_id: account_id.filter(|_| about_account).map(str::to_owned),
                error: Box::new(error),
            };
        }
        let hint = hint(&error);
        CliError::Api {
            error: Box::new(error),
            hint,
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Api { .. }
            | CliError::Output(_)
            | CliError::Runtime(_)
            | CliError::Client(ClientBuildError::Http(_)) => EXIT_API_FAILED,
            _ => EXIT_BAD_INPUT,
        }
    }

    /// Whether stdout's reader went away (`| head`): it stopped reading by choice, so
    /// there is nothing to report.
    pub fn is_closed_output(&self) -> bool {
        matches!(self, CliError::Output(e) if e.kind() == io::ErrorKind::BrokenPipe)
    }

    /// The `x-ncp-trace-id` of the answer, for a support ticket.
    pub fn trace_id(&self) -> Option<&str> {
        match self {
            CliError::Refused { error, .. } | CliError::Api { error, .. } => error.trace_id(),
            _ => None,
        }
    }

    /// The one stderr line: `dataforest-operator COMMAND: message [x-ncp-trace-id ID]`.
    /// Line breaks an answer may carry are flattened so that the line stays one.
    pub fn report_line(&self, command: &str) -> String {
        let mut line = format!("{BINARY} {command}: {self}");
        if let Some(trace_id) = self.trace_id() {
            line.push_str(&format!(" [x-ncp-trace-id {trace_id}]"));
        }
        line.replace(['\r', '\n'], " ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn gateway(status: u16) -> ApiError {
        ApiError::Gateway {
            status,
            code: "200".into(),
            message: "Authentication Failed".into(),
            details: Some("Invalid authentication information.".into()),
            trace_id: Some("trace-1".into()),
        }
    }

    fn service(status: u16, message: &str) -> ApiError {
        ApiError::Service {
            status,
            message: message.into(),
            trace_id: None,
        }
    }

    #[test]
    fn refused_keys_are_bad_input_and_the_rest_of_the_api_failures_exit_1() {
        let cases = [
            (gateway(401), 2),
            (gateway(403), 2),
            (service(403, "not allowed to access"), 2),
            (gateway(429), 1),
            (gateway(503), 1),
            (service(500, "unexpected error"), 1),
            (service(404, "no such element"), 1),
            (service(400, "exceeded limit on resource quota"), 1),
            (
                ApiError::Timeout {
                    after: Duration::from_secs(1),
                },
                1,
            ),
        ];
        for (error, code) in cases {
            let text = error.to_string();
            let e = CliError::from_api(error, "AK1", None, |_| None);
            assert_eq!(e.exit_code(), code, "{text}");
        }
    }

    #[test]
    fn a_refusal_names_the_access_key_and_where_the_keys_come_from() {
        let e = CliError::from_api(gateway(401), "AKX", None, |_| Some("unused".into()));
        let line = e.report_line("apps list");
        assert!(line.starts_with(
            "dataforest-operator apps list: Data Forest refused the credentials (access key AKX)"
        ));
        assert!(line.contains("NCP_ACCESS_KEY / NCP_SECRET_KEY"), "{line}");
        assert!(line.ends_with("[x-ncp-trace-id trace-1]"), "{line}");
        assert!(!line.contains("unused"), "{line}");
    }

    #[test]
    fn a_gateway_refusal_leaves_the_account_id_out() {
        let e = CliError::from_api(gateway(401), "AKX", Some("acct2"), |_| None);
        assert!(!e.to_string().contains("acct2"), "{e}");
    }

    #[test]
    fn a_refused_account_id_is_named_too() {
        let e = CliError::from_api(
            service(403, "not allowed to access"),
            "AKX",
            Some("acct2"),
            |_| None,
        );
        let message = e.to_string();
        assert!(message.contains("account id acct2"), "{message}");
        assert!(message.contains("the access key's own"), "{message}");
    }

    #[test]
    fn an_api_failure_carries_its_hint_and_stays_on_one_line() {
        let error = service(500, "unexpected\nerror");
        let e = CliError::from_api(error, "AK1", None, |e| {
            e.outcome_unknown().then(|| "look first".to_owned())
        });
        let line = e.report_line("submit");
        assert_eq!(line.lines().count(), 1, "{line}");
        assert!(line.ends_with("(look first)"), "{line}");
        assert_eq!(e.exit_code(), 1);
    }

    #[test]
    fn input_problems_exit_2() {
        for e in [
            CliError::MissingAccessKey,
            CliError::MissingSecretKey,
            CliError::MissingAccountId,
            CliError::KillNotConfirmed { id: "x".into() },
            CliError::NotAnAppId { id: "-".into() },
        ] {
            assert_eq!(e.exit_code(), 2, "{e}");
        }
    }
}
