//! `reactor serve --config FILE`: the flags, kept in a TOML file.
//!
//! A key is a flag's long name (`idle-timeout = "60s"`, `reuse-port =
//! true`, `ws-origin = ["https://a.example", "https://b.example"]`); each
//! service is a table with its address (`[http] addr = "0.0.0.0:80"`; the
//! Unix echo takes `path`). The file's settings become the flags they name,
//! placed before the command line's, so a flag given on the command line
//! wins; a value is checked by the flag's own parser, and a mistake is
//! reported with the file, line and key (exit status 2). The example,
//! every key in it explained, is `deploy/reactor.toml`.
//!
//! On `SIGHUP` the file is read again, with the same command line on top
//! (`Reloader`); the server applies what can change while it runs.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::parser::ValueSource;
use clap::{ArgAction, CommandFactory, FromArgMatches};

use crate::cli::{Cli, Command, ServeArgs};
use crate::config::{Config, Reload};

/// The services, as tables: their name and the key of their address.
const SERVICES: &[(&str, &str)] = &[
    ("greet", "addr"),
    ("echo", "addr"),
    ("udp", "addr"),
    ("chat", "addr"),
    ("unix", "path"),
    ("http", "addr"),
    ("https", "addr"),
    ("tls-echo", "addr"),
    ("game", "addr"),
];

/// `argv` (the whole command line, program name first, `serve` among
/// them) with the settings of the config file at `path` put in: the
/// flags of `reactor serve`, the command line's winning. An error names
/// the file, the line and the key.
pub fn serve_args(argv: &[OsString], path: &Path) -> Result<ServeArgs, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("config {}: cannot read: {e}", path.display()))?;
    let extra = file_flags(argv, path, &text)?;
    let at = argv
        .iter()
        .position(|a| a == "serve")
        .ok_or_else(|| "config: only `reactor serve` reads a config file".to_string())?;
    let mut merged: Vec<OsString> = argv[..=at].to_vec();
    merged.extend(extra);
    merged.extend_from_slice(&argv[at + 1..]);
    let cli =
        Cli::try_parse_from_args(&merged).map_err(|e| format!("config {}: {e}", path.display()))?;
    match cli.command {
        Command::Serve(args) => Ok(*args),
        _ => Err("config: only `reactor serve` reads a config file".into()),
    }
}

impl Cli {
    /// Parses `argv` without exiting on an error.
    fn try_parse_from_args(argv: &[OsString]) -> Result<Cli, clap::Error> {
        let matches = Cli::command().try_get_matches_from(argv)?;
        Cli::from_arg_matches(&matches)
    }
}

