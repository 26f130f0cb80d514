//! `ferry csi`: the Kubernetes CSI node plugin (crates/csi, docs/csi.md).
//! Parses the flags, hardens the process (it holds data keys while it
//! publishes), checks its KMS identity, re-adopts or shreds what an
//! earlier run left, then serves CSI on the Unix socket.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use ferry_api::sigv4::SigningCredentials;
use ferry_csi as csi;

/// Arguments of `ferry csi`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The CSI socket, `unix:///PATH` (kubelet and node-driver-registrar use it).
    #[arg(long)]
    endpoint: String,
    /// The ferry KMS endpoint, e.g. http://ferry.example:4566.
    #[arg(long)]
    kms_endpoint: String,
    /// AWS shared-credentials file (profile `default`) of the plugin's IAM user.
    #[arg(long)]
    credentials: PathBuf,
    /// This node's name (NodeGetInfo; the `ferry:node` encryption context).
    #[arg(long)]
    node_id: String,
    /// Where volume images and records live (a host directory).
    #[arg(long)]
    data_dir: PathBuf,
    /// The region to sign KMS requests for.
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// The KMS key for volumes that name no `kmsKeyId` (a customer managed
    /// key the cluster's operator creates; see docs/csi.md).
    #[arg(long, default_value = "alias/ferry-csi")]
    default_kms_key_id: String,
}

/// Runs `ferry csi`.
pub fn run(args: Args) -> anyhow::Result<()> {
    init_logging();
    let protection = ferry_kms::harden::protect_process();
    if !protection.no_core_dumps {
        anyhow::bail!("cannot disable core dumps for the key-holding plugin process");
    }
    if !protection.memory_locked {
        tracing::warn!(
            "memory is not locked (RLIMIT_MEMLOCK is limited); data keys may reach swap"
        );
    }
    let socket = csi::socket_path(&args.endpoint)?;
    if args.node_id.is_empty() {
        anyhow::bail!("--node-id must not be empty");
    }
    let (key_id, secret) = ferry_api::credentials::read_credentials(&args.credentials)
        .context("reading --credentials")?;
    let creds = SigningCredentials {
        access_key_id: key_id,
        secret_access_key: secret,
    };
    let kms = ferry_api::client::kms::KmsClient::new(&args.kms_endpoint, &args.region, creds)?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let exe = std::env::current_exe().context("cannot find own executable")?;
    let node = csi::Node::new(
        csi::Config {
            node_id: args.node_id,
            data_dir: args.data_dir,
            default_key_id: args.default_kms_key_id,
            server: ferry_volume::ServerCommand::ferry(exe),
        },
        kms,
    )
    .context("asking STS who the plugin's credentials belong to")?;
    let node = Arc::new(node);
    let rec = node.recover();
    tracing::info!(
        principal = node.principal(),
        adopted = rec.adopted.len(),
        shredded = rec.shredded.len(),
        strays = rec.strays,
        failed = rec.failed.len(),
        "recovered volumes of an earlier run"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let shutdown = super::server::shutdown_signal()?;
        println!(
            "ferry csi: serving {} on {} (node {})",
            csi::service::PLUGIN_NAME,
            socket.display(),
            node.node_id()
        );
        // Published volumes stay mounted and served after the plugin exits
        // (as kubelet expects); a restarted plugin re-adopts them.
        csi::serve(node, &socket, shutdown).await?;
        Ok(())
    })
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // An unwritable stderr (a full disk) loses log lines, never panics
    // (see the server's init_logging).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false)
        .try_init();
}
