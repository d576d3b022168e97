//! `SIGHUP` and `SIGUSR1` on the loop.
//!
//! `SIGUSR1` reopens the access log (logrotate). `SIGHUP` reloads: the
//! config file, if the server was started with `--config` (read again
//! with the same command line on top, so a flag still wins), and the TLS
//! certificate and key, from the paths now configured. What can change
//! while the server runs is applied, and one line says what changed:
//! timeouts, HTTP's root, body limit and WebSocket origins, the chat's
//! output caps, the output cap, linger, grace, the access log's path, the
//! log level, and the certificate. What cannot (listeners, threads,
//! `reuse-port`, the bus, `max-conns`, `max-line`, `max-client-memory`)
//! is said with a warning and left as it was until a restart.
//!
//! A new certificate is only used once it loads: a file that does not
//! parse, or a key that does not match it, gets an error line and the
//! old certificate stays. A TLS listener's configuration is an `Arc`
//! taken by each handshake at accept, so connections already open keep
//! the certificate they began with and new handshakes get the new one.

use std::path::PathBuf;

use log::{error, info, warn};

use crate::config::Config;
use crate::core::Core;
use crate::notify;
use crate::service::Service;
use crate::tls::{self, TlsSetup};

use super::Protocols;
use super::access::AccessLog;

/// A signal the loop passed on.
pub fn signal(app: &mut Protocols, core: &mut Core<Protocols>, sig: i32) {
    match sig {
        libc::SIGUSR1 => {
            if let Some(log) = app.access.as_deref_mut() {
                log.reopen();
            }
        }
        libc::SIGHUP => reload(app, core),
        _ => {}
    }
}

/// `SIGHUP`: the config file's reloadable settings, then the certificate.
fn reload(app: &mut Protocols, core: &mut Core<Protocols>) {
    if app.lead {
        notify::tell(&notify::reloading());
    }
    let mut next = (*app.running).clone();
    if let Some(from) = app.running.reload.clone() {
        match from.reload() {
            Ok((config, level)) => {
                let changed = apply(app, core, &config, level);
                if app.lead {
                    match changed.is_empty() {
                        true => info!("SIGHUP: config reloaded, no setting changed"),
                        false => info!("SIGHUP: config reloaded: {}", changed.join(", ")),
                    }
                }
                next = Config {
                    reload: Some(from),
                    ..config
                };
            }
            Err(e) => error!("SIGHUP: {e}: the running settings are kept"),
        }
    }
    let tls = core.listener_tls().any(|(_, tls)| tls.is_some());
    if app.lead && app.running.reload.is_none() && !tls {
        info!("SIGHUP: nothing to reload (no --config file, no TLS listener)");
    }
    reload_tls(app, core, &next);
    *app.running = next;
    if app.lead {
        notify::tell("READY=1");
    }
}

