//! Payload encryption for Temporal: an AES-256-GCM payload codec with named keys and rotation,
//! the claim-check offload of large payloads to a blob store, and a codec server for the
//! Temporal Web UI and CLI.
//!
//! Everything flock writes to Temporal (workflow and agent inputs and results, signals, updates,
//! queries, heartbeat details, failure messages) passes through the [`Codec`] when one is set on
//! [`TemporalExecutorConfig::codec`](crate::TemporalExecutorConfig::codec): the server, its
//! history and its visibility store only ever see ciphertext.
//!
//! Each encrypted payload names the key it was encrypted with in its metadata
//! (`encryption-key-id`), so keys rotate without a migration: new payloads are encrypted with the
//! current (first) key, old ones are decrypted with whichever configured key they name.
//!
//! ```
//! use flock::codec::{Codec, CodecKeys, Payload};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let old = CodecKeys::parse("2025:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").unwrap();
//! let plain = Payload::json(&serde_json::json!({"secret": "the plan"}));
//! let sealed = Codec::new(old).encode(vec![plain.clone()]).await.unwrap();
//! assert!(!String::from_utf8_lossy(&sealed[0].data).contains("the plan"));
//! assert_eq!(sealed[0].metadata["encryption-key-id"], b"2025");
//!
//! // Rotation: a new current key first, the old one still configured for reading.
//! let rotated = CodecKeys::parse(
//!     "2026:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=,2025:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
//! ).unwrap();
//! assert_eq!(Codec::new(rotated).decode(sealed).await.unwrap(), vec![plain]);
//! # });
//! ```

mod offload;
mod server;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload as AeadPayload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

#[cfg(feature = "s3")]
pub use offload::ObjectStoreBlobStore;
pub use offload::{BlobStore, FsBlobStore, Offload};
pub use server::{CodecServer, CodecServerOptions, serve};

/// The environment variable [`CodecKeys::from_env`] reads: `id:base64key,id:base64key,…`, the
/// first key current.
pub const KEYS_ENV: &str = "FLOCK_CODEC_KEYS";

/// The metadata key naming a payload's encoding (Temporal's convention).
pub const ENCODING: &str = "encoding";
/// The encoding of an encrypted payload (as in Temporal's encryption samples).
pub const ENCRYPTED_ENCODING: &str = "binary/encrypted";
/// The metadata key naming the key an encrypted payload was encrypted with.
pub const KEY_ID: &str = "encryption-key-id";
/// The one key of the JSON object that stands, on a worker, for a payload that could not be
/// decoded: its value is the reason, so the run fails with it instead of retrying its workflow
/// task forever.
#[cfg(feature = "temporal")]
pub(crate) const UNDECODABLE_KEY: &str = "$flock_undecodable";

const NONCE_LEN: usize = 12;

/// One payload: Temporal's `Payload` message (metadata and bytes), independent of the SDK.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Payload {
    /// Metadata (`encoding`, `encryption-key-id`, …).
    pub metadata: BTreeMap<String, Vec<u8>>,
    /// The bytes.
    pub data: Vec<u8>,
}

impl Payload {
    /// A `json/plain` payload of `value`, as the SDK's default converter writes it.
    pub fn json(value: &serde_json::Value) -> Payload {
        Payload {
            metadata: BTreeMap::from([(ENCODING.to_owned(), b"json/plain".to_vec())]),
            data: serde_json::to_vec(value).unwrap_or_default(),
        }
    }

    /// The payload's encoding (`json/plain`, `binary/encrypted`, …), empty when it has none.
    pub fn encoding(&self) -> String {
        self.metadata
            .get(ENCODING)
            .map(|e| String::from_utf8_lossy(e).into_owned())
            .unwrap_or_default()
    }

    /// The payload's size on the wire, roughly: its data and metadata bytes.
    pub fn size(&self) -> usize {
        self.data.len()
            + self
                .metadata
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
    }

