//! The global flags, built with clap's builder API from rpod-config's table
//! ([`rpod::config::GLOBAL_FLAGS`]) plus `--log-level`, which is the CLI's own. They are shown
//! under their own heading in every command's help.

use clap::builder::ValueParser;
use clap::error::ErrorKind;
use clap::{value_parser, Arg, ArgMatches, Args, Command, FromArgMatches};
use rpod::config::{FlagKind, GlobalFlag, GLOBAL_FLAGS};
use rpod::RuntimeOptions;

/// The help heading of the global flags.
pub const HEADING: &str = "Global Options";

/// The id and long name of `--log-level`.
const LOG_LEVEL: &str = "log-level";

/// Flags every command takes, as podman's: the runtime options and the log level.
#[derive(Debug, Clone)]
pub struct GlobalFlags {
    options: RuntimeOptions,
    /// Log messages at or above this level.
    pub log_level: String,
}

impl GlobalFlags {
    /// The runtime options the flags set.
    pub fn options(&self) -> RuntimeOptions {
        self.options.clone()
    }
}

fn arg(flag: &GlobalFlag) -> Arg {
    let parser: ValueParser = match flag.kind {
        FlagKind::Path => value_parser!(std::path::PathBuf),
        FlagKind::Text => value_parser!(String),
        FlagKind::Number => value_parser!(u32).into(),
    };
    Arg::new(flag.long)
        .long(flag.long)
        .value_name(flag.value_name)
        .help(flag.help.trim_end_matches('.'))
        .value_parser(parser)
        .global(true)
        .help_heading(HEADING)
}

impl Args for GlobalFlags {
    fn augment_args(cmd: Command) -> Command {
        GLOBAL_FLAGS
            .iter()
            .fold(cmd, |cmd, flag| cmd.arg(arg(flag)))
            .arg(
                Arg::new(LOG_LEVEL)
                    .long(LOG_LEVEL)
                    .value_name("LOG_LEVEL")
                    .help("Log messages at or above this level: trace, debug, info, warn, error")
                    .default_value("warn")
                    .global(true)
                    .help_heading(HEADING),
            )
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for GlobalFlags {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let mut options = RuntimeOptions::new();
        for flag in GLOBAL_FLAGS {
            // Repeated flags override themselves (`args_override_self`): the last one counts.
            if let Some(arg) = m
                .get_raw(flag.long)
                .and_then(|mut values| values.next_back())
            {
                options = options
                    .set_flag(flag.long, arg)
                    .map_err(|e| clap::Error::raw(ErrorKind::ValueValidation, format!("{e}\n")))?;
            }
        }
        let log_level = m
            .get_one::<String>(LOG_LEVEL)
            .cloned()
            .unwrap_or_else(|| "warn".to_owned());
        Ok(GlobalFlags { options, log_level })
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}
