//! Generates the orchestrator.v1 types and service from `proto/` without a system `protoc`:
//! protox parses the files, tonic-prost-build generates code from the descriptor set, and the
//! encoded set is written to OUT_DIR for gRPC server reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let proto_file = proto_root.join("orchestrator/v1/orchestrator.proto");
    println!("cargo:rerun-if-changed={}", proto_file.display());

    let fds = protox::compile([&proto_file], [&proto_root])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    // compile_fds does not write the descriptor set itself (tonic-prost-build 0.14), reflection needs it.
    std::fs::write(out_dir.join("orchestrator_descriptor.bin"), prost::Message::encode_to_vec(&fds))?;
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(fds)?;
    Ok(())
}
