//! `ferry server`: opens (or initializes) the data directory, builds the
//! services ([`crate::compose`]), and serves them on one listener until
//! SIGTERM/SIGINT. Tasks keep running after it exits (their shims and volume
//! servers are processes of their own; the next start re-adopts them),
//! unless `--stop-tasks-on-exit`: then it drains the tasks and releases the
//! EFS mounts first.
//!
//! Fleet mode (`--store postgresql://... --root-key FILE`, docs/fleet.md):
//! the state is in a shared PostgreSQL store instead of the data
//! directory's redb file, and the root key is the given file, the same on
//! every replica; `--data-dir` still holds this process's local files.
//! The store URL is never logged or put in an error with its password.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use ferry_api::Router;
use ferry_kms::{Kms, RootKey};

use crate::compose::{self, Shared};
use crate::datadir::DataDir;

/// How long a shutdown waits for running tasks to stop and be shredded:
/// each container gets its `stopTimeout` after SIGTERM (30 s by default,
/// up to 120 s as on ECS), then the task's volume and network are
/// released. A drain cut shorter leaves tasks running behind a server
/// that meant to stop them (with their addresses and volumes).
pub(super) const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(150);

/// Operational log on stderr: `info` by default, `RUST_LOG` overrides
/// (e.g. `RUST_LOG=ferry=debug`). Nothing secret is ever logged: key types
/// have no `Debug` that prints them.
pub(super) fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A second call (tests running the server twice in a process) keeps the first.
    // A log line that cannot be written (stderr on a full disk) is lost;
    // with internal errors logged, tracing-subscriber would `eprintln!` the
    // failure to the same stderr, and that panics: the server died as soon
    // as its log's disk filled.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Arguments of `ferry server`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The data directory (created on first start). With `--store` it
    /// holds only this process's local files (credentials, tasks, images).
    #[arg(long)]
    data_dir: PathBuf,
    /// Keep the state in a shared store instead of the data directory:
    /// `postgresql://USER@HOST[:PORT]/DB` (several `ferry server`
    /// replicas may share it; docs/fleet.md). Keep passwords out of the
    /// URL (argv is readable by every local user): use socket
    /// authentication.
    #[arg(long, value_parser = StoreUrlParser, requires = "root_key")]
    store: Option<StoreUrl>,
    /// With `--store`: the root key file (32 bytes, mode 0600), the same
    /// file on every replica; created if missing on the first replica.
    /// It wraps every key in the store and never goes into the database.
    #[arg(long, requires = "store")]
    root_key: Option<PathBuf>,
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
    /// The 12-digit account id, chosen when the data directory is first
    /// created (random by default); an existing data directory keeps its own.
    #[arg(long, value_parser = parse_account_id)]
    account_id: Option<String>,
    /// The IPv4 subnet tasks get their addresses from (the bridge is its
    /// first address, the tasks' gateway).
    #[arg(long, default_value = "198.18.0.0/16", value_parser = parse_subnet)]
    task_subnet: String,
    /// Longest a client may take to send a request's head, from connecting
    /// or from its first byte after an idle spell (e.g. 10s, 500ms).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    header_timeout: std::time::Duration,
    /// Longest a keep-alive connection is held between requests.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    idle_timeout: std::time::Duration,
    /// Longest a request-body read or a response write may wait on the
    /// client without a byte moving (an inactivity timeout: uploads of any
    /// size pass while bytes flow).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    body_timeout: std::time::Duration,
    /// Most connections held at once; over it, the connection waiting
    /// longest for a request is closed (a 503 if every one is busy).
    #[arg(long, default_value_t = ferry_api::listener::DEFAULT_MAX_CONNECTIONS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_connections: usize,
    /// Most connections held at once from one source address, with the
    /// same eviction.
    #[arg(long, default_value_t = ferry_api::listener::DEFAULT_MAX_CONNECTIONS_PER_SOURCE,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_connections_per_source: usize,
    /// Run no local agent: this server is an API replica only, and no task
    /// is placed on it.
    #[arg(long, conflicts_with = "subnet")]
    no_agent: bool,
    /// What this server offers as a host (its local agent).
    #[command(flatten)]
    pub(super) host: HostArgs,
}

