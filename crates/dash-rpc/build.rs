//! Generates the master_api and worker_api code from proto/dash.proto with protox (a pure-Rust
//! protobuf compiler), so building Dash needs no `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/dash.proto");
    let descriptors = protox::compile(["proto/dash.proto"], ["proto"])?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
