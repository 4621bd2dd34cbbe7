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
    Run,
    /// Print the AiApp CustomResourceDefinition as YAML.
    Crd,
    /// Serve the Data Forest emulator.
    Emulator(dataforest_operator::emulator::cli::EmulatorArgs),
    /// Submit one AiApp's spec straight to the Data Forest API.
    Submit(dataforest_operator::submit::SubmitArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    dataforest_operator::install_crypto_provider();
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => {
            eprintln!("dataforest-operator: `run` is not yet implemented");
            ExitCode::from(2)
        }
        Command::Crd => {
            print!("{}", dataforest_operator::crd::crd_yaml());
            ExitCode::SUCCESS
        }
        Command::Emulator(args) => {
            telemetry::init(cli.log_format);
            dataforest_operator::emulator::cli::run(&args)
        }
        Command::Submit(args) => dataforest_operator::submit::run(&args),
    }
}
