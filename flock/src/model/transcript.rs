//! Transcripts: the conversations of recent model requests, kept where the next request of the
//! conversation finds them, so that it carries only its new messages through the run's history
//! (which otherwise holds the whole conversation once per request and outgrows Temporal's
//! limits in a long session; see [`step`](crate::step)).
//!
//! A transcript is named by its request's idempotency key (unique per call, the same across its
//! retries) and kept in two places:
//!
//! * **In memory**, in every process (at most [`TRANSCRIPT_BYTES`], least recently used ones
//!   go first): the default, enough for one worker (or one per queue), nothing to configure.
//! * **In a blob store** when one is configured
//!   ([`FlockBuilder::transcript_store`](crate::FlockBuilder::transcript_store)): a shared
//!   filesystem or an S3-compatible bucket reached by every worker, so that a request landing on
//!   another machine finds the conversation too. With codec keys configured, a stored transcript
//!   is encrypted with them like a payload (encryption configured is encryption applied).
//!
//! A transcript that is found nowhere is not an error: the request asks nothing, and the loop
//! sends the conversation whole. A store that fails is logged and treated the same way: only
//! the history's size depends on transcripts, never a run's result.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::Message;
use crate::codec::{BlobStore, Codec, Payload};

/// How many bytes of conversation the transcripts of one process hold in memory at most.
pub const TRANSCRIPT_BYTES: usize = 64 * 1024 * 1024;

/// Where transcripts are kept besides memory: a blob store, and the codec that encrypts them.
#[derive(Clone)]
pub(crate) struct TranscriptStore {
    pub(crate) store: Arc<dyn BlobStore>,
    pub(crate) codec: Option<Codec>,
}

impl std::fmt::Debug for TranscriptStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TranscriptStore")
            .field("store", &self.store.describe())
            .field(
                "encrypted",
                &self.codec.as_ref().is_some_and(|c| c.keys().is_some()),
            )
            .finish()
    }
}

/// The transcripts in this process's memory.
struct Memory {
    entries: BTreeMap<String, (u64, usize, Arc<Vec<Message>>)>,
    bytes: usize,
    tick: u64,
}

static MEMORY: Mutex<Memory> = Mutex::new(Memory {
    entries: BTreeMap::new(),
    bytes: 0,
    tick: 0,
});

impl Memory {
    fn lock() -> std::sync::MutexGuard<'static, Memory> {
        MEMORY.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&mut self, name: &str) -> Option<Arc<Vec<Message>>> {
        self.tick += 1;
        let tick = self.tick;
        self.entries.get_mut(name).map(|(used, _, messages)| {
            *used = tick;
            messages.clone()
        })
    }

    fn insert(&mut self, name: String, messages: Arc<Vec<Message>>) {
        let size = messages.iter().map(|m| m.content.len() + 64).sum::<usize>();
        self.tick += 1;
        if let Some((_, old, _)) = self.entries.insert(name, (self.tick, size, messages)) {
            self.bytes -= old;
        }
        self.bytes += size;
        while self.bytes > TRANSCRIPT_BYTES && self.entries.len() > 1 {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, (used, _, _))| *used)
                .map(|(name, _)| name.clone())
            else {
                break;
            };
            if let Some((_, size, _)) = self.entries.remove(&oldest) {
                self.bytes -= size;
            }
        }
    }
}

/// The key of transcript `name` in a blob store (idempotency keys hold `/`).
fn blob_key(name: &str) -> String {
    let mut key = String::from("transcript-");
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' {
            key.push(byte as char);
        } else {
            key.push_str(&format!("%{byte:02x}"));
        }
    }
    key
}

/// The conversation transcript `name` holds: from memory, else from the store (when one is
/// configured); `None` when it is in neither.
pub(crate) async fn load(store: Option<&TranscriptStore>, name: &str) -> Option<Arc<Vec<Message>>> {
    if let Some(found) = Memory::lock().get(name) {
        return Some(found);
    }
    let store = store?;
    match read(store, name).await {
        Ok(messages) => {
            let messages = Arc::new(messages);
            Memory::lock().insert(name.to_owned(), messages.clone());
            Some(messages)
        }
        Err(problem) => {
            tracing::debug!(
                transcript = name,
                "transcript not found in {}: {problem}",
                store.store.describe()
            );
            None
        }
    }
}