    /// A compact binary form (what gets encrypted): the metadata entries, then the data, each
    /// length-prefixed.
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.size() + 8 + 8 * self.metadata.len());
        out.extend_from_slice(&(self.metadata.len() as u32).to_le_bytes());
        for (key, value) in &self.metadata {
            out.extend_from_slice(&(key.len() as u32).to_le_bytes());
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(&(value.len() as u32).to_le_bytes());
            out.extend_from_slice(value);
        }
        out.extend_from_slice(&self.data);
        out
    }

    fn from_bytes(bytes: &[u8]) -> Option<Payload> {
        fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            let (head, tail) = bytes.split_at_checked(n)?;
            *bytes = tail;
            Some(head)
        }
        fn len(bytes: &mut &[u8]) -> Option<usize> {
            Some(u32::from_le_bytes(take(bytes, 4)?.try_into().ok()?) as usize)
        }
        let mut rest = bytes;
        let count = len(&mut rest)?;
        let mut metadata = BTreeMap::new();
        for _ in 0..count {
            let key_len = len(&mut rest)?;
            let key = String::from_utf8(take(&mut rest, key_len)?.to_vec()).ok()?;
            let value_len = len(&mut rest)?;
            metadata.insert(key, take(&mut rest, value_len)?.to_vec());
        }
        Some(Payload {
            metadata,
            data: rest.to_vec(),
        })
    }

    /// Temporal's JSON form of a payload (as the codec endpoints and `temporal` CLI write it):
    /// `{"metadata": {"encoding": "<base64>"}, "data": "<base64>"}`.
    pub fn to_proto_json(&self) -> serde_json::Value {
        let metadata: serde_json::Map<String, serde_json::Value> = self
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), BASE64.encode(v).into()))
            .collect();
        serde_json::json!({ "metadata": metadata, "data": BASE64.encode(&self.data) })
    }

    /// Reads Temporal's JSON form of a payload (see [`to_proto_json`](Self::to_proto_json)).
    pub fn from_proto_json(json: &serde_json::Value) -> Result<Payload, CodecError> {
        let bad = |what: &str| CodecError::Malformed(format!("payload JSON: {what}"));
        let object = json.as_object().ok_or_else(|| bad("not an object"))?;
        let mut metadata = BTreeMap::new();
        if let Some(entries) = object.get("metadata") {
            let entries = entries
                .as_object()
                .ok_or_else(|| bad("`metadata` is not an object"))?;
            for (key, value) in entries {
                let text = value
                    .as_str()
                    .ok_or_else(|| bad(&format!("metadata `{key}` is not a base64 string")))?;
                let bytes = BASE64
                    .decode(text)
                    .map_err(|e| bad(&format!("metadata `{key}` is not base64: {e}")))?;
                metadata.insert(key.clone(), bytes);
            }
        }
        let data = match object.get("data") {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(data) => BASE64
                .decode(data.as_str().ok_or_else(|| bad("`data` is not a string"))?)
                .map_err(|e| bad(&format!("`data` is not base64: {e}")))?,
        };
        Ok(Payload { metadata, data })
    }
}

impl fmt::Debug for Payload {
    /// Sizes and metadata only: a payload's data is what the codec protects.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let metadata: BTreeMap<&str, String> = self
            .metadata
            .iter()
            .map(|(k, v)| (k.as_str(), String::from_utf8_lossy(v).into_owned()))
            .collect();
        f.debug_struct("Payload")
            .field("metadata", &metadata)
            .field("data", &format_args!("<{} bytes>", self.data.len()))
            .finish()
    }
}

