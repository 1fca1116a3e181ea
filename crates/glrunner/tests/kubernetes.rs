//! The Kubernetes executor against the Kubernetes API test server and its process kubelet: jobs run
//! by the executor directly (`executor`), and by the real `glrunner` binary taking jobs from the
//! GitLab test coordinator (`e2e`). One test binary, so the tests share the machine's threads.

#[path = "support/mod.rs"]
mod support;

#[path = "kubernetes/cluster.rs"]
mod cluster;
#[path = "kubernetes/e2e.rs"]
mod e2e;
#[path = "kubernetes/executor.rs"]
mod executor;
