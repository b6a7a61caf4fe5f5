//! The inspection endpoints: `GET /_sandbox/conversations` lists every conversation call 1
//! created, with what was uploaded to its key (read back from the S3 server in
//! external-storage mode), and `GET /_sandbox/stats` counts requests, uploads and faults.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{StreamExt as _, TryStreamExt as _};
use serde_json::{Value, json};

use crate::external::External;
use crate::shared::Shared;
use crate::store::{Conversation, object_key};

/// How many objects the inspection endpoint reads at once.
const INSPECT_CONCURRENCY: usize = 8;

fn json_response(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `GET /_sandbox/conversations`: every conversation, in creation order (in external-storage
/// mode, with what the S3 server holds).
pub(crate) async fn conversations(State(shared): State<Arc<Shared>>) -> Response {
    if let Some(external) = &shared.external {
        return external_conversations(&shared, external).await;
    }
    json_response(shared.store.to_json())
}

/// `GET /_sandbox/stats`: counts of conversations, uploads, requests and injected faults.
pub(crate) async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    json_response(serde_json::to_vec(&shared.stats()).expect("stats serialise"))
}

/// `GET /_sandbox/conversations` in external-storage mode: every conversation with what the S3
/// server holds at its key. The sandbox does not see uploads to that server, so it cannot count
/// them: `uploads` is `null`.
async fn external_conversations(shared: &Shared, external: &External) -> Response {
    let all = shared.store.snapshot();
    let held: Result<Vec<Value>, anyhow::Error> = futures_util::stream::iter(all)
        .map(|conversation| async move {
            let key = object_key(&conversation.conversation_id);
            let held = external.held(&key).await?;
            Ok(inspected(conversation, held))
        })
        .buffered(INSPECT_CONCURRENCY)
        .try_collect()
        .await;
    match held {
        Ok(held) => axum::Json(Value::Array(held)).into_response(),
        Err(err) => (
            StatusCode::BAD_GATEWAY,
            axum::Json(json!({"detail": format!(
                "the sandbox could not read the bucket {:?} on {}: {err:#}",
                external.bucket(),
                external.endpoint()
            )})),
        )
            .into_response(),
    }
}

/// One conversation as the inspection endpoint shows it in external-storage mode.
fn inspected(conversation: Conversation, held: Option<(u64, String)>) -> Value {
    let uploaded = held.is_some();
    let (bytes, sha256) = held.unzip();
    let Conversation {
        conversation_id,
        organisation_id,
        metadata,
        ..
    } = conversation;
    json!({
        "conversation_id": conversation_id,
        "organisation_id": organisation_id,
        "metadata": Value::Object(metadata),
        "uploaded": uploaded,
        "bytes": bytes,
        "sha256": sha256,
        "uploads": Value::Null,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    #[test]
    fn the_inspection_shows_uploads_as_unknown() {
        let conversation = Conversation {
            conversation_id: "c1".into(),
            organisation_id: "o".into(),
            metadata: Map::new(),
            uploaded: false,
            bytes: None,
            sha256: None,
            uploads: 0,
        };
        assert_eq!(
            inspected(conversation.clone(), Some((3, "ab".into()))),
            json!({"conversation_id": "c1", "organisation_id": "o", "metadata": {},
                   "uploaded": true, "bytes": 3, "sha256": "ab", "uploads": null})
        );
        assert_eq!(inspected(conversation, None)["uploaded"], false);
    }
}
