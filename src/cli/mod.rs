//! The command line (design §5): the commands, their own flags, and their output.
//!
//! Owns: parsing (the settings' flags come from `settings::SETTINGS`, layered over the
//! config file and the `ECOM_*` variables there), turning settings into configs, and printing
//! results (JSON lines, the demo summary, `config`'s effective settings) and errors (one
//! line). Must never: hold pipeline logic (each command calls into the library), or read a
//! setting from anywhere but the resolved [`settings::Settings`].

use crate::app;
use crate::config::ConfigError;
use clap::FromArgMatches;
use settings::Resolved;
pub use settings::{LogFormat, StoreKind, SyncArg};
use std::process::ExitCode;

mod args;
mod commands;
mod explain;
mod export;
mod ingest_output;
mod output;
pub mod settings;

pub use args::*;
use commands::{run_demo, run_dlq, run_ingest, run_pipeline, run_produce, run_query, run_setup};
use output::print_config;

/// Parses the command line, resolves the settings (file, variables, flags), runs the
/// command, and turns any error into one line on stderr.
pub fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let matches = match command().try_get_matches_from(&args) {
        Ok(matches) => matches,
        Err(e) => return usage_error(e, &args),
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => return usage_error(e, &args),
    };
    let file = settings::locate(cli.config.clone());
    let resolved = match settings::resolve(
        file.as_deref(),
        |var: &str| std::env::var_os(var),
        settings::given_flags(&matches),
    ) {
        Ok(resolved) => resolved,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = init_logging(&resolved) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    if let Some(path) = &resolved.file {
        tracing::debug!(path = %path.display(), "config file read");
    }
    warn_of_password_flag(&resolved);
    let system = actix_rt::System::new();
    match system.block_on(run(cli, &resolved)) {
        Ok(code) => code,
        Err(e) => {
            match config_error(&e)
                .and_then(|c| resolved.explain(c))
                .or_else(|| bind_error(&e, &resolved))
            {
                Some(line) => eprintln!("error: {line}"),
                None => eprintln!("error: {e:#}"),
            }
            ExitCode::FAILURE
        }
    }
}

/// One line, whatever the command, when the Cassandra password came from its flag: a
/// command line is readable by every user of the machine (`ps`, `/proc/PID/cmdline`) for
/// as long as the process runs, which no redaction of ours can change.
fn warn_of_password_flag(resolved: &Resolved) {
    if let Some(setting) = settings::by_key("cassandra.password") {
        if resolved.origin(setting) == settings::Origin::Flag {
            tracing::warn!(
                "--cassandra-password on the command line is visible to every user of this \
                 machine (ps, /proc/PID/cmdline): set ECOM_CASSANDRA_PASSWORD or the config \
                 file's [cassandra] password instead"
            );
        }
    }
}

/// The setting a command refused, wherever in the error it sits (the run and the demo wrap
/// theirs).
fn config_error(e: &anyhow::Error) -> Option<&ConfigError> {
    e.chain().find_map(|c| {
        if let Some(c) = c.downcast_ref::<ConfigError>() {
            return Some(c);
        }
        c.downcast_ref::<app::AppError>()
            .and_then(app::AppError::config)
    })
}

/// A listener that could not bind, as the `metrics_addr` setting's error: one line with the
/// flag, the variable, the file key, where the address came from, and the OS error once.
fn bind_error(e: &anyhow::Error, resolved: &Resolved) -> Option<settings::SettingError> {
    let (addr, os) = e.chain().find_map(|c| {
        let serve = c.downcast_ref::<app::AppError>().and_then(|a| match a {
            app::AppError::Serve(s) => Some(s),
            _ => None,
        });
        match serve.or_else(|| c.downcast_ref::<crate::ops::ServeError>())? {
            crate::ops::ServeError::Bind { addr, source } => Some((addr, source)),
        }
    })?;
    let setting = settings::by_key("metrics_addr")?;
    Some(settings::SettingError {
        setting,
        origin: resolved.origin(setting),
        problem: format!("cannot listen on {addr}: {os}"),
        source: None,
    })
}

/// Help and version print as clap made them. A bad flag or command prints clap's error line
/// (naming the setting's variable and file key too when the flag is one of the command's
/// settings), then clap's tip (`a similar argument exists: '--hold'`) and its pointer to
/// `--help`.
fn usage_error(e: clap::Error, args: &[std::ffi::OsString]) -> ExitCode {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    let text = e.render().to_string();
    // clap's first paragraph (the error, possibly with its possible values), on one line.
    let first: Vec<&str> = text
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let first = first.join(" ");
    // The argument clap names, as `--flag <VALUE>`: its first word is the flag. Two commands
    // may share a flag name for different things (`ingest --format`, `query --format`), so
    // the setting counts only where the command given takes it.
    let command = subcommand(args);
    let setting = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg)) => arg
            .split_whitespace()
            .next()
            .and_then(settings::by_flag)
            .filter(|s| s.applies_to(command.as_deref())),
        _ => None,
    };
    match setting {
        Some(s) => eprintln!("{first} ({}, file key `{}`; set by the flag)", s.env, s.key),
        None => eprintln!("{first}"),
    }
    // The tips and the pointer to --help; the usage block between them is left to --help.
    for line in text.lines().skip_while(|l| !l.trim().is_empty()) {
        let line = line.trim();
        if line.starts_with("tip:") || line.starts_with("For more information") {
            eprintln!("  {line}");
        }
    }
    ExitCode::from(2)
}

/// The subcommand named on the command line (its first word that is one), if any.
fn subcommand(args: &[std::ffi::OsString]) -> Option<String> {
    let cmd = command();
    args.iter()
        .skip(1)
        .filter_map(|a| a.to_str())
        .find(|a| cmd.find_subcommand(a).is_some())
        .map(str::to_string)
}

