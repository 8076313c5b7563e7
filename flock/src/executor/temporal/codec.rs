//! flock's [`Codec`] as the SDK's payload codec, and the data converter built from it: the SDK
//! applies it to every payload its client and workers send and receive (inputs, results,
//! signals, updates, queries, heartbeat details, failure attributes).

use futures::FutureExt;
use futures::future::BoxFuture;
use temporalio_common::data_converters::{
    DataConverter, DefaultFailureConverter, PayloadCodec, PayloadConversionError, PayloadConverter,
    SerializationContextData,
};
use temporalio_common::protos::temporal::api::common::v1::Payload as ProtoPayload;

use crate::codec::{Codec, CodecError, Payload, undecodable};

/// The data converter of a client and its workers: the default JSON payload converter, the
/// codec, and with a codec, failure messages moved into encoded (so encrypted) attributes.
/// `lenient`: a payload decoded in a workflow context (an activation on a worker, a result or
/// answer on the client) that does not decode is replaced by one carrying the reason (see
/// [`SdkCodec::decode`]), which flock turns into an error naming the run and the key; the SDK
/// itself would fail the workflow task forever, or report only "wrong encoding".
pub(crate) fn data_converter(codec: Option<&Codec>, lenient: bool) -> DataConverter {
    // Without a codec, one with no keys still runs: it passes plain payloads through and turns
    // encrypted ones into errors that say which key they need.
    DataConverter::new(
        PayloadConverter::default(),
        DefaultFailureConverter::new(codec.is_some()),
        SdkCodec {
            codec: codec.cloned().unwrap_or_else(Codec::passthrough),
            lenient,
        },
    )
}

struct SdkCodec {
    codec: Codec,
    lenient: bool,
}

fn from_proto(payload: ProtoPayload) -> Payload {
    Payload {
        metadata: payload.metadata.into_iter().collect(),
        data: payload.data,
    }
}

fn to_proto(payload: Payload) -> ProtoPayload {
    ProtoPayload {
        metadata: payload.metadata.into_iter().collect(),
        data: payload.data,
        ..Default::default()
    }
}

fn conversion_error(error: CodecError) -> PayloadConversionError {
    PayloadConversionError::EncodingError(Box::new(error))
}

impl PayloadCodec for SdkCodec {
    fn encode(
        &self,
        _context: &SerializationContextData,
        payloads: Vec<ProtoPayload>,
    ) -> BoxFuture<'static, Result<Vec<ProtoPayload>, PayloadConversionError>> {
        let codec = self.codec.clone();
        async move {
            let encoded = codec
                .encode(payloads.into_iter().map(from_proto).collect())
                .await
                .map_err(conversion_error)?;
            Ok(encoded.into_iter().map(to_proto).collect())
        }
        .boxed()
    }

    /// In a workflow, a payload that does not decode becomes a payload carrying the reason: the
    /// SDK would otherwise fail the workflow task, which the server retries forever, leaving the
    /// run Running; flock's workflow code fails the run with the reason instead. Elsewhere (an
    /// activity task, the client) the error is returned as it is.
    fn decode(
        &self,
        context: &SerializationContextData,
        payloads: Vec<ProtoPayload>,
    ) -> BoxFuture<'static, Result<Vec<ProtoPayload>, PayloadConversionError>> {
        let codec = self.codec.clone();
        let in_workflow = self.lenient && matches!(context, SerializationContextData::Workflow(_));
        async move {
            let mut out = Vec::with_capacity(payloads.len());
            for payload in payloads {
                match codec.decode(vec![from_proto(payload)]).await {
                    Ok(decoded) => out.extend(decoded.into_iter().map(to_proto)),
                    Err(error) if in_workflow => {
                        tracing::error!(%error, "a payload of a flow run cannot be decoded");
                        out.push(to_proto(undecodable(&error)));
                    }
                    Err(error) => return Err(conversion_error(error)),
                }
            }
            Ok(out)
        }
        .boxed()
    }
}
