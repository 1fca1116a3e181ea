//! The Kubernetes executor's benchmark: the release `glrunner run` takes jobs from the in-process
//! GitLab test coordinator and runs them in pods of the in-process test cluster (the Kubernetes API
//! test server with its process kubelet; the helper image runs the release glrunner, the build
//! image the host's shell), installed as the seeds do (the manager's service account in `ci-system`
//! with the generated Role in `ci-jobs`). The API server counts every request the manager makes:
//! start-up, idle windows, the shared watches, and the jobs' own requests. With N jobs in flight it
//! also measures the manager's RSS and CPU (its own process, from /proc) and checks from the cluster
//! that all N pods ran at once. The baselines: the official runner's documented request pattern for
//! the same jobs (computed), and the same jobs with the shell executor (measured).

use crate::manager::{self, Manager, Measured, Measurement, Setup, mean_and_max, shell_executor};
use crate::report::{self, mb};
use crate::requests::{self, JobRequests, Tally};
use crate::{glrunner_binary, machine, procfs};
use anyhow::{Context, bail};
use glrunner_apiserver::{Cluster, Image, KubeletOptions, Options as ApiOptions, RequestRecord};
use glrunner_config::KubernetesConfig;
use glrunner_coordinator::{Coordinator, JobSnapshot, JobSpec, JobStatus};
use glrunner_kubernetes::permissions::{self, rbac};
use k8s_openapi::api::core::v1::{Pod, Secret};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// The helper image jobs use; the kubelet runs the release glrunner for it.
const HELPER_IMAGE: &str = "registry.example.com/glrunner/glrunner:bench";
/// The build image (the host's shell and tools).
const BUILD_IMAGE: &str = "docker.io/library/debian:12";
const JOB_NS: &str = "ci-jobs";
const MANAGER_NS: &str = "ci-system";
const MANAGER_SA: &str = "glrunner";
/// What the API server calls the manager.
const MANAGER_USER: &str = "system:serviceaccount:ci-system:glrunner";

/// Output lines the job scripts print (the trace also shows each command, so the markers are made
/// by the shell: `$((1+1))` becomes `2` only in the output).
const STARTED: &str = "bench-started-2";
const DONE: &str = "bench-done-4";

/// No run may take longer than this to finish its jobs, on top of their own sleep.
const JOB_LIMIT: Duration = Duration::from_secs(900);
/// How long deleted pods and Secrets may take to go.
const CLEANUP_LIMIT: Duration = Duration::from_secs(120);

#[derive(clap::Args)]
pub struct Args {
    /// Jobs per run (comma-separated). A run of 1 is one simple job (a few echo lines); larger runs
    /// are jobs that sleep, so all of them are in flight at once.
    #[arg(long, value_delimiter = ',', default_value = "1,100")]
    jobs: Vec<usize>,
    /// Seconds each job of a multi-job run sleeps.
    #[arg(long, default_value_t = 30)]
    job_seconds: u64,
    /// Length of each idle window in which the manager's requests are counted.
    #[arg(long, default_value_t = 10)]
    idle_seconds: u64,
    /// `X-GitLab-Trace-Update-Interval` the coordinator announces.
    #[arg(long, default_value_t = 3)]
    trace_interval: u64,
    /// Report file.
    #[arg(long, default_value = "BENCHMARKS.md")]
    output: PathBuf,
}

/// A run with the Kubernetes executor.
struct KubeRun {
    jobs: usize,
    /// Requests before the first job: connection, permission checks, the sweep.
    startup: Tally,
    /// Requests in the idle window after start-up.
    idle_after_startup: Tally,
    /// Requests from the first job to the last pod's deletion.
    requests: JobRequests,
    /// Requests while every job's script was sleeping, and how long that window was.
    in_flight: Option<(Duration, Tally)>,
    /// Requests in the idle window after the jobs (watches open).
    idle_after_jobs: Tally,
    /// Requests the API server logged from anyone but the manager (the kubelet posts directly).
    others: u64,
    peak_running: usize,
    usage: Usage,
    /// Each job's running time (GitLab's started → finished).
    durations: Vec<Duration>,
}