/// Applies `new`'s reloadable settings (and log level `level`); what
/// changed, as `name old -> new`. Warns about the rest.
fn apply(
    app: &mut Protocols,
    core: &mut Core<Protocols>,
    new: &Config,
    level: log::LevelFilter,
) -> Vec<String> {
    let mut changed = Vec::new();
    let old = &app.running;
    macro_rules! take {
        ($name:literal, $($field:tt)+) => {
            if app.$($field)+ != new.$($field)+ {
                changed.push(format!("{} {:?} -> {:?}", $name, app.$($field)+, new.$($field)+));
                app.$($field)+ = new.$($field)+.clone();
            }
        };
    }
    take!("idle-timeout", limits.idle_timeout);
    take!("header-timeout", limits.header_timeout);
    take!("keepalive-timeout", limits.keepalive_timeout);
    take!("ws-ping", limits.ws_ping);
    take!("ws-max-message", limits.ws_max_message);
    take!("output-cap", limits.output_cap);
    take!("chat-output-hard", limits.chat_output_hard);
    take!("chat-output-soft", limits.chat_output_soft);
    take!("chat-soft-time", limits.chat_soft_time);
    take!("grace", limits.shutdown_grace);
    take!("linger", limits.linger);
    let (http, want) = (&mut app.http.cfg, &new.http_config);
    if http.root != want.root {
        changed.push(format!("root {:?} -> {:?}", http.root, want.root));
        http.root = want.root.clone();
    }
    if http.max_body != want.max_body {
        changed.push(format!("max-body {} -> {}", http.max_body, want.max_body));
        http.max_body = want.max_body;
    }
    if http.ws_origins != want.ws_origins {
        changed.push(format!(
            "ws-origin {:?} -> {:?}",
            http.ws_origins, want.ws_origins
        ));
        http.ws_origins = want.ws_origins.clone();
    }
    let limits = &mut core.limits;
    limits.output_cap = app.limits.output_cap;
    limits.linger = app.limits.linger;
    limits.grace = app.limits.shutdown_grace;
    limits.handshake_timeout = app.limits.header_timeout;
    if old.tls_cert != new.tls_cert || old.tls_key != new.tls_key {
        changed.push(format!(
            "tls-cert {:?} -> {:?}, tls-key {:?} -> {:?}",
            old.tls_cert, new.tls_cert, old.tls_key, new.tls_key
        ));
    }
    if old.access_log != new.access_log {
        changed.push(format!(
            "access-log {:?} -> {:?}",
            old.access_log, new.access_log
        ));
        reopen_access(app, new.access_log.as_ref());
    }
    if log::max_level() != level {
        changed.push(format!("log-level {} -> {level}", log::max_level()));
        log::set_max_level(level);
    }
    let old = &app.running;
    let fixed = [
        (
            "the services and their addresses",
            old.listeners() != new.listeners(),
        ),
        ("threads", old.threads != new.threads),
        ("reuse-port", old.reuse_port != new.reuse_port),
        ("the bus", old.bus != new.bus),
        ("max-conns", old.limits.max_conns != new.limits.max_conns),
        ("max-line", old.limits.max_line != new.limits.max_line),
        (
            "max-client-memory",
            old.limits.max_client_memory != new.limits.max_client_memory,
        ),
    ];
    for (what, differs) in fixed {
        if differs && app.lead {
            warn!("SIGHUP: {what} changed in the config: that takes a restart; kept as it was");
        }
    }
    changed
}

/// The access log moves to `path` (or stops, or starts).
fn reopen_access(app: &mut Protocols, path: Option<&PathBuf>) {
    match path {
        None => app.access = None,
        Some(p) => match AccessLog::open(p) {
            Ok(log) => app.access = Some(Box::new(log)),
            Err(e) => error!(
                "SIGHUP: access log {}: cannot open ({e}); keeping the old one",
                p.display()
            ),
        },
    }
}

/// Loads the certificate and key `config` names, if this loop has TLS
/// listeners; new handshakes use them. A bad pair is refused, and the old
/// one kept.
fn reload_tls(app: &mut Protocols, core: &mut Core<Protocols>, config: &Config) {
    if !core.listener_tls().any(|(_, tls)| tls.is_some()) {
        return;
    }
    let (cert, key) = (config.tls_cert.as_deref(), config.tls_key.as_deref());
    let setup = match TlsSetup::load(cert, key) {
        Ok(setup) => setup,
        Err(e) => {
            error!("SIGHUP: {e}: certificate not reloaded, new handshakes keep the old one");
            return;
        }
    };
    for (listen, tls) in core.listener_tls() {
        match listen {
            Service::Https => *tls = Some(setup.https.clone()),
            Service::TlsEcho => *tls = Some(setup.plain.clone()),
            _ => {}
        }
    }
    let print = cert.and_then(tls::fingerprint).unwrap_or_default();
    let shown = cert.map_or_else(String::new, |c| c.display().to_string());
    if app.lead {
        if print == app.tls_print {
            info!("SIGHUP: certificate {shown} reloaded, unchanged (SHA-1 {print})");
        } else {
            info!(
                "SIGHUP: certificate {shown} reloaded: SHA-1 {} -> {print}; new handshakes use it, connections open keep the old one",
                app.tls_print
            );
        }
    }
    app.tls_print = print;
}
