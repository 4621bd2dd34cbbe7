//! `dataforest-emulator`: flags, credentials file, and serving until a signal.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use crate::{Emulator, EmulatorAccount, EmulatorConfig, EmulatorError, Faults, Outcome, Timeline};

/// Flags of the `emulator` subcommand.
#[derive(clap::Args, Clone)]
pub struct EmulatorArgs {
    /// Address to serve on; port 0 picks a free port (the URL is printed on stdout).
    #[arg(
        long,
        env = "DATAFOREST_EMULATOR_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: SocketAddr,
    /// An accepted key pair and its account: ACCESS_KEY:SECRET_KEY:ACCOUNT_ID[:ACCOUNT_NAME].
    /// Repeatable; the environment variable takes a comma-separated list.
    #[arg(
        long = "credential",
        env = "DATAFOREST_EMULATOR_CREDENTIALS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub credentials: Vec<String>,
    /// File with one ACCESS_KEY:SECRET_KEY:ACCOUNT_ID[:ACCOUNT_NAME] per line ('#' starts a comment).
    #[arg(long)]
    pub credentials_file: Option<PathBuf>,
    /// How long a new app stays ACCEPTED, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub accepted_ms: u64,
    /// How long it then stays RUNNING, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub running_ms: u64,
    /// How apps end unless their docker env sets DATAFOREST_EMULATOR_OUTCOME.
    #[arg(long, value_enum, default_value_t = Outcome::Succeeded)]
    pub outcome: Outcome,
    /// Ended apps kept (oldest forgotten first); live apps are always kept.
    #[arg(long, default_value_t = 10_000)]
    pub retain_apps: usize,
    /// Delay before a new app shows in getList, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub listing_lag_ms: u64,
    /// Delay added to every API answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Faults at start, as the JSON of `POST /_emulator/faults` (see docs/emulator.md).
    #[arg(long)]
    pub faults: Option<String>,
    /// Largest accepted distance between a request's timestamp and the clock, in seconds.
    #[arg(long, default_value_t = 300)]
    pub max_clock_skew_secs: u64,
    /// How far the emulated gateway's clock is ahead of the true time (negative: behind),
    /// in milliseconds: its timestamp check and its `Date` headers use it.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub clock_offset_ms: i64,
}

/// Shows how many credentials were given, never what they are.
impl std::fmt::Debug for EmulatorArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorArgs")
            .field("listen", &self.listen)
            .field(
                "credentials",
                &format_args!("<{} redacted>", self.credentials.len()),
            )
            .field("credentials_file", &self.credentials_file)
            .field("faults", &self.faults)
            .finish_non_exhaustive()
    }
}

/// Bad flags or files; the message names the problem and never holds a secret.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorArgsError {
    #[error("cannot read credentials file {path}: {source}")]
    ReadCredentials {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("credentials file {path}, line {line}: {problem}")]
    BadCredentialLine {
        path: PathBuf,
        line: usize,
        problem: String,
    },
    /// Parsed here rather than by clap, whose error would echo the secret.
    #[error("--credential number {index}: {problem}")]
    BadCredential { index: usize, problem: String },
    #[error("--faults: {0}")]
    BadFaults(String),
}

impl EmulatorArgs {
    /// Builds the emulator's configuration from the flags and the credentials file.
    pub fn config(&self) -> Result<EmulatorConfig, EmulatorArgsError> {
        let mut accounts = self
            .credentials
            .iter()
            .enumerate()
            .map(|(i, text)| {
                text.parse::<EmulatorAccount>().map_err(|problem| {
                    EmulatorArgsError::BadCredential {
                        index: i + 1,
                        problem,
                    }
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(path) = &self.credentials_file {
            accounts.extend(read_credentials_file(path)?);
        }
        let mut faults = match &self.faults {
            Some(json) => serde_json::from_str::<Faults>(json)
                .map_err(|e| EmulatorArgsError::BadFaults(e.to_string()))?,
            None => Faults::default(),
        };
        if self.latency_ms > 0 {
            faults.latency_ms = self.latency_ms;
        }
        if self.listing_lag_ms > 0 {
            faults.listing_lag_ms = self.listing_lag_ms;
        }
        if self.clock_offset_ms != 0 {
            faults.clock_offset_ms = self.clock_offset_ms;
        }
        faults
            .validate()
            .map_err(|e| EmulatorArgsError::BadFaults(e.0))?;
        Ok(EmulatorConfig {
            listen: self.listen,
            accounts,
            timeline: Timeline {
                accepted: Duration::from_millis(self.accepted_ms),
                running: Duration::from_millis(self.running_ms),
            },
            outcome: self.outcome,
            faults,
            retain_apps: self.retain_apps,
            max_clock_skew: Duration::from_secs(self.max_clock_skew_secs),
        })
    }
}

fn read_credentials_file(path: &Path) -> Result<Vec<EmulatorAccount>, EmulatorArgsError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| EmulatorArgsError::ReadCredentials {
            path: path.to_owned(),
            source,
        })?;
    text.lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.split('#').next().unwrap_or_default().trim()))
        .filter(|(_, line)| !line.is_empty())
        .map(|(line, text)| {
            text.parse()
                .map_err(|problem| EmulatorArgsError::BadCredentialLine {
                    path: path.to_owned(),
                    line,
                    problem,
                })
        })
        .collect()
}

