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
}

/// Registers every service on the router.
fn services(router: Router, shared: &Shared) -> anyhow::Result<Router> {
    let router = router.json_service("kms", shared.kms.clone());
    let router = router.json_service("ecs", ecs_service(shared)?);
    Ok(router)
}

/// The name the KMS gives the platform-managed key for Fargate ephemeral
/// storage (used when a cluster has no customer-managed key).
const PLATFORM_STORAGE_KEY: &str = ferry_kms::PLATFORM_KEY_ALIAS;

/// The ECS control plane. Tasks go to `runtime`; until the agent is wired
/// in, [`ferry_control::runtime::Unavailable`] makes every task fail to
/// start with a reason that says so.
fn ecs_service(shared: &Shared) -> anyhow::Result<Arc<ferry_control::EcsService>> {
    use ferry_control::keys::KmsStorageKeys;
    let keys = KmsStorageKeys::new(
        shared.kms.clone(),
        &shared.account_id,
        &shared.region,
        PLATFORM_STORAGE_KEY,
    );
    let runtime = Arc::new(ferry_control::runtime::Unavailable);
    let ecs = ferry_control::EcsService::new(
        ferry_control::EcsConfig::new(&shared.region, &shared.account_id),
        shared.store.clone(),
        runtime,
        Arc::new(keys),
    )
    .context("starting the ECS control plane")?;
    Ok(Arc::new(ecs))
}

/// Runs `ferry server`.
pub fn run(args: Args) -> anyhow::Result<()> {
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
    };

    let mut keys = StaticKeys::new();
    keys.insert(
        &dd.admin_access_key_id,
        dd.admin_secret.clone(),
        Caller::admin(&dd.account_id),
    );
    let router = services(Router::new(Arc::new(keys), &args.region), &shared)?;

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
