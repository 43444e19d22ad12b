//! Declarative provisioning (issue 15), begun: CloudFormation templates as `cdk synth` writes
//! them, evaluated without I/O (`template`). Deploying a stack (a change set per logical id,
//! applied in dependency order through the ECS API, rolled back on failure) builds on it.

pub mod template;
