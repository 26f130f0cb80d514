//! The composition root of `ferry server`: builds each library's parts from
//! the shared ones and connects them. The only code here is the adapters
//! between one crate's trait and another crate's type; the logic lives in
//! the crates.
//!
//! The key path: `ferry_kms::Kms` -> [`Platform`] (typed, audited calls as
//! `fargate.amazonaws.com`) -> `ferry_host` (task volumes, EFS), through
//! [`ImageKeys`] the sealed image store, and through [`ClusterKeys`] the
//! control plane's CreateCluster checks.
//!
//! The identity path: `ferry_iam::Iam` (secrets sealed by the KMS root key
//! through [`KmsSealer`]) answers IAM and STS and, through [`Keys`], is the
//! listener's credential table beside the administrator's key.

mod console;
mod efs;
mod identity;

use std::sync::Arc;

use anyhow::Context;
use ferry_agent::image::ImageStore;
use ferry_agent::logs::{LogEvent as AgentEvent, LogSink, OpenStreamError};
use ferry_api::Router;
use ferry_api::auth::{Authenticator, KeyRefused};
use ferry_blob::{BlobKeys, DataKey, KeyError};
use ferry_control::identity::IdentityServices;
use ferry_control::identity::sessions::TaskSessions;
use ferry_control::keys::{self, KeyCheckError, KeyFacts, StorageKeys};
use ferry_control::networks::{AwsVpc, NetworkRefusal, TaskNetworks};
use ferry_control::runtime::TaskRuntime;
use ferry_host::{EfsVolumes, HostRuntime, Luks2, TaskVolumes, VolumeEngine, VolumeKeys};
use ferry_iam::{AuthRefusal, Iam, IamService, StsService};
use ferry_kms::Platform;
use ferry_kms::platform::PlatformError;
use ferry_logs::{LogEvent, LogsService};
use ferry_proto::net::InterfacePlan;
use ferry_proto::{AwsError, Caller};
use ferry_store::Store;
use zeroize::Zeroizing;

/// What every service may share. Cheap to clone.
#[derive(Clone)]
pub struct Shared {
    /// The state store.
    pub store: Arc<Store>,
    /// The key management service (also serves the API).
    pub kms: Arc<ferry_kms::Kms>,
    /// The identity store (IAM, STS, the credential table, task-role
    /// sessions: [`Iam::assume_role_for_service`], [`Iam::revoke_owner`]).
    pub iam: Arc<Iam>,
    /// The account id.
    pub account_id: String,
    /// The region.
    pub region: String,
    /// The data directory.
    pub data_dir: std::path::PathBuf,
    /// Whether platform version 1.3.0 (unencrypted storage) is forbidden.
    pub require_encrypted_storage: bool,
    /// Each task's pids limit.
    pub task_pids_max: u32,
    /// Whether tasks run in user namespaces (`--userns`).
    pub userns: ferry_agent::userns::UsernsMode,
    /// Bytes the sealed image store may take before the least recently
    /// used images no task uses are collected.
    pub image_store_limit: u64,
    /// The task network's name (CNI network, nftables table).
    pub task_network: String,
    /// What makes each task's network (`--task-network-driver`).
    pub task_network_driver: ferry_agent::net::NetworkDriver,
    /// The OCI runtime (`--oci-runtime`: `auto`, a name or a path).
    pub oci_runtime: String,
    /// The default VPC's CIDR block (first start): tasks' addresses come
    /// from its subnets, or from the subnets users create.
    pub task_subnet: String,
    /// The address the API listener is bound to (ferry's own registry is
    /// served there too).
    pub listen: std::net::SocketAddr,
    /// Task storage admission: bytes of volume per free byte.
    pub storage_overcommit: f64,
    /// Task storage admission: the space kept for ferry's own state.
    pub storage_reserve: ferry_host::admission::Reserve,
    /// This server as a host (`--name`, its size, overcommit ratios,
    /// `--subnet`); `None` with `--no-agent`: no local agent, an API
    /// replica only.
    pub host: Option<ferry_control::hosts::HostConfig>,
}

