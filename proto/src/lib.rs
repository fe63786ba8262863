//! KVS wire protocol, shared by the coordinator, the agent and the CLI.
//!
//! ```text
//!   proto/kvs/v1/*.proto ──build.rs (vendored protoc)──► pb (generated, raw wire types)
//!                                                          │ TryFrom (validation at the boundary)
//!                                                          ▼
//!   plan · settings · names · model (domain types) ◄──── error::ProtocolError ──► tonic::Status
//! ```
//!
//! The CLI depends on this crate only, never on the coordinator, so it stays small and ships to
//! operator laptops. Required fields are non-`Option` in the domain types; a malformed message
//! becomes a [`ProtocolError`] and from there an `INVALID_ARGUMENT` status, never a panic.

pub mod error;
pub mod metadata;
pub mod model;
pub mod names;
pub mod plan;
pub mod settings;

pub use error::{ApiError, ProtocolError};

/// The generated protobuf and gRPC code. Raw wire types: validate with the `model` conversions.
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("kvs.v1");
}

/// The encoded file descriptor set of every `.proto`, for gRPC reflection and grpcurl.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("kvs_descriptor");