/// What a process that runs tasks offers as a host: `ferry server`'s
/// local agent and `ferry agent` take the same flags.
#[derive(Debug, clap::Args)]
pub struct HostArgs {
    /// Most processes (and threads) one task may have (its cgroup's pids.max).
    #[arg(long, default_value_t = ferry_agent::task::DEFAULT_TASK_PIDS_MAX,
          value_parser = clap::value_parser!(u32).range(16..))]
    pub(crate) task_pids_max: u32,
    /// Run each task's containers in a user namespace, container root as
    /// an unprivileged host uid (its own range of 65536 ids): `auto` (on
    /// where the kernel allows it, decided at start and logged), `on`
    /// (refuse to start without it) or `off` (container root is host root).
    #[arg(long, default_value = "auto", value_parser = clap::value_parser!(ferry_agent::userns::UsernsMode))]
    pub(crate) userns: ferry_agent::userns::UsernsMode,
    /// Bytes the sealed image store may take (e.g. 10GiB, 500MiB, 2000000):
    /// past it, after an import or pull, the least recently used images no
    /// running task uses are removed.
    #[arg(long, default_value = "20GiB", value_parser = parse_size)]
    pub(crate) image_store_limit: u64,
    /// The task network's name (at most 15 characters): the CNI network
    /// name and the nftables table `inet NAME` of the tasks' security
    /// groups. Two servers on one host need their own network and subnet.
    /// `--task-bridge` is the old name (tasks are routed now, not bridged).
    #[arg(long, alias = "task-bridge", default_value = "ferry0", value_parser = parse_bridge)]
    pub(crate) task_network: String,
    /// What makes each task's network: `netlink` (the agent's own
    /// rtnetlink requests, no process per task) or `cni` (the CNI plugins
    /// in /usr/lib/cni: loopback, ptp, static, tuning, firewall). Both
    /// give a task the same interface, addresses and routes.
    #[arg(long, default_value = "netlink", value_parser = clap::value_parser!(ferry_agent::net::NetworkDriver))]
    pub(crate) task_network_driver: ferry_agent::net::NetworkDriver,
    /// The OCI runtime: `auto` (crun if it is on PATH, else runc), a name
    /// on PATH (`runc`, `crun`) or a path.
    #[arg(long, alias = "runtime", default_value = "auto")]
    pub(crate) oci_runtime: String,
    /// How many bytes of task storage one free byte of the data
    /// directory's disk may back (volumes are sparse): RunTask refuses a
    /// task when the storage promised to running tasks plus its own is
    /// more than the free space less the reserve, times this.
    #[arg(long, default_value_t = ferry_host::admission::DEFAULT_OVERCOMMIT,
          value_parser = parse_overcommit)]
    pub(crate) storage_overcommit: f64,
    /// Space of the data directory's disk that task volumes may not take,
    /// kept for ferry's own state: a size (256MiB), a share (5%), or
    /// `auto` (5 %, at least 16 MiB, at most 1 GiB).
    #[arg(long, default_value = "auto",
          value_parser = |s: &str| ferry_host::admission::Reserve::parse(s, parse_size))]
    pub(crate) storage_reserve: ferry_host::admission::Reserve,
    /// At SIGTERM/SIGINT, stop every task (volumes crypto-shredded) before
    /// exiting, instead of leaving them running for the next start to
    /// re-adopt.
    #[arg(long)]
    pub(crate) stop_tasks_on_exit: bool,
    /// This host's name, unique among a fleet's hosts (default: the
    /// machine's host name): 1 to 64 letters, digits, '.', '_' or '-'.
    #[arg(long, value_parser = parse_host_name)]
    pub(crate) name: Option<String>,
    /// CPU units this host promises to tasks per CPU unit it has (1024
    /// per core): at 8, a 2-core machine runs 64 tasks of 0.25 vCPU.
    #[arg(long, default_value_t = ferry_control::hosts::DEFAULT_CPU_OVERCOMMIT,
          value_parser = parse_overcommit)]
    pub(crate) cpu_overcommit: f64,
    /// Memory this host promises to tasks per MiB it has: at 1.5, a 24 GiB
    /// machine runs 70 tasks of 512 MiB.
    #[arg(long, default_value_t = ferry_control::hosts::DEFAULT_MEMORY_OVERCOMMIT,
          value_parser = parse_overcommit)]
    pub(crate) memory_overcommit: f64,
    /// This host's task subnet: only tasks whose ENI is in a VPC subnet
    /// inside this block are placed here (default: any subnet).
    #[arg(long, value_parser = parse_host_subnet)]
    pub(crate) subnet: Option<ferry_proto::net::Ipv4Cidr>,
}

