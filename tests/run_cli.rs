//! `wasmgate run` from the outside: the real binary, real guests, real signals.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Output, Stdio};

use common::{BOTH, Wasi, guest, repo_root, wasmgate};

fn run(args: &[&str]) -> (Output, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    let output = wasmgate(data.path())
        .arg("run")
        .args(args)
        .output()
        .expect("wasmgate runs");
    (output, data)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn path(wasi: Wasi, name: &str) -> String {
    guest(wasi, name).display().to_string()
}

#[test]
fn hello_prints_and_exits_zero() {
    for wasi in BOTH {
        let (output, _data) = run(&[&path(wasi, "hello")]);
        assert_eq!(
            stdout(&output),
            "Hello from wasmgate!\n",
            "{wasi:?}: {}",
            stderr(&output)
        );
        assert_eq!(output.status.code(), Some(0), "{wasi:?}");
    }
}

#[test]
fn args_and_environment_reach_the_guest() {
    for wasi in BOTH {
        let (output, _data) = run(&[
            "-e",
            "GREETING=hi there",
            &path(wasi, "args"),
            "--",
            "one",
            "two words",
        ]);
        let out = stdout(&output);
        assert!(
            out.contains("arg[0]=args\narg[1]=one\narg[2]=two words\n"),
            "{wasi:?}: {out}"
        );
        assert!(out.contains("env GREETING=hi there\n"), "{wasi:?}: {out}");
        assert!(
            !out.contains("env HOME="),
            "the host's environment leaked: {out}"
        );
    }
}

#[test]
fn exit_code_is_the_essential_containers() {
    for wasi in BOTH {
        let (output, _data) = run(&[&path(wasi, "exit"), "--", "42"]);
        assert_eq!(
            output.status.code(),
            Some(42),
            "{wasi:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains("container exit exited with 42"),
            "{}",
            stderr(&output)
        );
    }
}

#[test]
fn trap_is_reported_with_message_and_guest_backtrace() {
    for wasi in BOTH {
        let (output, _data) = run(&[&path(wasi, "trap")]);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(134), "{wasi:?}: {err}");
        assert!(
            err.contains("WasmTrap: wasm trap: wasm `unreachable` instruction executed"),
            "{err}"
        );
        assert!(
            err.contains("trap::unreachable_instruction"),
            "no guest backtrace: {err}"
        );
    }
}

#[test]
fn panic_is_reported_with_its_message() {
    for wasi in BOTH {
        let (output, _data) = run(&[&path(wasi, "trap"), "--", "panic"]);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(134), "{wasi:?}: {err}");
        assert!(
            err.contains("(stderr: the guest panicked on purpose)"),
            "{err}"
        );
    }
}

#[test]
fn memory_bomb_stops_with_out_of_memory_reason() {
    for wasi in BOTH {
        let (output, _data) = run(&["--memory", "32", &path(wasi, "membomb")]);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(137), "{wasi:?}: {err}");
        assert!(
            err.contains("OutOfMemoryError: the container's memory limit of 32 MiB was reached"),
            "{err}"
        );
    }
}

#[test]
fn invalid_task_definition_names_each_field_at_fault() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.json");
    std::fs::write(
        &file,
        r#"{"family": "bad", "memory": "512", "containerDefinitions": [
            {"name": "a", "image": "a.wasm"},
            {"name": "b", "image": "b.wasm", "memory": 512, "memoryReservation": 1024,
             "healthCheck": {"command": ["CMD", "x"], "timeout": 99}}]}"#,
    )
    .unwrap();
    let (output, _data) = run(&[file.to_str().unwrap()]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1));
    assert!(err.contains("invalid task definition"), "{err}");
    assert!(
        err.contains(
            "containerDefinitions[1].memoryReservation: must be below memory (1024 >= 512)"
        ),
        "{err}"
    );
    assert!(
        err.contains(
            "containerDefinitions[1].healthCheck.timeout: must be between 2 and 60 (got 99)"
        ),
        "{err}"
    );
}

#[test]
fn malformed_json_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.json");
    std::fs::write(&file, "{\"family\": ").unwrap();
    let (output, _data) = run(&[file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("task definition is not valid JSON"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn missing_image_fails_to_start_with_cannot_pull() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("task.json");
    std::fs::write(
        &file,
        r#"{"family": "m", "memory": "64", "containerDefinitions": [{"name": "a", "image": "missing.wasm"}]}"#,
    )
    .unwrap();
    let (output, _data) = run(&[file.to_str().unwrap()]);
    let err = stderr(&output);
    assert_ne!(output.status.code(), Some(0));
    assert!(
        err.contains(
            "container a did not start: CannotPullContainerError: missing.wasm: cannot read"
        ),
        "{err}"
    );
}

#[test]
fn an_image_that_is_not_wasm_is_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("script.wasm"), "#!/bin/sh\necho hi\n").unwrap();
    let file = dir.path().join("task.json");
    std::fs::write(
        &file,
        r#"{"family": "s", "memory": "64", "containerDefinitions": [{"name": "a", "image": "script.wasm"}]}"#,
    )
    .unwrap();
    let (output, _data) = run(&[file.to_str().unwrap()]);
    let err = stderr(&output);
    assert_ne!(output.status.code(), Some(0));
    assert!(
        err.contains("CannotStartContainerError: script.wasm: not a Wasm binary"),
        "{err}"
    );
}

