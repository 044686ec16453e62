//! `proxy-server users …`: the same user tasks as `/admin/*`, on the same database, without
//! the HTTP server. Handy for first-time setup and scripts.

use std::path::PathBuf;
use std::process::ExitCode;

use aiproxy_domain::{
    ApiKey, LimitsPatch, NewUser, RateLimits, StoreError, UnixMillis, User, UserId, UserQuery,
};
use aiproxy_storage::{Blocking, SqliteStore, StoreOptions};
use clap::{Args, Subcommand};

use super::EXIT_USAGE;
use crate::{Settings, error_chain};

/// `users` and the database it works on.
#[derive(Debug, Args)]
pub struct UsersArgs {
    /// The SQLite file; defaults to the server's own (`./db/proxy.db` unless `.env` or the
    /// environment say otherwise).
    #[arg(long, value_name = "PATH", env = "DATABASE_PATH", global = true)]
    pub database: Option<PathBuf>,
    /// The task.
    #[command(subcommand)]
    pub command: UsersCommand,
}

/// One task on users.
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user and print its new API key (shown only this once).
    Create(CreateArgs),
    /// List users: name, key prefix, lifetime requests and tokens.
    List,
    /// Show one user and its limits.
    Show(NameArg),
    /// Give a user a new key; the old one stops working at once.
    RotateKey(NameArg),
    /// Delete a user, its key and its usage records.
    Delete(NameArg),
    /// Change some of a user's limits; the others stay as they are.
    SetLimits(SetLimitsArgs),
}

/// A user's name.
#[derive(Debug, Args)]
pub struct NameArg {
    /// The user's name: 1 to 64 of `A-Z a-z 0-9 . _ - @`.
    #[arg(value_name = "NAME", value_parser = user_id)]
    pub name: UserId,
}

/// `users create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The user's name: 1 to 64 of `A-Z a-z 0-9 . _ - @`.
    #[arg(value_name = "NAME", value_parser = user_id)]
    pub name: UserId,
    /// A name to show instead of NAME.
    #[arg(long, value_name = "TEXT")]
    pub display_name: Option<String>,
    /// A free-form note for operators.
    #[arg(long, value_name = "TEXT")]
    pub note: Option<String>,
    /// The only models this user may use, comma-separated (default: all).
    #[arg(long, value_name = "a,b")]
    pub allowed_models: Option<String>,
    /// Import an existing key instead of generating one.
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,
    /// No limits at all (default: the server's default limits).
    #[arg(long)]
    pub unlimited: bool,
}

/// A limit as given: a whole number, or `unlimited`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit(pub Option<u64>);

/// `users set-limits`.
#[derive(Debug, Args)]
#[command(after_help = "N is a whole number or `unlimited`.")]
pub struct SetLimitsArgs {
    /// The user's name.
    #[arg(value_name = "NAME", value_parser = user_id)]
    pub name: UserId,
    /// Requests per rolling minute.
    #[arg(long, value_name = "N", value_parser = limit, allow_hyphen_values = true)]
    pub requests_per_minute: Option<Limit>,
    /// Requests per rolling day.
    #[arg(long, value_name = "N", value_parser = limit, allow_hyphen_values = true)]
    pub requests_per_day: Option<Limit>,
    /// Tokens (prompt + completion) per rolling minute.
    #[arg(long, value_name = "N", value_parser = limit, allow_hyphen_values = true)]
    pub tokens_per_minute: Option<Limit>,
    /// Tokens per rolling day.
    #[arg(long, value_name = "N", value_parser = limit, allow_hyphen_values = true)]
    pub tokens_per_day: Option<Limit>,
    /// Tokens over the user's lifetime.
    #[arg(long, value_name = "N", value_parser = limit, allow_hyphen_values = true)]
    pub total_token_limit: Option<Limit>,
    /// Requests in flight at once.
    #[arg(long, value_name = "N", value_parser = limit, allow_hyphen_values = true)]
    pub max_concurrent_requests: Option<Limit>,
}

fn user_id(raw: &str) -> Result<UserId, String> {
    UserId::parse(raw).map_err(|e| e.to_string())
}

fn limit(raw: &str) -> Result<Limit, String> {
    if raw == "unlimited" {
        return Ok(Limit(None));
    }
    raw.parse()
        .map(|n| Limit(Some(n)))
        .map_err(|_| "takes a whole number or `unlimited`".to_owned())
}

