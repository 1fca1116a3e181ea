//! `glrunner-apiserver`: run the Kubernetes API test server by hand, optionally with its process
//! kubelet. Prints the admin kubeconfig's path (use it with `KUBECONFIG=… kubectl …`) and serves
//! until Ctrl-C.

use anyhow::Context as _;
use clap::Parser;
use glrunner_apiserver::{ApiServer, Cluster, Image, KubeletOptions, Options};
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
    /// Also run the process kubelet: pods run as local processes (needs root).
    #[arg(long)]
    kubelet: bool,
    /// How an image behaves on the kubelet's node: `NAME=host`, `NAME=glrunner:/path/to/glrunner`,
    /// `NAME=not-found` or `NAME=unreachable` (repeatable; other images run on the host).
    #[arg(long = "image", value_name = "NAME=BEHAVIOUR", requires = "kubelet")]
    images: Vec<String>,
    /// The kubelet's node name.
    #[arg(long, default_value = "glrunner-node", requires = "kubelet")]
    node_name: String,
}

fn image(spec: &str) -> anyhow::Result<(String, Image)> {
    let (name, behaviour) = spec
        .rsplit_once('=')
        .with_context(|| format!("--image {spec:?}: expected NAME=BEHAVIOUR, e.g. alpine=host"))?;
    let image = match behaviour {
        "host" => Image::host(),
        "not-found" => Image::not_found(),
        "unreachable" => Image::unreachable(),
        b => match b.strip_prefix("glrunner:") {
            Some(path) => Image::glrunner(path),
            None => anyhow::bail!(
                "--image {spec:?}: unknown behaviour {b:?}; use host, glrunner:/path/to/glrunner, not-found or unreachable"
            ),
        },
    };
    Ok((name.to_owned(), image))
}

/// The server alone, or with its kubelet.
enum Running {
    Server(ApiServer),
    Cluster(Cluster),
}

impl std::ops::Deref for Running {
    type Target = ApiServer;
    fn deref(&self) -> &ApiServer {
        match self {
            Self::Server(s) => s,
            Self::Cluster(c) => c,
        }
    }
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
    let server = if args.kubelet {
        let mut kubelet = KubeletOptions::default();
        kubelet.node.name = args.node_name.clone();
        for spec in &args.images {
            let (name, image) = image(spec)?;
            kubelet = kubelet.image(&name, image);
        }
        let cluster = Cluster::start(options, kubelet).await?;
        if let Err(why) = cluster.kubelet().containers_supported() {
            eprintln!("warning: pods will be scheduled but their containers cannot start: {why}");
        }
        Running::Cluster(cluster)
    } else {
        Running::Server(ApiServer::start(options).await?)
    };
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
    match server {
        Running::Server(s) => s.shutdown().await,
        Running::Cluster(c) => c.shutdown().await,
    }
    Ok(())
}