impl HostArgs {
    /// This process as a host: its name (default: the machine's host
    /// name), this machine's size, the ratios and subnet given.
    pub(crate) fn config(&self) -> anyhow::Result<ferry_control::hosts::HostConfig> {
        use ferry_control::hosts;
        let name = match &self.name {
            Some(n) => n.clone(),
            None => hosts::default_name()
                .context("the machine's host name cannot name this host; give --name")?,
        };
        let mut h = hosts::HostConfig::detect(name).context("measuring this host")?;
        h.cpu_overcommit = self.cpu_overcommit;
        h.memory_overcommit = self.memory_overcommit;
        h.subnet = self.subnet;
        Ok(h)
    }
}

/// `--name`: `[A-Za-z0-9._-]{1,64}`.
fn parse_host_name(s: &str) -> Result<String, String> {
    ferry_control::hosts::check_name(s)
        .map(|()| s.to_owned())
        .map_err(|e| e.to_string())
}

/// `--subnet`: an IPv4 CIDR block written with its network address.
fn parse_host_subnet(s: &str) -> Result<ferry_proto::net::Ipv4Cidr, String> {
    s.parse()
        .map_err(|e: ferry_proto::net::CidrError| e.to_string())
}

/// This server as a host: its name, this machine's size, the ratios and
/// subnet given; `None` with `--no-agent`.
fn host_config(args: &Args) -> anyhow::Result<Option<ferry_control::hosts::HostConfig>> {
    if args.no_agent {
        return Ok(None);
    }
    args.host.config().map(Some)
}

/// A shared store's URL. Its password (in the user info or a `password`
/// parameter) never leaves through `Debug` or `Display`: both show
/// [`StoreUrl::redacted`].
#[derive(Clone)]
pub struct StoreUrl {
    url: zeroize::Zeroizing<String>,
    redacted: String,
}

impl StoreUrl {
    fn parse(s: &str) -> Result<Self, String> {
        let lower = s.to_ascii_lowercase();
        if !(lower.starts_with("postgresql://") || lower.starts_with("postgres://")) {
            return Err(format!(
                "{:?} is not a store URL: --store takes postgresql://USER@HOST[:PORT]/DATABASE",
                redact_store_url(s)
            ));
        }
        Ok(Self {
            url: zeroize::Zeroizing::new(s.to_owned()),
            redacted: redact_store_url(s),
        })
    }

    /// The URL without its password.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }

    /// Whether the URL carries a password.
    fn has_password(&self) -> bool {
        self.redacted != *self.url
    }

    /// `text` (an error from the store) without the URL's password, in
    /// case the driver quoted it.
    fn scrub(&self, text: &str) -> String {
        let mut out = text.replace(self.url.as_str(), &self.redacted);
        for secret in url_passwords(&self.url) {
            if !secret.is_empty() {
                out = out.replace(&secret, "***");
            }
        }
        out
    }
}

/// clap's parser for `--store`: clap quotes a refused value in its
/// message, so the refusal is a raw error that names only the redacted URL.
#[derive(Clone)]
struct StoreUrlParser;

impl clap::builder::TypedValueParser for StoreUrlParser {
    type Value = StoreUrl;

    fn parse_ref(
        &self,
        _cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<StoreUrl, clap::Error> {
        let refuse = |msg: String| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("--store: {msg}\n"),
            )
        };
        let s = value
            .to_str()
            .ok_or_else(|| refuse("the URL is not UTF-8".into()))?;
        StoreUrl::parse(s).map_err(refuse)
    }
}

impl std::fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted)
    }
}

/// `url` split as `scheme://`, authority, and the rest (path, query).
fn split_url(url: &str) -> (&str, &str, &str) {
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    (scheme, authority, tail)
}