/// The manager's resources over a run.
struct Usage {
    idle_rss: u64,
    peak_rss: u64,
    /// CPU time from the first job queued until the jobs were done (for the Kubernetes executor:
    /// until their pods were gone).
    cpu: Duration,
    /// The time `cpu` was counted over.
    span: Duration,
    peak_cpu_cores: Option<f64>,
    /// From the first job queued to the last finished.
    wall: Duration,
    job_mean: Duration,
    job_max: Duration,
}

impl Usage {
    fn new(idle_rss: u64, used: Measured, wall: Duration, durations: &[Duration]) -> Self {
        let (job_mean, job_max) = mean_and_max(durations);
        Self {
            idle_rss,
            peak_rss: used.peak_rss,
            cpu: used.cpu,
            span: used.span,
            peak_cpu_cores: used.peak_cpu_cores,
            wall,
            job_mean,
            job_max,
        }
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let glrunner = glrunner_binary()?;
    let mut kube = Vec::new();
    let mut shell = Vec::new();
    for &n in &args.jobs {
        if n == 0 {
            bail!("--jobs: 0 jobs is not a run");
        }
        eprintln!("kubernetes: {n} job(s) with the Kubernetes executor …");
        let run = measure_kubernetes(n, &args, &glrunner).await?;
        eprintln!(
            "  {} request(s) per job ({}), shared watches: {}, start-up: {}, idle: {} + {}, peak RSS {:.1} MB, CPU {:.2} s, {} pod(s) running at once, end-to-end {:.1} s",
            requests::total(&run.requests.jobs) as f64 / n as f64,
            requests::describe(&run.requests.jobs),
            requests::describe(&run.requests.watches),
            requests::total(&run.startup),
            requests::total(&run.idle_after_startup),
            requests::total(&run.idle_after_jobs),
            mb(run.usage.peak_rss),
            run.usage.cpu.as_secs_f64(),
            run.peak_running,
            run.usage.wall.as_secs_f64()
        );
        kube.push(run);
        eprintln!("kubernetes: {n} job(s) with the shell executor (baseline) …");
        let usage = measure_shell(n, &args, &glrunner).await?;
        eprintln!(
            "  peak RSS {:.1} MB, CPU {:.2} s, end-to-end {:.1} s",
            mb(usage.peak_rss),
            usage.cpu.as_secs_f64(),
            usage.wall.as_secs_f64()
        );
        shell.push((n, usage));
    }
    let body = render(&args, &kube, &shell);
    report::write_section(&args.output, "kubernetes", &body)
        .with_context(|| format!("writing {}", args.output.display()))?;
    eprintln!("wrote {}", args.output.display());
    Ok(())
}

/// The job script: a few lines; a multi-job run sleeps between them.
fn script(jobs: usize, job_seconds: u64) -> Vec<String> {
    let mut lines = vec![
        "echo \"bench-started-$((1+1))\"".to_owned(),
        "echo \"running in $(hostname)\"".to_owned(),
        "for i in 1 2 3; do echo \"output line $i\"; done".to_owned(),
    ];
    if jobs > 1 {
        lines.push(format!("sleep {job_seconds}"));
    }
    lines.push("echo \"bench-done-$((2+2))\"".to_owned());
    lines
}

fn job_spec(i: usize, n: usize, args: &Args) -> JobSpec {
    JobSpec::script(script(n, args.job_seconds))
        .name(format!("k8s {}/{n}", i + 1))
        .var("GIT_STRATEGY", "none")
}

/// `[runners.kubernetes]` of the benchmark.
fn kubernetes_config() -> KubernetesConfig {
    KubernetesConfig {
        namespace: Some(JOB_NS.into()),
        image: Some(BUILD_IMAGE.into()),
        helper_image: Some(HELPER_IMAGE.into()),
        ..KubernetesConfig::default()
    }
}

/// The cluster for `n` jobs, installed as the seeds do; and the manager's kubeconfig.
async fn start_cluster(n: usize, glrunner: &Path) -> anyhow::Result<(Cluster, PathBuf)> {
    let mut kubelet = KubeletOptions::default().image(HELPER_IMAGE, Image::glrunner(glrunner));
    // Room for every job's pod and its three streams (read-logs exec, two attaches).
    kubelet.node.pods = kubelet.node.pods.max(n as u32 + 10);
    kubelet.max_streams = kubelet.max_streams.max(4 * n + 64);
    let mut options = ApiOptions::default();
    options.request_log_limit = 1_000_000;
    options.max_connections = options.max_connections.max(4 * n + 256);
    let cluster = Cluster::start(options, kubelet)
        .await
        .context("starting the test cluster")?;
    if let Err(why) = cluster.kubelet().containers_supported() {
        bail!(
            "the test cluster's kubelet cannot run containers here: {why}\n  fix: run the benchmark as root on Linux (containers are processes in their own mount namespaces)"
        );
    }
    cluster
        .apply_yaml(glrunner_apiserver::TWO_NAMESPACE_INSTALL)
        .context("creating the namespaces and the service account")?;
    let role = rbac::manifests(
        &permissions::required(&kubernetes_config()),
        &rbac::Identity::ServiceAccount {
            namespace: MANAGER_NS.into(),
            name: MANAGER_SA.into(),
        },
        JOB_NS,
        "glrunner",
    )
    .to_yaml();
    cluster
        .apply_yaml(&role)
        .context("applying the Role glrunner generates")?;
    let sa = cluster.service_account_token(MANAGER_NS, MANAGER_SA);
    let kubeconfig = cluster
        .kubeconfig_for(&sa, "runner", MANAGER_NS)
        .context("writing the manager's kubeconfig")?;
    Ok((cluster, kubeconfig))
}

async fn measure_kubernetes(n: usize, args: &Args, glrunner: &Path) -> anyhow::Result<KubeRun> {
    let (cluster, kubeconfig) = start_cluster(n, glrunner).await?;
    let Setup { coordinator, dir } = manager::set_up(
        n,
        args.trace_interval,
        "glrunner-bench-k8s-",
        |_| {
            format!(
                "  executor = \"kubernetes\"\n  [runners.kubernetes]\n    namespace = {JOB_NS:?}\n    image = {BUILD_IMAGE:?}\n    helper_image = {HELPER_IMAGE:?}\n"
            )
        },
    )
    .await?;
    let result = Manager::with(
        glrunner,
        dir.path(),
        &[("KUBECONFIG", &kubeconfig)],
        async |m| kubernetes_run(n, args, &cluster, &coordinator, m).await,
    )
    .await
    .with_context(|| format!("the Kubernetes run of {n} job(s) failed"));
    cluster.shutdown().await;
    coordinator.shutdown().await;
    result
}

async fn kubernetes_run(
    n: usize,
    args: &Args,
    cluster: &Cluster,
    coordinator: &Coordinator,
    manager: &Manager,
) -> anyhow::Result<KubeRun> {
    let pid = manager.pid();
    let idle = Duration::from_secs(args.idle_seconds);
    let mark = || cluster.request_log().len();
    // Start-up (connection, permission checks, the sweep) is over before the manager asks for jobs.
    coordinator
        .wait_for_held_polls(1, Duration::from_secs(60))
        .await
        .context("glrunner never asked the coordinator for a job")?;
    let startup_end = mark();
    let idle_rss = procfs::memory(pid)?.0;
    // A measurement window, not a wait for something: what an idle manager asks the API server.
    tokio::time::sleep(idle).await;
    let idle_end = mark();

    let measurement = Measurement::start(pid)?;
    let running = RunningPods::start(cluster);
    let queued_at = SystemTime::now();
    let started = Instant::now();
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        ids.push(coordinator.enqueue(job_spec(i, n, args))?);
    }
    let in_flight = if n > 1 {
        in_flight_window(coordinator, cluster, &ids, started, args).await?
    } else {
        None
    };
    let (durations, wall) = wait_for_jobs(coordinator, &ids, args, queued_at, |id, snap| {
        let trace = snap.trace_text();
        if snap.status != JobStatus::Success {
            bail!(
                "job {id} ended {:?} ({:?}):\n{trace}",
                snap.status,
                snap.failure_reason
            );
        }
        if !trace.contains(DONE) || !snap.checksum_matches() {
            bail!(
                "job {id}: the stored trace lacks its last line or its checksum does not match (matches: {}):\n{trace}",
                snap.checksum_matches()
            );
        }
        Ok(())
    })
    .await?;
    // Nothing may be left: every pod and Secret in the job namespace goes.
    wait_for_cleanup(cluster).await?;
    let jobs_end = mark();
    let used = measurement.finish().await?;
    let peak_running = running.finish().await;
    tokio::time::sleep(idle).await;
    let after_end = mark();