/// ferry's own registry as tasks name it (`ACCOUNT.dkr.ecr.REGION.amazonaws.com`)
/// and as the agent reaches it: the listener, over loopback when it listens
/// on every address.
fn own_registry(shared: &Shared) -> ferry_agent::OwnRegistry {
    let mut addr = shared.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    ferry_agent::OwnRegistry {
        host: ferry_registry::names::registry_host(&shared.region, &shared.account_id),
        endpoint: format!("http://{addr}"),
    }
}

/// What the server keeps to shut down in order.
pub struct Host {
    /// The local agent's parts (`None` with `--no-agent`).
    pub agent: Option<LocalAgent>,
    /// The EFS mounts (released after the tasks).
    pub efs: Arc<EfsVolumes>,
    /// The registry (told the listener's address once bound).
    pub registry: Arc<ferry_registry::Registry>,
    /// The control plane (gives up the scheduler lease at shutdown).
    pub control: Arc<ferry_control::service::Core>,
}

/// The local agent: what runs this host's tasks.
pub struct LocalAgent {
    /// The task runtime (drained at shutdown).
    pub runtime: Arc<HostRuntime>,
    /// The sealed image store (served on the admin socket).
    pub images: ImageStore,
    /// The security-group firewall (its table is deleted at a drained exit).
    pub firewall: Arc<ferry_agent::net::firewall::Firewall>,
    agent: ferry_agent::Agent,
    tasks_dir: std::path::PathBuf,
}

