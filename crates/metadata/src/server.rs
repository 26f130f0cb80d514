//! One listener per task, on 169.254.170.2:80 inside the task's network
//! namespace, served by hyper on the endpoint's own small tokio runtime
//! (kept apart from the API's, so a busy task cannot slow the API down).

use std::collections::HashMap;
use std::convert::Infallible;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use nix::sched::{CloneFlags, setns};
use serde::Serialize;
use tokio::task::{AbortHandle, JoinSet};

use crate::credentials::{Body as CredentialsBody, CredentialsSource, ErrorBody};
use crate::model::{
    ControlTask, Observed, StorageMetrics, TaskInfo, TaskState, Version, timestamp,
};
use crate::stats::{self, CpuStats, Stats};

/// The endpoint's address (link-local, as on ECS).
pub const ADDRESS: Ipv4Addr = Ipv4Addr::new(169, 254, 170, 2);

/// The port the listener really binds in the task's namespace; port 80 of
/// [`ADDRESS`] is DNAT'ed to it there (as the ECS agent does on EC2), so
/// a container may still bind `0.0.0.0:80` itself: a listener on
/// `169.254.170.2:80` would make that bind fail with EADDRINUSE.
pub const LISTEN_PORT: u16 = 51679;

/// Errors opening a task's endpoint.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// The tokio runtime could not be built.
    #[error("metadata runtime: {0}")]
    Runtime(std::io::Error),
    /// Entering the namespace, configuring its address (`ip`,
    /// `iptables`), reading it, or binding failed.
    #[error("in namespace {netns}: {what}: {source}")]
    Namespace {
        /// The namespace.
        netns: String,
        /// Which step.
        what: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// The helper thread could not run.
    #[error("metadata helper thread: {0}")]
    Thread(String),
}

/// What the host passes when a task's network is up.
#[derive(Debug, Clone)]
pub struct OpenTask {
    /// The task's static facts; `network` (address, MAC, subnet, gateway)
    /// is the task's interface plan's: the VPC's view, as on Fargate.
    pub info: TaskInfo,
    /// The namespace's path (`/run/netns/ferry-TASK_ID`).
    pub netns_path: PathBuf,
    /// Its name, for `ip -n`.
    pub netns_name: String,
}

/// The task metadata endpoints of this host.
pub struct Endpoints {
    rt: Option<tokio::runtime::Runtime>,
    state: Arc<dyn TaskState>,
    credentials: Option<Arc<dyn CredentialsSource>>,
    tasks: Mutex<HashMap<String, (Arc<TaskEndpoint>, AbortHandle)>>,
}

impl std::fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoints").finish_non_exhaustive()
    }
}

impl Drop for Endpoints {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which panics inside another runtime.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// One task's endpoint state.
pub struct TaskEndpoint {
    info: TaskInfo,
    state: Arc<dyn TaskState>,
    /// Where the task role's credentials come from (none: every id is
    /// unknown).
    credentials: Option<Arc<dyn CredentialsSource>>,
    seen: Mutex<Vec<Observed>>,
    /// `/proc/thread-self/net/dev` opened inside the namespace: the open
    /// file keeps reading that namespace's counters.
    net_dev: Mutex<File>,
    /// The last stats reading of every container.
    sample: Mutex<Option<Arc<Sample>>>,
}

/// How long a stats reading is served. The ECS agent serves sampled stats
/// too; reading ~10 cgroup files per container on every request would
/// make `/task/stats` the cost of the endpoint under load.
const STATS_MAX_AGE: std::time::Duration = std::time::Duration::from_millis(100);

/// One stats reading of every container of a task.
struct Sample {
    at: std::time::Instant,
    /// By container name.
    stats: HashMap<String, Stats>,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Endpoints {
    /// Endpoints asking `state` for the control plane's view of a task.
    pub fn new(state: Arc<dyn TaskState>) -> Result<Self, MetadataError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("metadata")
            .enable_all()
            .build()
            .map_err(MetadataError::Runtime)?;
        Ok(Self {
            rt: Some(rt),
            state,
            credentials: None,
            tasks: Mutex::new(HashMap::new()),
        })
    }

    /// Serves the task role's credentials (`/v2/credentials/ID`) from
    /// `source` to the tasks opened from now on.
    #[must_use]
    pub fn with_credentials(mut self, source: Arc<dyn CredentialsSource>) -> Self {
        self.credentials = Some(source);
        self
    }

