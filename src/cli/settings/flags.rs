//! The settings' flags: their clap definitions and which of them the command line gave.
//!
//! Owns: each flag's help, value name, possible values and the default it shows, and the
//! flag layer's values as typed. Must never: let clap apply a default or read a variable
//! (clap's defaults and `env` would hide the file and the variables, which are layers of
//! their own), or parse a value (serde does, with the other layers', in one place).

use super::values::{json_values, value_at};
use super::{by_key, Kind, Scope, Setting, Settings, SETTINGS};
use crate::store::cassandra::CassandraArgs;
use clap::builder::{PossibleValuesParser, ValueParser};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Args};
use std::ffi::OsString;

/// The clap arguments of the settings in `scope`: no `env` and no default (both are layers
/// of their own here); the default only shows in the help, taken from [`Settings::default`].
pub fn flag_args(scope: Scope) -> Vec<Arg> {
    let defaults = json_values(&Settings::default());
    let cassandra = CassandraArgs::augment_args(clap::Command::new("cassandra"));
    SETTINGS
        .iter()
        .filter(|s| s.scope == scope)
        .map(|s| {
            let help = s
                .help
                .map(str::to_string)
                .or_else(|| {
                    cassandra
                        .get_arguments()
                        .find(|a| a.get_long() == Some(s.flag))
                        .and_then(|a| a.get_help())
                        .map(|h| h.to_string())
                })
                .unwrap_or_default();
            let default = match value_at(&defaults, s.key) {
                serde_json::Value::Null => String::new(),
                serde_json::Value::String(v) => format!(" [default: {v}]"),
                v => format!(" [default: {v}]"),
            };
            let arg = Arg::new(s.key)
                .long(s.flag)
                .action(ArgAction::Set)
                .value_name(value_name(s))
                .help(format!(
                    "{help}{default} [env: {}] [file: {}]",
                    s.env, s.key
                ))
                .global(scope == Scope::Global);
            match s.choices {
                Some(choices) => arg.value_parser(PossibleValuesParser::new(choices())),
                // The value is parsed with the other layers' values, by serde: one parser,
                // one error format whatever the source.
                None => arg.value_parser(ValueParser::os_string()),
            }
        })
        .collect()
}

fn value_name(s: &Setting) -> String {
    match s.kind {
        Kind::Duration => "DURATION".into(),
        Kind::Integer => "N".into(),
        Kind::Bool => "BOOL".into(),
        Kind::Address => "ADDR".into(),
        Kind::Path => "PATH".into(),
        Kind::Enum | Kind::Text | Kind::Secret => {
            s.key.rsplit('.').next().unwrap_or(s.key).to_uppercase()
        }
    }
}

/// The settings whose flag was given on the command line, with the value as typed. Values
/// clap did not take from the command line (there are none today: no setting has a clap
/// default or variable) are left to the other layers.
pub fn given_flags(matches: &ArgMatches) -> Vec<(&'static Setting, OsString)> {
    let mut given: Vec<(&'static Setting, OsString)> = Vec::new();
    let mut level = Some(matches);
    while let Some(m) = level {
        for id in m.ids() {
            let Some(s) = by_key(id.as_str()) else {
                continue;
            };
            if m.value_source(id.as_str()) != Some(ValueSource::CommandLine) {
                continue;
            }
            let Some(value) = m.get_raw(id.as_str()).and_then(|mut v| v.next_back()) else {
                continue;
            };
            // A global flag shows at every level; the deepest is the one given last.
            given.retain(|(g, _)| g.key != s.key);
            given.push((s, value.to_os_string()));
        }
        level = m.subcommand().map(|(_, sub)| sub);
    }
    given
}