    let log = cluster.request_log();
    if log.len() >= 1_000_000 {
        bail!("the API server's request log overflowed; the counts would be incomplete");
    }
    let ours = |range: std::ops::Range<usize>| -> Vec<RequestRecord> {
        log.get(range)
            .unwrap_or_default()
            .iter()
            .filter(|r| r.user == MANAGER_USER)
            .cloned()
            .collect()
    };
    let others = log.iter().filter(|r| r.user != MANAGER_USER).count() as u64;
    Ok(KubeRun {
        jobs: n,
        startup: requests::tally(&ours(0..startup_end)),
        idle_after_startup: requests::tally(&ours(startup_end..idle_end)),
        requests: requests::split(&ours(idle_end..jobs_end)),
        in_flight: in_flight.map(|(d, range)| (d, requests::tally(&ours(range)))),
        idle_after_jobs: requests::tally(&ours(jobs_end..after_end)),
        others,
        peak_running,
        usage: Usage::new(idle_rss, used, wall, &durations),
        durations,
    })
}

/// The request-log range in which every job's script was sleeping: from the moment all their traces
/// show the script started, to `job_seconds` (less a margin) after the first job was queued (no
/// script can end sooner). `None` when the scripts did not all start before the first could end.
async fn in_flight_window(
    coordinator: &Coordinator,
    cluster: &Cluster,
    ids: &[i64],
    queued: Instant,
    args: &Args,
) -> anyhow::Result<Option<(Duration, std::ops::Range<usize>)>> {
    let deadline = queued + JOB_LIMIT;
    for id in ids {
        let wait = deadline.saturating_duration_since(Instant::now());
        coordinator
            .wait_for(
                *id,
                |j| j.status.is_finished() || j.trace_text().contains(STARTED),
                wait,
            )
            .await
            .with_context(|| format!("job {id}'s script never started"))?;
    }
    let from = Instant::now();
    let start = cluster.request_log().len();
    let end = queued + Duration::from_secs(args.job_seconds).saturating_sub(Duration::from_secs(3));
    if end <= from {
        eprintln!(
            "  the last script started {:.1} s after the first job was queued, too late for a window in which all of them sleep; raise --job-seconds",
            from.duration_since(queued).as_secs_f64()
        );
        return Ok(None);
    }
    // A measurement window ending before any script can end.
    tokio::time::sleep_until(end.into()).await;
    Ok(Some((end - from, start..cluster.request_log().len())))
}

