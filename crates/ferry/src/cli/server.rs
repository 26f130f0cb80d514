//! `ferry server`: opens (or initializes) the data directory, builds the
//! services, and serves them on one listener until SIGTERM/SIGINT.
//!
//! Adding a service: build it from the shared parts in [`Shared`] and
//! register it in [`services`]; it receives the store, the KMS and the
//! account/region by `Arc`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use ferry_api::{DataDir, Router, StaticKeys};
use ferry_kms::{Kms, RootKey};
use ferry_proto::Caller;
use ferry_store::Store;

use crate::wiring;
use crate::wiring::efs::EfsVolumes;
use crate::wiring::runtime::HostRuntime;

/// How long a shutdown waits for running tasks to stop and be shredded
/// (each container gets its `stopTimeout`, 30 s by default, after SIGTERM).
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(45);

/// Operational log on stderr: `info` by default, `RUST_LOG` overrides
/// (e.g. `RUST_LOG=ferry=debug`). Nothing secret is ever logged: key types
/// have no `Debug` that prints them.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A second call (tests running the server twice in a process) keeps the first.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Arguments of `ferry server`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The data directory (created on first start).
    #[arg(long)]
    data_dir: PathBuf,
    /// The address to listen on, e.g. 127.0.0.1:4566 (port 0 picks a free port).
    #[arg(long)]
    listen: SocketAddr,
    /// The region this server is (resource ARNs name it).
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// Forbid unencrypted storage: RunTask and services asking for
    /// platform version 1.3.0 fail with a ClientException, and
    /// CreateFileSystem with Encrypted=false with a BadRequest.
    #[arg(long)]
    require_encrypted_storage: bool,
}

/// What every service may share. Cheap to clone.
#[derive(Clone)]
pub struct Shared {
    /// The state store.
    pub store: Arc<Store>,
    /// The key management service (also callable in-process).
    pub kms: Arc<Kms>,
    /// The account id.
    pub account_id: String,
    /// The region.
    pub region: String,
    /// The data directory.
    pub data_dir: PathBuf,
    /// Whether platform version 1.3.0 (unencrypted storage) is forbidden.
    pub require_encrypted_storage: bool,
}

/// Registers every service on the router.
fn services(
    router: Router,
    shared: &Shared,
) -> anyhow::Result<(Router, Arc<HostRuntime>, Arc<EfsVolumes>)> {
    let logs = logs_service(shared)?;
    let efs = efs_volumes(shared)?;
    let host = task_runtime(shared, logs.clone(), efs.clone())?;
    for p in efs.recover() {
        eprintln!("ferry: warning: releasing a previous server's EFS mount: {p}");
    }
    let runtime: Arc<dyn ferry_control::runtime::TaskRuntime> = host.clone();
    let router = router.json_service("kms", shared.kms.clone());
    let router = router.json_service("logs", logs);
    let router = router.json_service("ecs", ecs_service(shared, runtime)?);
    let router = router.rest_service(
        "elasticfilesystem",
        Arc::new(ferry_efs::EfsService::new(
            shared.store.clone(),
            efs.clone(),
            shared.account_id.clone(),
            shared.region.clone(),
        )),
    );
    Ok((router, host, efs))
}

/// EFS-style persistent file systems under `DATA/efs`.
fn efs_volumes(shared: &Shared) -> anyhow::Result<Arc<EfsVolumes>> {
    let exe = std::env::current_exe().context("locating the ferry binary")?;
    let v = EfsVolumes::new(
        shared.kms.clone(),
        shared.store.clone(),
        &shared.account_id,
        &shared.region,
        &shared.data_dir,
        exe,
        shared.require_encrypted_storage,
    )
    .context("creating the EFS directory")?;
    Ok(Arc::new(v))
}

/// CloudWatch Logs, sealed at rest under a KMS data key.
fn logs_service(shared: &Shared) -> anyhow::Result<Arc<ferry_logs::LogsService>> {
    let key = wiring::logs::logs_key(
        &shared.kms,
        &shared.store,
        &shared.account_id,
        &shared.region,
    )?;
    Ok(Arc::new(ferry_logs::LogsService::new(
        shared.store.clone(),
        Arc::new(ferry_logs::AesGcmSealer::new(key)),
        shared.account_id.clone(),
        shared.region.clone(),
    )))
}

