//! Generates the CSI v1 gRPC server code from the spec's own csi.proto with
//! protox (a pure-Rust protobuf compiler: no system protoc needed) feeding
//! tonic's prost code generator.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/csi.proto");
    let fds = protox::compile(["proto/csi.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
