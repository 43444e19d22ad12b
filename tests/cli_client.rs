//! The CLI as a client of a real `wasmgate server`: register, run-task, tasks, ps, describe,
//! stop, logs (-f, and the size cap), stats, signing when the server checks signatures, and the
//! service verbs (services, create-service, scale, update-service) with the HTTP example.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};

use common::server::Server;
use common::{Wasi, guest, repo_root, wasmgate};

/// `wasmgate VERB ...` against `server`.
fn cli(server: &Server, args: &[&str]) -> Command {
    let data = tempfile::tempdir().unwrap();
    let mut command = wasmgate(data.path());
    command
        .args(args)
        .env("WASMGATE_ENDPOINT", &server.endpoint)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY");
    command
}

/// Runs a verb that must succeed; returns its stdout.
fn ok(server: &Server, args: &[&str]) -> String {
    let output = cli(server, args).output().unwrap();
    assert_success(args, &output);
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn assert_success(args: &[&str], output: &Output) {
    assert!(
        output.status.success(),
        "wasmgate {args:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A task definition file for a guest in `dir`, named FAMILY.json; the image path is relative
/// to the file, as a person would write it.
fn taskdef_file(dir: &std::path::Path, family: &str, wasi: Wasi, guest_name: &str) -> String {
    let image = guest(wasi, guest_name);
    let relative = pathdiff(dir, &image);
    let document = serde_json::json!({
        "family": family,
        "memory": "64",
        "containerDefinitions": [{"name": guest_name, "image": relative}],
    });
    let path = dir.join(format!("{family}.json"));
    std::fs::write(&path, document.to_string()).unwrap();
    path.display().to_string()
}

/// `image` relative to `dir` (both absolute; `dir` is a fresh temp dir, so go up to the root).
fn pathdiff(dir: &std::path::Path, image: &std::path::Path) -> String {
    let ups = dir.components().count() - 1;
    format!(
        "{}{}",
        "../".repeat(ups),
        image.display().to_string().trim_start_matches('/')
    )
}

#[test]
fn register_run_wait_list_describe_through_the_cli() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    guest(Wasi::P2, "hello");
    let example = repo_root().join("examples/hello.json");
    let registered = ok(&server, &["register", example.to_str().unwrap()]);
    assert!(
        registered.starts_with("hello:1\tarn:aws:ecs:"),
        "{registered}"
    );

    let output = cli(&server, &["run-task", "hello", "--wait"])
        .output()
        .unwrap();
    assert_success(&["run-task"], &output);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let id = stdout.lines().next().unwrap().to_string();
    assert_eq!(id.len(), 32, "{stdout}");
    assert!(
        stdout.contains(&format!(
            "{id} STOPPED exit 0: Essential container in task exited"
        )),
        "{stdout}"
    );

    // Overrides reach the container, and a failing task's exit code becomes the CLI's.
    let dir = tempfile::tempdir().unwrap();
    let file = taskdef_file(dir.path(), "exiter", Wasi::P1, "exit");
    ok(&server, &["register", &file]);
    let output = cli(&server, &["run-task", "exiter", "--wait", "--", "7"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(7), "{output:?}");
    let file = taskdef_file(dir.path(), "args", Wasi::P2, "args");
    ok(&server, &["register", &file]);
    let run = ok(
        &server,
        &[
            "run-task",
            "args",
            "--wait",
            "-e",
            "GREETING=hi",
            "--",
            "one",
        ],
    );
    let args_id = run.lines().next().unwrap();
    let logs = ok(&server, &["logs", args_id]);
    assert!(logs.contains("arg[1]=one"), "{logs}");
    assert!(logs.contains("env GREETING=hi"), "{logs}");

    let tasks = ok(&server, &["tasks", "--all"]);
    assert!(tasks.starts_with("TASK ID"), "{tasks}");
    let line = tasks.lines().find(|l| l.starts_with(&id)).expect("listed");
    assert!(line.contains("hello:1"), "{line}");
    assert!(line.contains("STOPPED"), "{line}");
    assert!(line.contains("exit 0"), "{line}");
    assert!(tasks.contains("exit 7"), "{tasks}");
    // Without --all, stopped tasks are not listed.
    assert!(!ok(&server, &["tasks"]).contains(&id));
    assert!(
        ok(&server, &["tasks", "--all", "--family", "exiter"])
            .lines()
            .skip(1)
            .all(|l| l.contains("exiter:1"))
    );

    // The start of an id is enough; JSON as the API answers.
    let described = ok(&server, &["describe", &id[..10]]);
    let described: serde_json::Value = serde_json::from_str(&described).unwrap();
    assert_eq!(
        described["tasks"][0]["containers"][0]["exitCode"], 0,
        "{described}"
    );
    let output = cli(&server, &["describe", "ffffffffff"]).output().unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("no task of cluster default"),
        "{output:?}"
    );
    // A definition that does not exist is the server's error, named.
    let output = cli(&server, &["run-task", "ghost"]).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("ClientException"), "{stderr}");
}

#[test]
fn logs_follow_a_running_task_until_it_stops() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let dir = tempfile::tempdir().unwrap();
    let file = taskdef_file(dir.path(), "grow", Wasi::P1, "grow");
    ok(&server, &["register", &file]);
    let run = ok(&server, &["run-task", "grow", "--", "3"]);
    let id = run.trim().to_string();

    let mut follower = cli(&server, &["logs", "-f", &id])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follower.stdout.take().unwrap()).lines();
    // The follower sees output as the guest writes it, while the task runs.
    for expected in ["holding 1 MiB", "holding 2 MiB", "holding 3 MiB"] {
        assert_eq!(lines.next().unwrap().unwrap(), expected);
    }
    let ps = ok(&server, &["ps"]);
    let line = ps
        .lines()
        .find(|l| l.starts_with(&id[..12]))
        .expect("in ps");
    assert!(line.contains("grow") && line.contains("Up "), "{ps}");

    let stopped = ok(&server, &["stop", &id[..8], "--reason", "seen enough"]);
    assert!(stopped.contains("(desired STOPPED)"), "{stopped}");
    assert_eq!(lines.next().unwrap().unwrap(), "released 3 MiB");
    // The follower ends by itself once the task stopped.
    assert!(lines.next().is_none());
    assert!(follower.wait().unwrap().success());

    let ps = ok(&server, &["ps", "-a"]);
    let line = ps
        .lines()
        .find(|l| l.starts_with(&id[..12]))
        .expect("in ps -a");
    assert!(line.contains("Exited (0)"), "{ps}");
    let described: serde_json::Value =
        serde_json::from_str(&ok(&server, &["describe", &id])).unwrap();
    let task = &described["tasks"][0];
    assert_eq!(task["stoppedReason"], "seen enough");
    assert!(task["executionStoppedAt"].as_f64() <= task["stoppedAt"].as_f64());

    // Timestamps on request.
    let stamped = ok(&server, &["logs", "--timestamps", &id]);
    let first = stamped.lines().next().unwrap();
    assert!(first.ends_with("Z holding 1 MiB"), "{first}");

    // After a restart the stopped task's output is still there.
    drop(server);
    let server = Server::start(data.path());
    assert!(ok(&server, &["logs", &id]).contains("released 3 MiB"));
}