    /// Opens the task's endpoint inside its namespace. Call once the
    /// namespace is configured and before any container starts.
    pub fn open(&self, task: OpenTask) -> Result<(), MetadataError> {
        let Some(rt) = &self.rt else {
            return Err(MetadataError::Thread("runtime is gone".into()));
        };
        let OpenTask {
            info,
            netns_path,
            netns_name,
        } = task;
        let ns = netns_name.clone();
        let inside = std::thread::Builder::new()
            .name("metadata-netns".into())
            .spawn(move || in_namespace(&netns_path, &ns))
            .map_err(|e| MetadataError::Thread(e.to_string()))?
            .join()
            .map_err(|_| MetadataError::Thread("panicked".into()))?;
        let (listener, net_dev) = inside.map_err(|(what, source)| MetadataError::Namespace {
            netns: netns_name.clone(),
            what,
            source,
        })?;
        let task_id = info.task_id.clone();
        let ep = Arc::new(TaskEndpoint {
            seen: Mutex::new(vec![Observed::default(); info.containers.len()]),
            info,
            state: self.state.clone(),
            credentials: self.credentials.clone(),
            net_dev: Mutex::new(net_dev),
            sample: Mutex::new(None),
        });
        let listener = {
            let _g = rt.enter();
            tokio::net::TcpListener::from_std(listener).map_err(|source| {
                MetadataError::Namespace {
                    netns: netns_name,
                    what: "registering the listener",
                    source,
                }
            })?
        };
        let handle = rt.spawn(serve(listener, ep.clone())).abort_handle();
        if let Ok(mut m) = self.tasks.lock()
            && let Some((_, old)) = m.insert(task_id, (ep, handle))
        {
            old.abort();
        }
        Ok(())
    }

    /// Records that container `name` of the task started.
    pub fn container_started(&self, task_id: &str, name: &str) {
        self.observe(task_id, name, |o| {
            let t = now();
            o.created_at.get_or_insert(t);
            o.started_at.get_or_insert(t);
        });
    }

    /// Records that container `name` of the task exited.
    pub fn container_exited(&self, task_id: &str, name: &str, exit_code: i32) {
        self.observe(task_id, name, |o| {
            o.finished_at.get_or_insert(now());
            o.exit_code = Some(exit_code);
        });
    }

    fn observe(&self, task_id: &str, name: &str, f: impl FnOnce(&mut Observed)) {
        let ep = self
            .tasks
            .lock()
            .ok()
            .and_then(|m| m.get(task_id).map(|(e, _)| e.clone()));
        let Some(ep) = ep else { return };
        let Some(i) = ep.info.containers.iter().position(|c| c.name == name) else {
            return;
        };
        if let Ok(mut seen) = ep.seen.lock()
            && let Some(o) = seen.get_mut(i)
        {
            f(o);
        }
    }

    /// Closes the task's endpoint (its listener and connections).
    pub fn close(&self, task_id: &str) {
        let removed = self.tasks.lock().ok().and_then(|mut m| m.remove(task_id));
        if let Some((_, h)) = removed {
            h.abort();
        }
    }

    /// How many endpoints are open.
    pub fn open_count(&self) -> usize {
        self.tasks.lock().map(|m| m.len()).unwrap_or(0)
    }
}

/// Runs `cmd args` in the calling thread's network namespace (a spawned
/// process inherits the namespaces of the thread that spawns it).
/// `tolerate`: stderr text that means it is already done.
fn run(cmd: &str, args: &[&str], tolerate: &str) -> Result<(), String> {
    let out = std::process::Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() || (!tolerate.is_empty() && stderr.contains(tolerate)) {
        Ok(())
    } else {
        Err(format!("{cmd} {}: {}", args.join(" "), stderr.trim()))
    }
}

/// In the task's namespace: 169.254.170.2/32 on `lo` (the address is local
/// to that namespace only, so a task reaches its own endpoint there and
/// nobody else's), and port 80 of it DNAT'ed to [`LISTEN_PORT`].
fn configure_namespace() -> Result<(), String> {
    // A server re-adopting a task after a restart finds both already in
    // place (iproute2 says "File exists" or "Address already assigned").
    if let Err(e) = run(
        "ip",
        &["addr", "add", "169.254.170.2/32", "dev", "lo"],
        "File exists",
    ) && !e.contains("already assigned")
    {
        return Err(e);
    }
    let to = format!("{ADDRESS}:{LISTEN_PORT}");
    let rule = |op: &'static str| {
        [
            "-w",
            "-t",
            "nat",
            op,
            "OUTPUT",
            "-d",
            "169.254.170.2/32",
            "-p",
            "tcp",
            "--dport",
            "80",
            "-j",
            "DNAT",
            "--to-destination",
        ]
    };
    let check: Vec<&str> = rule("-C").into_iter().chain([to.as_str()]).collect();
    if run("iptables", &check, "").is_ok() {
        return Ok(());
    }
    let add: Vec<&str> = rule("-A").into_iter().chain([to.as_str()]).collect();
    run("iptables", &add, "")
}

