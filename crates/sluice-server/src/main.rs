//! `sluice-server` binary entry point; everything lives in the library.

fn main() -> std::process::ExitCode {
    sluice_server::cli::main()
}