/// Wait until the job namespace holds no pod and no Secret.
async fn wait_for_cleanup(cluster: &Cluster) -> anyhow::Result<()> {
    let store = cluster.store();
    let mut rx = store.subscribe();
    let deadline = tokio::time::Instant::now() + CLEANUP_LIMIT;
    let left = || {
        let pods = store.list_as::<Pod>(Some(JOB_NS)).len();
        let secrets = store.list_as::<Secret>(Some(JOB_NS)).len();
        (pods, secrets)
    };
    loop {
        let (pods, secrets) = left();
        if pods == 0 && secrets == 0 {
            return Ok(());
        }
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(_)) => bail!("the cluster's store went away"),
            Err(_) => bail!(
                "{pods} pod(s) and {secrets} Secret(s) were still in namespace {JOB_NS} {} s after the last job",
                CLEANUP_LIMIT.as_secs()
            ),
        }
    }
}

/// The largest number of pods in the job namespace that were Running at the same time, followed
/// through the store's change feed.
struct RunningPods {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<usize>,
}

impl RunningPods {
    fn start(cluster: &Cluster) -> Self {
        let store = cluster.store().clone();
        let mut rx = store.subscribe();
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut running: HashMap<String, bool> = HashMap::new();
            let mut peak = 0;
            loop {
                let change = tokio::select! {
                    _ = &mut stopped => break,
                    c = rx.recv() => c,
                };
                match change {
                    Ok(c) => {
                        if c.resource.plural != "pods" || c.namespace != JOB_NS {
                            continue;
                        }
                        let is_running = c.change != glrunner_apiserver::ChangeType::Deleted
                            && c.object.pointer("/status/phase").and_then(|p| p.as_str())
                                == Some("Running");
                        running.insert(c.name.clone(), is_running);
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        running = store
                            .list_as::<Pod>(Some(JOB_NS))
                            .into_iter()
                            .map(|p| {
                                let phase = p.status.and_then(|s| s.phase);
                                (
                                    p.metadata.name.unwrap_or_default(),
                                    phase.as_deref() == Some("Running"),
                                )
                            })
                            .collect();
                    }
                    Err(_) => break,
                }
                peak = peak.max(running.values().filter(|r| **r).count());
            }
            peak
        });
        Self { stop, task }
    }

    async fn finish(self) -> usize {
        let _ = self.stop.send(());
        self.task.await.unwrap_or(0)
    }
}