/// Builds every service, re-adopts the tasks a previous server left
/// running, releases the rest of what it left on this host, and registers
/// the services on the router.
pub fn services(router: Router, shared: &Shared) -> anyhow::Result<(Router, Host)> {
    let platform = Platform::new(shared.kms.clone());
    let logs = logs_service(shared, &platform)?;
    let exe = std::env::current_exe().context("locating the ferry binary")?;
    let fs_size = nix::sys::statvfs::statvfs(&shared.data_dir)
        .map(|st| st.blocks().saturating_mul(st.fragment_size()))
        .with_context(|| format!("reading the size of {}", shared.data_dir.display()))?;
    let storage_policy = ferry_host::admission::StoragePolicy {
        overcommit: shared.storage_overcommit,
        reserve: shared.storage_reserve.bytes(fs_size),
    };
    tracing::info!(
        overcommit = storage_policy.overcommit,
        reserve = %ferry_host::admission::human(storage_policy.reserve),
        "task storage admission"
    );
    let engine: Arc<dyn VolumeEngine> =
        Arc::new(Luks2::new(exe).with_reserve(storage_policy.reserve));
    let keys: Arc<dyn VolumeKeys> = Arc::new(platform.clone());
    let efs = Arc::new(
        EfsVolumes::new(
            keys.clone(),
            engine.clone(),
            shared.store.clone(),
            &shared.data_dir,
            shared.require_encrypted_storage,
        )
        .context("creating the EFS directory")?,
    );

    let control_state = Arc::new(ControlState::default());
    let ec2 = ec2_service(shared)?;
    let secrets = secrets_services(shared)?;
    let registry = registry(shared)?;
    // One session table for the tasks' roles: the control plane issues and
    // revokes, the metadata endpoint serves (and renews) credentials.
    let sessions = Arc::new(TaskSessions::new(Arc::new(identity::TaskSts(
        shared.iam.clone(),
    ))));
    // IAM-authorized EFS mounts are judged as the task's role session.
    efs.set_clients(Arc::new(efs::TaskRoleClients {
        control: control_state.clone(),
        sessions: sessions.clone(),
        iam: shared.iam.clone(),
    }));
    let task_identity = IdentityServices {
        roles: sessions.clone(),
        secrets: Arc::new(identity::TaskSecrets {
            secrets_manager: secrets.secrets_manager.clone(),
            ssm: secrets.ssm.clone(),
            region: shared.region.clone(),
        }),
        registry: Arc::new(identity::TaskRegistryLogins {
            registry: registry.clone(),
            host: ferry_registry::names::registry_host(&shared.region, &shared.account_id),
            region: shared.region.clone(),
        }),
    };
    let local = match shared.host {
        Some(_) => Some(local_agent(
            shared,
            &platform,
            &logs,
            &engine,
            &keys,
            &efs,
            storage_policy,
            &control_state,
            sessions,
        )?),
        None => None,
    };
    let runtime: Arc<dyn TaskRuntime> = match &local {
        Some(l) => l.runtime.clone(),
        // An API replica: no task is placed on it (it registers no host).
        None => Arc::new(ferry_control::runtime::Unavailable),
    };

    // Starting the control plane reconciles: every unfinished task is
    // offered to the runtime for re-adoption first; only then is what a
    // previous server left and nobody adopted released.
    let ecs = ecs_service(
        shared,
        runtime,
        platform,
        task_identity,
        Arc::new(Ec2Networks(ec2.clone())),
    )?;
    if let Some(l) = &local {
        let adopted = |id: &str| l.runtime.holds_volume(id);
        for p in ferry_host::recovery::release_leftovers(
            &l.agent,
            &*engine,
            &*keys,
            &l.tasks_dir,
            Some(&efs),
            &adopted,
        ) {
            tracing::warn!("releasing what a previous server left: {p}");
        }
        // The security-group firewall: the VPC service's rules, now and
        // after every change (applied before the change's response is
        // sent). Only now, after re-adoption, is the table rendered: a
        // previous server's table stays in force until the adopted tasks
        // are members again. With replicas, another one's rule changes
        // arrive within a second.
        let firewall = l.firewall.clone();
        let fw = l.firewall.clone();
        ec2.follow_rules(
            |rules| firewall.set_rules(rules),
            Box::new(move |rules| {
                if let Err(e) = fw.set_rules(rules) {
                    tracing::error!("applying the changed security-group rules failed: {e}");
                }
            }),
        )
        .context("loading the security-group firewall")?;
    }
    // Bound late: the control plane needs the runtime, the runtime's
    // metadata endpoint reads the control plane's task records.
    let _ = control_state.core.set(Arc::downgrade(ecs.core()));
    let control = ecs.core().clone();
    let router = router
        .json_service(
            "ecr",
            Arc::new(ferry_registry::api::EcrService::new(registry.clone())),
        )
        .http_service(
            "/v2/",
            Arc::new(ferry_registry::dist::Distribution::new(registry.clone())),
        )
        .query_service("iam", Arc::new(IamService::new(shared.iam.clone())))
        .query_service("sts", Arc::new(StsService::new(shared.iam.clone())))
        .query_service("ec2", Arc::new(ferry_ec2::Ec2Service::new(ec2.clone())))
        .json_service("kms", shared.kms.clone())
        .json_service("logs", logs.clone())
        .json_service(
            "ecs",
            Arc::new(
                ferry_control::admin::FerryAdmin::new(ecs.core().clone()).with_agent_keys(
                    Arc::new(AgentKeys {
                        iam: shared.iam.clone(),
                    }),
                ),
            ),
        )
        .json_service(
            "ecs",
            Arc::new(ferry_control::agents::AgentApi::new(
                ecs.core().clone(),
                Arc::new(AgentSupport {
                    iam: shared.iam.clone(),
                    ec2: ec2.clone(),
                    logs: logs.clone(),
                }),
            )),
        )
        .json_service("ecs", ecs)
        .json_service("secretsmanager", secrets.secrets_manager)
        .json_service("ssm", secrets.ssm)
        .rest_service(
            "elasticfilesystem",
            Arc::new(
                ferry_efs::EfsService::new(
                    shared.store.clone(),
                    efs.clone(),
                    shared.account_id.clone(),
                    shared.region.clone(),
                )
                .with_network(Arc::new(efs::MountTargetNetwork(ec2.clone())))
                .with_host(shared.host.as_ref().map(|h| h.name.clone())),
            ),
        );
    let _ = control
        .file_system_hosts
        .set(Arc::new(efs::FileSystemHosts(shared.store.clone())));
    // The console calls the services above as its signed-in users: it is
    // registered last, on a handle to every AWS service.
    let console = ferry_console::Console::new(
        router.calls(),
        console::console_data(shared, local.as_ref().map(|l| &*l.runtime))?,
        Arc::new(ConsoleNetworks(ec2.clone())),
    );
    let router = router.http_service("/console/", Arc::new(console));
    Ok((
        router,
        Host {
            agent: local,
            efs,
            registry,
            control,
        },
    ))
}