/// Whether a query parameter's name names a password (`password`,
/// `sslpassword`, any case).
fn is_password_param(name: &str) -> bool {
    name.to_ascii_lowercase().contains("password")
}

/// The passwords `url` carries, as written and percent-decoded.
fn url_passwords(url: &str) -> Vec<String> {
    let (_, authority, tail) = split_url(url);
    let mut out = Vec::new();
    if let Some((userinfo, _)) = authority.rsplit_once('@')
        && let Some((_, pw)) = userinfo.split_once(':')
    {
        out.push(pw.to_owned());
    }
    if let Some((_, query)) = tail.split_once('?') {
        let query = query.split('#').next().unwrap_or("");
        for pair in query.split('&') {
            if let Some((k, v)) = pair.split_once('=')
                && is_password_param(k)
            {
                out.push(v.to_owned());
            }
        }
    }
    let decoded: Vec<String> = out.iter().map(|p| form_decode(p)).collect();
    out.extend(decoded);
    out
}

/// Percent-decodes `s` (lossy: it is only compared against error text).
fn form_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(h) = s.get(i + 1..i + 3)
            && let Ok(v) = u8::from_str_radix(h, 16)
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `url` without its password: `postgresql://u:pw@h/db?password=x&sslmode=y`
/// becomes `postgresql://u@h/db?sslmode=y`.
pub fn redact_store_url(url: &str) -> String {
    let (scheme, authority, tail) = split_url(url);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{user}@{host}")
        }
        None => authority.to_owned(),
    };
    let (path, query) = match tail.split_once('?') {
        Some((p, q)) => (p, Some(q.split('#').next().unwrap_or(""))),
        None => (tail.split('#').next().unwrap_or(""), None),
    };
    let mut out = format!("{scheme}{authority}{path}");
    if let Some(q) = query {
        let kept: Vec<&str> = q
            .split('&')
            .filter(|p| !is_password_param(p.split('=').next().unwrap_or("")))
            .collect();
        if !kept.is_empty() {
            out.push('?');
            out.push_str(&kept.join("&"));
        }
    }
    out
}

/// A ratio of at least 0.1 (less would admit nothing useful).
fn parse_overcommit(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a ratio such as 1.0 or 16"))?;
    if !(0.1..=10_000.0).contains(&v) {
        return Err(format!("{s:?}: the ratio must be between 0.1 and 10000"));
    }
    Ok(v)
}

/// A Linux interface name: 1 to 15 characters, none of them `/`, `:`,
/// or white space (the kernel's rule, dev_valid_name).
fn parse_bridge(s: &str) -> Result<String, String> {
    let ok = (1..=15).contains(&s.len())
        && s != "."
        && s != ".."
        && !s.chars().any(|c| c == '/' || c == ':' || c.is_whitespace());
    ok.then(|| s.to_owned()).ok_or_else(|| {
        format!("{s:?} is not an interface name (1-15 characters, no '/', ':' or spaces)")
    })
}

/// An IPv4 CIDR block with room for tasks (prefix 8 to 24: it is the
/// default VPC, whose three default subnets are 4 bits longer), written
/// with its network address (`10.1.0.0/24`, not `10.1.0.7/24`).
fn parse_subnet(s: &str) -> Result<String, String> {
    let bad = || format!("{s:?} is not an IPv4 subnet such as 198.18.0.0/16 (prefix 8 to 24)");
    let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
    let addr: std::net::Ipv4Addr = addr.parse().map_err(|_| bad())?;
    let prefix: u32 = prefix.parse().map_err(|_| bad())?;
    if !(8..=24).contains(&prefix) {
        return Err(bad());
    }
    let mask = u32::MAX << (32 - prefix);
    if u32::from(addr) & !mask != 0 {
        return Err(format!(
            "{s:?} has host bits set; the subnet is {}/{prefix}",
            std::net::Ipv4Addr::from(u32::from(addr) & mask)
        ));
    }
    Ok(s.to_owned())
}