/// The same jobs with the shell executor: the manager's RSS and CPU for scale.
async fn measure_shell(n: usize, args: &Args, glrunner: &Path) -> anyhow::Result<Usage> {
    let Setup { coordinator, dir } = manager::set_up(
        n,
        args.trace_interval,
        "glrunner-bench-shell-",
        shell_executor,
    )
    .await?;
    let result = Manager::with(glrunner, dir.path(), &[], async |m| {
        shell_run(n, args, &coordinator, m).await
    })
    .await
    .with_context(|| format!("the shell run of {n} job(s) failed"));
    coordinator.shutdown().await;
    result
}

async fn shell_run(
    n: usize,
    args: &Args,
    coordinator: &Coordinator,
    manager: &Manager,
) -> anyhow::Result<Usage> {
    let pid = manager.pid();
    coordinator
        .wait_for_held_polls(1, Duration::from_secs(60))
        .await
        .context("glrunner never asked the coordinator for a job")?;
    let idle_rss = procfs::memory(pid)?.0;
    let measurement = Measurement::start(pid)?;
    let queued_at = SystemTime::now();
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        ids.push(coordinator.enqueue(job_spec(i, n, args).name(format!("shell {}/{n}", i + 1)))?);
    }
    let (durations, wall) = wait_for_jobs(coordinator, &ids, args, queued_at, |id, snap| {
        if snap.status != JobStatus::Success || !snap.trace_text().contains(DONE) {
            bail!(
                "job {id} ended {:?} ({:?}):\n{}",
                snap.status,
                snap.failure_reason,
                snap.trace_text()
            );
        }
        Ok(())
    })
    .await?;
    let used = measurement.finish().await?;
    Ok(Usage::new(idle_rss, used, wall, &durations))
}

