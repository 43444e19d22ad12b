//! Declarative provisioning: CloudFormation templates as `cdk synth` writes them, evaluated
//! without I/O (`template`), mapped onto ECS members (`properties`), per resource type
//! (`resources`), and deployed as a stack: a change set per logical id, applied in dependency
//! order through the ECS API and rolled back on failure (`stack`), each change with what it
//! changes per property (`diff`).

pub mod diff;
pub mod properties;
pub mod resources;
pub mod routes;
pub mod stack;
pub mod template;
