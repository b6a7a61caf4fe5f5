//! The objects under an `s3://BUCKET/PREFIX/` (or `gs://`, `az://`), however deep, as `scan`
//! lists a folder: each one's key relative to the prefix (`/` between its folders) and its size.
//!
//! The prefix is listed a folder at a time (S3's and GCS's ListObjectsV2, Azure's List Blobs,
//! with the delimiter `/`), up to
//! [`LISTS_IN_FLIGHT`] folders at once, each one's pages in turn. A dated export
//! (`2026/11/02/...`) so lists its days in parallel, where one listing of the whole prefix would
//! be a single chain of pages; and a folder marker (the empty object `2026/11/02/` that
//! consoles create) is told apart from an object: object_store drops a key's trailing `/`, but
//! listing a folder returns its own marker under the folder's own name, and nowhere else.

use std::collections::VecDeque;

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use object_store::ObjectStore as _;
use object_store::path::Path as KeyPath;

use super::{ObjectSources, ObjectUrl, Problem, error};
use crate::scan::walk::{Entry, Listing, Unlisted};

/// Folders listed at once.
pub const LISTS_IN_FLIGHT: usize = 16;

impl ObjectSources {
    /// Every object under `prefix` (a [`ObjectUrl::parse_prefix`]: its key empty or ending in
    /// `/`), with paths relative to it. `Err` when the prefix itself cannot be listed (no such
    /// bucket, access denied, the store unreachable) or the credentials are refused: one
    /// sentence for the whole scan. A folder below that cannot be listed is in
    /// [`Listing::unlisted`], as an unreadable folder is in a local scan.
    pub async fn list_under(&self, prefix: &ObjectUrl) -> Result<Listing, Problem> {
        let store = self.store(prefix.scheme, &prefix.bucket).await?;
        let top = prefix.key.trim_end_matches('/');
        let mut listing = Listing::default();
        let mut waiting: VecDeque<String> = VecDeque::from([String::new()]);
        let mut listing_now = FuturesUnordered::new();
        loop {
            while listing_now.len() < LISTS_IN_FLIGHT
                && let Some(rel) = waiting.pop_front()
            {
                let store = store.clone();
                let folder = joined(top, &rel);
                listing_now.push(async move {
                    let path = match KeyPath::parse(&folder) {
                        Ok(path) => path,
                        Err(e) => return (rel, folder, Err(object_store::Error::from(e))),
                    };
                    let found = store
                        .list_with_delimiter((!folder.is_empty()).then_some(&path))
                        .await;
                    (rel, folder, found)
                });
            }
            let Some((rel, folder, found)) = listing_now.next().await else {
                break;
            };
            let found = match found {
                Ok(found) => found,
                Err(e) => {
                    let url = ObjectUrl {
                        scheme: prefix.scheme,
                        bucket: prefix.bucket.clone(),
                        key: match folder.is_empty() {
                            true => String::new(),
                            false => format!("{folder}/"),
                        },
                    };
                    let problem = error::listing(&url, &e);
                    if rel.is_empty() || problem.kind == super::Kind::Store {
                        return Err(problem);
                    }
                    listing.unlisted.push(Unlisted {
                        path: rel,
                        reason: problem.message,
                    });
                    continue;
                }
            };
            for sub in found.common_prefixes {
                if let Some(sub) = relative(top, sub.as_ref()) {
                    waiting.push_back(sub.to_string());
                }
            }
            for object in found.objects {
                // The folder's own marker (`folder/`) comes back as the folder itself.
                let Some(path) = relative(top, object.location.as_ref()) else {
                    continue;
                };
                if path == rel {
                    continue;
                }
                let url = format!("{}{}", prefix.top(), object.location.as_ref());
                match ObjectUrl::parse(&url) {
                    Ok(_) => listing.entries.push(Entry {
                        path: path.to_string(),
                        size: object.size,
                    }),
                    Err(reason) => listing.unlisted.push(Unlisted {
                        path: crate::human::one_line(path).into_owned(),
                        reason: format!("cannot be read here: {reason}"),
                    }),
                }
            }
        }
        Ok(listing)
    }
}

/// `top/rel` as a key without its trailing `/`, either of them possibly empty.
fn joined(top: &str, rel: &str) -> String {
    match (top.is_empty(), rel.is_empty()) {
        (true, _) => rel.to_string(),
        (false, true) => top.to_string(),
        (false, false) => format!("{top}/{rel}"),
    }
}

/// A key (as object_store gives it, without a trailing `/`) relative to the folder `top`
/// (empty: the bucket's top); `None` for `top` itself or a key outside it.
fn relative<'a>(top: &str, key: &'a str) -> Option<&'a str> {
    let rel = match top.is_empty() {
        true => key,
        false => key.strip_prefix(top)?.strip_prefix('/')?,
    };
    (!rel.is_empty()).then_some(rel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_its_path_below_the_prefix_and_the_prefix_itself_is_no_object() {
        let top = "connect/inst/CallRecordings";
        assert_eq!(
            relative(top, "connect/inst/CallRecordings/2026/11/02/a_UTC.wav"),
            Some("2026/11/02/a_UTC.wav")
        );
        // Its marker (`CallRecordings/`, its `/` dropped by object_store).
        assert_eq!(relative(top, "connect/inst/CallRecordings"), None);
        // A sibling whose name starts the same is not inside.
        assert_eq!(relative(top, "connect/inst/CallRecordings-old/a.wav"), None);
        assert_eq!(relative("", "a.wav"), Some("a.wav"));
        assert_eq!(relative("", "2026/a.wav"), Some("2026/a.wav"));
    }

    #[test]
    fn folders_are_joined_to_the_prefix_at_any_depth() {
        assert_eq!(joined("", ""), "");
        assert_eq!(joined("", "2026"), "2026");
        assert_eq!(joined("connect/i", ""), "connect/i");
        assert_eq!(joined("connect/i", "2026/11"), "connect/i/2026/11");
    }
}