/// Wait for each job in turn, `check` rejecting one that did not do its work. Gives each job's
/// running time (GitLab's started → finished) and the time from `queued_at` to the last finish.
async fn wait_for_jobs(
    coordinator: &Coordinator,
    ids: &[i64],
    args: &Args,
    queued_at: SystemTime,
    check: impl Fn(i64, &JobSnapshot) -> anyhow::Result<()>,
) -> anyhow::Result<(Vec<Duration>, Duration)> {
    let mut durations = Vec::with_capacity(ids.len());
    let mut last_finish = queued_at;
    for &id in ids {
        let snap = coordinator
            .wait_until_finished(id, JOB_LIMIT + Duration::from_secs(args.job_seconds))
            .await
            .with_context(|| format!("job {id} did not finish"))?;
        check(id, &snap)?;
        if let (Some(s), Some(f)) = (snap.started_at, snap.finished_at) {
            durations.push(f.duration_since(s).unwrap_or_default());
            last_finish = last_finish.max(f);
        }
    }
    Ok((
        durations,
        last_finish.duration_since(queued_at).unwrap_or_default(),
    ))
}

/// A per-job figure: whole numbers as such, others with one decimal.
fn num(v: f64) -> String {
    if (v - v.round()).abs() < 0.005 {
        format!("{}", v.round() as i64)
    } else {
        format!("{v:.1}")
    }
}

/// The bar: at most this many requests per simple job.
const BAR: f64 = 12.0;

