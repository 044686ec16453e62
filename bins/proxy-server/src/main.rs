//! `proxy-server`: runs the proxy, or administers users with `proxy-server users …`.

use std::process::ExitCode;

use proxy_server::{Application, DEFAULT_ADMIN_API_KEY, Settings, cli, init_tracing};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("proxy-server: {err}");
            return ExitCode::from(78); // EX_CONFIG
        }
    };
    if !args.is_empty() {
        return cli::run(&args, &settings);
    }
    init_tracing(&settings.log_format);
    if settings.admin_api_key == DEFAULT_ADMIN_API_KEY {
        tracing::warn!(
            "ADMIN_API_KEY is the public default `{DEFAULT_ADMIN_API_KEY}`: anyone who can reach this server can create users. Set ADMIN_API_KEY in the environment or .env to a long random secret."
        );
    }
    let system = actix_web::rt::System::new();
    let result = system.block_on(async move {
        let app = Application::build(settings.clone()).map_err(|err| err.to_string())?;
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
