//! `dataforest-emulator`: serves the Data Forest emulator until SIGINT or SIGTERM.

use clap::Parser;
use dataforest_common::telemetry::{self, LogFormat};
use dataforest_emulator::cli::{self, EmulatorArgs};

/// A faithful NAVER Cloud Data Forest AI Apps API on a local address, with fault
/// injection: for tests, demos and trying dataforest-operator without an NCP account.
#[derive(Parser, Debug)]
#[command(name = "dataforest-emulator", version, about)]
struct Cli {
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(flatten)]
    args: EmulatorArgs,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    cli::run(&cli.args)
}
