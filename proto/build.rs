//! Compiles `tlog/v1/tlog.proto` with protox (pure Rust, no protoc) and
//! generates the tonic/prost code plus a file descriptor set for gRPC
//! server reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "tlog/v1/tlog.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile([proto], ["."])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("tlog_v1_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .codec_path("crate::codec::StatusCodec")
        .compile_fds(fds)?;
    Ok(())
}
