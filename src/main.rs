//! Start-up of the `dataforest-operator` binary; the command line lives in `cli`.

use std::process::ExitCode;

fn main() -> ExitCode {
    dataforest_operator::cli::main()
}