type Inside = (StdListener, File);

/// On a short-lived thread: enter the namespace, bind the listener and
/// open its `net/dev`. Both the socket and the file stay bound to that
/// namespace after the thread ends.
fn in_namespace(netns_path: &Path, _name: &str) -> Result<Inside, (&'static str, std::io::Error)> {
    let io = |what: &'static str| move |e: nix::Error| (what, std::io::Error::from(e));
    let ns = File::open(netns_path).map_err(|e| ("opening the namespace", e))?;
    setns(&ns, CloneFlags::CLONE_NEWNET).map_err(io("setns"))?;
    configure_namespace().map_err(|e| ("configuring 169.254.170.2", std::io::Error::other(e)))?;
    let listener = StdListener::bind(SocketAddrV4::new(ADDRESS, LISTEN_PORT))
        .map_err(|e| ("binding the listener", e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| ("set_nonblocking", e))?;
    let net_dev = File::open("/proc/thread-self/net/dev").map_err(|e| ("opening net/dev", e))?;
    Ok((listener, net_dev))
}

async fn serve(listener: tokio::net::TcpListener, ep: Arc<TaskEndpoint>) {
    // Connections live in the set, so aborting this task (close) drops them.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let ep = ep.clone();
                    conns.spawn(async move {
                        let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                            let resp = ep.respond_to(req.uri().path(), req.uri().query());
                            async move { Ok::<_, Infallible>(resp) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .keep_alive(true)
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
                Err(e) => {
                    tracing::warn!("metadata endpoint accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// What a path asks for.
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Container(Version, &'a str),
    Task(Version, &'a str),
    ContainerStats(Version, &'a str),
    TaskStats(Version, &'a str),
}

fn route(path: &str) -> Option<Route<'_>> {
    let path = path.strip_suffix('/').unwrap_or(path);
    let mut it = path.strip_prefix('/')?.split('/');
    let version = match it.next()? {
        "v3" => Version::V3,
        "v4" => Version::V4,
        _ => return None,
    };
    let id = it.next().filter(|s| !s.is_empty())?;
    let r = match (it.next(), it.next(), it.next()) {
        (None, _, _) => Route::Container(version, id),
        (Some("task"), None, _) => Route::Task(version, id),
        (Some("stats"), None, _) => Route::ContainerStats(version, id),
        (Some("task"), Some("stats"), None) => Route::TaskStats(version, id),
        _ => return None,
    };
    Some(r)
}

fn json<T: Serialize>(v: &T) -> Response<Full<Bytes>> {
    match serde_json::to_vec(v) {
        Ok(b) => {
            let mut r = Response::new(Full::new(Bytes::from(b)));
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
            r
        }
        Err(_) => status(StatusCode::INTERNAL_SERVER_ERROR),
    }
}

fn status(s: StatusCode) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(b"")));
    *r.status_mut() = s;
    r
}

/// Which credentials a path asks for: `(api version, id)`; `None` when
/// the path is not a credentials path.
fn credentials_route<'a>(path: &'a str, query: Option<&'a str>) -> Option<(u8, &'a str)> {
    if let Some(rest) = path.strip_prefix("/v2/credentials") {
        // `/v2/credentials` and `/v2/credentials/` both lack the id.
        return match rest {
            "" | "/" => Some((2, "")),
            r => r.strip_prefix('/').map(|id| (2, id)),
        };
    }
    if path == "/v1/credentials" || path == "/v1/credentials/" {
        let id = query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .find_map(|kv| kv.strip_prefix("id="))
            .unwrap_or_default();
        return Some((1, id));
    }
    None
}

fn json_status<T: Serialize>(v: &T, s: StatusCode) -> Response<Full<Bytes>> {
    let mut r = json(v);
    *r.status_mut() = s;
    r
}

impl TaskEndpoint {
    #[cfg(test)]
    fn respond(&self, path: &str) -> Response<Full<Bytes>> {
        self.respond_to(path, None)
    }

    /// The task role's credentials, to this task only.
    fn credentials(&self, version: u8, id: &str) -> Response<Full<Bytes>> {
        if id.is_empty() {
            return json_status(&ErrorBody::no_id(version), StatusCode::BAD_REQUEST);
        }
        let found = self
            .credentials
            .as_ref()
            .and_then(|c| c.credentials(&self.info.task_arn, id));
        match found {
            Some(c) => json(&CredentialsBody::of(&c)),
            None => json_status(&ErrorBody::not_found(version), StatusCode::BAD_REQUEST),
        }
    }

    fn respond_to(&self, path: &str, query: Option<&str>) -> Response<Full<Bytes>> {
        if let Some((version, id)) = credentials_route(path, query) {
            return self.credentials(version, id);
        }
        let Some(r) = route(path) else {
            return status(StatusCode::NOT_FOUND);
        };
        let (Route::Container(_, id)
        | Route::Task(_, id)
        | Route::ContainerStats(_, id)
        | Route::TaskStats(_, id)) = r;
        // Only this task's containers: any other id is unknown here.
        let Some(c) = self.info.container(id) else {
            return status(StatusCode::NOT_FOUND);
        };
        match r {
            Route::Container(v, _) => {
                let control = self.control();
                let seen = self.seen_of(&c.name);
                json(&self.info.container_doc(c, &control, &seen, v))
            }
            Route::Task(v, _) => {
                let control = self.control();
                let seen = self.seen.lock().map(|s| s.clone()).unwrap_or_default();
                json(&self.info.task_doc(&control, &seen, self.storage(), v))
            }
            Route::ContainerStats(..) => match self.sample().stats.get(&c.name) {
                Some(st) => json(st),
                None => status(StatusCode::NOT_FOUND),
            },
            Route::TaskStats(..) => {
                let sample = self.sample();
                let all: HashMap<&str, &Stats> = self
                    .info
                    .containers
                    .iter()
                    .filter_map(|c| Some((c.docker_id.as_str(), sample.stats.get(&c.name)?)))
                    .collect();
                json(&all)
            }
        }
    }

    fn control(&self) -> ControlTask {
        self.state.task(&self.info.task_arn).unwrap_or_default()
    }

    fn seen_of(&self, name: &str) -> Observed {
        let i = self.info.containers.iter().position(|c| c.name == name);
        self.seen
            .lock()
            .ok()
            .and_then(|s| i.and_then(|i| s.get(i).copied()))
            .unwrap_or_default()
    }

    /// statvfs of the task's volume, now.
    fn storage(&self) -> Option<StorageMetrics> {
        let reserved = u64::from(self.info.ephemeral_storage_gib) * 1024;
        let st = nix::sys::statvfs::statvfs(&self.info.task_root).ok()?;
        let used = (st.blocks().saturating_sub(st.blocks_free())) as u64 * st.fragment_size();
        Some(StorageMetrics {
            utilized: used / (1024 * 1024),
            reserved,
        })
    }

    fn networks(&self) -> std::collections::BTreeMap<String, stats::NetStats> {
        let mut text = String::new();
        if let Ok(mut f) = self.net_dev.lock()
            && f.seek(SeekFrom::Start(0)).is_ok()
        {
            let _ = f.read_to_string(&mut text);
        }
        stats::parse_net_dev(&text)
    }

    /// A reading at most [`STATS_MAX_AGE`] old; `precpu_stats` is the
    /// reading before it.
    fn sample(&self) -> Arc<Sample> {
        let mut g = self.sample.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = g.as_ref()
            && s.at.elapsed() < STATS_MAX_AGE
        {
            return s.clone();
        }
        let prev = g.take();
        let networks = self.networks();
        let read = timestamp(now()).unwrap_or_default();
        let stats = self
            .info
            .containers
            .iter()
            .map(|c| {
                let rel = format!("{}/{}", self.info.cgroup, c.name);
                let (cpu, memory_stats, pids_stats, blkio_stats) =
                    stats::read_cgroup(&rel, &self.info.cgroup);
                let (preread, precpu_stats) = prev
                    .as_ref()
                    .and_then(|p| p.stats.get(&c.name))
                    .map(|p| (p.read.clone(), p.cpu_stats.clone()))
                    .unwrap_or_else(|| ("0001-01-01T00:00:00Z".into(), CpuStats::default()));
                let st = Stats {
                    read: read.clone(),
                    preread,
                    pids_stats,
                    blkio_stats,
                    num_procs: 0,
                    storage_stats: Default::default(),
                    cpu_stats: cpu,
                    precpu_stats,
                    memory_stats,
                    name: format!("/{}", c.name),
                    id: c.docker_id.clone(),
                    networks: networks.clone(),
                };
                (c.name.clone(), st)
            })
            .collect();
        let s = Arc::new(Sample {
            at: std::time::Instant::now(),
            stats,
        });
        *g = Some(s.clone());
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            route("/v4/abc-web"),
            Some(Route::Container(Version::V4, "abc-web"))
        );
        assert_eq!(
            route("/v4/abc-web/"),
            Some(Route::Container(Version::V4, "abc-web"))
        );
        assert_eq!(route("/v3/x/task"), Some(Route::Task(Version::V3, "x")));
        assert_eq!(
            route("/v4/x/stats"),
            Some(Route::ContainerStats(Version::V4, "x"))
        );
        assert_eq!(
            route("/v4/x/task/stats"),
            Some(Route::TaskStats(Version::V4, "x"))
        );
        assert_eq!(route("/v4"), None);
        assert_eq!(route("/v4/"), None);
        assert_eq!(route("/v2/x"), None);
        assert_eq!(route("/v4/x/other"), None);
        assert_eq!(route("/v4/x/task/other"), None);
        assert_eq!(route("/v4/x/task/stats/more"), None);
    }

    struct Fake;
    impl TaskState for Fake {
        fn task(&self, task_arn: &str) -> Option<ControlTask> {
            Some(ControlTask {
                family: "fam".into(),
                revision: "7".into(),
                desired_status: "RUNNING".into(),
                known_status: task_arn
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .to_uppercase(),
                ..ControlTask::default()
            })
        }
    }

    /// The task `.../running` has credentials id `own`; `.../other` has
    /// `theirs`.
    struct FakeCredentials;
    impl CredentialsSource for FakeCredentials {
        fn credentials(&self, task_arn: &str, id: &str) -> Option<crate::Credentials> {
            let own = match task_arn.rsplit('/').next()? {
                "running" => "own",
                "other" => "theirs",
                _ => return None,
            };
            (id == own).then(|| crate::Credentials {
                role_arn: "arn:aws:iam::1:role/app".into(),
                access_key_id: "ASIAEXAMPLE".into(),
                secret_access_key: "sk".to_owned().into(),
                token: "tok".to_owned().into(),
                expiration: std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_767_268_800),
            })
        }
    }

    #[test]
    fn credentials_are_served_to_their_own_task_only() {
        let dir = tempfile::tempdir().unwrap();
        let ep = endpoint(dir.path());
        let r = ep.respond("/v2/credentials/own");
        assert_eq!(r.headers()[hyper::header::CONTENT_TYPE], "application/json");
        let (st, v) = body(r);
        assert_eq!(st, StatusCode::OK);
        assert_eq!(
            v,
            serde_json::json!({"RoleArn": "arn:aws:iam::1:role/app", "AccessKeyId": "ASIAEXAMPLE",
                "SecretAccessKey": "sk", "Token": "tok", "Expiration": "2026-01-01T12:00:00Z"})
        );
        let (st, v) = body(ep.respond_to("/v1/credentials", Some("id=own")));
        assert_eq!((st, v["Token"].as_str()), (StatusCode::OK, Some("tok")));
        // Another task's id, from this task: unknown here.
        for (path, query, version) in [
            ("/v2/credentials/theirs", None, 2),
            ("/v2/credentials/nope", None, 2),
            ("/v2/credentials/own/x", None, 2),
            ("/v1/credentials", Some("id=theirs"), 1),
        ] {
            let (st, v) = body(ep.respond_to(path, query));
            assert_eq!(st, StatusCode::BAD_REQUEST, "{path}");
            assert_eq!(
                v,
                serde_json::json!({"code": "InvalidIdInRequest",
                    "message": format!("CredentialsV{version}Request: Credentials not found"),
                    "HTTPErrorCode": 400}),
                "{path}"
            );
        }
        for (path, query) in [
            ("/v2/credentials/", None),
            ("/v2/credentials", None),
            ("/v1/credentials", None),
        ] {
            let (st, v) = body(ep.respond_to(path, query));
            assert_eq!(st, StatusCode::BAD_REQUEST);
            assert_eq!(v["code"], "NoIdInRequest", "{path}");
        }
        assert_eq!(
            ep.respond("/v2/credentialsx").status(),
            StatusCode::NOT_FOUND
        );
        // Without a source, no id is known.
        let mut ep = ep;
        ep.credentials = None;
        assert_eq!(
            ep.respond("/v2/credentials/own").status(),
            StatusCode::BAD_REQUEST
        );
    }

    fn endpoint(root: &Path) -> TaskEndpoint {
        let mut dev = tempfile::tempfile().unwrap();
        std::io::Write::write_all(
            &mut dev,
            b"h1\nh2\n  eth0: 10 1 0 0 0 0 0 0 20 2 0 0 0 0 0 0\n",
        )
        .unwrap();
        TaskEndpoint {
            info: TaskInfo {
                task_arn: "arn:aws:ecs:r:1:task/c/running".into(),
                task_id: "t".into(),
                cluster_arn: "arn:aws:ecs:r:1:cluster/c".into(),
                region: "r".into(),
                cpu_units: 1024,
                memory_mib: 2048,
                ephemeral_storage_gib: 21,
                task_root: root.to_path_buf(),
                cgroup: "no-such/t".into(),
                containers: vec![crate::ContainerInfo {
                    name: "a".into(),
                    docker_id: "t-a".into(),
                    image: "i".into(),
                    image_id: "sha256:1".into(),
                }],
                network: crate::model::NetworkInfo::default(),
            },
            state: Arc::new(Fake),
            credentials: Some(Arc::new(FakeCredentials)),
            seen: Mutex::new(vec![Observed::default()]),
            net_dev: Mutex::new(dev),
            sample: Mutex::new(None),
        }
    }

    fn body(r: Response<Full<Bytes>>) -> (StatusCode, serde_json::Value) {
        use http_body_util::BodyExt;
        let st = r.status();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let b = rt.block_on(r.into_body().collect()).unwrap().to_bytes();
        (st, serde_json::from_slice(&b).unwrap_or_default())
    }

    #[test]
    fn answers_only_for_its_own_containers() {
        let dir = tempfile::tempdir().unwrap();
        let ep = endpoint(dir.path());
        let (st, v) = body(ep.respond("/v4/t-a"));
        assert_eq!(st, StatusCode::OK);
        assert_eq!(v["DockerId"], "t-a");
        let (st, v) = body(ep.respond("/v4/t-a/task"));
        assert_eq!(st, StatusCode::OK);
        // Read from the control plane on each request.
        assert_eq!(v["KnownStatus"], "RUNNING");
        assert_eq!(v["Revision"], "7");
        assert_eq!(v["Limits"]["CPU"], 1.0);
        assert_eq!(v["EphemeralStorageMetrics"]["Reserved"], 21 * 1024);
        for other in [
            "/v4/u-a",
            "/v4/t-a/nope",
            "/v3/u-a/task",
            "/",
            "/v4/t-a/task/x",
        ] {
            assert_eq!(ep.respond(other).status(), StatusCode::NOT_FOUND, "{other}");
        }
    }

    #[test]
    fn stats_are_sampled_and_keep_the_previous_reading() {
        let dir = tempfile::tempdir().unwrap();
        let ep = endpoint(dir.path());
        let (st, a) = body(ep.respond("/v4/t-a/stats"));
        assert_eq!(st, StatusCode::OK);
        assert_eq!(a["networks"]["eth0"]["rx_bytes"], 10);
        assert_eq!(a["networks"]["eth0"]["tx_packets"], 2);
        assert_eq!(a["preread"], "0001-01-01T00:00:00Z");
        let (_, t) = body(ep.respond("/v4/t-a/task/stats"));
        assert_eq!(
            t["t-a"]["read"], a["read"],
            "one reading within STATS_MAX_AGE"
        );
        std::thread::sleep(STATS_MAX_AGE);
        let (_, b) = body(ep.respond("/v3/t-a/stats"));
        assert_eq!(b["preread"], a["read"]);
        assert_ne!(b["read"], a["read"]);
    }
}