#[test]
fn an_unreachable_registry_fails_to_pull_with_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("task.json");
    std::fs::write(
        &file,
        r#"{"family": "r", "memory": "64", "containerDefinitions": [{"name": "a", "image": "127.0.0.1:1/org/app:1"}]}"#,
    )
    .unwrap();
    let (output, _data) = run(&[file.to_str().unwrap()]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(125), "{err}");
    assert!(
        err.contains(
            "container a did not start: CannotPullContainerError: 127.0.0.1:1/org/app:1: "
        ),
        "{err}"
    );
}

#[test]
fn the_examples_run() {
    for (example, expected) in [
        ("examples/hello.json", "Hello from wasmgate!\n"),
        (
            "examples/pipeline.json",
            "written by the produce container\n",
        ),
    ] {
        guest(Wasi::P1, "hello"); // builds the guests the examples name
        let (output, _data) = run(&[repo_root().join(example).to_str().unwrap()]);
        assert_eq!(stdout(&output), expected, "{example}: {}", stderr(&output));
        assert_eq!(output.status.code(), Some(0), "{example}");
    }
}

/// Starts `wasmgate run` on a guest, waits for its first line of output, and returns the child.
fn spawn_until_first_line(
    args: &[&str],
    data: &std::path::Path,
) -> (std::process::Child, BufReader<std::process::ChildStdout>) {
    let mut child = wasmgate(data)
        .arg("run")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(!line.is_empty(), "the guest printed nothing");
    (child, reader)
}

fn interrupt(child: &std::process::Child) {
    // SAFETY: sending a signal to a child we own has no memory-safety preconditions.
    let rc = unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert_eq!(rc, 0);
}

#[test]
fn ctrl_c_stops_the_task_gracefully() {
    for wasi in BOTH {
        let data = tempfile::tempdir().unwrap();
        let (mut child, mut reader) =
            spawn_until_first_line(&[&path(wasi, "graceful")], data.path());
        interrupt(&child);
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
        let status = child.wait().unwrap();
        assert!(
            rest.contains("stop signal received; exiting cleanly"),
            "{wasi:?}: {rest}"
        );
        assert_eq!(status.code(), Some(0), "{wasi:?}");
    }
}

#[test]
fn a_second_ctrl_c_interrupts_a_guest_that_ignores_the_stop() {
    let data = tempfile::tempdir().unwrap();
    let (mut child, _reader) = spawn_until_first_line(&[&path(Wasi::P1, "sleep")], data.path());
    interrupt(&child);
    // Wait until the first signal has been handled, so that the second is not merged with it.
    let mut errors = BufReader::new(child.stderr.take().unwrap());
    let mut err = String::new();
    while !err.contains("stopping the task") {
        assert!(
            errors.read_line(&mut err).unwrap() > 0,
            "wasmgate ended early: {err}"
        );
    }
    interrupt(&child);
    std::io::Read::read_to_string(&mut errors, &mut err).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(137), "{err}");
    assert!(
        err.contains("StopTimeout: the guest did not exit within 0s"),
        "{err}"
    );
}

#[test]
fn an_http_handler_is_refused_by_run_with_a_pointer_to_services() {
    let data = tempfile::tempdir().unwrap();
    let handler = common::guest(common::Wasi::P2, "http_hello");
    let output = common::wasmgate(data.path())
        .arg("run")
        .arg(&handler)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(125), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("is an HTTP handler (wasi:http/incoming-handler)"),
        "{stderr}"
    );
    assert!(stderr.contains("wasmgate.http.path"), "{stderr}");
}

#[test]
fn run_help_and_the_readme_agree_on_what_run_accepts() {
    let data = tempfile::tempdir().unwrap();
    let output = wasmgate(data.path())
        .args(["run", "--help"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = stdout(&output);
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    // The README's synopsis of `run`: the usage block's line and its continuation.
    let synopsis: String = readme
        .lines()
        .skip_while(|line| !line.starts_with("wasmgate run <"))
        .take_while(|line| !line.starts_with("wasmgate push"))
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        !synopsis.is_empty(),
        "no `wasmgate run` synopsis in README.md"
    );
    // What the README promises, `run --help` offers: each kind of target, and each flag.
    let target = synopsis
        .split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map(|(target, _)| target)
        .expect("a <TARGET> in the synopsis");
    for kind in target.split(" | ") {
        assert!(
            help.contains(kind),
            "README's {kind} is not in run --help:\n{help}"
        );
    }
    let flags = |text: &str| -> Vec<String> {
        text.split(|c: char| c.is_whitespace() || "[]<>,.()`".contains(c))
            .filter(|word| word.starts_with('-') && word.len() > 1 && *word != "--")
            .map(|word| word.split('=').next().unwrap_or(word).to_string())
            .collect()
    };
    for flag in flags(&synopsis) {
        assert!(
            help.contains(&flag),
            "README's {flag} is not in run --help:\n{help}"
        );
    }
    // And what `run --help` offers, the README documents (global flags in its tables).
    for flag in flags(&help) {
        if flag.starts_with("--") && flag != "--help" {
            assert!(
                readme.contains(&format!("`{flag}")),
                "run --help offers {flag}, which README.md does not document"
            );
        }
    }
}