/// Serves until SIGINT or SIGTERM. Exit status 2 on bad flags, 1 if serving fails.
pub fn run(args: &EmulatorArgs) -> ExitCode {
    let config = match args.config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("dataforest-emulator: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("dataforest-emulator: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let handle = match Emulator::start(config).await {
            Ok(handle) => handle,
            Err(e @ EmulatorError::NoAccounts) => {
                eprintln!("dataforest-emulator: {e} (--credential or --credentials-file)");
                return ExitCode::from(2);
            }
            Err(e) => {
                eprintln!("dataforest-emulator: {e}");
                return ExitCode::FAILURE;
            }
        };
        // Scripts wait for this line to learn the port when listening on port 0.
        println!("dataforest emulator listening on {}", handle.url());
        let _ = std::io::stdout().flush();
        tracing::info!(url = %handle.url(), "emulator serving");
        dataforest_common::signal::stop_requested().await;
        tracing::info!("emulator stopping");
        handle.shutdown().await;
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: EmulatorArgs,
    }

    fn parse(args: &[&str]) -> Result<EmulatorArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("emulator").chain(args.iter().copied())).map(|c| c.args)
    }

    #[test]
    fn credentials_timeline_and_faults_come_from_the_flags() {
        let args = parse(&[
            "--credential",
            "AK1:SK1:ACCT1",
            "--credential",
            "AK2:SK2:ACCT2:named",
            "--accepted-ms",
            "0",
            "--running-ms",
            "5",
            "--outcome",
            "FAILED",
            "--listing-lag-ms",
            "700",
            "--faults",
            r#"{"throttle":{"probability":0.25}}"#,
        ])
        .unwrap();
        let config = args.config().unwrap();
        assert_eq!(config.accounts.len(), 2);
        assert_eq!(config.accounts[1].account_name, "named");
        assert_eq!(
            config.timeline,
            Timeline {
                accepted: Duration::ZERO,
                running: Duration::from_millis(5)
            }
        );
        assert_eq!(config.outcome, Outcome::Failed);
        assert_eq!(config.faults.listing_lag_ms, 700);
        assert_eq!(config.faults.throttle.probability, 0.25);
    }

    #[test]
    fn a_malformed_credential_is_refused_without_echoing_it() {
        let args = parse(&[
            "--credential",
            "AK1:SK1:ACCT1",
            "--credential",
            "AK:only-secret-here",
        ])
        .unwrap();
        let e = args.config().unwrap_err().to_string();
        assert_eq!(
            e,
            "--credential number 2: expected ACCESS_KEY:SECRET_KEY:ACCOUNT_ID[:ACCOUNT_NAME]"
        );
        assert!(!e.contains("only-secret-here"), "{e}");
    }

    #[test]
    fn a_credentials_file_is_read_line_by_line_with_comments() {
        let dir = std::env::temp_dir().join(format!("df-emu-creds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("creds");
        std::fs::write(
            &path,
            "# keys\nAK1:SK1:ACCT1\n\nAK2:SK2:ACCT2 # second\nbroken-line\n",
        )
        .unwrap();
        let e = read_credentials_file(&path).unwrap_err().to_string();
        assert!(
            e.ends_with("line 5: expected ACCESS_KEY:SECRET_KEY:ACCOUNT_ID[:ACCOUNT_NAME]"),
            "{e}"
        );
        std::fs::write(&path, "# keys\nAK1:SK1:ACCT1\n\nAK2:SK2:ACCT2 # second\n").unwrap();
        let accounts = read_credentials_file(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            accounts
                .iter()
                .map(|a| a.access_key.as_str())
                .collect::<Vec<_>>(),
            ["AK1", "AK2"]
        );
    }

    #[test]
    fn the_clock_offset_flag_takes_negative_values_and_overrides_the_faults_json() {
        let offset = |args: &[&str]| {
            parse(args)
                .unwrap()
                .config()
                .unwrap()
                .faults
                .clock_offset_ms
        };
        assert_eq!(offset(&[]), 0);
        assert_eq!(offset(&["--clock-offset-ms", "-600000"]), -600_000);
        assert_eq!(offset(&["--faults", r#"{"clockOffsetMs": 5}"#]), 5);
        assert_eq!(
            offset(&["--faults", r#"{"clockOffsetMs": 5}"#, "--clock-offset-ms=7"]),
            7
        );
        let e = parse(&["--clock-offset-ms", &i64::MAX.to_string()])
            .unwrap()
            .config()
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("--faults: clockOffsetMs must be within"),
            "{e}"
        );
    }

    #[test]
    fn bad_faults_json_is_reported_as_a_faults_problem() {
        let args = parse(&["--faults", r#"{"throttle":{"probability":2}}"#]).unwrap();
        assert!(
            args.config()
                .unwrap_err()
                .to_string()
                .starts_with("--faults: throttle.probability")
        );
    }
}
