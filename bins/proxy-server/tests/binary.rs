//! The real `proxy-server` binary: configuration from the environment, the admin CLI, serving,
//! and a clean exit on SIGTERM.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a failure is a failed test"
)]
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn proxy(db: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_proxy-server"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_PATH", db)
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("ADMIN_API_KEY", "binary-test-admin-key")
        .env("OLLAMA_BASE_URL", "http://127.0.0.1:9")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info");
    command
}

fn get(address: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn the_cli_manages_users_in_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cli.db");
    let created = proxy(&db)
        .args(["users", "create", "ops", "--display-name", "Ops"])
        .output()
        .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let text = String::from_utf8_lossy(&created.stdout);
    assert!(text.contains("api_key: sk-"), "{text}");

    let limits = proxy(&db)
        .args([
            "users",
            "set-limits",
            "ops",
            "--requests-per-minute",
            "10",
            "--total-token-limit",
            "unlimited",
        ])
        .output()
        .unwrap();
    assert!(
        limits.status.success(),
        "{}",
        String::from_utf8_lossy(&limits.stderr)
    );
    assert!(String::from_utf8_lossy(&limits.stdout).contains("requests/min 10"));

    let listed = proxy(&db).args(["users", "list"]).output().unwrap();
    assert!(String::from_utf8_lossy(&listed.stdout).starts_with("ops\t"));
    let rotated = proxy(&db)
        .args(["users", "rotate-key", "ops"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&rotated.stdout).contains("api_key: sk-"));

    let duplicate = proxy(&db)
        .args(["users", "create", "ops"])
        .output()
        .unwrap();
    assert!(!duplicate.status.success());
    let bad = proxy(&db)
        .args(["users", "set-limits", "ops", "--requests-per-minute", "-3"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(64));
    let deleted = proxy(&db)
        .args(["users", "delete", "ops"])
        .output()
        .unwrap();
    assert!(deleted.status.success());
    let imported = "sk-bench-8fJ2kLq9Zx4Wm7Rt1Yb6Nc3Vd5Hs0GpE";
    let bench = proxy(&db)
        .args([
            "users",
            "create",
            "bench",
            "--unlimited",
            "--api-key",
            imported,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&bench.stdout);
    assert!(
        text.contains(imported) && text.contains("requests/min unlimited"),
        "{text}"
    );
    proxy(&db)
        .args(["users", "delete", "bench"])
        .output()
        .unwrap();
    let none = proxy(&db).args(["users", "list"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&none.stdout).trim(), "no users");
}

#[test]
fn every_command_prints_its_help_even_with_a_broken_configuration() {
    let dir = tempfile::tempdir().unwrap();
    for (args, usage) in [
        (&["--help"][..], "Usage: proxy-server [COMMAND]"),
        (&["serve", "--help"], "Usage: proxy-server serve"),
        (
            &["users", "--help"],
            "Usage: proxy-server users [OPTIONS] <COMMAND>",
        ),
        (
            &["users", "create", "--help"],
            "Usage: proxy-server users create",
        ),
        (
            &["users", "list", "--help"],
            "Usage: proxy-server users list",
        ),
        (
            &["users", "show", "--help"],
            "Usage: proxy-server users show",
        ),
        (
            &["users", "rotate-key", "--help"],
            "Usage: proxy-server users rotate-key",
        ),
        (
            &["users", "delete", "--help"],
            "Usage: proxy-server users delete",
        ),
        (
            &["users", "set-limits", "--help"],
            "Usage: proxy-server users set-limits",
        ),
        (&["help", "users"], "Usage: proxy-server users"),
    ] {
        let output = proxy(&dir.path().join("help.db"))
            .env("PORT", "not-a-port")
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{args:?}: {output:?}");
        assert!(text.contains(usage), "{args:?}: {text}");
    }
    assert!(
        !dir.path().join("help.db").exists(),
        "help must not open the database"
    );
    let unknown = proxy(&dir.path().join("help.db"))
        .args(["users", "frobnicate"])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(64), "{unknown:?}");
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("frobnicate"));
}

