//! The `dataforest-operator` command line: its subcommands, `--version` with the commit,
//! shell completions, and how the commands that call the API report and exit.

pub mod api_args;
pub mod apps;
pub mod error;
pub mod render;

use std::future::Future;
use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::telemetry::{self, LogFormat};
pub use error::CliError;

/// The binary's name, as commands in messages and hints are written.
pub const BINARY: &str = "dataforest-operator";

/// The commit the binary was built from (see build.rs), or `unknown`.
pub const COMMIT: &str = env!("DATAFOREST_COMMIT");

/// What `--version` prints after the binary's name.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("DATAFOREST_COMMIT"),
    ")"
);

/// Kubernetes operator that runs AiApp resources as GPU jobs on NAVER Cloud Data Forest.
#[derive(Parser, Debug)]
#[command(name = BINARY, version = VERSION, about)]
pub struct Cli {
    /// Log format.
    #[arg(long, global = true, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the controller (the default).
    Run(Box<crate::run::RunArgs>),
    /// Print the AiApp CustomResourceDefinition as YAML.
    Crd,
    /// Submit one AiApp's spec straight to the Data Forest API.
    Submit(crate::submit::SubmitArgs),
    /// List, inspect or kill apps on Data Forest, without a cluster.
    #[command(subcommand)]
    Apps(apps::AppsCommand),
    /// Print a shell completion script on stdout.
    Completions {
        /// The shell to complete in.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Parses the command line and runs the subcommand; the binary's whole `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::install_crypto_provider();
    let command = cli.command.unwrap_or_else(|| {
        // No subcommand means `run` with its flags from the environment.
        let args = Cli::parse_from([BINARY, "run"]);
        args.command.expect("run parses")
    });
    match command {
        Command::Run(args) => {
            telemetry::init(cli.log_format);
            crate::run::run(&args)
        }
        Command::Crd => {
            print!("{}", crate::crd::crd_yaml());
            ExitCode::SUCCESS
        }
        Command::Submit(args) => {
            telemetry::init(cli.log_format);
            run_remote(
                "submit",
                crate::submit::execute(&args, &mut std::io::stdout().lock()),
            )
        }
        Command::Apps(command) => {
            telemetry::init(cli.log_format);
            let name = format!("apps {}", command.name());
            run_remote(
                &name,
                apps::execute(&command, &mut std::io::stdout().lock()),
            )
        }
        Command::Completions { shell } => {
            let mut out = std::io::stdout().lock();
            write_completions(shell, &mut out);
            match out.flush() {
                Ok(()) => ExitCode::SUCCESS,
                Err(_) => ExitCode::FAILURE,
            }
        }
    }
}

/// The completion script of the whole command line for `shell`.
pub fn write_completions(shell: clap_complete::Shell, out: &mut impl Write) {
    clap_complete::generate(shell, &mut Cli::command(), BINARY, out);
}

/// Runs a command that calls the API on a small runtime of its own, and turns its
/// outcome into the exit status, reporting a failure as one line on stderr.
fn run_remote(command: &str, work: impl Future<Output = Result<(), CliError>>) -> ExitCode {
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)
        .and_then(|runtime| runtime.block_on(work));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.is_closed_output() => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{}", error.report_line(command));
            ExitCode::from(error.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_version_names_the_package_version_and_the_commit() {
        assert!(VERSION.starts_with(env!("CARGO_PKG_VERSION")), "{VERSION}");
        assert!(
            VERSION.ends_with(&format!("(commit {COMMIT})")),
            "{VERSION}"
        );
        assert!(!COMMIT.is_empty());
    }

    #[test]
    fn every_shell_script_completes_the_subcommands() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let mut script = Vec::new();
            write_completions(shell, &mut script);
            let script = String::from_utf8(script).unwrap();
            for word in ["apps", "submit", "completions", "--secret-key-file"] {
                assert!(script.contains(word), "{shell}: no {word}");
            }
        }
    }
}
