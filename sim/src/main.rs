//! `kvs-sim`: thin entry point; everything lives in the lib (`cli.rs`).

fn main() -> std::process::ExitCode {
    kvs_sim::cli::main()
}