/// `10s`, `500ms`, `2m`, or seconds (`10`); more than zero.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as 10s, 500ms or 2m"))?;
    let d = match unit.trim() {
        "" | "s" => std::time::Duration::from_secs(n),
        "ms" => std::time::Duration::from_millis(n),
        "m" => std::time::Duration::from_secs(n.saturating_mul(60)),
        _ => return Err(format!("{s:?}: unknown unit (use ms, s or m)")),
    };
    if d.is_zero() {
        return Err(format!("{s:?}: must be more than zero"));
    }
    Ok(d)
}

/// Descriptors kept for everything but client connections (the store,
/// tasks' pipes and sockets, image layers).
const FD_RESERVE: u64 = 1024;

/// Raises the soft RLIMIT_NOFILE to the hard limit, so the connection cap
/// rather than running out of descriptors is what refuses a flood, and
/// lowers the cap if even the hard limit cannot hold it.
fn fit_descriptors(mut limits: ferry_api::Limits) -> ferry_api::Limits {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let soft = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(e) => {
                tracing::warn!(error = %e, "cannot raise the open-file limit");
                soft
            }
        },
        Ok((soft, _)) => soft,
        Err(_) => return limits,
    };
    let room = usize::try_from(soft.saturating_sub(FD_RESERVE))
        .unwrap_or(usize::MAX)
        .max(16);
    if limits.max_connections > room {
        tracing::warn!(
            "the open-file limit ({soft}) holds only {room} connections; --max-connections lowered from {}",
            limits.max_connections
        );
        limits.max_connections = room;
    }
    limits
}

/// `20GiB`, `512MiB`, `1G`, `4096`: binary units (K, M, G, T with or
/// without `iB`), or bytes.
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size such as 10GiB, 500MiB or 4096"))?;
    let shift = match unit.trim().trim_end_matches("iB").trim_end_matches('B') {
        "" => 0,
        "K" | "k" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(format!("{s:?}: unknown unit (use KiB, MiB, GiB or TiB)")),
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

fn parse_account_id(s: &str) -> Result<String, String> {
    if crate::datadir::valid_account_id(s) {
        Ok(s.to_owned())
    } else {
        Err("an account id is 12 digits, e.g. 012345678910".into())
    }
}

/// Runs `ferry server`.
pub fn run(args: Args) -> anyhow::Result<()> {
    init_logging();
    let protection = ferry_kms::harden::protect_process();
    if !protection.no_core_dumps {
        anyhow::bail!("cannot disable core dumps for the key-holding server process");
    }
    let host = host_config(&args)?;
    let (dd, root) = open_state(&args)?;
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
    let iam = compose::identity(&dd.store, &kms, &dd.account_id)?;
    // Bound before the services are built: the agent pulls images of
    // ferry's own registry from this address (port 0 is known only now).
    let std_listener = std::net::TcpListener::bind(args.listen)
        .with_context(|| format!("listening on {}", args.listen))?;
    let listen = std_listener.local_addr().context("local address")?;
    let shared = Shared {
        listen,
        store: dd.store.clone(),
        kms,
        iam: iam.clone(),
        account_id: dd.account_id.clone(),
        region: args.region.clone(),
        data_dir: dd.path.clone(),
        require_encrypted_storage: args.require_encrypted_storage,
        task_pids_max: args.host.task_pids_max,
        userns: args.host.userns,
        image_store_limit: args.host.image_store_limit,
        task_network: args.host.task_network,
        task_network_driver: args.host.task_network_driver,
        oci_runtime: args.host.oci_runtime,
        task_subnet: args.task_subnet,
        storage_overcommit: args.host.storage_overcommit,
        storage_reserve: args.host.storage_reserve,
        host,
    };

    let keys = compose::Keys::new(iam, &dd.admin_access_key_id, dd.admin_secret.clone());
    let limits = fit_descriptors(ferry_api::Limits {
        header_timeout: args.header_timeout,
        idle_timeout: args.idle_timeout,
        body_timeout: args.body_timeout,
        max_connections: args.max_connections,
        max_connections_per_source: args.max_connections_per_source,
    });
    let health = ferry_api::health::Health::new(
        Arc::new(compose::StoreProbe::new(dd.store.clone())),
        dd.store.backend(),
        &node_name(),
    );
    let router = Router::new(Arc::new(keys), &args.region)
        .limits(limits)
        .health(health)
        // Agent keys (the Fargate service principal) reach the KMS and the
        // agent API only.
        .service_targets(&[
            ferry_kms::TARGET_PREFIX,
            ferry_control::agents::TARGET_PREFIX,
        ]);
    let (router, host) = compose::services(router, &shared)?;
    // `ferry image` reaches the store (sealed under this process's KMS)
    // through the admin socket; removed at exit.
    let admin_socket = match &host.agent {
        Some(a) => Some(AdminSocket::bind(&shared.data_dir, a.images.clone())?),
        None => None,
    };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        std_listener
            .set_nonblocking(true)
            .context("making the listener non-blocking")?;
        let listener = tokio::net::TcpListener::from_std(std_listener)
            .with_context(|| format!("listening on {listen}"))?;
        let addr = listener.local_addr().context("local address")?;
        host.registry.set_endpoint(format!("http://{addr}"));
        if !protection.memory_locked {
            tracing::warn!("memory is not locked (RLIMIT_MEMLOCK is limited); keys may reach swap");
        }
        let shutdown = shutdown_signal()?;
        println!(
            "ferry: listening on {addr} (account {}, region {}, data dir {})",
            shared.account_id,
            shared.region,
            shared.data_dir.display()
        );
        ferry_api::serve(listener, router, shutdown)
            .await
            .context("serving")?;
        // Another replica takes the singletons over at once.
        host.control.resign();
        match &host.agent {
            Some(agent) if args.host.stop_tasks_on_exit => {
                let runtime = agent.runtime.clone();
                let left = tokio::task::spawn_blocking(move || runtime.drain(DRAIN_TIMEOUT))
                    .await
                    .unwrap_or(usize::MAX);
                if left > 0 {
                    tracing::warn!(
                        "{left} tasks were still stopping at exit; the next start releases them"
                    );
                } else if let Err(e) = agent.firewall.retire() {
                    tracing::warn!("deleting the security-group table: {e}");
                }
                for e in host.efs.shutdown() {
                    tracing::warn!("{e}");
                }
            }
            Some(agent) => {
                let left = agent.runtime.leave_running();
                tracing::info!("leaving {left} tasks running for the next start to re-adopt");
                // With no task left there is nothing for the table to guard
                // until the next start renders it again.
                if left == 0
                    && let Err(e) = agent.firewall.retire()
                {
                    tracing::warn!("deleting the security-group table: {e}");
                }
            }
            None => {}
        }
        drop(admin_socket);
        tracing::info!("stopped");
        anyhow::Ok(())
    })
}

