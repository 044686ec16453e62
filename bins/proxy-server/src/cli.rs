//! The command line: `proxy-server` with no command (or `serve`) runs the server; the other
//! commands administer the same database without it. Each command is a variant of [`Command`]
//! with its own arguments and its own module; `--help` works on every one.
//!
//! ```text
//! proxy-server [serve]
//! proxy-server users create NAME [--display-name TEXT] [--note TEXT] [--allowed-models a,b]
//!     [--api-key KEY] [--unlimited]
//! proxy-server users list | show NAME | rotate-key NAME | delete NAME
//! proxy-server users set-limits NAME [--requests-per-minute N] [--requests-per-day N]
//!     [--tokens-per-minute N] [--tokens-per-day N] [--total-token-limit N]
//!     [--max-concurrent-requests N]          (N may be `unlimited`)
//! ```

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod users;

/// The exit status for a command line that does not parse (`EX_USAGE`).
pub const EXIT_USAGE: u8 = 64;

/// The whole command line.
#[derive(Debug, Parser)]
#[command(
    name = "proxy-server",
    version,
    about = "An OpenAI-compatible usage proxy for Ollama: runs the server, or administers its users.",
    long_about = "An OpenAI-compatible usage proxy for Ollama.\n\nWith no command it runs the \
                  server, configured by environment variables or a `.env` file in the working \
                  directory (OLLAMA_BASE_URL, ADMIN_API_KEY, HOST, PORT, DATABASE_PATH, …; the \
                  README lists them all).",
    args_override_self = true
)]
pub struct Cli {
    /// What to do; none runs the server.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// One command of the command line.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the same as no command); configured by the environment.
    Serve,
    /// Manage users and their keys and limits on the server's database, without the server.
    ///
    /// Safe beside a running server on the same database: it sees changes made here within
    /// a second (it polls the database's change marker and drops its cached keys and limits
    /// when it moves).
    Users(users::UsersArgs),
}

/// What the command line asks for, or the exit status to end with at once (after `--help`,
/// `--version`, or a usage error, each already printed).
pub fn parse() -> Result<Command, ExitCode> {
    parse_from(std::env::args_os())
}

/// [`parse`] over given arguments, the program name first.
pub fn parse_from<I, T>(args: I) -> Result<Command, ExitCode>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    match Cli::try_parse_from(args) {
        Ok(cli) => Ok(cli.command.unwrap_or(Command::Serve)),
        Err(err) => {
            // Help and version go to stdout with status 0; mistakes to stderr.
            let _ = err.print();
            Err(if err.use_stderr() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn the_parser_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn no_command_and_serve_both_run_the_server() {
        assert!(
            Cli::try_parse_from(["proxy-server"])
                .unwrap()
                .command
                .is_none()
        );
        assert!(matches!(
            Cli::try_parse_from(["proxy-server", "serve"])
                .unwrap()
                .command,
            Some(Command::Serve)
        ));
    }

    #[test]
    fn every_command_has_help() {
        for args in [
            &["--help"][..],
            &["serve", "--help"],
            &["users", "--help"],
            &["users", "create", "--help"],
            &["users", "list", "--help"],
            &["users", "show", "--help"],
            &["users", "rotate-key", "--help"],
            &["users", "delete", "--help"],
            &["users", "set-limits", "--help"],
            &["help", "users", "set-limits"],
        ] {
            let err =
                Cli::try_parse_from(std::iter::once("proxy-server").chain(args.iter().copied()))
                    .expect_err("help ends the parse");
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::DisplayHelp,
                "{args:?}: {err}"
            );
            assert!(!err.use_stderr(), "{args:?}: help goes to stdout");
        }
    }
}