/// The local agent over the data directory: the image store, the agent
/// (networking, OCI runtime), the task volumes and the task metadata
/// endpoint, as the `TaskRuntime` the control plane starts this host's
/// tasks with.
#[allow(clippy::too_many_arguments)]
fn local_agent(
    shared: &Shared,
    platform: &Platform,
    logs: &Arc<LogsService>,
    engine: &Arc<dyn VolumeEngine>,
    keys: &Arc<dyn VolumeKeys>,
    efs: &Arc<EfsVolumes>,
    storage_policy: ferry_host::admission::StoragePolicy,
    control_state: &Arc<ControlState>,
    sessions: Arc<TaskSessions>,
) -> anyhow::Result<LocalAgent> {
    let images = ImageStore::open(
        shared.data_dir.join("images"),
        Arc::new(ImageKeys(platform.clone())),
        ferry_kms::platform::context::image_store(&shared.account_id),
    )
    .context("opening the image store")?;
    images.set_limit(Some(shared.image_store_limit));
    let mut agent_cfg = ferry_agent::AgentConfig::new(
        &shared.data_dir,
        images.clone(),
        Arc::new(LogsSink(logs.clone())),
    )
    .context("agent configuration")?;
    agent_cfg.task_pids_max = shared.task_pids_max;
    agent_cfg.network.network_name = shared.task_network.clone();
    agent_cfg.network.driver = shared.task_network_driver;
    agent_cfg.runtime = ferry_agent::runc::resolve(&shared.oci_runtime);
    tracing::info!(
        "task network driver {}, OCI runtime {}",
        agent_cfg.network.driver,
        agent_cfg.runtime.display()
    );
    agent_cfg.userns = shared.userns;
    agent_cfg.own_registry = Some(own_registry(shared));
    let agent = ferry_agent::Agent::new(agent_cfg).context("starting the agent")?;
    let tasks_dir = ferry_host::tasks_dir(&shared.data_dir);
    std::fs::create_dir_all(&tasks_dir)
        .with_context(|| format!("creating {}", tasks_dir.display()))?;
    let volumes = Arc::new(
        TaskVolumes::new(
            keys.clone(),
            engine.clone(),
            tasks_dir.clone(),
            Some(efs.clone()),
        )
        .with_admission(storage_policy),
    );
    let metadata = Arc::new(
        ferry_metadata::Endpoints::new(control_state.clone())
            .context("starting the task metadata endpoint")?
            .with_credentials(Arc::new(identity::TaskCredentials(sessions))),
    );
    let firewall = agent.firewall().clone();
    let runtime = Arc::new(HostRuntime::new(agent.clone(), volumes).with_metadata(metadata));
    Ok(LocalAgent {
        runtime,
        images,
        firewall,
        agent,
        tasks_dir,
    })
}

/// The VPC's subnets and groups as the console's run form offers them.
struct ConsoleNetworks(Arc<ferry_ec2::Ec2>);

impl ferry_console::data::NetworkChoices for ConsoleNetworks {
    fn subnets(&self) -> Vec<ferry_console::data::SubnetChoice> {
        self.0
            .subnets()
            .into_iter()
            .map(|n| ferry_console::data::SubnetChoice {
                subnet_id: n.id,
                vpc_id: n.vpc_id,
                cidr_block: n.cidr.to_string(),
                availability_zone: n.availability_zone,
                default_for_az: n.default_for_az,
            })
            .collect()
    }

    fn security_groups(&self) -> Vec<ferry_console::data::GroupChoice> {
        self.0
            .groups()
            .into_iter()
            .map(|g| ferry_console::data::GroupChoice {
                group_id: g.id,
                group_name: g.name,
                vpc_id: g.vpc_id,
            })
            .collect()
    }
}

/// The VPC service; its default VPC is `--task-subnet` (first start).
fn ec2_service(shared: &Shared) -> anyhow::Result<Arc<ferry_ec2::Ec2>> {
    let default_vpc: ferry_proto::net::Ipv4Cidr = shared
        .task_subnet
        .parse()
        .context("--task-subnet as the default VPC")?;
    ferry_ec2::Ec2::open(
        shared.store.clone(),
        &shared.account_id,
        &shared.region,
        default_vpc,
    )
    .context("opening the VPC service")
}

/// The control plane's view of the VPC service: ENIs for tasks.
struct Ec2Networks(Arc<ferry_ec2::Ec2>);

impl Ec2Networks {
    fn request(net: &AwsVpc, description: &str) -> ferry_ec2::AttachRequest {
        ferry_ec2::AttachRequest {
            subnets: net.subnets.clone(),
            security_groups: net.security_groups.clone(),
            description: description.to_owned(),
        }
    }
}