/// The flags (`--name value`) the file's settings stand for, leaving out
/// those the command line `argv` gives itself.
fn file_flags(argv: &[OsString], path: &Path, text: &str) -> Result<Vec<OsString>, String> {
    let shown = path.display();
    let doc = toml_edit::Document::parse(text).map_err(|e| {
        let at = e
            .span()
            .map_or(String::new(), |s| format!(":{}", line_of(text, s.start)));
        format!("config {shown}{at}: {}", e.message())
    })?;
    let mut cmd = Cli::command();
    cmd.build();
    let matches = cmd
        .clone()
        .try_get_matches_from(argv)
        .map_err(|e| e.to_string())?;
    let given = matches.subcommand_matches("serve");
    let serve = cmd
        .find_subcommand("serve")
        .ok_or("config: no serve subcommand")?
        .clone();
    let mut out = Vec::new();
    let mut push = |flag: &str, key: &str, item: &toml_edit::Item, key_at: usize| {
        let line = line_of(text, item.span().map_or(key_at, |s| s.start));
        let bad = |why: String| format!("config {shown}:{line}: key `{key}`: {why}");
        let arg = serve
            .get_arguments()
            .find(|a| a.get_long() == Some(flag) && flag != "config")
            .ok_or_else(|| bad("no such setting (the keys are the flags of `reactor serve`, services are tables)".into()))?;
        let values = values_of(item).ok_or_else(|| {
            bad("expected a string, a number, a boolean or an array of strings".into())
        })?;
        let on_command_line = given
            .and_then(|m| m.value_source(arg.get_id().as_str()))
            .is_some_and(|s| s == ValueSource::CommandLine);
        let switch = matches!(arg.get_action(), ArgAction::SetTrue);
        let many = matches!(arg.get_action(), ArgAction::Append);
        if switch {
            let on = match item.as_bool() {
                Some(b) => b,
                None => return Err(bad("expected true or false".into())),
            };
            if on && !on_command_line {
                out.push(OsString::from(format!("--{flag}")));
            }
            return Ok(());
        }
        if values.len() != 1 && !many {
            return Err(bad("expected one value, not an array".into()));
        }
        let mut these = Vec::new();
        for v in values {
            these.push(OsString::from(format!("--{flag}")));
            these.push(OsString::from(v));
        }
        // Checked by the flag's own parser: `reactor serve` with it alone.
        let alone = ["reactor", "serve"].into_iter().map(OsString::from);
        Cli::command()
            .try_get_matches_from(alone.chain(these.iter().cloned()))
            .map_err(|e| bad(clap_reason(&e)))?;
        if !on_command_line {
            out.extend(these);
        }
        Ok(())
    };
    for (key, item) in doc.iter() {
        let key_at = doc.key(key).and_then(|k| k.span()).map_or(0, |s| s.start);
        if let Some(table) = item.as_table() {
            let Some(&(service, addr_key)) = SERVICES.iter().find(|(s, _)| *s == key) else {
                let line = line_of(text, key_at);
                return Err(format!(
                    "config {shown}:{line}: table `[{key}]`: not a service (the services are {})",
                    SERVICES
                        .iter()
                        .map(|(s, _)| *s)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            };
            for (inner, value) in table.iter() {
                let at = table
                    .key(inner)
                    .and_then(|k| k.span())
                    .map_or(key_at, |s| s.start);
                if inner != addr_key {
                    return Err(format!(
                        "config {shown}:{}: key `{key}.{inner}`: a service table holds only `{addr_key}`",
                        line_of(text, at)
                    ));
                }
                push(service, &format!("{key}.{inner}"), value, at)?;
            }
        } else {
            push(key, key, item, key_at)?;
        }
    }
    Ok(out)
}

/// A TOML value as the flag values it stands for.
fn values_of(item: &toml_edit::Item) -> Option<Vec<String>> {
    let one = |v: &toml_edit::Value| match v {
        toml_edit::Value::String(s) => Some(s.value().clone()),
        toml_edit::Value::Integer(i) => Some(i.value().to_string()),
        toml_edit::Value::Float(f) => Some(f.value().to_string()),
        toml_edit::Value::Boolean(b) => Some(b.value().to_string()),
        _ => None,
    };
    match item.as_value()? {
        toml_edit::Value::Array(a) => a.iter().map(one).collect(),
        v => one(v).map(|s| vec![s]),
    }
}

/// What clap said was wrong with a value, in one line.
fn clap_reason(e: &clap::Error) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or("").trim();
    first.strip_prefix("error: ").unwrap_or(first).to_string()
}

/// The line (from 1) of byte `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    text.as_bytes()[..at.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Reads the config file again, with the same command line on top: what
/// `SIGHUP` reloads.
#[derive(Debug)]
pub struct Reloader {
    /// The whole command line the server was started with.
    argv: Vec<OsString>,
    /// The config file.
    path: PathBuf,
}

impl Reloader {
    /// For a server started with `argv` and `--config path`.
    pub fn new(argv: Vec<OsString>, path: PathBuf) -> Arc<Reloader> {
        Arc::new(Reloader { argv, path })
    }
}

impl Reload for Reloader {
    fn reload(&self) -> Result<(Config, log::LevelFilter), String> {
        let args = serve_args(&self.argv, &self.path)?;
        Ok((args.to_config(), args.log_level))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(rest: &[&str]) -> Vec<OsString> {
        ["reactor", "serve"]
            .iter()
            .chain(rest)
            .map(OsString::from)
            .collect()
    }

    #[test]
    fn settings_become_flags_and_the_command_line_wins() {
        let text = "idle-timeout = \"60s\"\nreuse-port = true\nws-origin = [\"https://a\", \"https://b\"]\nmax-conns = 50\n[http]\naddr = \"127.0.0.1:0\"\n";
        let flags = file_flags(&argv(&["--max-conns", "7"]), Path::new("f.toml"), text).unwrap();
        let flags: Vec<_> = flags.iter().map(|f| f.to_str().unwrap()).collect();
        assert_eq!(
            flags,
            [
                "--idle-timeout",
                "60s",
                "--reuse-port",
                "--ws-origin",
                "https://a",
                "--ws-origin",
                "https://b",
                "--http",
                "127.0.0.1:0"
            ]
        );
    }

    #[test]
    fn mistakes_name_the_line_and_the_key() {
        let check = |text: &str, want: &str| {
            let e = file_flags(&argv(&[]), Path::new("f.toml"), text).unwrap_err();
            assert!(e.contains(want), "{e:?} lacks {want:?}");
        };
        check(
            "grace = \"5s\"\nidle-timeout = \"5x\"\n",
            "f.toml:2: key `idle-timeout`",
        );
        check(
            "\n\nmax-conn = 5\n",
            "f.toml:3: key `max-conn`: no such setting",
        );
        check("[http]\naddr = \"nowhere\"\n", "f.toml:2: key `http.addr`");
        check("[http]\nroot = \"/srv\"\n", "f.toml:2: key `http.root`");
        check(
            "[web]\naddr = \"127.0.0.1:80\"\n",
            "f.toml:1: table `[web]`",
        );
        check(
            "reuse-port = \"yes\"\n",
            "f.toml:1: key `reuse-port`: expected true or false",
        );
        check("grace = [\"1s\", \"2s\"]\n", "expected one value");
        check("grace = \"1s\n", "f.toml:1:");
    }
}