/// The agent with per-task encrypted volumes. Releases whatever a previous
/// server left behind.
fn task_runtime(
    shared: &Shared,
    logs: Arc<ferry_logs::LogsService>,
    efs: Arc<EfsVolumes>,
) -> anyhow::Result<Arc<HostRuntime>> {
    let sink = Arc::new(wiring::logs::LogsSink(logs));
    let agent = ferry_agent::Agent::new(
        ferry_agent::AgentConfig::new(&shared.data_dir, sink).context("agent configuration")?,
    )
    .context("starting the agent")?;
    let tasks_dir = wiring::runtime::tasks_dir(&shared.data_dir);
    std::fs::create_dir_all(&tasks_dir)
        .with_context(|| format!("creating {}", tasks_dir.display()))?;
    let exe = std::env::current_exe().context("locating the ferry binary")?;
    let keys = Arc::new(wiring::keys::KmsKeyProvider::new(shared.kms.clone()));
    let storage = Arc::new(wiring::storage::VolumeStorage::new(
        keys,
        tasks_dir.clone(),
        exe,
        efs,
    ));
    let (runtime, problems) = HostRuntime::new(agent, storage, &tasks_dir);
    for p in problems {
        eprintln!("ferry: warning: releasing a previous server's task: {p}");
    }
    Ok(Arc::new(runtime))
}

/// The name the KMS gives the platform-managed key for Fargate ephemeral
/// storage (used when a cluster has no customer-managed key).
const PLATFORM_STORAGE_KEY: &str = ferry_kms::PLATFORM_KEY_ALIAS;

/// The ECS control plane; tasks go to `runtime`.
fn ecs_service(
    shared: &Shared,
    runtime: Arc<dyn ferry_control::runtime::TaskRuntime>,
) -> anyhow::Result<Arc<ferry_control::EcsService>> {
    use ferry_control::keys::KmsStorageKeys;
    let keys = KmsStorageKeys::new(
        shared.kms.clone(),
        &shared.account_id,
        &shared.region,
        PLATFORM_STORAGE_KEY,
    );
    let mut cfg = ferry_control::EcsConfig::new(&shared.region, &shared.account_id);
    cfg.allow_unencrypted_storage = !shared.require_encrypted_storage;
    let ecs = ferry_control::EcsService::new(cfg, shared.store.clone(), runtime, Arc::new(keys))
        .context("starting the ECS control plane")?;
    Ok(Arc::new(ecs))
}

/// Runs `ferry server`.
pub fn run(args: Args) -> anyhow::Result<()> {
    init_logging();
    let protection = ferry_kms::harden::protect_process();
    if !protection.no_core_dumps {
        anyhow::bail!("cannot disable core dumps for the key-holding server process");
    }
    let dd = DataDir::open_or_init(&args.data_dir)
        .with_context(|| format!("data directory {}", args.data_dir.display()))?;
    let root = RootKey::open_or_create(&dd.path).context("root key")?;
    let kms = Arc::new(
        Kms::open(
            dd.store.clone(),
            root,
            &dd.path,
            &dd.account_id,
            &args.region,
        )
        .context("opening the KMS")?,
    );
    let shared = Shared {
        store: dd.store.clone(),
        kms,
        account_id: dd.account_id.clone(),
        region: args.region.clone(),
        data_dir: dd.path.clone(),
        require_encrypted_storage: args.require_encrypted_storage,
    };

    let mut keys = StaticKeys::new();
    keys.insert(
        &dd.admin_access_key_id,
        dd.admin_secret.clone(),
        Caller::admin(&dd.account_id),
    );
    let (router, runtime, efs) = services(Router::new(Arc::new(keys), &args.region), &shared)?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let addr = listener.local_addr().context("local address")?;
        if !protection.memory_locked {
            eprintln!("ferry: warning: memory is not locked (RLIMIT_MEMLOCK is limited); keys may reach swap");
        }
        println!(
            "ferry: listening on {addr} (account {}, region {}, data dir {})",
            shared.account_id,
            shared.region,
            shared.data_dir.display()
        );
        ferry_api::serve(listener, router, shutdown_signal()).await.context("serving")?;
        let left = tokio::task::spawn_blocking(move || runtime.drain(DRAIN_TIMEOUT))
            .await
            .unwrap_or(usize::MAX);
        if left > 0 {
            eprintln!("ferry: warning: {left} tasks were still stopping at exit; the next start releases them");
        }
        for e in efs.shutdown() {
            eprintln!("ferry: warning: {e}");
        }
        eprintln!("ferry: stopped");
        anyhow::Ok(())
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers, Ctrl-C's default action still ends us.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}
