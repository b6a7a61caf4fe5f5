//! What the sandbox holds: every conversation call 1 created, in creation order, with what
//! was uploaded to its key, and where each one's audio goes. `inspect.rs` shows it.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// One conversation as `GET /_sandbox/conversations` shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Conversation {
    pub conversation_id: String,
    pub organisation_id: String,
    /// Call 1's JSON body, as received.
    pub metadata: Map<String, Value>,
    /// True once an upload to its key succeeded.
    pub uploaded: bool,
    /// Size of the last successful upload; `None` until one succeeded.
    pub bytes: Option<u64>,
    /// SHA-256 (lower-case hex) of the last successful upload.
    pub sha256: Option<String>,
    /// How many uploads to its key succeeded: more than 1 means the file was uploaded twice.
    pub uploads: u32,
}

#[derive(Default)]
pub struct Store {
    inner: Mutex<Inner>,
}

/// Conversations are kept in fixed-size chunks, and keys in a B-tree: a growing `Vec` or
/// `HashMap` would, at a few hundred thousand conversations, copy or rehash everything while
/// holding the lock each time it grows, and every call 1 waiting would see that as latency.
const CHUNK: usize = 4096;

#[derive(Default)]
struct Inner {
    chunks: Vec<Vec<Conversation>>,
    len: usize,
    by_key: BTreeMap<String, usize>,
    uploads: u64,
}

impl Inner {
    fn push(&mut self, conversation: Conversation) -> usize {
        if self.chunks.last().is_none_or(|chunk| chunk.len() == CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        self.chunks
            .last_mut()
            .expect("a chunk with room")
            .push(conversation);
        self.len += 1;
        self.len - 1
    }

    fn iter(&self) -> impl Iterator<Item = &Conversation> {
        self.chunks.iter().flatten()
    }
}

/// Serialises every conversation as one JSON array without copying them.
struct All<'a>(&'a Inner);

impl Serialize for All<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter())
    }
}

impl Store {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("the store is never poisoned")
    }

    /// Records a new conversation whose audio is to be uploaded to `key`.
    pub fn create(
        &self,
        conversation_id: String,
        organisation_id: String,
        metadata: Map<String, Value>,
        key: String,
    ) {
        let mut inner = self.lock();
        let index = inner.push(Conversation {
            conversation_id,
            organisation_id,
            metadata,
            uploaded: false,
            bytes: None,
            sha256: None,
            uploads: 0,
        });
        inner.by_key.insert(key, index);
    }

    /// How many conversations exist; the next one's sequence number is this plus one.
    pub fn len(&self) -> usize {
        self.lock().len
    }

    /// Records a successful upload to `key`.
    pub fn record_upload(&self, key: &str, bytes: u64, sha256: String) {
        let mut inner = self.lock();
        inner.uploads += 1;
        if let Some(&index) = inner.by_key.get(key) {
            let conversation = &mut inner.chunks[index / CHUNK][index % CHUNK];
            conversation.uploaded = true;
            conversation.bytes = Some(bytes);
            conversation.sha256 = Some(sha256);
            conversation.uploads += 1;
        }
    }

    pub fn snapshot(&self) -> Vec<Conversation> {
        self.lock().iter().cloned().collect()
    }

    /// Successful uploads, all keys together.
    pub fn uploads(&self) -> u64 {
        self.lock().uploads
    }

    pub(crate) fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&All(&self.lock())).expect("conversations serialise")
    }
}

/// Where a conversation's audio goes: `uploads/{2 hex digits}/{id}`. Spreading objects over
/// 256 folders keeps concurrent uploads from queueing on one folder's lock in the filesystem
/// (creating a file and renaming it into place both take it).
pub(crate) fn object_key(conversation_id: &str) -> String {
    let fan = Sha256::digest(conversation_id.as_bytes())[0];
    format!("uploads/{fan:02x}/{conversation_id}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn uploads_are_counted_per_key_and_the_last_one_is_shown() {
        let store = Store::default();
        let metadata = json!({"agent": "Ann"}).as_object().unwrap().clone();
        store.create("c1".into(), "org".into(), metadata.clone(), "k1".into());
        store.create("c2".into(), "org".into(), metadata, "k2".into());
        store.record_upload("k1", 5, "aa".into());
        store.record_upload("k1", 6, "bb".into());
        let all = store.snapshot();
        assert_eq!(all[0].uploads, 2);
        assert_eq!(
            (all[0].bytes, all[0].sha256.as_deref()),
            (Some(6), Some("bb"))
        );
        assert_eq!((all[1].uploaded, all[1].bytes), (false, None));
        assert_eq!(store.uploads(), 2);
    }

    #[test]
    fn conversations_keep_their_order_across_chunks() {
        let store = Store::default();
        for i in 0..CHUNK + 2 {
            store.create(i.to_string(), "o".into(), Map::new(), format!("k{i}"));
        }
        store.record_upload(&format!("k{}", CHUNK + 1), 1, "ff".into());
        let all = store.snapshot();
        assert_eq!(all.len(), CHUNK + 2);
        assert!(
            all.iter()
                .enumerate()
                .all(|(i, c)| c.conversation_id == i.to_string())
        );
        assert!(all[CHUNK + 1].uploaded && !all[CHUNK].uploaded);
        let json: Vec<Value> = serde_json::from_slice(&store.to_json()).unwrap();
        assert_eq!(json.len(), CHUNK + 2);
        assert_eq!(json[CHUNK + 1]["conversation_id"], (CHUNK + 1).to_string());
    }

    #[test]
    fn the_inspection_json_has_the_contracts_keys() {
        let store = Store::default();
        store.create("c1".into(), "org".into(), Map::new(), "k1".into());
        let value: Value = serde_json::from_slice(&store.to_json()).unwrap();
        assert_eq!(
            value,
            json!([{"conversation_id": "c1", "organisation_id": "org", "metadata": {},
                    "uploaded": false, "bytes": null, "sha256": null, "uploads": 0}])
        );
    }

    #[test]
    fn object_keys_spread_over_256_folders() {
        assert_eq!(object_key("17"), object_key("17"));
        let folders: std::collections::BTreeSet<String> = (0..4000)
            .map(|i| object_key(&i.to_string())[..10].to_string())
            .collect();
        assert_eq!(folders.len(), 256);
        assert!(object_key("abc").starts_with("uploads/") && object_key("abc").ends_with("/abc"));
    }
}