#[test]
fn task_logs_keep_to_their_cap() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_with(data.path(), &["--task-log-bytes", "1024"]);
    let dir = tempfile::tempdir().unwrap();
    let file = taskdef_file(dir.path(), "chatty", Wasi::P1, "args");
    ok(&server, &["register", &file]);
    let many: Vec<String> = (0..200).map(|i| format!("argument-{i}")).collect();
    let mut args = vec!["run-task", "chatty", "--wait", "--"];
    args.extend(many.iter().map(String::as_str));
    let id = ok(&server, &args).lines().next().unwrap().to_string();
    let output = cli(&server, &["logs", &id]).output().unwrap();
    assert_success(&["logs"], &output);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("earlier output was dropped"), "{stderr}");
    assert!(!stdout.contains("arg[1]=argument-0\n"), "{stdout}");
    assert!(stdout.contains("cwd="), "{stdout}");
    let on_disk: u64 = std::fs::read_dir(data.path().join("logs"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(on_disk <= 1024, "{on_disk} bytes of logs on disk");
}

#[test]
fn stats_show_running_tasks_cpu_and_memory() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let dir = tempfile::tempdir().unwrap();
    let file = taskdef_file(dir.path(), "grow", Wasi::P2, "grow");
    ok(&server, &["register", &file]);
    let id = ok(&server, &["run-task", "grow", "--", "4"])
        .trim()
        .to_string();
    // Reports come every two seconds; CPU % needs two of them.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let line = loop {
        let stats = ok(&server, &["stats", "--no-stream"]);
        assert!(stats.starts_with("TASK ID"), "{stats}");
        // TASK ID, TASK DEFINITION, STATUS, CPU %, MEMORY (2 words) / LIMIT (2), PEAK (2).
        if let Some(line) = stats.lines().find(|l| l.starts_with(&id[..12])) {
            let words: Vec<&str> = line.split_whitespace().collect();
            let memory_mib = match words.get(5) {
                Some(&"MiB") => words[4].parse::<f64>().unwrap_or(0.0),
                _ => 0.0,
            };
            if words[3].ends_with('%') && memory_mib >= 4.0 {
                assert_eq!(&words[6..9], ["/", "64", "MiB"], "{line}");
                break line.to_string();
            }
        }
        assert!(std::time::Instant::now() < deadline, "no stats: {stats}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(
        line.contains("grow:1") && line.contains("RUNNING"),
        "{line}"
    );
    ok(&server, &["stop", &id]);
}

