//! The `logsentry` binary: parses the command line and runs one command.

use clap::Parser;

fn main() {
    // Die quietly on a closed pipe (`logsentry sql ... | head`) like other Unix tools.
    // SAFETY: setting a signal disposition before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = logsentry::cli::Cli::parse();
    let code = match logsentry::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    };
    std::process::exit(code);
}
