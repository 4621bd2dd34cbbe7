//! Start-up of the `dataforest-operator` binary: parse the command line, pick the subcommand.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dataforest_operator::telemetry::{self, LogFormat};

/// Kubernetes operator that runs AiApp resources as GPU jobs on NAVER Cloud Data Forest.
#[derive(Parser, Debug)]
#[command(name = "dataforest-operator", version, about)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the controller (the default).
    Run(Box<dataforest_operator::run::RunArgs>),
    /// Print the AiApp CustomResourceDefinition as YAML.
    Crd,
    /// Submit one AiApp's spec straight to the Data Forest API.
    Submit(dataforest_operator::submit::SubmitArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    dataforest_operator::install_crypto_provider();
    let command = cli.command.unwrap_or_else(|| {
        // No subcommand means `run` with its flags from the environment.
        let args = Cli::parse_from(["dataforest-operator", "run"]);
        args.command.expect("run parses")
    });
    match command {
        Command::Run(args) => {
            telemetry::init(cli.log_format);
            dataforest_operator::run::run(&args)
        }
        Command::Crd => {
            print!("{}", dataforest_operator::crd::crd_yaml());
            ExitCode::SUCCESS
        }
        Command::Submit(args) => dataforest_operator::submit::run(&args),
    }
}
