//! `reactor`: the binary. Parses the command line (and the config file),
//! sets up logging and the open-files limit, then hands over to the
//! library.
//!
//! Exit status (also in the man page and the README): 0 after a clean
//! stop (SIGTERM or SIGINT, connections finished); 1 when the server
//! cannot start or fails while running (an address in use, a missing
//! certificate, an I/O error) or a second signal cut the shutdown short;
//! 2 for a usage error: a bad flag (clap's) or a bad config file.

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use log::{error, info, warn};

use reactor::cli::{Cli, Command};
use reactor::{Server, sys};

fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = Cli::parse_from(&argv);
    match cli.command {
        Command::Serve(args) => match &args.config {
            None => serve(&args, None),
            Some(path) => match reactor::conffile::serve_args(&argv, path) {
                Ok(merged) => {
                    let reload = reactor::conffile::Reloader::new(argv.clone(), path.clone());
                    serve(&merged, Some(reload))
                }
                Err(e) => {
                    eprintln!("reactor: {e}");
                    ExitCode::from(2)
                }
            },
        },
        Command::Completions(args) => {
            let mut cmd = Cli::command();
            clap_complete::generate(args.shell, &mut cmd, "reactor", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Man => match clap_mangen::Man::new(Cli::command())
            .render(&mut std::io::stdout())
            .and_then(|()| man_extra(&mut std::io::stdout()))
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("reactor man: {e}");
                ExitCode::FAILURE
            }
        },
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

/// The man page's sections beyond the flags: signals, files, exit status.
fn man_extra(out: &mut impl std::io::Write) -> std::io::Result<()> {
    out.write_all(
        br#".SH SUBCOMMANDS
.TP
\fBreactor serve\fR [\fIFLAGS\fR]
Serve; \fBreactor serve \-\-help\fR lists every flag.
.TP
\fBreactor bench\fR, \fBreactor cert\fR, \fBreactor completions\fR \fISHELL\fR, \fBreactor man\fR
The load generator; a self-signed certificate; shell completions; this page.
.SH SIGNALS
.TP
\fBSIGTERM\fR, \fBSIGINT\fR
Stop accepting, finish what arrived, close within \fB\-\-grace\fR; a second one stops at once.
.TP
\fBSIGHUP\fR
Reload: the \fB\-\-config\fR file's reloadable settings (flags on the command line still win) and the TLS certificate and key. Open connections keep the old certificate; a bad new one is refused and the old kept.
.TP
\fBSIGUSR1\fR
Reopen the \fB\-\-access\-log\fR file (after logrotate renamed it).
.SH FILES
.TP
\fIdeploy/reactor.toml\fR
The example config file, every key explained (keys are the flags' names; services are tables).
.TP
\fIdeploy/reactor.service\fR
A systemd unit: Type=notify, DynamicUser, the usual hardening.
.SH "EXIT STATUS"
.TP
\fB0\fR
Stopped cleanly by SIGTERM or SIGINT.
.TP
\fB1\fR
Could not start (an address in use, a missing certificate, an unreadable file), failed while running, or a second signal cut the shutdown short.
.TP
\fB2\fR
Usage: a bad flag, or a mistake in the config file (the message names the file, line and key).
"#,
    )
}

/// `reactor serve`: bind every listener, run until a signal, exit 0.
fn serve(
    args: &reactor::cli::ServeArgs,
    reload: Option<std::sync::Arc<reactor::conffile::Reloader>>,
) -> ExitCode {
    // The logger lets everything through, and the level is the global
    // maximum, so SIGHUP can change it.
    if let Err(e) = simple_logger::SimpleLogger::new()
        .with_level(log::LevelFilter::Trace)
        .with_utc_timestamps()
        .init()
    {
        eprintln!("reactor: cannot start logging: {e}");
    }
    log::set_max_level(args.log_level);
    // Ask for every fd we are allowed: 10,000 connections need them.
    match sys::raise_nofile_limit() {
        Ok(n) => log::debug!("open-files limit {n}"),
        Err(e) => warn!("cannot raise the open-files limit: {e}"),
    }
    let mut config = args.to_config();
    config.reload = reload.map(|r| r as std::sync::Arc<dyn reactor::config::Reload>);
    let server = match Server::bind(config) {
        Ok(s) => s,
        Err(e) => {
            error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    info!("pid {}: ready", std::process::id());
    reactor::notify::tell(&format!("READY=1\nMAINPID={}", std::process::id()));
    match server.run() {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            ExitCode::FAILURE
        }
    }
}
