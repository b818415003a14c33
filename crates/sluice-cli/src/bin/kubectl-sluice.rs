//! The same CLI installed as a kubectl plugin: `kubectl sluice bench ...`.

fn main() -> std::process::ExitCode {
    sluice_cli::main_entry()
}
