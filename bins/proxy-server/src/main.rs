//! `proxy-server`: runs the proxy, or administers users with `proxy-server users …`.

use std::process::ExitCode;

use proxy_server::cli::{self, Command};
use proxy_server::{Application, DEFAULT_ADMIN_API_KEY, Settings, error_chain, init_tracing};

fn main() -> ExitCode {
    // `.env` first, so that flags falling back to the environment see its values too. A
    // malformed file is reported by `Settings::from_env` below, after `--help` had its chance.
    let _ = dotenvy::dotenv();
    let command = match cli::parse() {
        Ok(command) => command,
        Err(exit) => return exit,
    };
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("proxy-server: {err}");
            return ExitCode::from(78); // EX_CONFIG
        }
    };
    match command {
        Command::Serve => serve(settings),
        Command::Users(users) => cli::users::run(users, &settings),
    }
}

/// Runs the server until SIGTERM or Ctrl-C.
fn serve(settings: Settings) -> ExitCode {
    init_tracing(&settings.log_format);
    if settings.admin_api_key == DEFAULT_ADMIN_API_KEY {
        tracing::warn!(
            "ADMIN_API_KEY is the public default `{DEFAULT_ADMIN_API_KEY}`: anyone who can reach this server can create users. Set ADMIN_API_KEY in the environment or .env to a long random secret."
        );
    }
    let system = actix_web::rt::System::new();
    let result = system.block_on(async move {
        let app = Application::build(settings.clone()).map_err(|err| error_chain(&err))?;
        tracing::info!(
            address = %app.address(),
            ollama = %settings.ollama_base_url,
            database = %settings.database_path.display(),
            "aiproxy listening; docs at /docs/"
        );
        app.run_until_stopped().await.map_err(|err| err.to_string())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "proxy-server stopped");
            eprintln!("proxy-server: {err}");
            ExitCode::FAILURE
        }
    }
}
