//! AWS Copilot manifests applied as stacks, the way Copilot itself deploys each manifest as a
//! CloudFormation stack: `manifest` reads a Load Balanced Web Service, a Backend Service or a
//! Scheduled Job (unknown keys and wrong types refused by their key path, an environment's
//! overrides merged in); `schedule` turns a job's `on.schedule` into EventBridge's
//! expression; `duration` reads Go durations; `template` makes the template the stack
//! engine (`crate::deploy`) deploys.
//!
//! Architecture invariant: pure. No I/O and no ECS calls: the CLI reads the file and sends the
//! template to `WasmgateV1.DeployStack`, so a manifest's resources are made exactly as a
//! template's are.

pub mod duration;
pub mod manifest;
pub mod schedule;
pub mod template;

pub use manifest::{Manifest, ManifestError, parse};
pub use template::{Placement, stack_name, template};