#[test]
fn the_users_database_comes_from_the_flag_else_from_database_path() {
    let dir = tempfile::tempdir().unwrap();
    let from_env = dir.path().join("env.db");
    let from_flag = dir.path().join("flag.db");
    let created = proxy(&from_env)
        .args(["users", "create", "ops", "--database"])
        .arg(&from_flag)
        .output()
        .unwrap();
    assert!(created.status.success(), "{created:?}");
    let listed = |db: &std::path::Path| {
        let output = proxy(db).args(["users", "list"]).output().unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    assert!(listed(&from_flag).starts_with("ops\t"));
    assert_eq!(listed(&from_env), "no users");
    // The flag may also stand before the command.
    let shown = proxy(&from_env)
        .args(["users", "--database"])
        .arg(&from_flag)
        .args(["show", "ops"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&shown.stdout).starts_with("user ops"),
        "{shown:?}"
    );
}

#[test]
fn bad_configuration_exits_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let output = proxy(&dir.path().join("x.db"))
        .env("PORT", "not-a-port")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&output.stderr).contains("port"));
}

#[test]
fn the_server_starts_serves_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("serve.db");
    let mut child = proxy(&db)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut address = None;
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        assert!(
            !line.contains("binary-test-admin-key"),
            "the admin key must never be logged"
        );
        if line.contains("aiproxy listening") {
            let entry: serde_json::Value = serde_json::from_str(&line).unwrap();
            address = entry["fields"]["address"].as_str().map(str::to_owned);
            break;
        }
    }
    let address = address.expect("the server logs its address");
    let root = get(&address, "/");
    assert!(root.starts_with("HTTP/1.1 200"), "{root}");
    let health = get(&address, "/health");
    assert!(health.contains("\"ollama\":\"unreachable\""), "{health}");

    // A second server (`serve` is the same as no command) on the same database stops at once
    // with the reason; the admin CLI works beside the running one.
    let second = proxy(&db).arg("serve").output().unwrap();
    assert!(!second.status.success());
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&second.stdout),
        String::from_utf8_lossy(&second.stderr)
    );
    assert!(said.contains("another process"), "{said}");
    let cli = proxy(&db).args(["users", "list"]).output().unwrap();
    assert!(cli.status.success(), "{cli:?}");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(
        exit.success(),
        "SIGTERM should end the server with status 0, got {exit:?}"
    );
}

/// Starts the server on `db`, which must fail, and returns what it told the operator.
fn start_fails(db: &std::path::Path, configure: impl FnOnce(&mut Command)) -> String {
    let mut command = proxy(db);
    configure(&mut command);
    let output = command.output().unwrap();
    assert!(!output.status.success());
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Issue 17.10: a database that cannot be opened is named with the reason, not only
/// "cannot open the database <path>".
#[test]
fn a_database_that_cannot_be_opened_is_reported_with_its_cause() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    let dir = tempfile::tempdir().unwrap();
    let opened = |db: &std::path::Path, cause: &str, message: &str| {
        let expected = format!("cannot open the database {}: {cause}", db.display());
        assert!(message.contains(&expected), "{message}");
    };

    let folder = dir.path().join("a-folder");
    std::fs::create_dir(&folder).unwrap();
    opened(
        &folder,
        "the path is a directory",
        &start_fails(&folder, |_| {}),
    );

    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![b'x'; 8192]).unwrap();
    opened(
        &garbage,
        "the file is not a SQLite database",
        &start_fails(&garbage, |_| {}),
    );

    // Another process (a sqlite3 shell, say) keeps a write transaction open on a database in
    // SQLite's default mode, so the server cannot switch it to write-ahead logging.
    let locked = dir.path().join("locked.db");
    let holder = rusqlite::Connection::open(&locked).unwrap();
    holder
        .execute_batch("CREATE TABLE t (x); BEGIN EXCLUSIVE; INSERT INTO t VALUES (1);")
        .unwrap();
    opened(
        &locked,
        "the database is locked by another process",
        &start_fails(&locked, |_| {}),
    );
    holder.execute_batch("ROLLBACK").unwrap();

    // A file this user may not open: root may open anything, so then run the server as
    // `nobody`.
    let private = dir.path().join("private.db");
    std::fs::write(&private, b"").unwrap();
    let as_root = std::fs::metadata(&private).unwrap().uid() == 0;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mode = if as_root { 0o600 } else { 0o000 };
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(mode)).unwrap();
    let message = start_fails(&private, |command| {
        if as_root {
            std::os::unix::process::CommandExt::uid(command, 65_534);
            std::os::unix::process::CommandExt::gid(command, 65_534);
        }
    });
    opened(
        &private,
        &format!("permission denied on {}", private.display()),
        &message,
    );
    assert!(message.contains("(os error 13)"), "{message}");
}
