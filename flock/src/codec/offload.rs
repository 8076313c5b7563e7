//! Claim checks: a payload over a size threshold is stored in a blob store, and Temporal's
//! history holds only a small reference to it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use futures::future::BoxFuture;

use super::{CodecError, ENCODING, Payload};

/// The encoding of a claim check payload (its data is JSON: `{"blob": key, "size": n}`).
pub const CLAIM_CHECK_ENCODING: &str = "json/flock-claim-check";

/// Where offloaded payloads go. Object-safe, so any store fits (the local filesystem
/// [`FsBlobStore`], S3 and friends through [`ObjectStoreBlobStore`] with feature `s3`).
///
/// [`ObjectStoreBlobStore`]: crate::codec::ObjectStoreBlobStore
pub trait BlobStore: Send + Sync + 'static {
    /// Stores `bytes` under `key`.
    fn put(&self, key: &str, bytes: Vec<u8>) -> BoxFuture<'_, Result<(), String>>;
    /// The bytes stored under `key`.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Vec<u8>, String>>;
    /// Where the store is, for messages (a directory, a bucket URL).
    fn describe(&self) -> String;
}

/// Blobs as files in a directory (created on first use).
#[derive(Debug, Clone)]
pub struct FsBlobStore {
    dir: PathBuf,
}

impl FsBlobStore {
    /// A store in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> FsBlobStore {
        FsBlobStore { dir: dir.into() }
    }
}

