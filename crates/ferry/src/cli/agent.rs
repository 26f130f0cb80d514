//! `ferry agent`: a host that joins a control plane over the API (docs/
//! control-plane.md, "Remote agents"). It runs the tasks placed on it
//! exactly as a server's local agent does (the same `HostRuntime`,
//! volumes, networking and metadata endpoint), but holds no store and no
//! root key: every key comes through the KMS API with the agent's own
//! service credentials (`ferry agent-credentials`), and everything the
//! control plane decides comes through `FerryAgent_20261201`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ferry_agent::image::ImageStore;
use ferry_api::sigv4::SigningCredentials;
use ferry_host::remote::{AgentClient, ApiLogs, Registration, RemoteAgent, TaskViews};
use ferry_host::{HostRuntime, Luks2, TaskVolumes, VolumeEngine, VolumeKeys};

use super::server::{DRAIN_TIMEOUT, HostArgs, init_logging, shutdown_signal};

/// Arguments of `ferry agent`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A replica's API endpoint, e.g. http://10.0.0.1:4566 (or a load
    /// balancer's). Repeat it, or separate URLs with commas, to name
    /// several replicas: a call that cannot reach one goes to the next.
    #[arg(long, required = true, value_delimiter = ',')]
    server: Vec<String>,
    /// This host's agent credentials (`ferry agent-credentials` writes
    /// them; AWS shared-credentials format, profile `default`).
    #[arg(long)]
    credentials: PathBuf,
    /// The data directory: task volumes, images, the agent's state.
    #[arg(long)]
    data_dir: PathBuf,
    /// The region the control plane is in.
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// Where `/health` is served (port 0 picks a free port): 200 while
    /// the control plane answers this agent's polls, 503 otherwise.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The host's flags, as `ferry server` takes them.
    #[command(flatten)]
    host: HostArgs,
}

/// `/health` of an agent: whether the control plane answered a poll
/// lately.
struct PollProbe(Arc<RemoteAgent>);

impl ferry_api::health::Probe for PollProbe {
    fn ping(&self) -> bool {
        self.0.in_touch(Duration::from_secs(5))
    }
}

