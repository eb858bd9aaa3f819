//! goreal-operator: turns GoREALSecurityPolicy resources into hardened workloads and a
//! compliance report. Pure capability logic lives in `model`, `policy`, `compliance` and
//! `status`; the API layer (`apply`, `controller`) stays thin around it.
#![forbid(unsafe_code)]

pub mod apply;
pub mod audit;
pub mod compliance;
pub mod controller;
pub mod crd;
pub mod error;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod model;
pub mod names;
pub mod observed;
pub mod policy;
pub mod render;
pub mod rotate;
pub mod secret_value;
pub mod status;
pub mod telemetry;