/// Why a payload could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodecError {
    /// The payload names a key that is not configured.
    UnknownKey {
        /// The key id the payload names.
        key_id: String,
        /// The configured key ids.
        configured: Vec<String>,
    },
    /// The payload does not decrypt with the key it names: a different key under the same id, or
    /// the payload was altered.
    WrongKey {
        /// The key id the payload names.
        key_id: String,
    },
    /// An encrypted payload arrived and no codec keys are configured.
    NoKeys {
        /// The key id the payload names.
        key_id: String,
    },
    /// The payload or a key is not in the expected form.
    Malformed(String),
    /// The blob store of a claim check failed.
    Blob(String),
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodecError::UnknownKey { key_id, configured } => write!(
                f,
                "the payload is encrypted with key `{key_id}`, which is not configured (configured keys: {}); add it to the codec keys ({KEYS_ENV})",
                configured.join(", ")
            ),
            CodecError::WrongKey { key_id } => write!(
                f,
                "the payload does not decrypt with the configured key `{key_id}`: it was encrypted with a different key of that id, or altered"
            ),
            CodecError::NoKeys { key_id } => write!(
                f,
                "the payload is encrypted with key `{key_id}`, and no codec keys are configured; set {KEYS_ENV} or TemporalExecutorConfig::codec"
            ),
            CodecError::Malformed(message) | CodecError::Blob(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for CodecError {}

impl From<CodecError> for crate::Error {
    fn from(error: CodecError) -> crate::Error {
        crate::Error::Config(format!("payload codec: {error}"))
    }
}

/// AES-256 keys by id; the first is current (encrypts), all decrypt. `Debug` shows the ids only.
#[derive(Clone)]
pub struct CodecKeys {
    keys: Arc<Vec<(String, Aes256Gcm)>>,
}

impl CodecKeys {
    /// Keys from `(id, 32-byte key)` pairs, the first current. Ids must be non-empty, unique and
    /// free of `,` and `:`.
    pub fn new<I, S>(keys: I) -> Result<CodecKeys, CodecError>
    where
        I: IntoIterator<Item = (S, [u8; 32])>,
        S: Into<String>,
    {
        let mut out: Vec<(String, Aes256Gcm)> = Vec::new();
        for (id, key) in keys {
            let id = id.into();
            if id.is_empty() || id.contains([',', ':']) || id.trim() != id {
                return Err(CodecError::Malformed(format!(
                    "codec key id `{id}` must be non-empty, without spaces, `,` or `:`"
                )));
            }
            if out.iter().any(|(existing, _)| *existing == id) {
                return Err(CodecError::Malformed(format!(
                    "codec key id `{id}` is given twice"
                )));
            }
            out.push((id, Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key))));
        }
        if out.is_empty() {
            return Err(CodecError::Malformed("no codec keys given".into()));
        }
        Ok(CodecKeys {
            keys: Arc::new(out),
        })
    }

    /// Parses `id:base64key,id:base64key,…` (the form of [`KEYS_ENV`]); each key is 32 bytes,
    /// standard base64. Errors name the key id, never the key.
    pub fn parse(spec: &str) -> Result<CodecKeys, CodecError> {
        let mut keys = Vec::new();
        for (index, entry) in spec.split(',').map(str::trim).enumerate() {
            let Some((id, key)) = entry.split_once(':') else {
                return Err(CodecError::Malformed(format!(
                    "codec key {} is not `id:base64key`",
                    index + 1
                )));
            };
            let bytes = BASE64.decode(key.trim()).map_err(|e| {
                CodecError::Malformed(format!("codec key `{id}` is not standard base64: {e}"))
            })?;
            let key: [u8; 32] = bytes.try_into().map_err(|bytes: Vec<u8>| {
                CodecError::Malformed(format!(
                    "codec key `{id}` is {} bytes; AES-256 needs 32 (e.g. `openssl rand -base64 32`)",
                    bytes.len()
                ))
            })?;
            keys.push((id.trim().to_owned(), key));
        }
        CodecKeys::new(keys)
    }

    /// The keys in [`KEYS_ENV`], `None` when it is unset or empty.
    pub fn from_env() -> Result<Option<CodecKeys>, CodecError> {
        match std::env::var(KEYS_ENV) {
            Ok(spec) if !spec.trim().is_empty() => CodecKeys::parse(&spec)
                .map(Some)
                .map_err(|e| CodecError::Malformed(format!("{KEYS_ENV}: {e}"))),
            _ => Ok(None),
        }
    }

    /// The id of the current key (the one new payloads are encrypted with).
    pub fn current_id(&self) -> &str {
        &self.keys[0].0
    }

    /// Every configured key id, the current one first.
    pub fn ids(&self) -> Vec<String> {
        self.keys.iter().map(|(id, _)| id.clone()).collect()
    }

    fn encrypt(&self, payload: &Payload) -> Payload {
        let (id, cipher) = &self.keys[0];
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let plain = payload.to_bytes();
        let sealed = cipher
            .encrypt(
                &nonce,
                AeadPayload {
                    msg: &plain,
                    aad: id.as_bytes(),
                },
            )
            .unwrap_or_default();
        let mut data = Vec::with_capacity(NONCE_LEN + sealed.len());
        data.extend_from_slice(&nonce);
        data.extend_from_slice(&sealed);
        Payload {
            metadata: BTreeMap::from([
                (ENCODING.to_owned(), ENCRYPTED_ENCODING.as_bytes().to_vec()),
                (KEY_ID.to_owned(), id.as_bytes().to_vec()),
            ]),
            data,
        }
    }

    fn decrypt(&self, key_id: &str, data: &[u8]) -> Result<Payload, CodecError> {
        let Some((_, cipher)) = self.keys.iter().find(|(id, _)| id == key_id) else {
            return Err(CodecError::UnknownKey {
                key_id: key_id.to_owned(),
                configured: self.ids(),
            });
        };
        let wrong = || CodecError::WrongKey {
            key_id: key_id.to_owned(),
        };
        let (nonce, sealed) = data.split_at_checked(NONCE_LEN).ok_or_else(wrong)?;
        let plain = cipher
            .decrypt(
                Nonce::from_slice(nonce),
                AeadPayload {
                    msg: sealed,
                    aad: key_id.as_bytes(),
                },
            )
            .map_err(|_| wrong())?;
        Payload::from_bytes(&plain).ok_or_else(|| {
            CodecError::Malformed(format!(
                "a payload decrypted with key `{key_id}` is not a payload"
            ))
        })
    }
}

