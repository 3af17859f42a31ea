//! An S3-compatible object store as a publish target (through the
//! `object_store` crate): `to = "s3://BUCKET[/PREFIX]"` with the endpoint,
//! region and credentials of `[publish.s3]` (or the usual `AWS_*`
//! environment variables).
//!
//! A `PUT` replaces an object whole, so a reader sees the old object or
//! the new one; tiles are written before the checkpoint as for every
//! target ([`super::publish`]). Objects carry the `Content-Type` and
//! `Cache-Control` of c2sp.org/tlog-tiles, which S3 serves back, so a
//! bucket website or a CDN in front of it serves the tiles as the log's
//! own listener does.

use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::{
    Attribute, Attributes, ObjectStore, ObjectStoreExt as _, PutOptions, PutPayload,
};

use super::{PublishError, Target};
use crate::ops::config::S3Section;

/// An S3 bucket (and a prefix in it).
pub struct S3Target {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    url: String,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for S3Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the credentials.
        write!(f, "S3Target({})", self.url)
    }
}

fn read_secret(path: &std::path::Path, what: &'static str) -> Result<String, PublishError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(|source| PublishError::Target {
            path: path.to_owned(),
            source: std::io::Error::new(source.kind(), format!("{what}: {source}")),
        })
}

impl S3Target {
    /// The target `url` (`s3://bucket[/prefix]`). Must be made inside a
    /// Tokio runtime; its writes block the calling (non-runtime) thread.
    pub fn new(url: &str, cfg: &S3Section) -> Result<S3Target, PublishError> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| PublishError::Config(format!("{url:?} is not an s3:// URL")))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(PublishError::Config(format!("{url:?} names no bucket")));
        }
        let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(e) = &cfg.endpoint {
            b = b
                .with_endpoint(e)
                .with_allow_http(e.starts_with("http://"))
                // Self-hosted stores (Garage, MinIO) take path-style URLs.
                .with_virtual_hosted_style_request(false);
        }
        if let Some(r) = &cfg.region {
            b = b.with_region(r);
        }
        if let Some(p) = &cfg.access_key_id_file {
            b = b.with_access_key_id(read_secret(p, "access_key_id_file")?);
        }
        if let Some(p) = &cfg.secret_access_key_file {
            b = b.with_secret_access_key(read_secret(p, "secret_access_key_file")?);
        }
        let store = b
            .build()
            .map_err(|e| PublishError::Config(format!("{url}: {e}")))?;
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| PublishError::Config("the S3 target needs the async runtime".into()))?;
        Ok(S3Target {
            store: Arc::new(store),
            prefix: prefix.trim_matches('/').to_owned(),
            url: url.to_owned(),
            runtime,
        })
    }

    fn key(&self, path: &str) -> object_store::path::Path {
        if self.prefix.is_empty() {
            object_store::path::Path::from(path)
        } else {
            object_store::path::Path::from(format!("{}/{path}", self.prefix))
        }
    }
}

impl Target for S3Target {
    fn write(&self, path: &str, bytes: &[u8]) -> Result<(), PublishError> {
        let key = self.key(path);
        let mut attributes = Attributes::new();
        let (ct, cc) = if path == "checkpoint" {
            ("text/plain; charset=utf-8", "no-cache")
        } else {
            (
                "application/octet-stream",
                "public, max-age=31536000, immutable",
            )
        };
        attributes.insert(Attribute::ContentType, ct.into());
        attributes.insert(Attribute::CacheControl, cc.into());
        let opts = PutOptions {
            attributes,
            ..Default::default()
        };
        let payload = PutPayload::from(bytes.to_vec());
        self.runtime
            .block_on(self.store.put_opts(&key, payload, opts))
            .map_err(|source| PublishError::Store {
                key: key.to_string(),
                source,
            })?;
        Ok(())
    }

    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, PublishError> {
        let key = self.key(path);
        let got = self.runtime.block_on(async {
            match self.store.get(&key).await {
                Ok(r) => r.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        });
        got.map(|b| b.map(|b| b.to_vec()))
            .map_err(|source| PublishError::Store {
                key: key.to_string(),
                source,
            })
    }
}