impl BlobStore for FsBlobStore {
    fn put(&self, key: &str, bytes: Vec<u8>) -> BoxFuture<'_, Result<(), String>> {
        let path = self.dir.join(key);
        Box::pin(async move {
            tokio::fs::create_dir_all(&self.dir)
                .await
                .map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
            let partial = path.with_extension("partial");
            tokio::fs::write(&partial, bytes)
                .await
                .map_err(|e| format!("cannot write {}: {e}", partial.display()))?;
            tokio::fs::rename(&partial, &path)
                .await
                .map_err(|e| format!("cannot write {}: {e}", path.display()))
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Vec<u8>, String>> {
        Box::pin(async move {
            let path = self.dir.join(key);
            tokio::fs::read(&path)
                .await
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
        })
    }

    fn describe(&self) -> String {
        self.dir.display().to_string()
    }
}

/// Blobs in any [`object_store`] store: S3 and S3-compatible servers (MinIO, Ceph, moto), GCS,
/// Azure, memory.
#[cfg(feature = "s3")]
pub struct ObjectStoreBlobStore {
    store: Arc<dyn object_store::ObjectStore>,
    prefix: String,
    describe: String,
}

#[cfg(feature = "s3")]
impl ObjectStoreBlobStore {
    /// Blobs under `prefix` in `store`; `describe` says where that is (for messages).
    pub fn new(
        store: Arc<dyn object_store::ObjectStore>,
        prefix: impl Into<String>,
        describe: impl Into<String>,
    ) -> ObjectStoreBlobStore {
        ObjectStoreBlobStore {
            store,
            prefix: prefix.into(),
            describe: describe.into(),
        }
    }

    /// An S3 bucket, configured from the `AWS_*` environment variables
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT` for
    /// S3-compatible servers, `AWS_ALLOW_HTTP=true` for plain-HTTP endpoints).
    pub fn s3_from_env(
        bucket: &str,
        prefix: impl Into<String>,
    ) -> Result<ObjectStoreBlobStore, CodecError> {
        let store = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .map_err(|e| CodecError::Blob(format!("S3 bucket `{bucket}`: {e}")))?;
        Ok(ObjectStoreBlobStore::new(
            Arc::new(store),
            prefix,
            format!("s3://{bucket}"),
        ))
    }

    fn path(&self, key: &str) -> object_store::path::Path {
        object_store::path::Path::from(format!("{}{key}", self.prefix))
    }
}

#[cfg(feature = "s3")]
impl BlobStore for ObjectStoreBlobStore {
    fn put(&self, key: &str, bytes: Vec<u8>) -> BoxFuture<'_, Result<(), String>> {
        let path = self.path(key);
        Box::pin(async move {
            self.store
                .put(&path, bytes.into())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Vec<u8>, String>> {
        Box::pin(async move {
            let got = self
                .store
                .get(&self.path(key))
                .await
                .map_err(|e| e.to_string())?;
            got.bytes()
                .await
                .map(|b| b.to_vec())
                .map_err(|e| e.to_string())
        })
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }
}

/// The claim-check settings: where large payloads go and from what size.
#[derive(Clone)]
pub struct Offload {
    pub(crate) store: Arc<dyn BlobStore>,
    /// Payloads larger than this many bytes (after encryption) are offloaded; 128 KiB by default,
    /// below Temporal's 256 KiB warning.
    pub threshold: usize,
    /// The largest payload (as JSON) flock accepts with offload on: 64 MiB by default.
    pub max_payload: usize,
}

impl Offload {
    /// Offload to `store` from the default threshold.
    pub fn new(store: impl BlobStore) -> Offload {
        Offload {
            store: Arc::new(store),
            threshold: 128 * 1024,
            max_payload: 64 * 1024 * 1024,
        }
    }

    /// The threshold, in bytes.
    pub fn threshold(mut self, bytes: usize) -> Offload {
        self.threshold = bytes;
        self
    }

    /// The largest payload accepted, in bytes.
    pub fn max_payload(mut self, bytes: usize) -> Offload {
        self.max_payload = bytes;
        self
    }

    pub(crate) async fn check_in(&self, payload: Payload) -> Result<Payload, CodecError> {
        let key = format!("flock-payload-{}", uuid::Uuid::new_v4());
        let size = payload.data.len();
        self.store
            .put(&key, payload.to_bytes())
            .await
            .map_err(|e| {
                CodecError::Blob(format!(
                    "cannot offload a {size}-byte payload to {}: {e}",
                    self.store.describe()
                ))
            })?;
        Ok(Payload {
            metadata: BTreeMap::from([(
                ENCODING.to_owned(),
                CLAIM_CHECK_ENCODING.as_bytes().to_vec(),
            )]),
            data: serde_json::to_vec(&serde_json::json!({ "blob": key, "size": size }))
                .unwrap_or_default(),
        })
    }

    pub(crate) async fn check_out(&self, claim: &Payload) -> Result<Payload, CodecError> {
        let key = blob_key(claim)?;
        let bytes = self.store.get(&key).await.map_err(|e| {
            CodecError::Blob(format!(
                "the payload offloaded as blob `{key}` cannot be read from {}: {e}",
                self.store.describe()
            ))
        })?;
        Payload::from_bytes(&bytes).ok_or_else(|| {
            CodecError::Blob(format!(
                "blob `{key}` in {} is not an offloaded payload",
                self.store.describe()
            ))
        })
    }
}

fn blob_key(claim: &Payload) -> Result<String, CodecError> {
    let json: serde_json::Value = serde_json::from_slice(&claim.data)
        .map_err(|e| CodecError::Malformed(format!("a claim check is not JSON: {e}")))?;
    json["blob"]
        .as_str()
        .filter(|key| !key.contains(['/', '\\']) && !key.starts_with('.'))
        .map(str::to_owned)
        .ok_or_else(|| CodecError::Malformed("a claim check names no valid blob".into()))
}

pub(crate) fn check_out_without_store(claim: &Payload) -> Result<Payload, CodecError> {
    Err(CodecError::Blob(format!(
        "the payload was offloaded as blob `{}`, and no blob store is configured (Codec::with_offload)",
        blob_key(claim)?
    )))
}

impl fmt::Debug for Offload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Offload")
            .field("store", &self.store.describe())
            .field("threshold", &self.threshold)
            .field("max_payload", &self.max_payload)
            .finish()
    }
}