/// The data directory, the state store and the root key: the embedded
/// store and `DATA_DIR/root.key` by default; with `--store`, the shared
/// store and the `--root-key` file.
fn open_state(args: &Args) -> anyhow::Result<(DataDir, RootKey)> {
    let Some(url) = &args.store else {
        let dd = DataDir::open_or_init(&args.data_dir, args.account_id.as_deref())
            .with_context(|| format!("data directory {}", args.data_dir.display()))?;
        let root = RootKey::open_or_create(&dd.path).context("root key")?;
        return Ok((dd, root));
    };
    // clap enforces it; this keeps the message if that ever changes.
    let root_key = args
        .root_key
        .as_deref()
        .context("--store needs --root-key FILE (the same root key file on every replica)")?;
    if url.has_password() {
        tracing::warn!(
            "the --store URL carries a password, which every local user can read in the process list; \
             prefer socket authentication (docs/fleet.md, \"The store's password\")"
        );
    }
    let store = ferry_store::Store::connect(&url.url).map_err(|e| {
        anyhow::anyhow!(
            "connecting to the store {}: {}",
            url.redacted(),
            url.scrub(&e.to_string())
        )
    })?;
    tracing::info!(store = %url, backend = store.backend(), "connected to the shared store");
    DataDir::open_shared(
        &args.data_dir,
        Arc::new(store),
        root_key,
        args.account_id.as_deref(),
    )
    .map_err(|e| anyhow::anyhow!("{}", url.scrub(&e.to_string())))
    .with_context(|| format!("joining the store {}", url.redacted()))
}

