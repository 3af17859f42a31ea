//! The gRPC codec: prost encoding, with malformed messages reported as
//! `INVALID_ARGUMENT` naming the field (prost's error carries the field
//! path, for example `ArtifactEvent.source: invalid string value: data is
//! not UTF-8 encoded`), instead of tonic-prost's default `INTERNAL`.
//!
//! A request that does not decode is the caller's error, and a caller needs
//! to know which field to fix.

use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::ProstEncoder;

/// Prost codec with `INVALID_ARGUMENT` for undecodable messages.
#[derive(Debug, Clone)]
pub struct StatusCodec<T, U> {
    _pd: PhantomData<(T, U)>,
}

impl<T, U> Default for StatusCodec<T, U> {
    fn default() -> Self {
        StatusCodec { _pd: PhantomData }
    }
}

impl<T, U> Codec for StatusCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = StatusDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        StatusDecoder { _pd: PhantomData }
    }
}

/// Decodes `U`, mapping decode errors to `INVALID_ARGUMENT`.
#[derive(Debug, Clone)]
pub struct StatusDecoder<U> {
    _pd: PhantomData<U>,
}

impl<U: Message + Default> Decoder for StatusDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf)
            .map(Some)
            .map_err(|e| Status::invalid_argument(format!("malformed message: {e}")))
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}

/// Sends and receives raw message bytes: what a load generator or a test
/// uses to put arbitrary (hostile) bytes on the wire.
#[derive(Debug, Default, Clone, Copy)]
pub struct RawCodec;

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), Status> {
        use bytes::BufMut as _;
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        use bytes::Buf as _;
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n).to_vec()))
    }
}

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}