fn refusal(e: ferry_ec2::AttachError) -> NetworkRefusal {
    use ferry_ec2::AttachError as E;
    match e {
        E::NoFreeAddress(_) => NetworkRefusal::NoAddress(e.to_string()),
        E::Store(_) => NetworkRefusal::Failed(e.to_string()),
        E::NoSubnets | E::SubnetNotFound(_) | E::GroupNotFound(_) | E::NotOneVpc => {
            NetworkRefusal::Invalid(e.to_string())
        }
    }
}

impl TaskNetworks for Ec2Networks {
    fn check(&self, net: &AwsVpc) -> Result<(), NetworkRefusal> {
        self.0.check(&Self::request(net, "")).map_err(refusal)
    }

    fn subnet_cidrs(
        &self,
        subnets: &[String],
    ) -> Result<Vec<(String, ferry_proto::net::Ipv4Cidr)>, NetworkRefusal> {
        let all = self.0.subnets();
        Ok(subnets
            .iter()
            .filter_map(|id| all.iter().find(|s| &s.id == id))
            .map(|s| (s.id.clone(), s.cidr))
            .collect())
    }

    fn attach(&self, net: &AwsVpc, description: &str) -> Result<InterfacePlan, NetworkRefusal> {
        self.0
            .attach(&Self::request(net, description))
            .map_err(refusal)
    }

    fn detach(&self, eni_id: &str) {
        if let Err(e) = self.0.detach(eni_id) {
            // Released again at the next start (release_unless).
            tracing::warn!(eni = eni_id, "freeing the task's ENI failed: {e}");
        }
    }

    fn release_unless(&self, keep: &dyn Fn(&str) -> bool) {
        match self.0.release_unless(keep) {
            Ok(gone) if !gone.is_empty() => {
                tracing::info!(count = gone.len(), "freed ENIs no task holds");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("freeing ENIs no task holds failed: {e}"),
        }
    }
}

/// Who this process is when it takes the lease of a background job that
/// runs on one replica at a time (the logs' retention sweep, the
/// registry's lifecycle sweep): unique per process among the replicas
/// sharing a store.
fn lease_holder() -> String {
    ferry_store::singleton::default_holder()
}

/// The ECR-compatible registry, and its hourly lifecycle sweep (on one
/// replica at a time).
fn registry(shared: &Shared) -> anyhow::Result<Arc<ferry_registry::Registry>> {
    let registry = Arc::new(
        ferry_registry::Registry::open(
            shared.store.clone(),
            shared.kms.clone(),
            &shared.data_dir,
            Arc::new(RegistryPrincipals {
                iam: shared.iam.clone(),
            }),
        )
        .map_err(|e| anyhow::anyhow!("{}: {}", e.code, e.message))
        .context("opening the registry")?,
    );
    registry.set_holder(lease_holder());
    registry
        .spawn_sweep(std::time::Duration::from_secs(3600))
        .context("starting the registry sweep")?;
    Ok(registry)
}

/// Who a registry login token's principal is now: the administrator, or
/// the IAM store's user key or live session.
struct RegistryPrincipals {
    iam: Arc<Iam>,
}

impl ferry_registry::Principals for RegistryPrincipals {
    fn current(&self, principal_arn: &str, access_key_id: &str) -> Option<Caller> {
        let admin = Caller::admin(self.iam.account());
        if principal_arn == admin.arn() {
            // The administrator's key lives in the credentials file, not
            // in the IAM store: its identity does not go away.
            let mut admin = admin;
            admin.access_key_id = Some(access_key_id.to_owned());
            return Some(admin);
        }
        self.iam.caller_of_key(access_key_id)
    }
}

/// The operator's agent credentials (`FerryAdmin`'s
/// `CreateAgentCredentials`), kept in the identity store: the key
/// authenticates as the platform's service principal.
struct AgentKeys {
    iam: Arc<Iam>,
}

// The identity store names the principal without depending on the KMS:
// an agent's calls are judged as the platform's only while both agree.
const _: () = assert!(const_str_eq(
    ferry_iam::AGENT_PRINCIPAL,
    ferry_kms::FARGATE_PRINCIPAL
));

const fn const_str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

impl ferry_control::admin::AgentKeys for AgentKeys {
    fn create(&self, host: &str) -> Result<(String, Zeroizing<String>), AwsError> {
        self.iam.create_agent_key(host)
    }