async fn read(store: &TranscriptStore, name: &str) -> Result<Vec<Message>, String> {
    let bytes = store.store.get(&blob_key(name)).await?;
    let json: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("not JSON: {e}"))?;
    let payload = Payload::from_proto_json(&json).map_err(|e| e.to_string())?;
    let payload = match &store.codec {
        Some(codec) => codec
            .decode(vec![payload])
            .await
            .map_err(|e| e.to_string())?
            .pop()
            .ok_or("no payload")?,
        None => payload,
    };
    serde_json::from_slice(&payload.data).map_err(|e| format!("not a conversation: {e}"))
}

/// Keeps `messages` as transcript `name`: in memory, and in the store when one is configured
/// (a store that fails is logged; the transcript is in memory still).
pub(crate) async fn keep(store: Option<&TranscriptStore>, name: String, messages: Vec<Message>) {
    let messages = Arc::new(messages);
    if let Some(store) = store
        && let Err(problem) = write(store, &name, &messages).await
    {
        tracing::warn!(
            transcript = name.as_str(),
            "cannot keep a transcript in {}: {problem}; a request of its conversation on another worker sends the conversation whole",
            store.store.describe()
        );
    }
    Memory::lock().insert(name, messages);
}

async fn write(store: &TranscriptStore, name: &str, messages: &[Message]) -> Result<(), String> {
    let value = serde_json::to_value(messages).map_err(|e| e.to_string())?;
    let mut payload = Payload::json(&value);
    if let Some(codec) = &store.codec {
        payload = codec
            .encode(vec![payload])
            .await
            .map_err(|e| e.to_string())?
            .pop()
            .ok_or("no payload")?;
    }
    let bytes = serde_json::to_vec(&payload.to_proto_json()).map_err(|e| e.to_string())?;
    store.store.put(&blob_key(name), bytes).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{CodecKeys, FsBlobStore};
    use crate::model::Role;

    fn dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "flock-transcripts-{name}-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn conversation() -> Vec<Message> {
        vec![
            Message::new(Role::System, "be brief"),
            Message::new(Role::User, "the secret word is PELICAN-7431"),
        ]
    }

    #[tokio::test]
    async fn a_transcript_kept_on_one_worker_is_found_by_another_through_the_store() {
        let dir = dir("shared");
        let keys = CodecKeys::new([("k1", [7u8; 32])]).unwrap();
        let store = TranscriptStore {
            store: Arc::new(FsBlobStore::new(&dir)),
            codec: Some(Codec::new(keys)),
        };
        let name = "run-1/4f2a/7".to_owned();
        keep(Some(&store), name.clone(), conversation()).await;
        // another worker: nothing in its memory
        Memory::lock().entries.remove(&name);
        let found = load(Some(&store), &name).await.expect("found in the store");
        assert_eq!(*found, conversation());
        // encryption configured is encryption applied: the stored blob holds no plaintext
        let files: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(files.len(), 1);
        let stored = std::fs::read(files[0].as_ref().unwrap().path()).unwrap();
        assert!(!String::from_utf8_lossy(&stored).contains("PELICAN"));
        // a worker with other keys, or none, does not find it (and sends the conversation whole)
        Memory::lock().entries.remove(&name);
        let wrong = TranscriptStore {
            store: store.store.clone(),
            codec: Some(Codec::new(CodecKeys::new([("k1", [8u8; 32])]).unwrap())),
        };
        assert!(load(Some(&wrong), &name).await.is_none());
        assert!(load(None, "run-1/4f2a/8").await.is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_store_that_fails_loses_nothing_but_the_sharing() {
        // a store whose directory is a file: every write and read fails
        let file = dir("broken");
        std::fs::write(&file, b"not a directory").unwrap();
        let store = TranscriptStore {
            store: Arc::new(FsBlobStore::new(&file)),
            codec: None,
        };
        keep(Some(&store), "run-2/1/1".into(), conversation()).await;
        // kept in memory all the same
        assert_eq!(
            *load(Some(&store), "run-2/1/1").await.unwrap(),
            conversation()
        );
        Memory::lock().entries.remove("run-2/1/1");
        assert!(load(Some(&store), "run-2/1/1").await.is_none());
        let _ = std::fs::remove_file(&file);
    }

    #[test]
    fn blob_keys_are_file_and_object_names() {
        assert_eq!(blob_key("wf-1/run 2/3"), "transcript-wf-1%2frun%202%2f3");
    }
}