fn render(args: &Args, kube: &[KubeRun], shell: &[(usize, Usage)]) -> String {
    let jobs: Vec<String> = args.jobs.iter().map(|n| n.to_string()).collect();
    let mut out = String::new();
    out.push_str(
        "## Kubernetes executor: API requests per job, and the manager with N jobs in flight\n\n",
    );
    out.push_str(&format!(
        "Command: `cargo build --release -p glrunner -p glrunner-bench && ./target/release/glrunner-bench kubernetes --jobs {} --job-seconds {} --idle-seconds {} --trace-interval {}`  \n",
        jobs.join(","),
        args.job_seconds,
        args.idle_seconds,
        args.trace_interval
    ));
    out.push_str(&format!(
        "Machine: {}  \nDate: {}\n\n",
        machine::describe(),
        machine::today()
    ));
    out.push_str(&format!(
        "The release `glrunner run` (`executor = \"kubernetes\"`, `concurrent = N`) takes jobs from the GitLab test \
         coordinator (long polling on, trace update interval {} s) and runs them in pods of the test cluster: \
         the Kubernetes API test server and its process kubelet, both in the benchmark's process, with the helper \
         image mapped to the release glrunner binary and the build image to the host's shell. The install is the \
         seeds' two-namespace one: the manager is the service account `ci-system/glrunner`, granted the Role glrunner \
         generates in `ci-jobs`, where the jobs run. The API server counts every request the manager makes (by its \
         identity; verb, resource and subresource as RBAC names them). Start-up requests (connection, permission \
         checks, the sweep) are those made before the manager first asked GitLab for a job; the shared watches are \
         the `watch` requests and the LIST each one starts from, opened once per manager and namespace by the first \
         job and then used by every job; everything else from the first job to the last pod's deletion is the jobs'. \
         The simple job (`--jobs 1`) echoes a few lines; in larger runs each job also sleeps {} s, so every pod runs \
         at once (checked from the cluster: the most pods Running at the same time). Every job must succeed with its \
         trace stored and a matching checksum, and every pod and Secret in `ci-jobs` must be gone afterwards, or the \
         benchmark fails. The coordinator's payloads carry registry credentials (as GitLab's do with its container \
         registry on), so each job has two Secrets: its variables and its registry credentials. RSS and CPU are the \
         manager process's own (from /proc; the pods run under the benchmark's kubelet, not under glrunner); CPU is \
         counted from the first job queued until the jobs were done (for the Kubernetes executor: until their pods \
         were gone) and averaged over that time; end-to-end is from the first job queued to the last one finished \
         in GitLab.\n\n",
        args.trace_interval, args.job_seconds
    ));

    // Requests per job by kind.
    out.push_str("### API requests per job\n\n");
    let mut header = String::from("| request |");
    let mut rule = String::from("|---|");
    for r in kube {
        header.push_str(&format!(" glrunner, {} |", jobs_label(r.jobs)));
        rule.push_str("---:|");
    }
    for r in kube {
        header.push_str(&format!(
            " official runner, {} — computed |",
            jobs_label(r.jobs)
        ));
        rule.push_str("---:|");
    }
    out.push_str(&header);
    out.push('\n');
    out.push_str(&rule);
    out.push('\n');
    let ours: Vec<BTreeMap<String, f64>> = kube
        .iter()
        .map(|r| requests::divided(&r.requests.jobs, r.jobs))
        .collect();
    let official: Vec<BTreeMap<String, f64>> = kube
        .iter()
        .map(|r| {
            let t: Vec<Tally> = r.durations.iter().map(|d| requests::official(*d)).collect();
            requests::per_job(&t)
        })
        .collect();
    let mut rows: Vec<String> = ours
        .iter()
        .chain(official.iter())
        .flat_map(|m| m.keys().cloned())
        .collect();
    rows.sort();
    rows.dedup();
    let cell =
        |m: &BTreeMap<String, f64>, row: &str| m.get(row).map_or("–".to_owned(), |v| num(*v));
    for row in &rows {
        out.push_str(&format!("| {row} |"));
        for m in ours.iter().chain(official.iter()) {
            out.push_str(&format!(" {} |", cell(m, row)));
        }
        out.push('\n');
    }
    out.push_str("| **total per job** |");
    for m in ours.iter().chain(official.iter()) {
        out.push_str(&format!(" **{}** |", num(m.values().sum())));
    }
    out.push('\n');
    out.push_str("| of which periodic |");
    for r in kube {
        let seen = periodic(r);
        out.push_str(&format!(
            " {seen} (measured: {}) |",
            if r.in_flight.is_some() {
                "while all scripts slept and while idle"
            } else {
                "while idle"
            }
        ));
    }
    for r in kube {
        let polls: f64 = r
            .durations
            .iter()
            .map(|d| (d.as_secs_f64() / requests::OFFICIAL_POLL.as_secs_f64()).floor())
            .sum::<f64>()
            / r.durations.len().max(1) as f64;
        out.push_str(&format!(" {} pod GETs |", num(polls)));
    }
    out.push('\n');
    out.push_str(&format!(
        "\nThe official runner's columns are computed, not measured: its documented request pattern for the same \
         jobs (gitlab-runner.md §4.3, attach strategy, default settings; user-pain.md §2.5): per job two \
         SelfSubjectAccessReviews, a pod informer (LIST + WATCH), the registry-credentials Secret, `GET /version`, \
         the pod and the Secret's owner reference; an exec detecting the shell and the read-logs exec; for each of \
         {} stages an exec writing the script, a pod GET (the phase check before attaching) and an attach — {} \
         exec/attach upgrades —; a pod GET every {} s of each job's measured running time (`watchPodStatus`), and \
         the pod's deletion.\n\n",
        requests::OFFICIAL_STAGES,
        2 + 2 * requests::OFFICIAL_STAGES,
        requests::OFFICIAL_POLL.as_secs()
    ));

    // Everything that is not per job.
    out.push_str("### Requests that are not per job, and periodic requests\n\n");
    out.push_str("| jobs | start-up (before the first job) | shared watches (once per manager and namespace) | idle after start-up | while all scripts slept | idle after the jobs, watches open | failed responses | requests by others |\n");
    out.push_str("|---:|---|---|---:|---:|---:|---:|---:|\n");
    for r in kube {
        let in_flight = match &r.in_flight {
            Some((d, t)) => format!(
                "{} in {:.1} s{}",
                requests::total(t),
                d.as_secs_f64(),
                if t.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", requests::describe(t))
                }
            ),
            None if r.jobs == 1 => "–".to_owned(),
            None => "not measured (scripts started too late)".to_owned(),
        };
        let idle = |t: &Tally| {
            if t.is_empty() {
                format!("0 in {} s", args.idle_seconds)
            } else {
                format!(
                    "{} in {} s ({})",
                    requests::total(t),
                    args.idle_seconds,
                    requests::describe(t)
                )
            }
        };
        out.push_str(&format!(
            "| {} | {}: {} | {}: {} | {} | {} | {} | {} | {} |\n",
            r.jobs,
            requests::total(&r.startup),
            requests::describe(&r.startup),
            requests::total(&r.requests.watches),
            requests::describe(&r.requests.watches),
            idle(&r.idle_after_startup),
            in_flight,
            idle(&r.idle_after_jobs),
            r.requests.failed,
            r.others
        ));
    }
    out.push_str(
        "\n\"Requests by others\" are requests to the API server from identities other than the manager's \
         (none are expected: the benchmark and the kubelet use the store directly).\n\n",
    );

    // The manager's resources.
    out.push_str("### The manager's resources\n\n");
    out.push_str("| executor | jobs | pods Running at once (peak) | peak RSS | RSS idle | CPU time | avg CPU | peak CPU (1 s) | end-to-end, all jobs | per job mean / max |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in kube {
        out.push_str(&usage_row(
            "kubernetes",
            r.jobs,
            &r.peak_running.to_string(),
            &r.usage,
        ));
    }
    for (n, u) in shell {
        out.push_str(&usage_row("shell (baseline, measured)", *n, "–", u));
    }

    // The verdict.
    let simple = kube.iter().find(|r| r.jobs == 1).or(kube.first());
    if let Some(s) = simple {
        let per_job = requests::total(&s.requests.jobs) as f64 / s.jobs as f64;
        let periodic: u64 = kube.iter().map(periodic).sum();
        out.push_str(&format!(
            "\nBar: ≤ {} API requests per simple job, none of them periodic polling (the official runner makes about 20 \
             exec/attach upgrades plus a pod GET every 3 s per job). glrunner: {} request(s) per simple job, {} \
             request(s) in the idle and in-flight windows — {}.\n",
            num(BAR),
            num(per_job),
            periodic,
            if per_job <= BAR && periodic == 0 {
                "met"
            } else {
                "not met"
            }
        ));
    }
    out
}

