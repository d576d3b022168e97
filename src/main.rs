//! `reactor`: the binary. Parses the command line, sets up logging and
//! the open-files limit, then hands over to the library.

use std::process::ExitCode;

use clap::Parser;
use log::{error, info, warn};

use reactor::cli::{Cli, Command};
use reactor::{Server, sys};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(&args),
        Command::Bench(args) => match reactor::bench::run(*args) {
            Ok(reactor::bench::Outcome::Done) => ExitCode::SUCCESS,
            Ok(reactor::bench::Outcome::Regression) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("reactor bench: {e}");
                ExitCode::from(2)
            }
        },
        Command::Cert(args) => cert(&args),
    }
}

/// `reactor cert`: write a self-signed certificate and key, say where.
fn cert(args: &reactor::cli::CertArgs) -> ExitCode {
    match reactor::tls::write_self_signed(&args.out) {
        Ok((cert, key)) => {
            println!(
                "wrote {} and {} (self-signed for localhost and 127.0.0.1)",
                cert.display(),
                key.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("reactor cert: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `reactor serve`: bind every listener, run until a signal, exit 0.
fn serve(args: &reactor::cli::ServeArgs) -> ExitCode {
    if let Err(e) = simple_logger::SimpleLogger::new()
        .with_level(args.log_level)
        .with_utc_timestamps()
        .init()
    {
        eprintln!("reactor: cannot start logging: {e}");
    }
    // Ask for every fd we are allowed: 10,000 connections need them.
    match sys::raise_nofile_limit() {
        Ok(n) => log::debug!("open-files limit {n}"),
        Err(e) => warn!("cannot raise the open-files limit: {e}"),
    }
    let server = match Server::bind(args.to_config()) {
        Ok(s) => s,
        Err(e) => {
            error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    info!("pid {}: ready", std::process::id());
    match server.run() {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            ExitCode::FAILURE
        }
    }
}
