//! The `sluice` binary.

fn main() -> std::process::ExitCode {
    sluice_cli::main_entry()
}