/// Logs go to stderr (stdout is the commands' output). The filter is the `log` setting,
/// else `RUST_LOG`, else `info`.
/// A filter that does not parse is refused, naming where it came from: falling back to
/// `info` silently would hide the very logs the user asked for.
fn init_logging(resolved: &Resolved) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let settings = &resolved.settings;
    let filter_text = match &settings.log {
        Some(f) => f.clone(),
        None => std::env::var("RUST_LOG").unwrap_or_else(|_| DEFAULT_LOG_FILTER.to_string()),
    };
    let filter = tracing_subscriber::EnvFilter::builder()
        .parse(&filter_text)
        .map_err(|e| {
            let problem = format!(
                "{filter_text:?} is not a log filter ({e}; examples: info, ecom_stream=debug,scylla=warn)"
            );
            match (&settings.log, settings::by_key("log")) {
                (Some(_), Some(setting)) => anyhow::Error::new(settings::SettingError {
                    setting,
                    origin: resolved.origin(setting),
                    problem,
                    source: Some(Box::new(e)),
                }),
                _ => anyhow::anyhow!("invalid setting RUST_LOG: {problem}"),
            }
        })?;
    use tracing_subscriber::filter::FilterExt;
    use tracing_subscriber::layer::{Layer, SubscriberExt};
    use tracing_subscriber::util::SubscriberInitExt;
    let debug = filter
        .max_level_hint()
        .is_none_or(|max| max >= tracing::level_filters::LevelFilter::DEBUG);
    // Last, so that it counts only the driver lines the filters before it let through.
    let throttle = crate::telemetry::driver_log::DriverLogThrottle::new(!debug);
    if !debug {
        throttle
            .tick_every(crate::telemetry::driver_log::SUMMARY_EVERY)
            .map_err(|e| anyhow::anyhow!("starting the driver log summary thread: {e}"))?;
    }
    let filter = filter
        .and(crate::store::cassandra::session::quiet_driver_while_connecting(debug))
        .and(throttle);
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry();
    match settings.log_format {
        LogFormat::Text => registry
            .with(
                logs.with_ansi(std::io::stderr().is_terminal())
                    .with_filter(filter),
            )
            .init(),
        LogFormat::Json => registry
            .with(logs.json().with_current_span(false).with_filter(filter))
            .init(),
    }
    Ok(())
}

/// The log filter when neither `--log` nor RUST_LOG says otherwise: our INFO lines, and the
/// Cassandra driver's WARN and ERROR only (its INFO lines, such as "No sharding information
/// received" on every connection to Cassandra proper, are chatter a user cannot act on).
const DEFAULT_LOG_FILTER: &str = "info,scylla=warn";

/// How long a command that only reads (`query`, `dlq list`) waits for a Cassandra node when
/// `--cassandra-connect-wait` is not set: someone at a terminal wants the answer, or the
/// reason there is none, in seconds, not after the minute `run` allows a cluster to come up.
const READ_CONNECT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

async fn run(cli: Cli, resolved: &Resolved) -> anyhow::Result<ExitCode> {
    let settings = &resolved.settings;
    let store = StoreArgs::of(settings);
    let mut read_store = store.clone();
    let wait_is_default = settings::by_key("cassandra.connect_wait")
        .is_some_and(|s| resolved.origin(s) == settings::Origin::Default);
    if wait_is_default {
        read_store.cassandra.cassandra_connect_wait = READ_CONNECT_WAIT;
    }
    let metrics_addr = settings.metrics_addr;
    match cli.command {
        Command::Demo(mut args) => {
            args.engine = settings.engine();
            run_demo(&store, metrics_addr, args).await
        }
        Command::Run(mut args) => {
            args.pubsub = settings.pubsub();
            args.engine = settings.engine();
            args.until_idle = settings.until_idle;
            args.replay_every = settings.replay_every;
            run_pipeline(&store, metrics_addr, args).await
        }
        Command::Ingest(mut args) => {
            args.engine = settings.engine();
            args.format = settings.ingest_format;
            args.timestamp_field = settings.ingest_timestamp_field.clone();
            run_ingest(&store, args).await
        }
        Command::Setup(mut args) => {
            args.pubsub = settings.pubsub();
            run_setup(&store, args).await
        }
        Command::Produce(mut args) => {
            args.pubsub = settings.pubsub();
            run_produce(args).await
        }
        Command::Dlq { command } if command.only_reads() => run_dlq(&read_store, command).await,
        Command::Dlq { command } => run_dlq(&store, command).await,
        Command::Query { command } => run_query(&read_store, command).await,
        Command::Config => print_config(resolved),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed_and_every_setting_has_its_flag() {
        let cmd = command();
        cmd.clone().debug_assert();
        let config = cmd.find_subcommand("config").expect("config");
        for s in settings::SETTINGS {
            let arg = config
                .get_arguments()
                .chain(cmd.get_arguments())
                .find(|a| a.get_long() == Some(s.flag))
                .unwrap_or_else(|| panic!("no --{} on `config`", s.flag));
            assert_eq!(
                arg.get_default_values().len(),
                0,
                "--{} has a clap default",
                s.flag
            );
            assert!(
                arg.get_env().is_none(),
                "--{} reads a variable through clap",
                s.flag
            );
        }
    }

    #[test]
    fn help_shows_the_one_default() {
        let help = command()
            .find_subcommand_mut("run")
            .expect("run")
            .render_long_help()
            .to_string();
        assert!(help.contains("[default: 5s]"), "{help}");
        assert!(help.contains("[env: ECOM_RETRY_MAX_BACKOFF]"), "{help}");
    }
}
