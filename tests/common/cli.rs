//! The `wasmgate` CLI as a client of a test server: run a verb, read what it printed.

use std::process::{Command, Output};

use super::server::Server;

/// `wasmgate ARGS...` against `server` (unsigned: the AWS credentials are taken away).
pub fn cli(server: &Server, args: &[&str]) -> Output {
    let data = tempfile::tempdir().unwrap();
    let mut command: Command = super::wasmgate(data.path());
    command
        .args(args)
        .env("WASMGATE_ENDPOINT", &server.endpoint)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY");
    command.output().unwrap()
}

/// What a command printed: stdout and stderr.
pub fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `wasmgate ARGS...` that must succeed; its stdout.
pub fn ok(server: &Server, args: &[&str]) -> String {
    let output = cli(server, args);
    let (stdout, stderr) = text(&output);
    assert!(
        output.status.success(),
        "wasmgate {args:?}:\n{stdout}\n{stderr}"
    );
    stdout
}

/// The value of a stack's output `name` as `wasmgate deploy` printed it.
pub fn output_of(stdout: &str, name: &str) -> String {
    let prefix = format!("output {name} = ");
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no output {name} in:\n{stdout}"))
        .to_string()
}
