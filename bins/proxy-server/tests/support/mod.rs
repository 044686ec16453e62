//! Starting the real `proxy-server` binary for the tests that need a process of their own.

#![allow(dead_code, reason = "each test file uses its own part")]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const ADMIN_KEY: &str = "crash-test-admin-key-0123456789";
const DEADLINE: Duration = Duration::from_secs(60);

/// A running `proxy-server` process with its log lines as they arrive.
pub struct Proxy {
    pub child: Child,
    pub address: String,
    pub log: Arc<Log>,
}

/// A process's standard output, line by line, as a thread reads it.
#[derive(Default)]
pub struct Log {
    lines: Mutex<Vec<String>>,
    /// The output ended: the process exited (or closed it), every line is in `lines`.
    ended: AtomicBool,
}

impl Proxy {
    /// Starts the binary on `db` in front of `ollama` and waits until it logs its address.
    /// `shell_prefix`, when given, is bash run first in the same process (`ulimit …`), which
    /// then execs the server.
    pub async fn start(db: &Path, ollama: &str, shell_prefix: Option<&str>) -> Self {
        let binary = env!("CARGO_BIN_EXE_proxy-server");
        let mut command = match shell_prefix {
            None => Command::new(binary),
            Some(prefix) => {
                let mut bash = Command::new("bash");
                bash.args(["-c", &format!("{prefix}; exec \"$0\""), binary]);
                bash
            }
        };
        let mut child = command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DATABASE_PATH", db)
            .env("HOST", "127.0.0.1")
            .env("PORT", "0")
            .env("WORKERS", "2")
            .env("ADMIN_API_KEY", ADMIN_KEY)
            .env("OLLAMA_BASE_URL", ollama)
            .env("USAGE_RETENTION_DAYS", "30")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let log = Arc::new(Log::default());
        let sink = Arc::clone(&log);
        // Drained to the end on its own thread: a full pipe would block the server's logging.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                sink.lines.lock().unwrap().push(line);
            }
            sink.ended.store(true, Ordering::Release);
        });
        let line = wait_for_log(&log, &mut child, "aiproxy listening").await;
        let entry: Value = serde_json::from_str(&line).unwrap();
        let address = entry["fields"]["address"].as_str().unwrap().to_owned();
        Self {
            child,
            address,
            log,
        }
    }

    /// Creates a user through the admin API and returns its key.
    pub async fn create_user(&self, client: &awc::Client, body: Value) -> String {
        let mut created = client
            .post(self.url("/admin/users"))
            .insert_header(("Authorization", format!("Bearer {ADMIN_KEY}")))
            .send_json(&body)
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
        let created: Value = created.json().await.unwrap();
        created["api_key"].as_str().unwrap().to_owned()
    }

    /// SIGTERM, and the exit status must be 0.
    pub fn stop(&mut self) {
        let stopped = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(stopped.success());
        assert!(self.child.wait().unwrap().success());
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.address, path)
    }
}

impl Drop for Proxy {
    /// A failed assertion must not leave the server running; after a normal end the process
    /// has exited already and this does nothing.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls the log until a line contains `needle`, failing if the process exits first.
pub async fn wait_for_log(log: &Log, child: &mut Child, needle: &str) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(line) = log
            .lines
            .lock()
            .unwrap()
            .iter()
            .find(|l| l.contains(needle))
        {
            return line.clone();
        }
        if let Some(status) = child.try_wait().unwrap() {
            // The last lines say why; they are read once the output has ended.
            while !log.ended.load(Ordering::Acquire) && Instant::now() < deadline {
                actix_web::rt::time::sleep(Duration::from_millis(10)).await;
            }
            let lines = log.lines.lock().unwrap();
            let tail = lines[lines.len().saturating_sub(5)..].join("\n");
            panic!("proxy-server exited ({status}) before logging `{needle}`:\n{tail}");
        }
        assert!(Instant::now() < deadline, "no `{needle}` in the log");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}