impl fmt::Debug for CodecKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CodecKeys")
            .field("ids", &self.ids())
            .finish_non_exhaustive()
    }
}

/// The payload codec: encryption (when keys are set) and the claim-check offload of large
/// payloads (when an [`Offload`] is set). Cheap to clone.
///
/// Encoding encrypts, then offloads what is still over the threshold, so the blob store holds
/// ciphertext only. Decoding accepts payloads that were never encoded (a history written
/// before the codec was turned on reads as before).
#[derive(Clone)]
pub struct Codec {
    inner: Arc<CodecInner>,
}

struct CodecInner {
    keys: Option<CodecKeys>,
    offload: Option<Offload>,
}

impl Codec {
    /// A codec that encrypts with `keys`.
    pub fn new(keys: CodecKeys) -> Codec {
        Codec::build(Some(keys), None)
    }

    /// A codec that only offloads large payloads (no encryption).
    pub fn offload_only(offload: Offload) -> Codec {
        Codec::build(None, Some(offload))
    }

    /// This codec, with large payloads offloaded as `offload` says.
    pub fn with_offload(self, offload: Offload) -> Codec {
        Codec::build(self.inner.keys.clone(), Some(offload))
    }

    /// No keys, no offload: passes plain payloads, refuses encrypted ones naming their key.
    #[cfg(feature = "temporal")]
    pub(crate) fn passthrough() -> Codec {
        Codec::build(None, None)
    }

    fn build(keys: Option<CodecKeys>, offload: Option<Offload>) -> Codec {
        Codec {
            inner: Arc::new(CodecInner { keys, offload }),
        }
    }

    /// The codec configured by the environment: keys from [`KEYS_ENV`]; `None` when unset.
    pub fn from_env() -> Result<Option<Codec>, CodecError> {
        Ok(CodecKeys::from_env()?.map(Codec::new))
    }

    /// The encryption keys, if any.
    pub fn keys(&self) -> Option<&CodecKeys> {
        self.inner.keys.as_ref()
    }

    /// The offload settings, if any.
    pub fn offload(&self) -> Option<&Offload> {
        self.inner.offload.as_ref()
    }

    /// Encodes payloads on their way to the server.
    pub async fn encode(&self, payloads: Vec<Payload>) -> Result<Vec<Payload>, CodecError> {
        let mut out = Vec::with_capacity(payloads.len());
        for payload in payloads {
            let payload = match &self.inner.keys {
                Some(keys) => keys.encrypt(&payload),
                None => payload,
            };
            let payload = match &self.inner.offload {
                Some(offload) if payload.size() > offload.threshold => {
                    offload.check_in(payload).await?
                }
                _ => payload,
            };
            out.push(payload);
        }
        Ok(out)
    }

    /// Decodes payloads that came from the server. Payloads this codec did not encode pass
    /// unchanged.
    pub async fn decode(&self, payloads: Vec<Payload>) -> Result<Vec<Payload>, CodecError> {
        let mut out = Vec::with_capacity(payloads.len());
        for payload in payloads {
            out.push(self.decode_one(payload).await?);
        }
        Ok(out)
    }

    async fn decode_one(&self, payload: Payload) -> Result<Payload, CodecError> {
        let payload = if payload.encoding() == offload::CLAIM_CHECK_ENCODING {
            match &self.inner.offload {
                Some(offload) => offload.check_out(&payload).await?,
                None => offload::check_out_without_store(&payload)?,
            }
        } else {
            payload
        };
        if payload.encoding() != ENCRYPTED_ENCODING {
            return Ok(payload);
        }
        let key_id = payload
            .metadata
            .get(KEY_ID)
            .map(|id| String::from_utf8_lossy(id).into_owned())
            .unwrap_or_default();
        match &self.inner.keys {
            Some(keys) => keys.decrypt(&key_id, &payload.data),
            None => Err(CodecError::NoKeys { key_id }),
        }
    }
}

