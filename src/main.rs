//! The `ecom-stream` binary: everything is in the library; this only hands over to the CLI.
fn main() -> std::process::ExitCode {
    ecom_stream::cli::main()
}
