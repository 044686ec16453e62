//! The admin command line: the same user tasks as `/admin/*`, on the same database, without
//! the HTTP server. Handy for first-time setup and scripts.
//!
//! ```text
//! proxy-server users create NAME [--display-name TEXT] [--note TEXT] [--allowed-models a,b]
//!     [--api-key KEY] [--unlimited]
//! proxy-server users list
//! proxy-server users show NAME
//! proxy-server users rotate-key NAME
//! proxy-server users delete NAME
//! proxy-server users set-limits NAME [--requests-per-minute N] [--requests-per-day N]
//!     [--tokens-per-minute N] [--tokens-per-day N] [--total-token-limit N]
//!     [--max-concurrent-requests N]          (N may be `unlimited`)
//! ```
//!
//! Changes made here while a server runs on the same database reach that server's key cache
//! only after its restart; prefer the HTTP API then.

use std::process::ExitCode;

use aiproxy_domain::{
    ApiKey, LimitsPatch, NewUser, Page, RateLimits, StoreError, UnixMillis, User, UserId, UserStore,
};
use aiproxy_storage::{SqliteStore, StoreOptions};

use crate::Settings;

const USAGE: &str =
    "usage: proxy-server users <create|list|show|rotate-key|delete|set-limits> [NAME] [options]
  create NAME [--display-name TEXT] [--note TEXT] [--allowed-models a,b]
         [--api-key KEY (import an existing key)] [--unlimited (no limits at all)]
  list
  show NAME
  rotate-key NAME
  delete NAME
  set-limits NAME [--requests-per-minute N] [--requests-per-day N] [--tokens-per-minute N]
                  [--tokens-per-day N] [--total-token-limit N] [--max-concurrent-requests N]
                  (N may be `unlimited`)
With no arguments, proxy-server runs the server.";

/// Runs one admin command and returns the process exit code.
pub fn run(args: &[String], settings: &Settings) -> ExitCode {
    match execute(args, settings) {
        Ok(output) => {
            println!("{output}");
            ExitCode::SUCCESS
        }
        Err(CliError::Usage(message)) => {
            eprintln!("proxy-server: {message}\n{USAGE}");
            ExitCode::from(64) // EX_USAGE
        }
        Err(CliError::Failed(message)) => {
            eprintln!("proxy-server: {message}");
            ExitCode::FAILURE
        }
    }
}

enum CliError {
    Usage(String),
    Failed(String),
}

impl From<StoreError> for CliError {
    fn from(err: StoreError) -> Self {
        CliError::Failed(err.to_string())
    }
}

fn execute(args: &[String], settings: &Settings) -> Result<String, CliError> {
    let (group, rest) = args
        .split_first()
        .ok_or_else(|| CliError::Usage("no command".into()))?;
    if group == "--help" || group == "-h" || group == "help" {
        return Ok(USAGE.into());
    }
    if group != "users" {
        return Err(CliError::Usage(format!("unknown command `{group}`")));
    }
    let (command, rest) = rest
        .split_first()
        .ok_or_else(|| CliError::Usage("missing a users command".into()))?;
    // Beside a running server: users can be managed, usage is the server's to record.
    let options = StoreOptions {
        share_usage_journal: true,
        ..StoreOptions::default()
    };
    let store = SqliteStore::open(&settings.database_path, options)
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let result = match command.as_str() {
        "create" => create(&store, rest),
        "list" => list(&store),
        "show" => {
            let id = user_id(rest)?;
            Ok(describe(&store.get_user(&id)?))
        }
        "rotate-key" => rotate(&store, rest),
        "delete" => {
            let id = user_id(rest)?;
            store.delete_user(&id)?;
            Ok(format!("deleted {id}"))
        }
        "set-limits" => set_limits(&store, rest),
        other => Err(CliError::Usage(format!("unknown users command `{other}`"))),
    };
    store.close();
    result
}

fn user_id(rest: &[String]) -> Result<UserId, CliError> {
    let raw = rest
        .first()
        .ok_or_else(|| CliError::Usage("missing the user's NAME".into()))?;
    UserId::parse(raw).map_err(|e| CliError::Usage(e.to_string()))
}

