//! `ollama-sim`: runs the simulator as a standalone server until Ctrl-C.
//!
//! Flags are parsed by hand; the crate docs of `aiproxy-ollama-sim` list them.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use aiproxy_ollama_sim::{OllamaSim, SERVER_BUSY_MESSAGE, SimConfig};

const USAGE: &str = "\
usage: ollama-sim [options]

  --listen ADDR                 address to serve on (default 127.0.0.1:11434)
  --name NAME                   instance name, sent as the x-sim-instance header
                                (default: none, no such header)
  --models A,B,...              installed models (from the catalog; default
                                llama3.2,moondream,nomic-embed-text)
  --loaded A,B,...              installed models already loaded at start
  --workers N                   actix worker threads (default 2)
  --ollama-version V            what /api/version reports (default 0.33.0)
  --first-token-delay-ms MS     wait before the response head
  --token-delay-ms MS           wait between streamed lines
  --fail-status CODE            answer CODE with {\"error\": message}
  --fail-message TEXT           the message for --fail-status
  --error-after-tokens N        mid-stream error line after N tokens
  --close-after-tokens N        drop the connection after N tokens
  --malformed-after-tokens N    send a non-JSON line after N tokens
  --stall-after-tokens N        stop sending after N tokens, keep the connection
  --hang                        never answer
  --faults-for-next N           faults apply to the next N requests only
  -h, --help                    this text

Everything can be changed at run time with POST /sim/control.";

/// What the command line asks for: `None` is `--help`, else where to listen and with what.
fn parse_args(args: &[String]) -> Result<Option<(SocketAddr, SimConfig)>, String> {
    let mut listen = SocketAddr::from(([127, 0, 0, 1], 11434));
    let mut config = SimConfig {
        workers: 2,
        ..SimConfig::default()
    };
    let mut fail_status: Option<u16> = None;
    let mut fail_message: Option<String> = None;
    let mut models: Option<String> = None;
    let mut remaining = args.iter();
    while let Some(arg) = remaining.next() {
        let (flag, inline_value) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_owned())),
            _ => (arg.as_str(), None),
        };
        let mut value = || {
            inline_value
                .clone()
                .or_else(|| remaining.next().cloned())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        let number = |text: String| {
            text.parse::<u64>()
                .map_err(|_| format!("{flag} needs a whole number, got {text:?}"))
        };
        let count = |text: String| number(text).map(|n| usize::try_from(n).unwrap_or(usize::MAX));
        let settings = &mut config.settings;
        match flag {
            "-h" | "--help" => return Ok(None),
            "--listen" => {
                let text = value()?;
                listen = text
                    .parse()
                    .map_err(|_| format!("--listen needs HOST:PORT, got {text:?}"))?;
            }
            "--workers" => config.workers = count(value()?)?.max(1),
            "--name" => config.name = value()?,
            "--models" => models = Some(value()?),
            "--loaded" => config.loaded = list(&value()?),
            "--ollama-version" => config.version = value()?,
            "--first-token-delay-ms" => {
                settings.first_token_delay = Duration::from_millis(number(value()?)?);
            }
            "--token-delay-ms" => settings.token_delay = Duration::from_millis(number(value()?)?),
            "--fail-status" => {
                let code = number(value()?)?;
                let code = u16::try_from(code)
                    .ok()
                    .filter(|code| (100..=999).contains(code))
                    .ok_or_else(|| format!("--fail-status needs an HTTP status, got {code}"))?;
                fail_status = Some(code);
            }
            "--fail-message" => fail_message = Some(value()?),
            "--error-after-tokens" => settings.error_after_tokens = Some(count(value()?)?),
            "--close-after-tokens" => settings.close_after_tokens = Some(count(value()?)?),
            "--malformed-after-tokens" => settings.malformed_after_tokens = Some(count(value()?)?),
            "--stall-after-tokens" => settings.stall_after_tokens = Some(count(value()?)?),
            "--faults-for-next" => settings.faults_for_next = Some(count(value()?)?),
            "--hang" => settings.hang = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if let Some(models) = models {
        let names = list(&models);
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        config
            .select_models(&names)
            .map_err(|err| format!("--models: {err}"))?;
    }
    match (fail_status, fail_message) {
        (Some(status), message) => {
            let message = message.unwrap_or_else(|| {
                if status == 503 {
                    SERVER_BUSY_MESSAGE.to_owned()
                } else {
                    "simulated failure".to_owned()
                }
            });
            config.settings.fail_status = Some((status, message));
        }
        (None, Some(_)) => return Err("--fail-message needs --fail-status".to_owned()),
        (None, None) => {}
    }
    Ok(Some((listen, config)))
}

/// A comma-separated list, blanks dropped.
fn list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (listen, config) = match parse_args(&args) {
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Some(run)) => run,
        Err(message) => {
            eprintln!("ollama-sim: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let outcome = actix_rt::System::new().block_on(async move {
        let sim = OllamaSim::start_on(listen, config).await?;
        println!("ollama-sim listening on {}", sim.base_url());
        actix_rt::signal::ctrl_c().await?;
        sim.stop().await;
        Ok::<(), std::io::Error>(())
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("ollama-sim: {err}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    fn run(text: &str) -> (SocketAddr, SimConfig) {
        parse_args(&args(text)).unwrap().expect("not --help")
    }

    #[test]
    fn defaults_listen_on_ollamas_port() {
        let (listen, config) = run("");
        assert_eq!(listen.to_string(), "127.0.0.1:11434");
        assert_eq!(config.workers, 2);
        assert!(!config.settings.has_faults());
    }

    #[test]
    fn flags_set_latency_and_faults_in_both_spellings() {
        let (listen, config) = run(
            "--listen 0.0.0.0:9000 --token-delay-ms=15 --first-token-delay-ms 200 \
             --close-after-tokens 3 --hang --faults-for-next=2 --fail-status 503",
        );
        assert_eq!(listen.port(), 9000);
        let settings = config.settings;
        assert_eq!(settings.token_delay, Duration::from_millis(15));
        assert_eq!(settings.first_token_delay, Duration::from_millis(200));
        assert_eq!(settings.close_after_tokens, Some(3));
        assert!(settings.hang);
        assert_eq!(settings.faults_for_next, Some(2));
        assert_eq!(
            settings.fail_status,
            Some((503, SERVER_BUSY_MESSAGE.to_owned()))
        );
    }

    #[test]
    fn instance_name_models_and_loaded_models_are_set() {
        let (_, config) = run("--name east --models gemma3:1b,llama3.2 --loaded=llama3.2");
        assert_eq!(config.name, "east");
        let names: Vec<&str> = config.models.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["gemma3:1b", "llama3.2:latest"]);
        assert_eq!(config.loaded, ["llama3.2"]);
        assert!(
            parse_args(&args("--models mistral"))
                .unwrap_err()
                .contains("--models")
        );
    }

    #[test]
    fn bad_arguments_are_reported() {
        assert!(
            parse_args(&args("--token-delay-ms"))
                .unwrap_err()
                .contains("needs a value")
        );
        assert!(
            parse_args(&args("--token-delay-ms soon"))
                .unwrap_err()
                .contains("whole number")
        );
        assert!(
            parse_args(&args("--fail-status 42"))
                .unwrap_err()
                .contains("HTTP status")
        );
        assert!(parse_args(&args("--fail-message x")).is_err());
        assert!(
            parse_args(&args("--verbose"))
                .unwrap_err()
                .contains("unknown argument")
        );
        assert!(matches!(parse_args(&args("-h")), Ok(None)));
    }
}
