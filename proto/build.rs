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
        // Append answers are built and read by the hundred thousand per
        // second: their byte fields are `bytes::Bytes`, so a batch's proof
        // hashes share one buffer and a client's decode borrows from the
        // received one, instead of one allocation per hash.
        .bytes(".tlog.v1.AppendResponse")
        .compile_fds(fds)?;
    Ok(())
}