/// Requests in the windows where nothing but a timer could have made one.
fn periodic(r: &KubeRun) -> u64 {
    requests::total(&r.idle_after_startup)
        + requests::total(&r.idle_after_jobs)
        + r.in_flight.as_ref().map_or(0, |(_, t)| requests::total(t))
}

fn jobs_label(n: usize) -> String {
    if n == 1 {
        "1 job".to_owned()
    } else {
        format!("{n} jobs (per job)")
    }
}

fn usage_row(executor: &str, jobs: usize, running: &str, u: &Usage) -> String {
    format!(
        "| {executor} | {jobs} | {running} | {:.1} MB | {:.1} MB | {:.2} s | {:.3} cores | {} | {} | {} / {} |\n",
        mb(u.peak_rss),
        mb(u.idle_rss),
        u.cpu.as_secs_f64(),
        u.cpu.as_secs_f64() / u.span.as_secs_f64().max(0.001),
        u.peak_cpu_cores
            .map_or("– (under 1 s)".to_owned(), |c| format!("{c:.3} cores")),
        secs(u.wall),
        secs(u.job_mean),
        secs(u.job_max)
    )
}

/// Seconds, with two decimals below ten.
fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 10.0 {
        format!("{s:.2} s")
    } else {
        format!("{s:.1} s")
    }
}
