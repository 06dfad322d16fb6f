//! An [`ArchiveStore`] on an S3-compatible object store, with the `object_store` crate.
//!
//! The layout is the local archive's, under the URL's prefix:
//! `s3://bucket/prefix/events/year=…/…/<first offset>.jsonl.gz`. Guarantees carry over:
//!
//! - **Atomic:** every file is one `PUT` of its whole body; S3 (and compatible stores) make an
//!   object visible only complete, so no partial file is ever listed — the part the local
//!   archive's write-then-rename plays.
//! - **Idempotent:** a file's name is its first offset, so a file written again after a crash
//!   replaces the object with the same events.
//!
//! Endpoint, region and credentials come from the usual AWS variables (`AWS_ENDPOINT_URL` or
//! `AWS_ENDPOINT`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, …); an
//! `http://` endpoint (a local test server) is allowed.

use std::io;
use std::sync::Arc;

use futures_util::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tokio::runtime::Handle;
use vexil_events::archive::ArchiveStore;

/// Where `--archive-url s3://bucket/prefix` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Target {
    pub bucket: String,
    /// Without leading or trailing slashes; may be empty.
    pub prefix: String,
}

impl S3Target {
    /// Parses `s3://bucket[/prefix]`.
    pub fn parse(url: &str) -> Result<S3Target, String> {
        let rest = url.strip_prefix("s3://").ok_or("must start with s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err("must name a bucket: s3://bucket/prefix".into());
        }
        Ok(S3Target { bucket: bucket.to_owned(), prefix: prefix.trim_matches('/').to_owned() })
    }
}

/// The event archive in a bucket.
pub struct S3Archive {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    runtime: Handle,
}

impl S3Archive {
    /// Connects with the AWS settings of the environment. Must run inside the tokio runtime that
    /// will carry the uploads.
    pub fn connect(target: &S3Target) -> Result<S3Archive, String> {
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(&target.bucket);
        // object_store reads AWS_ENDPOINT; AWS_ENDPOINT_URL is what current AWS tools use.
        if let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL") {
            builder = builder.with_endpoint(endpoint);
        }
        let allow_http = std::env::var("AWS_ENDPOINT_URL").or_else(|_| std::env::var("AWS_ENDPOINT"));
        if allow_http.is_ok_and(|e| e.starts_with("http://")) {
            builder = builder.with_allow_http(true);
        }
        let store = builder.build().map_err(|e| format!("S3 archive: {e}"))?;
        Ok(S3Archive { store: Arc::new(store), prefix: target.prefix.clone(), runtime: Handle::current() })
    }

    fn path(&self, partition: &str, name: &str) -> ObjectPath {
        let key = [self.prefix.as_str(), partition, name].iter().filter(|p| !p.is_empty()).copied().collect::<Vec<_>>();
        ObjectPath::from(key.join("/"))
    }
}

impl S3Archive {
    /// Every object under the prefix, by key, with its contents: the archive as a reader of
    /// the bucket sees it.
    pub async fn list(&self) -> Result<Vec<(String, Vec<u8>)>, object_store::Error> {
        let prefix = (!self.prefix.is_empty()).then(|| ObjectPath::from(self.prefix.as_str()));
        let mut keys: Vec<ObjectPath> =
            self.store.list(prefix.as_ref()).map_ok(|meta| meta.location).try_collect().await?;
        keys.sort();
        let mut objects = Vec::with_capacity(keys.len());
        for key in keys {
            let bytes = self.store.get(&key).await?.bytes().await?;
            objects.push((key.to_string(), bytes.to_vec()));
        }
        Ok(objects)
    }
}

impl ArchiveStore for S3Archive {
    fn put(&self, partition: &str, name: &str, bytes: &[u8]) -> io::Result<()> {
        let path = self.path(partition, name);
        let payload = PutPayload::from(bytes.to_vec());
        self.runtime
            .block_on(self.store.put(&path, payload))
            .map(drop)
            .map_err(|e| io::Error::other(format!("S3 archive: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::S3Target;

    #[test]
    fn targets_parse() {
        let t = S3Target::parse("s3://events/vexil/prod/").unwrap();
        assert_eq!((t.bucket.as_str(), t.prefix.as_str()), ("events", "vexil/prod"));
        assert_eq!(S3Target::parse("s3://events").unwrap().prefix, "");
        assert!(S3Target::parse("s3:///x").is_err());
        assert!(S3Target::parse("gs://b/p").is_err());
    }
}
