//! An S3-compatible server on 127.0.0.1 for tests (feature `test-server`): s3s's S3 protocol layer over
//! s3s-fs's file-system store, in the test process.
//!
//! Why this one: it comes from crates.io as a Cargo dependency, so `cargo test` needs nothing installed
//! on the machine (moto or MinIO would need Python or a downloaded binary in CI), and it does what the
//! tests must prove against: it checks SigV4 signatures of presigned URLs, refuses expired ones, answers
//! with S3's XML error documents (`SignatureDoesNotMatch`, `NoSuchKey`, …), and keeps objects as plain
//! files the tests can read independently of any S3 client.

use crate::settings::S3Settings;
use glrunner_protocol::Secret;
use hyper_util::rt::TokioIo;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// Connections the server accepts before it stops.
const MAX_CONNECTIONS: usize = 500;
/// How long it waits for a connection, and how long one connection may live.
const IDLE_LIMIT: Duration = Duration::from_secs(120);

/// A running S3 server; stops when dropped.
pub struct S3Server {
    addr: SocketAddr,
    root: tempfile::TempDir,
    access_key: String,
    secret_key: String,
    task: JoinHandle<()>,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for S3Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Server")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl S3Server {
    /// Starts a server with fresh random keys and an empty store.
    pub async fn start() -> io::Result<Self> {
        let root = tempfile::Builder::new().prefix("glrunner-s3-").tempdir()?;
        let store =
            s3s_fs::FileSystem::new(root.path()).map_err(|e| io::Error::other(format!("{e:?}")))?;
        let access_key = format!("AK{}", random_hex(8));
        let secret_key = format!("SK{}", random_hex(20));
        let service = {
            let mut builder = S3ServiceBuilder::new(store);
            builder.set_auth(SimpleAuth::from_single(
                access_key.clone(),
                secret_key.clone(),
            ));
            builder.build()
        };
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            // Dropping the set (when this task is aborted) closes every connection.
            let mut connections = JoinSet::new();
            for _ in 0..MAX_CONNECTIONS {
                let Ok(Ok((stream, _))) = tokio::time::timeout(IDLE_LIMIT, listener.accept()).await
                else {
                    break;
                };
                let service = service.clone();
                connections.spawn(async move {
                    let serving = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    let _ = tokio::time::timeout(IDLE_LIMIT, serving).await;
                });
            }
            while connections.join_next().await.is_some() {}
        });
        Ok(Self {
            addr,
            root,
            access_key,
            secret_key,
            task,
        })
    }

    /// `127.0.0.1:<port>`, for `ServerAddress`.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    /// Creates a bucket (a directory of the store).
    pub fn create_bucket(&self, name: &str) -> io::Result<()> {
        std::fs::create_dir_all(self.root.path().join(name))
    }

    /// `[runners.cache.s3]` for `bucket` on this server (plain HTTP, path style, the server's keys).
    pub fn settings(&self, bucket: &str) -> S3Settings {
        S3Settings {
            server_address: self.address(),
            access_key: self.access_key.clone(),
            secret_key: Secret::new(self.secret_key.clone()),
            bucket_name: bucket.to_owned(),
            insecure: true,
            authentication_type: "access-key".to_owned(),
            ..S3Settings::default()
        }
    }

    /// Where the store keeps `object` of `bucket` on disk.
    pub fn object_path(&self, bucket: &str, object: &str) -> PathBuf {
        self.root.path().join(bucket).join(object)
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        self.root.path()
    }
}

fn random_hex(bytes: usize) -> String {
    use rand::Rng;
    let mut raw = vec![0u8; bytes];
    rand::rng().fill(&mut raw[..]);
    raw.iter().map(|b| format!("{b:02x}")).collect()
}
