//! `ferry spot interrupt`: reclaims FARGATE_SPOT tasks as Fargate does
//! (SIGTERM, the containers' stopTimeout, then SIGKILL; stopCode
//! `SpotInterruption`) through the administrator-only
//! `FerryAdmin_20261201.InterruptSpotTasks` operation (docs/services.md).

use std::path::PathBuf;

use anyhow::{Context, bail};
use std::time::Duration;

use ferry_api::client::SignedClient;
use ferry_api::sigv4::SigningCredentials;

/// Arguments of `ferry spot`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Interrupt FARGATE_SPOT tasks (the operator's stand-in for Fargate
    /// reclaiming spot capacity).
    Interrupt {
        /// The server's API endpoint, e.g. http://127.0.0.1:4566.
        #[arg(long)]
        endpoint: String,
        /// The administrator's credentials file (the server's data
        /// directory has it as `credentials`).
        #[arg(long)]
        credentials: PathBuf,
        /// The region to sign for.
        #[arg(long, default_value = "us-east-1")]
        region: String,
        /// The cluster (name or ARN).
        #[arg(long)]
        cluster: Option<String>,
        /// Every running FARGATE_SPOT task of the cluster.
        #[arg(long, conflicts_with = "tasks")]
        all: bool,
        /// Task ARNs or ids.
        #[arg(required_unless_present = "all")]
        tasks: Vec<String>,
    },
}

/// Runs `ferry spot`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let Command::Interrupt {
        endpoint,
        credentials,
        region,
        cluster,
        all,
        tasks,
    } = args.command;
    let (access_key_id, secret_access_key) = ferry_api::credentials::read_credentials(&credentials)
        .with_context(|| format!("reading {}", credentials.display()))?;
    let creds = SigningCredentials {
        access_key_id,
        secret_access_key,
    };
    let mut body = serde_json::json!({ "tasks": tasks, "all": all });
    if let Some(c) = cluster {
        body["cluster"] = c.into();
    }
    let body = serde_json::to_vec(&body)?;
    let client = SignedClient::new(&endpoint, &region, creds, Duration::from_secs(60))?;
    let headers = [
        (
            "x-amz-target",
            "FerryAdmin_20261201.InterruptSpotTasks".to_owned(),
        ),
        ("content-type", "application/x-amz-json-1.1".to_owned()),
    ];
    let (status, answer) = client.post("ecs", &headers, body)?;
    let text = String::from_utf8_lossy(&answer);
    if !(200..300).contains(&status) {
        bail!("HTTP {status}: {text}");
    }
    let v: serde_json::Value = serde_json::from_str(&text)?;
    println!("{}", serde_json::to_string_pretty(&v)?);
    if v["failures"].as_array().is_some_and(|f| !f.is_empty()) {
        bail!("some tasks were not interrupted");
    }
    Ok(())
}
