//! Real AWS clients for API tests: a Python venv with boto3 and the AWS CLI under target/, made
//! once (pip only runs when the venv lacks them), and helpers that run them against an endpoint.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The venv's python, with boto3 installed.
pub fn python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let venv = super::repo_root().join("target/test-venv");
            let python = venv.join("bin/python");
            let has_boto3 = python.exists()
                && Command::new(&python)
                    .args(["-c", "import boto3"])
                    .status()
                    .is_ok_and(|s| s.success());
            if !has_boto3 {
                let made = Command::new("python3")
                    .arg("-m")
                    .arg("venv")
                    .arg(&venv)
                    .status()
                    .expect("python3 runs");
                assert!(made.success(), "python3 -m venv failed");
                let installed = Command::new(&python)
                    .args(["-m", "pip", "install", "--quiet", "boto3", "awscli"])
                    .status()
                    .expect("pip runs");
                assert!(installed.success(), "pip install boto3 failed");
            }
            python
        })
        .clone()
}

/// Runs a boto3 `script` with `ecs` bound to a client for `endpoint`; returns its stdout, and
/// panics with its stderr if it fails.
pub fn boto3(endpoint: &str, script: &str) -> String {
    let prelude = format!(
        "import boto3, json, botocore, botocore.config\n\
         ecs = boto3.client('ecs', endpoint_url='{endpoint}', region_name='us-east-1',\n\
                            aws_access_key_id='AKIDEXAMPLE', aws_secret_access_key='secret')\n"
    );
    run_python(&format!("{prelude}{script}"))
}

/// Runs a Python `program` with the tests' venv (boto3 and the AWS CLI); returns its stdout,
/// and panics with its stderr if it fails.
pub fn run_python(program: &str) -> String {
    let output = Command::new(python())
        .arg("-c")
        .arg(program)
        .output()
        .expect("python runs");
    assert!(
        output.status.success(),
        "python failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs `aws --endpoint-url ENDPOINT --region us-east-1 ecs ARGS...`; returns stdout, panics
/// with stderr on failure.
pub fn aws_ecs(endpoint: &str, args: &[&str]) -> String {
    let aws = python().parent().expect("venv bin").join("aws");
    let output = Command::new(aws)
        .args([
            "--endpoint-url",
            endpoint,
            "--region",
            "us-east-1",
            "--output",
            "json",
            "ecs",
        ])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", "secret")
        .output()
        .expect("aws runs");
    assert!(
        output.status.success(),
        "aws ecs {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