/// Runs one `users` command, prints its result, and returns the process exit code.
pub fn run(args: UsersArgs, settings: &Settings) -> ExitCode {
    let database = args
        .database
        .unwrap_or_else(|| settings.database_path.clone());
    match execute(args.command, &database) {
        Ok(output) => {
            println!("{output}");
            ExitCode::SUCCESS
        }
        Err(CliError::Usage(message)) => {
            eprintln!("proxy-server: {message}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(CliError::Failed(message)) => {
            eprintln!("proxy-server: {message}");
            ExitCode::FAILURE
        }
    }
}

/// A mistake in what was asked (exit status 64), or a failure to do it (1).
enum CliError {
    Usage(String),
    Failed(String),
}

impl From<StoreError> for CliError {
    fn from(err: StoreError) -> Self {
        CliError::Failed(error_chain(&err))
    }
}

fn execute(command: UsersCommand, database: &std::path::Path) -> Result<String, CliError> {
    // Beside a running server: users can be managed, usage is the server's to record.
    let options = StoreOptions {
        share_usage_journal: true,
        ..StoreOptions::default()
    };
    let opened =
        SqliteStore::open(database, options).map_err(|e| CliError::Failed(error_chain(&e)))?;
    let store = opened.blocking();
    let result = match command {
        UsersCommand::Create(args) => create(store, args),
        UsersCommand::List => list(store),
        UsersCommand::Show(NameArg { name }) => Ok(describe(&store.get_user(&name)?)),
        UsersCommand::RotateKey(NameArg { name }) => rotate(store, &name),
        UsersCommand::Delete(NameArg { name }) => {
            store.delete_user(&name)?;
            Ok(format!("deleted {name}"))
        }
        UsersCommand::SetLimits(args) => set_limits(store, args),
    };
    opened.close();
    result
}

fn create(store: Blocking<'_>, args: CreateArgs) -> Result<String, CliError> {
    let key = match &args.api_key {
        Some(imported) => {
            ApiKey::parse_imported(imported).map_err(|e| CliError::Usage(e.to_string()))?
        }
        None => ApiKey::generate(),
    };
    let new = NewUser {
        id: args.name,
        display_name: args.display_name,
        note: args.note,
        key_hash: key.hash(),
        key_prefix: key.prefix(),
        key_expires_at: None,
        allowed_models: args
            .allowed_models
            .map(|list| list.split(',').map(|m| m.trim().to_owned()).collect()),
        limits: if args.unlimited {
            RateLimits::unlimited()
        } else {
            RateLimits::default()
        },
        created_at: UnixMillis::now(),
    };
    let user = store.create_user(new)?;
    Ok(format!(
        "{}\napi_key: {}\n(the key is shown only now; it is stored hashed)",
        describe(&user),
        key.expose()
    ))
}

fn list(store: Blocking<'_>) -> Result<String, CliError> {
    let mut lines = Vec::new();
    let mut offset = 0;
    loop {
        let (page, total) = store.list_users(&UserQuery::page(500, offset))?;
        for summary in &page {
            lines.push(format!(
                "{}\t{}\t{} requests\t{} tokens{}",
                summary.user.id,
                summary.user.key_prefix,
                summary.totals.requests,
                summary.totals.total_tokens,
                if summary.user.disabled {
                    "\tdisabled"
                } else {
                    ""
                }
            ));
        }
        offset += page.len() as u64;
        if page.is_empty() || offset >= total {
            break;
        }
    }
    if lines.is_empty() {
        return Ok("no users".into());
    }
    Ok(lines.join("\n"))
}

fn rotate(store: Blocking<'_>, id: &UserId) -> Result<String, CliError> {
    let current = store.get_user(id)?;
    let key = ApiKey::generate();
    let user = store.replace_key(id, key.hash(), &key.prefix(), current.key_expires_at)?;
    Ok(format!(
        "{}\napi_key: {}\n(the old key no longer works)",
        describe(&user),
        key.expose()
    ))
}

fn set_limits(store: Blocking<'_>, args: SetLimitsArgs) -> Result<String, CliError> {
    #[allow(
        clippy::needless_update,
        reason = "limits this command does not offer stay as they are when the domain adds some"
    )]
    let patch = LimitsPatch {
        requests_per_minute: args.requests_per_minute.map(|l| l.0),
        requests_per_day: args.requests_per_day.map(|l| l.0),
        tokens_per_minute: args.tokens_per_minute.map(|l| l.0),
        tokens_per_day: args.tokens_per_day.map(|l| l.0),
        total_token_limit: args.total_token_limit.map(|l| l.0),
        max_concurrent_requests: args.max_concurrent_requests.map(|l| l.0),
        ..LimitsPatch::default()
    };
    let user = store.get_user(&args.name)?;
    let limits = patch
        .apply(user.limits)
        .map_err(|e| CliError::Usage(e.to_string()))?;
    store.set_limits(&args.name, &limits)?;
    Ok(describe(&store.get_user(&args.name)?))
}

fn describe(user: &User) -> String {
    let show = |v: Option<u64>| v.map_or("unlimited".to_string(), |n| n.to_string());
    let l = &user.limits;
    format!(
        "user {} (key {}…){}\nlimits: requests/min {}, requests/day {}, tokens/min {}, tokens/day {}, total tokens {}, concurrent {}",
        user.id,
        user.key_prefix,
        if user.disabled { " disabled" } else { "" },
        show(l.requests_per_minute),
        show(l.requests_per_day),
        show(l.tokens_per_minute),
        show(l.tokens_per_day),
        show(l.total_token_limit),
        show(l.max_concurrent_requests),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_take_numbers_or_unlimited() {
        assert_eq!(limit("10"), Ok(Limit(Some(10))));
        assert_eq!(limit("unlimited"), Ok(Limit(None)));
        for bad in ["-3", "ten", "", "1.5", "Unlimited"] {
            assert!(limit(bad).is_err(), "{bad:?}");
        }
    }
}
