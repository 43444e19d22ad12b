//! wasmgate: a serverless runtime in the mould of AWS Fargate on ECS, whose capacity is Wasm.
//!
//! See ARCHITECTURE.md for the map. In short: [`taskdef`] parses and validates ECS task
//! definitions; [`image`] turns an image reference into bytes; [`capacity`] runs containers
//! (Wasm in wasmtime, containers through runc later); [`agent`] runs whole tasks on a host;
//! [`logs`] keeps their output; [`store`] and [`api`] are the control plane.

pub mod agent;
pub mod api;
pub mod arn;
pub mod capacity;
pub mod client;
pub mod config;
pub mod console;
pub mod control;
pub mod controller;
pub mod copilot;
pub mod deploy;
pub mod gateway;
pub mod image;
pub mod logs;
pub mod memory;
pub mod net;
pub mod protocol;
pub mod records;
pub mod schedule;
pub mod server;
pub mod store;
pub mod taskdef;
pub mod tls;
