//! `glrunner-apiserver`: run the Kubernetes API test server by hand. Prints the admin kubeconfig's
//! path (use it with `KUBECONFIG=… kubectl …`) and serves until Ctrl-C.

use anyhow::Context as _;
use clap::Parser;
use glrunner_apiserver::{ApiServer, Options};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Kubernetes API test server (loopback only).
#[derive(Debug, Parser)]
#[command(name = "glrunner-apiserver", version)]
struct Args {
    /// HTTPS listen address (loopback only; port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Also serve plain HTTP on this loopback address (bearer tokens only).
    #[arg(long)]
    http_listen: Option<SocketAddr>,
    /// Write the admin kubeconfig here instead of the server's temporary directory.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// YAML manifests to apply at start (namespaces, service accounts, RBAC, …).
    #[arg(long = "apply")]
    manifests: Vec<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut options = Options::default();
    options.listen = args.listen;
    options.http_listen = args.http_listen;
    let server = ApiServer::start(options).await?;
    for path in &args.manifests {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading manifest {}", path.display()))?;
        server
            .apply_yaml(&text)
            .with_context(|| format!("applying {}", path.display()))?;
    }
    let kubeconfig = match &args.kubeconfig {
        Some(p) => {
            std::fs::write(
                p,
                server.kubeconfig_yaml(server.admin(), "glrunner-apiserver", "default"),
            )
            .with_context(|| format!("writing {}", p.display()))?;
            p.clone()
        }
        None => server.kubeconfig_for(server.admin(), "glrunner-apiserver", "default")?,
    };
    println!("{}", kubeconfig.display());
    eprintln!(
        "Kubernetes API test server at {}; try: KUBECONFIG={} kubectl get namespaces",
        server.url(),
        kubeconfig.display()
    );
    if let Some(http) = server.http_url() {
        eprintln!("plain HTTP (bearer tokens only) at {http}");
    }
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    server.shutdown().await;
    Ok(())
}