/// Runs `ferry agent`.
pub fn run(args: Args) -> anyhow::Result<()> {
    init_logging();
    let protection = ferry_kms::harden::protect_process();
    if !protection.no_core_dumps {
        anyhow::bail!("cannot disable core dumps for the key-holding agent process");
    }
    let cfg = args.host.config()?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let data_dir = std::fs::canonicalize(&args.data_dir)
        .with_context(|| format!("data directory {}", args.data_dir.display()))?;
    let (access_key_id, secret_access_key) =
        ferry_api::credentials::read_credentials(&args.credentials)
            .with_context(|| format!("reading {}", args.credentials.display()))?;
    let creds = SigningCredentials {
        access_key_id,
        secret_access_key,
    };
    let servers: Vec<&str> = args.server.iter().map(String::as_str).collect();
    let client = Arc::new(
        AgentClient::new(&servers, &args.region, creds.clone(), &cfg.name).context("--server")?,
    );
    let registered = RemoteAgent::register(
        &client,
        &Registration {
            cpu_units: cfg.cpu_units,
            memory_mib: cfg.memory_mib,
            cpu_overcommit: cfg.cpu_overcommit,
            memory_overcommit: cfg.memory_overcommit,
            subnet: cfg.subnet.map(|s| s.to_string()),
        },
    )
    .context("registering with the control plane")?;
    let account = registered.response.account_id.clone();

    // Keys through the KMS API as this host's agent key.
    let kms = ferry_api::client::kms::KmsClient::new_any(&servers, &args.region, creds)
        .context("the KMS client")?;
    let api_keys = Arc::new(ferry_host::keys::remote::ApiKeys::new(kms, account.clone()));
    let keys: Arc<dyn VolumeKeys> = api_keys.clone();
    let images = ImageStore::open(
        data_dir.join("images"),
        api_keys,
        ferry_kms::platform::context::image_store(&account),
    )
    .context("opening the image store")?;
    images.set_limit(Some(args.host.image_store_limit));
    let mut agent_cfg =
        ferry_agent::AgentConfig::new(&data_dir, images.clone(), Arc::new(ApiLogs(client.clone())))
            .context("agent configuration")?;
    agent_cfg.task_pids_max = args.host.task_pids_max;
    agent_cfg.network.network_name = args.host.task_network.clone();
    agent_cfg.network.driver = args.host.task_network_driver;
    agent_cfg.runtime = ferry_agent::runc::resolve(&args.host.oci_runtime);
    agent_cfg.userns = args.host.userns;
    let agent = ferry_agent::Agent::new(agent_cfg).context("starting the agent")?;

    let fs_size = nix::sys::statvfs::statvfs(&data_dir)
        .map(|st| st.blocks().saturating_mul(st.fragment_size()))
        .with_context(|| format!("reading the size of {}", data_dir.display()))?;
    let policy = ferry_host::admission::StoragePolicy {
        overcommit: args.host.storage_overcommit,
        reserve: args.host.storage_reserve.bytes(fs_size),
    };
    let exe = std::env::current_exe().context("locating the ferry binary")?;
    let engine: Arc<dyn VolumeEngine> = Arc::new(Luks2::new(exe).with_reserve(policy.reserve));
    let tasks_dir = ferry_host::tasks_dir(&data_dir);
    std::fs::create_dir_all(&tasks_dir)
        .with_context(|| format!("creating {}", tasks_dir.display()))?;
    let volumes = Arc::new(
        TaskVolumes::new(keys.clone(), engine.clone(), tasks_dir.clone(), None)
            .with_admission(policy),
    );
    let views = Arc::new(TaskViews::default());
    // Task role credentials are not served on a remote agent yet:
    // placement keeps tasks with a task role on replicas' own hosts.
    let metadata = Arc::new(
        ferry_metadata::Endpoints::new(views.clone())
            .context("starting the task metadata endpoint")?,
    );
    let firewall = agent.firewall().clone();
    let runtime = Arc::new(HostRuntime::new(agent.clone(), volumes).with_metadata(metadata));

    let remote = RemoteAgent::adopt(client, registered, runtime.clone(), firewall.clone(), views);
    let held = |id: &str| runtime.holds_volume(id);
    for p in
        ferry_host::recovery::release_leftovers(&agent, &*engine, &*keys, &tasks_dir, None, &held)
    {
        tracing::warn!("releasing what a previous agent left: {p}");
    }
    remote.spawn().context("starting the poll loop")?;

    let admin_socket = super::server::AdminSocket::bind(&data_dir, images)?;
    let health = ferry_api::health::Health::new(
        Arc::new(PollProbe(remote.clone())),
        "control-plane",
        &cfg.name,
    );
    let router = ferry_api::Router::new(Arc::new(ferry_api::auth::StaticKeys::new()), &args.region)
        .health(health);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let stop_tasks = args.host.stop_tasks_on_exit;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let addr = listener.local_addr().context("local address")?;
        let shutdown = shutdown_signal()?;
        println!(
            "ferry agent: host {} joined {} (account {account}), health on http://{addr}/health",
            cfg.name,
            args.server.join(",")
        );
        ferry_api::serve(listener, router, shutdown)
            .await
            .context("serving")?;
        remote.close();
        if stop_tasks {
            let rt2 = runtime.clone();
            let left = tokio::task::spawn_blocking(move || rt2.drain(DRAIN_TIMEOUT))
                .await
                .unwrap_or(usize::MAX);
            if left > 0 {
                tracing::warn!(
                    "{left} tasks were still stopping at exit; the next start releases them"
                );
            } else if let Err(e) = firewall.retire() {
                tracing::warn!("deleting the security-group table: {e}");
            }
        } else {
            let left = runtime.leave_running();
            tracing::info!("leaving {left} tasks running for the next start to re-adopt");
        }
        let r = remote.clone();
        let flushed = tokio::task::spawn_blocking(move || r.flush(Duration::from_secs(10)))
            .await
            .unwrap_or(false);
        if !flushed {
            tracing::warn!(
                "some task events did not reach the control plane; the next start reconciles"
            );
        }
        drop(admin_socket);
        tracing::info!("stopped");
        anyhow::Ok(())
    })
}
