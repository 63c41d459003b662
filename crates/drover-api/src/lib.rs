//! Drover's wire contract: the worker protocol (protobuf over gRPC), the REST types, and the
//! error kinds with their one mapping to HTTP and gRPC codes.
//!
//! Boundary: only this crate knows the wire formats; conversions to and from core types live here.

pub mod audit;
pub mod auth;
pub mod cluster;
pub mod convert;
pub mod duration;
pub mod error;
pub mod events;
pub mod failover;
pub mod flow;
pub mod limits;
pub mod namespace;
pub mod patterns;
pub mod rest;
pub mod schedule;
pub mod schema;
pub mod secret;

/// Generated from `proto/drover/v1/worker.proto` and `events.proto`.
pub mod proto {
    #![allow(clippy::all)]
    tonic::include_proto!("drover.v1");
}

pub use error::{ApiError, ErrorCode};