#[test]
fn the_cli_signs_when_the_server_checks_signatures() {
    let data = tempfile::tempdir().unwrap();
    let keys = data.path().join("keys.json");
    std::fs::write(&keys, r#"{"AKIDCLI": "cli-secret"}"#).unwrap();
    let server = Server::start_with(data.path(), &["--credentials", keys.to_str().unwrap()]);
    let unsigned = cli(&server, &["tasks"]).output().unwrap();
    assert!(!unsigned.status.success());
    assert!(
        String::from_utf8_lossy(&unsigned.stderr).contains("UnrecognizedClientException"),
        "{unsigned:?}"
    );
    let wrong = cli(&server, &["tasks"])
        .env("AWS_ACCESS_KEY_ID", "AKIDCLI")
        .env("AWS_SECRET_ACCESS_KEY", "not-it")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("InvalidSignatureException"),
        "{wrong:?}"
    );
    let signed = cli(&server, &["tasks"])
        .env("AWS_ACCESS_KEY_ID", "AKIDCLI")
        .env("AWS_SECRET_ACCESS_KEY", "cli-secret")
        .output()
        .unwrap();
    assert_success(&["tasks"], &signed);
}

#[test]
fn a_server_that_is_not_there_is_named() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let data = tempfile::tempdir().unwrap();
    let output = wasmgate(data.path())
        .args(["tasks", "--endpoint", &format!("http://{address}")])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("cannot reach wasmgate at http://{address}")),
        "{stderr}"
    );
}

/// The ids and task definitions (`family:revision`) of the running tasks `wasmgate tasks` lists
/// for `family`.
fn running_tasks(server: &Server, family: &str) -> Vec<(String, String)> {
    ok(server, &["tasks", "--family", family])
        .lines()
        .skip(1)
        .filter(|line| line.contains(" RUNNING "))
        .map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            (words[0].to_string(), words[1].to_string())
        })
        .collect()
}