/// This process's name in `/health`: the host's name (the name an
/// operator gives with `--name` takes its place where it is set).
fn node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "ferry".to_owned())
}

/// The image admin socket, served on its own thread while this lives.
pub(super) struct AdminSocket(PathBuf);

impl AdminSocket {
    pub(super) fn bind(
        data_dir: &std::path::Path,
        images: ferry_agent::image::ImageStore,
    ) -> anyhow::Result<Self> {
        use ferry_agent::image::admin;
        let listener = admin::bind(data_dir).with_context(|| {
            format!(
                "creating the image admin socket {}",
                admin::socket_path(data_dir).display()
            )
        })?;
        std::thread::Builder::new()
            .name("image-admin".into())
            .spawn(move || admin::serve(listener, images))
            .context("starting the image admin socket")?;
        Ok(Self(admin::socket_path(data_dir)))
    }
}

impl Drop for AdminSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed when this is
/// called, not when the future is first polled: the server calls it before
/// it says it is listening, so a SIGTERM sent right after readiness is a
/// clean shutdown rather than the signal's default action.
pub(super) fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
    })
}

#[cfg(test)]
mod tests {
    use super::{StoreUrl, parse_bridge, parse_subnet, redact_store_url};

    #[test]
    fn store_urls_lose_their_password_everywhere_they_are_shown() {
        for (url, want) in [
            (
                "postgresql://ferry@db1/ferry",
                "postgresql://ferry@db1/ferry",
            ),
            (
                "postgresql://ferry:s3cr%40t@db1:5432/ferry",
                "postgresql://ferry@db1:5432/ferry",
            ),
            (
                "postgres://ferry:pw@db1/ferry?sslmode=require&password=pw2&application_name=x",
                "postgres://ferry@db1/ferry?sslmode=require&application_name=x",
            ),
            (
                "postgresql://db1/ferry?PASSWORD=pw2",
                "postgresql://db1/ferry",
            ),
            (
                "postgresql://postgres@%2Ftmp%2Fpg/ferry",
                "postgresql://postgres@%2Ftmp%2Fpg/ferry",
            ),
            ("postgresql://u:p@h", "postgresql://u@h"),
        ] {
            assert_eq!(redact_store_url(url), want, "{url}");
        }
        let u = StoreUrl::parse("postgresql://ferry:s3cr%40t@db1/ferry?password=pw2").unwrap();
        assert!(u.has_password());
        assert_eq!(
            format!("{u} {u:?}"),
            "postgresql://ferry@db1/ferry postgresql://ferry@db1/ferry"
        );
        let scrubbed = u.scrub(
            "cannot connect to postgresql://ferry:s3cr%40t@db1/ferry?password=pw2 \
                                 (user ferry, password s3cr@t, pw2)",
        );
        for secret in ["s3cr", "pw2"] {
            assert!(!scrubbed.contains(secret), "{scrubbed}");
        }
        assert!(
            !StoreUrl::parse("postgresql://ferry@db1/ferry")
                .unwrap()
                .has_password()
        );
        let e = StoreUrl::parse("mysql://u:pw@h/db").unwrap_err();
        assert!(e.contains("postgresql://") && !e.contains("pw"), "{e}");
    }

    #[test]
    fn subnets_need_a_network_address_and_room_for_tasks() {
        assert_eq!(parse_subnet("198.18.0.0/16").unwrap(), "198.18.0.0/16");
        assert_eq!(parse_subnet("10.7.3.0/24").unwrap(), "10.7.3.0/24");
        let e = parse_subnet("10.7.3.9/24").unwrap_err();
        assert!(e.contains("10.7.3.0/24"), "{e}");
        for bad in [
            "10.0.0.0",
            "10.0.0.0/30",
            "10.0.0.0/25",
            "10.0.0.0/7",
            "x/24",
            "10.0.0.0/ab",
            "::1/64",
        ] {
            assert!(parse_subnet(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bridge_names_follow_the_kernel() {
        assert_eq!(parse_bridge("ferry-gw1").unwrap(), "ferry-gw1");
        for bad in ["", "sixteen-chars-xx", "a/b", "a:b", "a b", ".."] {
            assert!(parse_bridge(bad).is_err(), "{bad:?}");
        }
    }
}