/// `--flag value` pairs after the name.
fn options(rest: &[String]) -> Result<Vec<(&str, &str)>, CliError> {
    let mut pairs = Vec::new();
    let mut iter = rest.iter().skip(1);
    while let Some(flag) = iter.next() {
        let name = flag
            .strip_prefix("--")
            .ok_or_else(|| CliError::Usage(format!("unexpected argument `{flag}`")))?;
        let value = iter
            .next()
            .ok_or_else(|| CliError::Usage(format!("--{name} needs a value")))?;
        pairs.push((name, value.as_str()));
    }
    Ok(pairs)
}

fn create(store: &SqliteStore, rest: &[String]) -> Result<String, CliError> {
    let id = user_id(rest)?;
    let mut key = ApiKey::generate();
    let mut new = NewUser {
        id,
        display_name: None,
        note: None,
        key_hash: key.hash(),
        key_prefix: key.prefix(),
        key_expires_at: None,
        allowed_models: None,
        limits: RateLimits::default(),
        created_at: UnixMillis::now(),
    };
    // `--unlimited` is a flag without a value; take it out before pairing the options.
    let unlimited = rest.iter().any(|a| a == "--unlimited");
    let rest: Vec<String> = rest
        .iter()
        .filter(|a| *a != "--unlimited")
        .cloned()
        .collect();
    if unlimited {
        new.limits = RateLimits::unlimited();
    }
    for (name, value) in options(&rest)? {
        match name {
            "display-name" => new.display_name = Some(value.to_owned()),
            "note" => new.note = Some(value.to_owned()),
            "allowed-models" => {
                new.allowed_models = Some(value.split(',').map(|m| m.trim().to_owned()).collect())
            }
            "api-key" => {
                key = ApiKey::parse_imported(value).map_err(|e| CliError::Usage(e.to_string()))?;
                new.key_hash = key.hash();
                new.key_prefix = key.prefix();
            }
            other => return Err(CliError::Usage(format!("unknown option --{other}"))),
        }
    }
    let user = store.create_user(new)?;
    Ok(format!(
        "{}\napi_key: {}\n(the key is shown only now; it is stored hashed)",
        describe(&user),
        key.expose()
    ))
}

fn list(store: &SqliteStore) -> Result<String, CliError> {
    let mut lines = Vec::new();
    let mut offset = 0;
    loop {
        let (page, total) = store.list_users(Page { limit: 500, offset })?;
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

fn rotate(store: &SqliteStore, rest: &[String]) -> Result<String, CliError> {
    let id = user_id(rest)?;
    let current = store.get_user(&id)?;
    let key = ApiKey::generate();
    let user = store.replace_key(&id, key.hash(), &key.prefix(), current.key_expires_at)?;
    Ok(format!(
        "{}\napi_key: {}\n(the old key no longer works)",
        describe(&user),
        key.expose()
    ))
}

fn set_limits(store: &SqliteStore, rest: &[String]) -> Result<String, CliError> {
    let id = user_id(rest)?;
    let mut patch = LimitsPatch::default();
    for (name, value) in options(rest)? {
        let parsed = if value == "unlimited" {
            None
        } else {
            Some(value.parse::<u64>().map_err(|_| {
                CliError::Usage(format!("--{name} takes a whole number or `unlimited`"))
            })?)
        };
        let slot = match name {
            "requests-per-minute" => &mut patch.requests_per_minute,
            "requests-per-day" => &mut patch.requests_per_day,
            "tokens-per-minute" => &mut patch.tokens_per_minute,
            "tokens-per-day" => &mut patch.tokens_per_day,
            "total-token-limit" => &mut patch.total_token_limit,
            "max-concurrent-requests" => &mut patch.max_concurrent_requests,
            other => return Err(CliError::Usage(format!("unknown option --{other}"))),
        };
        *slot = Some(parsed);
    }
    let user = store.get_user(&id)?;
    let limits = patch
        .apply(user.limits)
        .map_err(|e| CliError::Usage(e.to_string()))?;
    store.set_limits(&id, &limits)?;
    Ok(describe(&store.get_user(&id)?))
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