#[test]
fn services_are_created_listed_scaled_and_updated_through_the_cli() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let dir = tempfile::tempdir().unwrap();
    let file = taskdef_file(dir.path(), "web", Wasi::P1, "graceful");
    ok(&server, &["register", &file]);
    ok(&server, &["register", &file]); // web:2, to deploy below

    let created = ok(
        &server,
        &[
            "create-service",
            "web",
            "--task-definition",
            "web:1",
            "--desired-count",
            "2",
            "--wait",
        ],
    );
    assert!(
        created.contains("web ACTIVE: desired 2, running 0 (web:1)"),
        "{created}"
    );
    assert!(
        created.contains("web stable: 2 running (web:1)"),
        "{created}"
    );
    let tasks = running_tasks(&server, "web");
    assert_eq!(tasks.len(), 2, "{tasks:?}");
    assert!(tasks.iter().all(|(_, definition)| definition == "web:1"));

    let listed = ok(&server, &["services"]);
    assert!(listed.starts_with("SERVICE"), "{listed}");
    let line = listed
        .lines()
        .find(|l| l.starts_with("web "))
        .expect("web listed");
    let words: Vec<&str> = line.split_whitespace().collect();
    // SERVICE STATUS TASK-DEFINITION DESIRED RUNNING PENDING DEPLOYMENTS ROLLOUT
    assert_eq!(
        words,
        ["web", "ACTIVE", "web:1", "2", "2", "0", "1", "COMPLETED"],
        "{listed}"
    );

    let scaled = ok(&server, &["scale", "web", "3", "--wait"]);
    assert!(scaled.contains("web stable: 3 running (web:1)"), "{scaled}");
    assert_eq!(running_tasks(&server, "web").len(), 3);

    // A new revision rolls out: every task meant to run is then of web:2, and runs.
    let updated = ok(
        &server,
        &[
            "update-service",
            "web",
            "--task-definition",
            "web:2",
            "--wait",
        ],
    );
    assert!(
        updated.contains("web stable: 3 running (web:2)"),
        "{updated}"
    );
    let tasks = running_tasks(&server, "web");
    assert_eq!(tasks.len(), 3, "{tasks:?}");
    assert!(
        tasks.iter().all(|(_, definition)| definition == "web:2"),
        "{tasks:?}"
    );

    let emptied = ok(&server, &["scale", "web", "0", "--wait"]);
    assert!(
        emptied.contains("web stable: 0 running (web:2)"),
        "{emptied}"
    );
    assert!(running_tasks(&server, "web").is_empty());

    // The server's errors, named.
    let again = cli(&server, &["create-service", "web"]).output().unwrap();
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains("service web: not created")
            && stderr.contains("Creation of service was not idempotent."),
        "{stderr}"
    );
    let ghost = cli(&server, &["scale", "ghost", "1"]).output().unwrap();
    assert!(!ghost.status.success());
    let stderr = String::from_utf8_lossy(&ghost.stderr);
    assert!(stderr.contains("ServiceNotFoundException"), "{stderr}");
}

#[test]
fn wait_gives_up_on_a_service_that_cannot_start_and_says_why() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let dir = tempfile::tempdir().unwrap();
    let document = serde_json::json!({
        "family": "broken",
        "memory": "32",
        "containerDefinitions": [{"name": "app", "image": "/nonexistent/app.wasm"}],
    });
    let file = dir.path().join("broken.json");
    std::fs::write(&file, document.to_string()).unwrap();
    ok(&server, &["register", file.to_str().unwrap()]);
    let output = cli(
        &server,
        &["create-service", "broken", "--wait", "--wait-timeout", "3"],
    )
    .output()
    .unwrap();
    assert!(!output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("service broken: not stable after 3 s: running 0 of 1"),
        "{stderr}"
    );
}

#[test]
fn the_http_example_answers_once_its_service_created_with_the_cli_is_stable() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    guest(Wasi::P2, "http_hello");
    let example = repo_root().join("examples/http/hello.json");
    let registered = ok(&server, &["register", example.to_str().unwrap()]);
    assert!(registered.starts_with("http-hello:1\t"), "{registered}");
    let created = ok(&server, &["create-service", "http-hello", "--wait"]);
    assert!(
        created.contains("http-hello stable: 1 running (http-hello:1)"),
        "{created}"
    );
    // The gateway takes the route from the store a moment after the task runs (what
    // scripts/serve.sh waits for before it prints the curl line).
    let reply = common::http::get_when_served(&server.gateway, "localhost", "/hello");
    assert_eq!(reply.text(), "Hello from wasmgate! You asked for /hello\n");
    let listed = ok(&server, &["services"]);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("http-hello ") && l.contains(" http-hello:1 ")),
        "{listed}"
    );
}