    fn delete(&self, host: &str) -> Result<bool, AwsError> {
        self.iam.delete_agent_key(host)
    }
}

/// Opens the identity store, its secrets sealed under the KMS root key.
pub fn identity(
    store: &Arc<Store>,
    kms: &Arc<ferry_kms::Kms>,
    account_id: &str,
) -> anyhow::Result<Arc<Iam>> {
    let iam = Iam::open(store.clone(), Arc::new(KmsSealer(kms.clone())), account_id)
        .map_err(|e| anyhow::anyhow!("{}: {}", e.code, e.message))
        .context("opening the identity store")?;
    Ok(Arc::new(iam))
}

/// `/health`'s question to the state store: one round trip. Logs when
/// the answer changes, not at every probe of an outage.
pub struct StoreProbe {
    store: Arc<Store>,
    down: std::sync::atomic::AtomicBool,
}

impl StoreProbe {
    /// The probe of `store`.
    pub fn new(store: Arc<Store>) -> Self {
        Self {
            store,
            down: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

impl ferry_api::health::Probe for StoreProbe {
    fn ping(&self) -> bool {
        use std::sync::atomic::Ordering;
        match self.store.ping() {
            Ok(()) => {
                if self.down.swap(false, Ordering::Relaxed) {
                    tracing::info!("health: the state store answers again");
                }
                true
            }
            Err(e) => {
                if !self.down.swap(true, Ordering::Relaxed) {
                    tracing::warn!("health: the state store does not answer: {e}");
                }
                false
            }
        }
    }
}

/// The IAM store's sealer: the KMS root key.
struct KmsSealer(Arc<ferry_kms::Kms>);

impl ferry_iam::Sealer for KmsSealer {
    fn seal(&self, label: &str, plaintext: &[u8]) -> Result<Vec<u8>, AwsError> {
        self.0.seal_secret(label, plaintext)
    }

    fn unseal(&self, label: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, AwsError> {
        self.0.unseal_secret(label, sealed)
    }
}

/// The listener's credential table: the administrator's key (from the
/// credentials file), then the IAM store's users' keys and sessions.
pub struct Keys {
    admin_key_id: String,
    admin_secret: Zeroizing<String>,
    admin: Caller,
    iam: Arc<Iam>,
}

impl Keys {
    /// The table for `iam` with the administrator's key.
    pub fn new(iam: Arc<Iam>, admin_key_id: &str, admin_secret: Zeroizing<String>) -> Self {
        let mut admin = Caller::admin(iam.account());
        admin.access_key_id = Some(admin_key_id.to_owned());
        Self {
            admin_key_id: admin_key_id.to_owned(),
            admin_secret,
            admin,
            iam,
        }
    }
}

impl Authenticator for Keys {
    fn lookup(
        &self,
        access_key_id: &str,
        session_token: Option<&str>,
    ) -> Result<(Zeroizing<String>, Caller), KeyRefused> {
        if access_key_id == self.admin_key_id {
            // A long-term key: a session token with it is refused, as AWS does.
            if session_token.is_some() {
                return Err(KeyRefused::Invalid);
            }
            return Ok((self.admin_secret.clone(), self.admin.clone()));
        }
        self.iam
            .authenticate(access_key_id, session_token)
            .map_err(|r| match r {
                AuthRefusal::Invalid => KeyRefused::Invalid,
                AuthRefusal::Expired => KeyRefused::Expired,
            })
    }
}

/// CloudWatch Logs, sealed at rest under a KMS data key.
fn logs_service(shared: &Shared, platform: &Platform) -> anyhow::Result<Arc<LogsService>> {
    let key = platform.logs_key(&shared.store)?;
    let logs = Arc::new(LogsService::new(
        shared.store.clone(),
        Arc::new(ferry_logs::AesGcmSealer::new(key)),
        shared.account_id.clone(),
        shared.region.clone(),
    ));
    // Readers hide expired events at once; the sweep reclaims their space
    // (on one replica at a time).
    logs.set_holder(lease_holder());
    logs.spawn_retention_sweep(std::time::Duration::from_secs(600))?;
    Ok(logs)
}

/// Secrets Manager and SSM Parameter Store: both seal values through the
/// KMS as their callers. The control plane resolves a container's
/// `secrets` with their in-process API (`get_secret_value`,
/// `get_parameter`) as the task's execution role.
pub struct Secrets {
    /// Secrets Manager (`secretsmanager.*`).
    pub secrets_manager: Arc<ferry_secrets::SecretsManager>,
    /// SSM Parameter Store (`AmazonSSM.*`).
    pub ssm: Arc<ferry_secrets::Ssm>,
}

fn secrets_services(shared: &Shared) -> anyhow::Result<Secrets> {
    let secrets_manager =
        ferry_secrets::SecretsManager::new(shared.store.clone(), shared.kms.clone())
            .map_err(|e| anyhow::anyhow!("starting Secrets Manager: {e}"))?;
    Ok(Secrets {
        secrets_manager: Arc::new(secrets_manager),
        ssm: Arc::new(ferry_secrets::Ssm::new(
            shared.store.clone(),
            shared.kms.clone(),
        )),
    })
}

/// The ECS control plane; tasks go to `runtime`.
fn ecs_service(
    shared: &Shared,
    runtime: Arc<dyn TaskRuntime>,
    platform: Platform,
    identity: IdentityServices,
    networks: Arc<dyn TaskNetworks>,
) -> anyhow::Result<Arc<ferry_control::EcsService>> {
    let mut cfg = ferry_control::EcsConfig::new(&shared.region, &shared.account_id);
    cfg.allow_unencrypted_storage = !shared.require_encrypted_storage;
    cfg.host = shared.host.clone();
    // Other processes share a shared store: tasks belong to hosts by
    // name, and a lease elects the scheduler.
    cfg.fleet = shared.store.is_shared();
    let ecs = ferry_control::EcsService::with_identity(
        cfg,
        shared.store.clone(),
        runtime,
        Arc::new(ClusterKeys(platform)),
        networks,
        identity,
    )
    .context("starting the ECS control plane")?;
    Ok(Arc::new(ecs))
}

/// The metadata endpoint's view of the control plane: the task record as
/// DescribeTasks shows it (from the control plane's task cache).
#[derive(Default)]
struct ControlState {
    core: std::sync::OnceLock<std::sync::Weak<ferry_control::service::Core>>,
}

impl ControlState {
    /// The control plane's record of the task `task_arn`.
    fn record(&self, task_arn: &str) -> Option<Arc<ferry_control::model::task::TaskRecord>> {
        let core = self.core.get()?.upgrade()?;
        // arn:aws:ecs:REGION:ACCOUNT:task/CLUSTER/ID
        let mut path = task_arn.rsplit_once(":task/")?.1.split('/');
        let (cluster, id) = (path.next()?, path.next()?);
        core.tasks
            .get(&core.store, &ferry_control::db::task_key(cluster, id))
            .ok()?
    }
}

impl ferry_metadata::TaskState for ControlState {
    fn task(&self, task_arn: &str) -> Option<ferry_metadata::ControlTask> {
        let t = self.record(task_arn)?;
        let core = self.core.get()?.upgrade()?;
        // The same view a remote agent's endpoint serves.
        let view = ferry_control::agents::wire::TaskView::of(&t, &core.cfg.region);
        Some(ferry_host::remote::control_task(&view))
    }
}

/// The control plane's key checks over the KMS's platform path.
struct ClusterKeys(Platform);

impl StorageKeys for ClusterKeys {
    fn check_cluster_key(&self, key_id: &str) -> Result<String, KeyCheckError> {
        keys::refuse_alias(key_id)?;
        let m = self.0.describe(key_id).map_err(|e| match e.kms_error() {
            Some(k) if k.code == "NotFoundException" => KeyCheckError::NotFound(key_id.into()),
            Some(k) => KeyCheckError::Kms(format!("{}: {}", k.code, k.message)),
            None => KeyCheckError::Kms(e.to_string()),
        })?;
        keys::check_key(KeyFacts {
            arn: m.arn,
            state: m.key_state.into(),
            spec: m.key_spec.into(),
            usage: m.key_usage.into(),
        })
    }

    fn platform_key_arn(&self) -> Result<String, KeyCheckError> {
        Ok(self.0.platform_key_arn().to_owned())
    }

    fn dry_run_for_cluster(&self, key_arn: &str, cluster: &str) -> Result<(), KeyCheckError> {
        self.0
            .dry_run_for_cluster(key_arn, cluster)
            .map_err(|e| match e {
                PlatformError::Kms { operation, error } => KeyCheckError::Kms(format!(
                    "{operation} (DryRun) as {}: {}: {}",
                    ferry_kms::FARGATE_PRINCIPAL,
                    error.code,
                    error.message
                )),
                other => KeyCheckError::Kms(other.to_string()),
            })
    }
}

/// The image store's data keys: the platform key, used as Fargate
/// (GenerateDataKey and Decrypt, each audited).
struct ImageKeys(Platform);

fn key_error(operation: &'static str) -> impl FnOnce(PlatformError) -> KeyError {
    move |e| match e {
        PlatformError::Kms { operation, error } => KeyError { operation, error },
        other => KeyError {
            operation,
            error: AwsError::server("KMSInternalException", other.to_string()),
        },
    }
}

fn wrong_length(operation: &'static str) -> KeyError {
    key_error(operation)(PlatformError::WrongLength)
}

impl BlobKeys for ImageKeys {
    fn generate(&self, context: &ferry_blob::Context) -> Result<(DataKey, Vec<u8>), KeyError> {
        let (plain, wrapped) = self
            .0
            .new_image_blob_key(context)
            .map_err(key_error("GenerateDataKey"))?;
        let key = DataKey::from_slice(&plain).ok_or_else(|| wrong_length("GenerateDataKey"))?;
        Ok((key, wrapped))
    }

    fn unwrap(&self, wrapped: &[u8], context: &ferry_blob::Context) -> Result<DataKey, KeyError> {
        let plain = self
            .0
            .open_image_blob_key(wrapped, context)
            .map_err(key_error("Decrypt"))?;
        DataKey::from_slice(&plain).ok_or_else(|| wrong_length("Decrypt"))
    }
}

/// What the remote agents' API needs beyond the control plane: who an
/// agent key is (IAM's agent keys), the security groups' rules, the Logs
/// service.
struct AgentSupport {
    iam: Arc<Iam>,
    ec2: Arc<ferry_ec2::Ec2>,
    logs: Arc<LogsService>,
}

impl ferry_control::agents::AgentSupport for AgentSupport {
    fn host_of_key(&self, access_key_id: &str) -> Option<String> {
        self.iam.agent_host(access_key_id)
    }

    fn firewall_rules(&self) -> ferry_proto::net::FirewallRules {
        self.ec2.firewall_rules()
    }

    fn open_log_stream(
        &self,
        group: &str,
        stream: &str,
        create_group: bool,
    ) -> Result<(), AwsError> {
        self.logs.open_stream(group, stream, create_group)
    }

    fn put_log_lines(
        &self,
        group: &str,
        stream: &str,
        lines: &[ferry_control::agents::wire::LogLine],
    ) -> Result<(), AwsError> {
        let events: Vec<LogEvent> = lines
            .iter()
            .map(|l| LogEvent {
                timestamp: l.timestamp,
                message: l.message.clone(),
            })
            .collect();
        self.logs.append(group, stream, &events)
    }
}

/// The agent's log sink: appends to the Logs service.
struct LogsSink(Arc<LogsService>);

impl LogSink for LogsSink {
    fn open_stream(
        &self,
        group: &str,
        stream: &str,
        create_group: bool,
    ) -> Result<(), OpenStreamError> {
        match self.0.open_stream(group, stream, create_group) {
            Ok(()) => Ok(()),
            Err(e) if e.code == "ResourceNotFoundException" => {
                Err(OpenStreamError::NoGroup(group.to_owned()))
            }
            Err(e) => Err(OpenStreamError::Refused(format!(
                "{}: {}",
                e.code, e.message
            ))),
        }
    }

    fn put(&self, group: &str, stream: &str, events: &[AgentEvent]) {
        let events: Vec<LogEvent> = events
            .iter()
            .map(|e| LogEvent {
                timestamp: e.timestamp_ms,
                message: e.message.clone(),
            })
            .collect();
        if let Err(e) = self.0.append(group, stream, &events) {
            // Never the log line itself: it is task data.
            tracing::warn!(
                "dropping {} log events for {group}/{stream}: {}",
                events.len(),
                e.code
            );
        }
    }
}