impl PartialEq for Codec {
    /// The same codec (clones of one value).
    fn eq(&self, other: &Codec) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl fmt::Debug for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Codec")
            .field("keys", &self.inner.keys)
            .field("offload", &self.inner.offload)
            .finish()
    }
}

/// A payload standing for one that could not be decoded: it carries the reason.
#[cfg(feature = "temporal")]
pub(crate) fn undecodable(error: &CodecError) -> Payload {
    Payload::json(&serde_json::json!({ UNDECODABLE_KEY: error.to_string() }))
}

/// The reason, when `value` stands for a payload that could not be decoded.
#[cfg(feature = "temporal")]
pub(crate) fn undecodable_reason(value: &serde_json::Value) -> Option<&str> {
    let object = value.as_object()?;
    if object.len() != 1 {
        return None;
    }
    object.get(UNDECODABLE_KEY)?.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(spec: &[(&str, u8)]) -> CodecKeys {
        CodecKeys::new(spec.iter().map(|(id, byte)| (*id, [*byte; 32]))).unwrap()
    }

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future)
    }

    #[test]
    fn round_trip_rotation_and_key_errors() {
        let plain = Payload::json(&serde_json::json!({"prompt": "top secret"}));
        let old = Codec::new(keys(&[("k1", 1)]));
        let sealed = block_on(old.encode(vec![plain.clone()])).unwrap();
        assert_eq!(sealed[0].encoding(), ENCRYPTED_ENCODING);
        assert!(!String::from_utf8_lossy(&sealed[0].data).contains("top secret"));
        // rotated: new current key, old still readable
        let rotated = Codec::new(keys(&[("k2", 2), ("k1", 1)]));
        assert_eq!(
            block_on(rotated.decode(sealed.clone())).unwrap(),
            vec![plain.clone()]
        );
        let resealed = block_on(rotated.encode(vec![plain.clone()])).unwrap();
        assert_eq!(resealed[0].metadata[KEY_ID], b"k2");
        // missing key
        let error = block_on(old.decode(resealed)).unwrap_err();
        assert_eq!(
            error,
            CodecError::UnknownKey {
                key_id: "k2".into(),
                configured: vec!["k1".into()]
            }
        );
        assert!(error.to_string().contains("`k2`"), "{error}");
        // wrong key under the same id
        let error = block_on(Codec::new(keys(&[("k1", 9)])).decode(sealed.clone())).unwrap_err();
        assert_eq!(
            error,
            CodecError::WrongKey {
                key_id: "k1".into()
            }
        );
        // no keys at all
        let offload_only = Codec::offload_only(Offload::new(FsBlobStore::new(
            std::env::temp_dir().join("flock-codec-unit"),
        )));
        let error = block_on(offload_only.decode(sealed)).unwrap_err();
        assert_eq!(
            error,
            CodecError::NoKeys {
                key_id: "k1".into()
            }
        );
        // payloads never encoded pass
        assert_eq!(
            block_on(old.decode(vec![plain.clone()])).unwrap(),
            vec![plain]
        );
    }

    #[test]
    fn keys_parse_with_errors_that_name_the_key_not_its_bytes() {
        let secret = BASE64.encode([7u8; 16]);
        let error = CodecKeys::parse(&format!("short:{secret}")).unwrap_err();
        assert!(error.to_string().contains("`short` is 16 bytes"), "{error}");
        assert!(!error.to_string().contains(&secret));
        assert!(CodecKeys::parse("nocolon").is_err());
        let good = BASE64.encode([7u8; 32]);
        let keys = CodecKeys::parse(&format!("a:{good}, b:{good}")).unwrap();
        assert_eq!(keys.ids(), ["a", "b"]);
        assert_eq!(keys.current_id(), "a");
        assert!(!format!("{keys:?}").contains(&good));
        assert!(CodecKeys::parse(&format!("a:{good},a:{good}")).is_err());
    }

    #[test]
    fn proto_json_round_trip() {
        let payload = Payload::json(&serde_json::json!([1, 2]));
        let json = payload.to_proto_json();
        assert_eq!(json["metadata"]["encoding"], "anNvbi9wbGFpbg==");
        assert_eq!(Payload::from_proto_json(&json).unwrap(), payload);
        assert!(Payload::from_proto_json(&serde_json::json!({"data": 5})).is_err());
    }
}
