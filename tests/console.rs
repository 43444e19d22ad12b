//! The web console in a real browser: headless Chromium (Debian's `chromium`) driven by
//! Playwright for Python (tests/console/person.py) through a person's whole path, against two
//! real servers (one open, one with `--credentials`). One browser session for all of it;
//! each step's screenshot lands in target/console-screenshots/.

mod common;

use std::process::Command;

use common::server::Server;

/// The venv's python with Playwright added (never a browser download: the system Chromium
/// is launched by path).
fn playwright_python() -> std::path::PathBuf {
    let python = common::aws::python();
    let has = Command::new(&python)
        .args(["-c", "import playwright.sync_api"])
        .status()
        .is_ok_and(|s| s.success());
    if !has {
        let installed = Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "playwright"])
            .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
            .status()
            .expect("pip runs");
        assert!(installed.success(), "pip install playwright failed");
    }
    python
}

#[test]
fn a_person_runs_and_watches_a_service_from_the_browser() {
    let chromium = std::path::Path::new("/usr/bin/chromium");
    assert!(
        chromium.exists(),
        "the console test needs Debian's chromium: run scripts/setup.sh"
    );
    let python = playwright_python();
    let hello = common::guest(common::Wasi::P2, "http_hello");
    let exit = common::guest(common::Wasi::P1, "exit");

    let open_data = tempfile::tempdir().unwrap();
    // Failed starts are retried after half a second, not five, so the crash loop's events
    // come within the test's patience.
    let open = Server::start_with(open_data.path(), &["--service-restart-delay", "0.5"]);
    let signed_data = tempfile::tempdir().unwrap();
    let credentials = signed_data.path().join("credentials.json");
    std::fs::write(&credentials, r#"{"AKIDCONSOLE": "console-secret"}"#).unwrap();
    let signed = Server::start_with(
        signed_data.path(),
        &["--credentials", credentials.to_str().unwrap()],
    );

    let screenshots = common::repo_root().join("target/console-screenshots");
    let _ = std::fs::remove_dir_all(&screenshots);
    let output = Command::new(python)
        .arg(common::repo_root().join("tests/console/person.py"))
        .env("CONSOLE", format!("{}/console/", open.endpoint))
        .env("SIGNED_CONSOLE", format!("{}/console/", signed.endpoint))
        .env("GATEWAY", &open.gateway)
        .env("HELLO_WASM", &hello)
        .env("EXIT_WASM", &exit)
        .env("SCREENSHOTS", &screenshots)
        .env("ACCESS_KEY", "AKIDCONSOLE")
        .env("SECRET_KEY", "console-secret")
        .env("CHROMIUM", chromium)
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "the console path failed (screenshots in {}):\n{stdout}\n{}",
        screenshots.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("the person's path passed"));
}
