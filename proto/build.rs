//! Generates the gRPC code from `proto/kvs/v1/*.proto` with the protoc binary vendored from
//! crates.io, so no system protoc is needed.

#![allow(unsafe_code, clippy::disallowed_methods)] // one set_var, before any thread exists

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts run single-threaded; prost-build reads PROTOC.
    unsafe { std::env::set_var("PROTOC", protoc) };
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let files = [
        "proto/kvs/v1/admin.proto",
        "proto/kvs/v1/agent.proto",
        "proto/kvs/v1/config.proto",
        "proto/kvs/v1/raft.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("kvs_descriptor.bin"))
        .compile_protos(&files, &["proto"])?;
    Ok(())
}
