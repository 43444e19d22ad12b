//! What a guest can reach: its mounts, nothing else; read-only mounts stay read-only; relative
//! paths follow the working directory.

mod common;

use std::os::unix::fs::symlink;

use common::{BOTH, Host, Wasi, guest};
use serde_json::json;

/// A task running the `files` guest with one volume mounted at `/jail`.
fn files_task(
    wasi: Wasi,
    host_dir: &std::path::Path,
    read_only: bool,
    command: &[&str],
) -> serde_json::Value {
    json!({
        "family": "files",
        "memory": "64",
        "volumes": [{"name": "jail", "host": {"sourcePath": host_dir.display().to_string()}}],
        "containerDefinitions": [{
            "name": "files",
            "image": guest(wasi, "files").display().to_string(),
            "command": command,
            "mountPoints": [{"sourceVolume": "jail", "containerPath": "/jail", "readOnly": read_only}]
        }]
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn escape_attempts_fail_inside_the_guest() {
    let host = Host::new();
    for wasi in BOTH {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.txt"), "host secret").unwrap();
        let jail = outside.path().join("jail");
        std::fs::create_dir(&jail).unwrap();
        symlink("..", jail.join("link-out")).unwrap();
        symlink("/etc/passwd", jail.join("abs-link")).unwrap();

        let outcome = host
            .run(files_task(wasi, &jail, false, &["escape", "/jail"]))
            .await;
        let container = outcome.container("files").unwrap();
        let out = container.log.text(wasmgate::capacity::LogStream::Stdout);
        assert_eq!(container.exit_code, Some(0), "{wasi:?}: {out}");
        assert_eq!(out.matches("blocked").count(), 6, "{wasi:?}: {out}");
        assert!(!out.contains("ESCAPED"), "{wasi:?}: {out}");
        assert!(
            !outside.path().join("written-outside.txt").exists(),
            "{wasi:?}: wrote outside"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_land_in_the_mounted_host_directory() {
    let host = Host::new();
    for wasi in BOTH {
        let dir = tempfile::tempdir().unwrap();
        let outcome = host
            .run(files_task(
                wasi,
                dir.path(),
                false,
                &["write", "/jail/out.txt", "from the guest"],
            ))
            .await;
        assert_eq!(
            outcome.exit_code(),
            0,
            "{wasi:?}: {:?}",
            outcome.containers[0].reason
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("out.txt")).unwrap(),
            "from the guest"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn read_only_mounts_refuse_writes() {
    let host = Host::new();
    for wasi in BOTH {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("kept.txt"), "original").unwrap();
        let outcome = host
            .run(files_task(
                wasi,
                dir.path(),
                true,
                &["write", "/jail/kept.txt", "changed"],
            ))
            .await;
        let container = &outcome.containers[0];
        assert_eq!(container.exit_code, Some(1), "{wasi:?}");
        assert!(
            container
                .log
                .text(wasmgate::capacity::LogStream::Stderr)
                .contains("/jail/kept.txt:"),
            "{wasi:?}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("kept.txt")).unwrap(),
            "original"
        );

        let outcome = host
            .run(files_task(
                wasi,
                dir.path(),
                true,
                &["read", "/jail/kept.txt"],
            ))
            .await;
        assert_eq!(
            outcome.containers[0]
                .log
                .text(wasmgate::capacity::LogStream::Stdout),
            "original",
            "{wasi:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_outside_the_mounts_is_reachable() {
    let host = Host::new();
    for wasi in BOTH {
        let outcome = host
            .run(common::single(wasi, "files", &["read", "/etc/passwd"]))
            .await;
        let container = &outcome.containers[0];
        assert_eq!(container.exit_code, Some(1), "{wasi:?}");
        assert!(
            container
                .log
                .text(wasmgate::capacity::LogStream::Stdout)
                .is_empty()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn relative_paths_follow_the_working_directory() {
    let host = Host::new();
    for wasi in BOTH {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/note.txt"), "relative works").unwrap();
        let mut task = files_task(wasi, dir.path(), false, &["read", "note.txt"]);
        task["containerDefinitions"][0]["workingDirectory"] = json!("/jail/sub");
        let outcome = host.run(task).await;
        let container = &outcome.containers[0];
        assert_eq!(
            container.log.text(wasmgate::capacity::LogStream::Stdout),
            "relative works",
            "{wasi:?}: {}",
            container.log.text(wasmgate::capacity::LogStream::Stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn scratch_volumes_are_shared_by_the_task_and_removed_after() {
    let host = Host::new();
    let outcome = host
        .run(json!({
            "family": "scratch",
            "memory": "64",
            "volumes": [{"name": "work"}],
            "containerDefinitions": [
                {"name": "produce", "essential": false, "image": guest(Wasi::P1, "files").display().to_string(),
                 "command": ["write", "/work/a.txt", "shared"],
                 "mountPoints": [{"sourceVolume": "work", "containerPath": "/work"}]},
                {"name": "consume", "image": guest(Wasi::P2, "files").display().to_string(),
                 "command": ["read", "/work/a.txt"],
                 "mountPoints": [{"sourceVolume": "work", "containerPath": "/work"}],
                 "dependsOn": [{"containerName": "produce", "condition": "SUCCESS"}]}
            ]
        }))
        .await;
    let consume = outcome.container("consume").unwrap();
    assert_eq!(
        consume.log.text(wasmgate::capacity::LogStream::Stdout),
        "shared"
    );
    let scratch = host.data_dir.path().join("tasks").join(&outcome.task_id);
    assert!(
        !scratch.exists(),
        "scratch space {} left behind",
        scratch.display()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sockets_are_off_unless_the_definition_names_where_they_may_connect() {
    let host = Host::new();
    let allowed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (allowed, other) = (
        allowed.local_addr().unwrap().to_string(),
        other.local_addr().unwrap().to_string(),
    );
    let task = |label: Option<&str>, command: &[&str]| {
        let mut document = common::single(Wasi::P2, "connect", command);
        if let Some(value) = label {
            document["containerDefinitions"][0]["dockerLabels"] =
                json!({"wasmgate.network.outbound-hosts": value});
        }
        document
    };
    let stdout = |outcome: wasmgate::agent::TaskOutcome| {
        let container = outcome.container("connect").unwrap();
        container.log.text(wasmgate::capacity::LogStream::Stdout)
    };
    let off = stdout(host.run(task(None, &["connect", &allowed])).await);
    assert!(off.starts_with(&format!("refused {allowed}")), "{off}");
    let on = stdout(
        host.run(task(Some(&allowed), &["connect", &allowed, &other]))
            .await,
    );
    assert!(on.contains(&format!("connected {allowed}\n")), "{on}");
    assert!(on.contains(&format!("refused {other}")), "{on}");
    // Never a server on the host's network, even where any destination is allowed.
    let listen = stdout(host.run(task(Some("*"), &["listen", "127.0.0.1:0"])).await);
    assert!(listen.starts_with("refused 127.0.0.1:0"), "{listen}");
}
