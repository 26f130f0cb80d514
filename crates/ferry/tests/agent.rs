//! The agent end to end, as root: real runc, CNI plugins, overlayfs,
//! cgroups, network namespaces, nftables. Each test uses its own task
//! network (name, subnet), state directory and task root, and checks that
//! nothing of the task remains afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

#[path = "tools/testimage.rs"]
mod testimage;
#[path = "tools/teststore.rs"]
mod teststore;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_agent::image::archive;
use ferry_agent::logs::MemorySink;
use ferry_agent::net::NetworkConfig;
use ferry_agent::{Agent, AgentConfig, TaskHandle, TaskOutcome};
use ferry_proto::TaskFailure;
use ferry_proto::plan::*;

const CGROUP_PARENT: &str = "ferry-test";

/// The source document's command, verbatim.
const SAMPLE_COMMAND: &str = r#"/bin/sh -c "echo '<html> <head> <title>Payment Processing Web Interface</title> <style>body {margin-top: 40px; background-color: #333;} </style> </head><body> <div style=color:white;text-align:center> <h1>Amazon ECS Sample App</h1> <h2>Congratulations!</h2> <p>Your application is now running on a container in Amazon ECS.</p> </div></body></html>' >  /usr/local/apache2/htdocs/index.html && httpd-foreground""#;

struct Env {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    /// The task network's name (CNI network, nftables table).
    network: String,
    agent: Agent,
    sink: Arc<MemorySink>,
}

impl Env {
    /// `net` picks this test's /24 inside 198.19.0.0/16.
    fn new(net: u8) -> Env {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the agent tests need root (runc, CNI, mounts, cgroups)"
        );
        let tmp = tempfile::Builder::new()
            .prefix("ferry-agent-test-")
            .tempdir()
            .unwrap();
        let dir = tmp.path().to_path_buf();
        let suffix = format!("{:06x}", std::process::id() ^ (u32::from(net) << 16));
        let network = format!("fyt{}", &suffix[suffix.len() - 6..]);
        let images = teststore::open(&dir.join("data/images"));
        let img = testimage::httpd_image();
        let oci = dir.join("httpd-oci.tar");
        let docker = dir.join("httpd-docker.tar");
        testimage::write_oci_archive(&img, &oci, Some("docker.io/library/httpd:2.4"));
        testimage::write_docker_archive(&img, &docker, "busybox-docker:1");
        archive::import(&images, &oci, None).unwrap();
        archive::import(&images, &docker, None).unwrap();
        let sink = MemorySink::new();
        let agent = make_agent(&dir, net, &network, sink.clone());
        Env {
            _tmp: tmp,
            dir,
            network,
            agent,
            sink,
        }
    }

    fn task_root(&self, task_id: &str) -> PathBuf {
        let p = self.dir.join("tasks").join(task_id);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    /// Asserts that nothing of the task is left on the host.
    fn assert_no_leaks(&self, task_id: &str, task_root: &Path, outcome: &TaskOutcome) {
        assert!(
            outcome.cleanup_errors.is_empty(),
            "cleanup errors: {:?}",
            outcome.cleanup_errors
        );
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let root = task_root.to_str().unwrap();
        assert!(
            !mountinfo.contains(root),
            "mount left under {root}:\n{mountinfo}"
        );
        let netns = sh("ip netns list");
        assert!(
            !netns.contains(&format!("ferry-{task_id}")),
            "netns left: {netns}"
        );
        assert!(
            !self
                .agent
                .firewall()
                .members()
                .contains(&task_id.to_string()),
            "task still a firewall member"
        );
        if let Some(ip) = &outcome.private_ip {
            let route = sh(&format!("ip -4 route show exact {ip}/32"));
            assert!(route.trim().is_empty(), "host route to {ip} left: {route}");
        }
        for e in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            let p = e.path().join(CGROUP_PARENT).join(task_id);
            assert!(!p.exists(), "cgroup left: {}", p.display());
        }
        let tuning = Path::new("/run/cni/tuning").join(format!("{task_id}_eth0.json"));
        assert!(!tuning.exists(), "left: {}", tuning.display());
        let host_if = ferry_agent::net::netlink::host_iface_name(task_id);
        let links = sh("ip -o link show");
        assert!(
            !links.contains(&host_if),
            "host veth {host_if} left: {links}"
        );
        let runtime = ferry_agent::runc::resolve(
            &std::env::var("FERRY_TEST_RUNTIME").unwrap_or_else(|_| "auto".into()),
        );
        let runc = sh(&format!(
            "{} --root {} list -q",
            runtime.display(),
            self.dir.join("state/runc").display()
        ));
        assert!(runc.trim().is_empty(), "runc containers left: {runc}");
        let procs = sh(&format!(
            "grep -l {task_id} /proc/[0-9]*/cgroup 2>/dev/null || true"
        ));
        assert!(procs.trim().is_empty(), "processes left: {procs}");
        // Zombies reparented to us (the agent is a subreaper) and never
        // reaped. A zombie seen in three samples is a leak, not a child of
        // a parallel test that is about to be waited for.
        let zombies = || -> std::collections::BTreeSet<String> {
            let cmd = format!(
                "ps -o pid=,stat= --ppid {} | awk '$2 ~ /Z/ {{print $1}}'",
                std::process::id()
            );
            sh(&cmd).split_whitespace().map(str::to_string).collect()
        };
        let mut stuck = zombies();
        for _ in 0..2 {
            std::thread::sleep(Duration::from_millis(200));
            stuck = stuck.intersection(&zombies()).cloned().collect();
        }
        assert!(stuck.is_empty(), "unreaped zombie children: {stuck:?}");
        let nat = sh("iptables-save -t nat 2>/dev/null || true");
        assert!(!nat.contains(task_id), "iptables rules left: {nat}");
        if let Some(ip) = &outcome.private_ip {
            let all = sh("iptables-save 2>/dev/null || true");
            assert!(
                !all.contains(&format!("{ip}/32")),
                "iptables rules for {ip} left: {all}"
            );
        }
    }
}

/// An agent on `dir` (images in dir/data/images, state in dir/state).
fn make_agent(dir: &Path, net: u8, name: &str, sink: Arc<MemorySink>) -> Agent {
    CURRENT_NET.with(|c| c.set(net));
    let state = dir.join("state");
    let mut network = NetworkConfig::new(name);
    // The suite runs with the server's defaults (netlink, crun when
    // installed); FERRY_TEST_NETWORK_DRIVER=cni and FERRY_TEST_RUNTIME=runc
    // run it on the other paths.
    if let Ok(d) = std::env::var("FERRY_TEST_NETWORK_DRIVER") {
        network.driver = d.parse().unwrap();
    }
    let runtime = std::env::var("FERRY_TEST_RUNTIME").unwrap_or_else(|_| "auto".into());
    Agent::new(AgentConfig {
        images: teststore::open(&dir.join("data/images")),
        state_dir: state,
        runtime: ferry_agent::runc::resolve(&runtime),
        network,
        cgroup_parent: CGROUP_PARENT.into(),
        task_pids_max: ferry_agent::task::DEFAULT_TASK_PIDS_MAX,
        log_sink: sink,
        own_registry: None,
        userns: ferry_agent::userns::UsernsMode::Auto,
        shim_exe: env!("CARGO_BIN_EXE_ferry").into(),
        shim_dir: dir.join("shims"),
    })
    .unwrap()
}

impl Drop for Env {
    fn drop(&mut self) {
        // The firewall table is per test here (on a server it stays).
        let _ = ferry_agent::net::firewall::delete_table(&self.network);
    }
}

thread_local! {
    /// The test's network (`198.19.NET.0/24`): each test runs on its own
    /// thread and makes its agent (and plans) there.
    static CURRENT_NET: std::cell::Cell<u8> = const { std::cell::Cell::new(0) };
}

/// The next host number for a task address (2..=250, then again).
static NEXT_HOST: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// An interface plan on `198.19.NET.HOST/24` in `vpc`, with `groups`.
fn iface(net: u8, host: u8, groups: &[&str], vpc: &str) -> ferry_proto::net::InterfacePlan {
    ferry_proto::net::InterfacePlan {
        eni_id: format!("eni-{:017x}", u32::from(net) << 8 | u32::from(host)),
        vpc_id: vpc.into(),
        subnet_id: format!("subnet-{net}"),
        subnet_cidr: format!("198.19.{net}.0/24").parse().unwrap(),
        ip: std::net::Ipv4Addr::new(198, 19, net, host),
        gateway: std::net::Ipv4Addr::new(198, 19, net, 1),
        mac: format!("0a:58:c6:13:{net:02x}:{host:02x}"),
        security_groups: groups.iter().map(|g| g.to_string()).collect(),
        availability_zone: "us-east-1a".into(),
    }
}

fn sh(cmd: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn task_id() -> String {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut b)
        .unwrap();
    hex::encode(b)
}

fn container(name: &str, image: &str) -> ContainerPlan {
    ContainerPlan {
        name: name.into(),
        image: image.into(),
        entry_point: vec![],
        command: vec![],
        environment: vec![],
        working_directory: None,
        user: None,
        essential: true,
        depends_on: vec![],
        stop_timeout_secs: 30,
        start_timeout_secs: None,
        capabilities_add: vec![],
        capabilities_drop: vec![],
        readonly_root_filesystem: false,
        port_mappings: vec![],
        mount_points: vec![],
        awslogs: None,
        memory_limit_mib: None,
        memory_reservation_mib: None,
        cpu_units: None,
        health_check: None,
        secret_env: Default::default(),
        registry_auth: None,
    }
}

fn plan(task_id: &str, containers: Vec<ContainerPlan>, volumes: Vec<VolumePlan>) -> TaskPlan {
    TaskPlan {
        task_arn: format!("arn:aws:ecs:us-east-1:012345678910:task/default/{task_id}"),
        task_id: task_id.into(),
        cluster_name: "default".into(),
        account: "012345678910".into(),
        region: "us-east-1".into(),
        cpu_units: 256,
        memory_mib: 512,
        ephemeral_storage_gib: 20,
        storage: StoragePlan::Unencrypted,
        containers,
        volumes,
        network: Some(iface(
            CURRENT_NET.with(|c| c.get()),
            (NEXT_HOST.fetch_add(1, std::sync::atomic::Ordering::SeqCst) % 249 + 2) as u8,
            &["sg-default"],
            "vpc-test",
        )),
    }
}

type Events = Arc<Mutex<Vec<TaskEvent>>>;

fn run(env: &Env, plan: TaskPlan, root: &Path) -> (TaskHandle, Events) {
    let events: Events = Arc::default();
    let ev = events.clone();
    let h = env
        .agent
        .run_task(plan, root, move |e| ev.lock().unwrap().push(e));
    (h, events)
}

fn wait_for(events: &Events, what: &str, f: impl Fn(&TaskEvent) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if events.lock().unwrap().iter().any(&f) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no {what} event: {:?}", events.lock().unwrap());
}

fn http_get(ip: &str) -> std::io::Result<String> {
    let mut s =
        TcpStream::connect_timeout(&format!("{ip}:80").parse().unwrap(), Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(format!("GET / HTTP/1.0\r\nHost: {ip}\r\n\r\n").as_bytes())?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body)
}

#[test]
fn source_document_httpd_task_serves_its_page_and_leaves_nothing() {
    let env = Env::new(11);
    let id = task_id();
    let root = env.task_root(&id);
    let mut c = container("sample-fargate-app", "httpd:2.4");
    c.entry_point = vec!["sh".into(), "-c".into()];
    c.command = vec![SAMPLE_COMMAND.into()];
    c.port_mappings = vec![PortMapping {
        container_port: 80,
        protocol: "tcp".into(),
    }];
    c.awslogs = Some(AwsLogs {
        group: "/ecs/fargate-task-definition".into(),
        stream_prefix: Some("ecs".into()),
        create_group: false,
    });
    // sh is PID 1 and ignores SIGTERM, as with Docker: keep the kill short.
    c.stop_timeout_secs = 2;
    // A sidecar in the same task: reaches the app on localhost (shared
    // network namespace) and the host through its gateway (no firewall
    // rules are set in this test, so the host is not closed to tasks).
    let host = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = host.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = host.accept().unwrap();
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf);
        s.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 15\r\n\r\nhello-from-host")
            .unwrap();
    });
    let mut side = container("sidecar", "httpd:2.4");
    side.essential = false;
    side.depends_on = vec![Dependency {
        container_name: "sample-fargate-app".into(),
        condition: "START".into(),
    }];
    side.entry_point = vec!["sh".into(), "-c".into()];
    side.command = vec![format!(
        "for i in $(seq 100); do wget -q -O - http://127.0.0.1:80/ 2>/dev/null | grep -o 'Amazon ECS Sample App' && break; sleep 0.1; done; \
         wget -q -O - http://198.19.11.1:{port}/; echo"
    )];
    side.awslogs = Some(AwsLogs {
        group: "/ecs/fargate-task-definition".into(),
        stream_prefix: Some("ecs".into()),
        create_group: false,
    });
    let (h, events) = run(&env, plan(&id, vec![c, side], vec![]), &root);
    wait_for(&events, "Running", |e| matches!(e, TaskEvent::Running));
    let ip = events
        .lock()
        .unwrap()
        .iter()
        .find_map(|e| match e {
            TaskEvent::Provisioned { private_ip } => Some(private_ip.clone()),
            _ => None,
        })
        .unwrap();
    assert!(ip.starts_with("198.19.11."), "{ip}");

    let deadline = Instant::now() + Duration::from_secs(20);
    let page = loop {
        match http_get(&ip) {
            Ok(b) if b.contains("Amazon ECS Sample App") => break b,
            other if Instant::now() > deadline => panic!("no page at {ip}: {other:?}"),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    assert!(
        page.starts_with("HTTP/1.") && page.contains(" 200 "),
        "{page}"
    );
    // The sidecar exits 0 (non-essential: the task keeps running).
    wait_for(
        &events,
        "sidecar exit",
        |e| matches!(e, TaskEvent::ContainerExited { name, exit_code: 0, .. } if name == "sidecar"),
    );
    server.join().unwrap();
    let side_logs: Vec<String> = env
        .sink
        .events("/ecs/fargate-task-definition", &format!("ecs/sidecar/{id}"))
        .into_iter()
        .map(|e| e.message)
        .collect();
    assert_eq!(side_logs, ["Amazon ECS Sample App", "hello-from-host"]);
    assert!(
        http_get(&ip).unwrap().contains("Amazon ECS Sample App"),
        "task stopped with its sidecar"
    );
    // The page was written into the container's writable layer, on task_root.
    let upper =
        root.join("containers/sample-fargate-app/upper/usr/local/apache2/htdocs/index.html");
    assert!(
        std::fs::read_to_string(&upper)
            .unwrap()
            .contains("Payment Processing Web Interface")
    );
    // Task-level limits on the task's cgroup (cgroup v1 on this host).
    let mem = std::fs::read_to_string(format!(
        "/sys/fs/cgroup/memory/{CGROUP_PARENT}/{id}/memory.limit_in_bytes"
    ));
    let quota = std::fs::read_to_string(format!(
        "/sys/fs/cgroup/cpu/{CGROUP_PARENT}/{id}/cpu.cfs_quota_us"
    ));
    if Path::new("/sys/fs/cgroup/memory").exists() {
        assert_eq!(mem.unwrap().trim(), (512u64 << 20).to_string());
        assert_eq!(quota.unwrap().trim(), "25000");
    }
    // The container runs under the agent's seccomp filter (mode 2) and
    // without capabilities beyond Docker's defaults (no CAP_SYS_ADMIN).
    let state = sh(&format!(
        "runc --root {} state {id}-sample-fargate-app",
        env.dir.join("state/runc").display()
    ));
    let pid = serde_json::from_str::<serde_json::Value>(&state).unwrap()["pid"]
        .as_i64()
        .unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(status.contains("Seccomp:\t2"), "{status}");
    let capeff = status.lines().find(|l| l.starts_with("CapEff:")).unwrap();
    let caps = u64::from_str_radix(capeff.split_whitespace().nth(1).unwrap(), 16).unwrap();
    assert_eq!(caps & (1 << 21), 0, "CAP_SYS_ADMIN granted: {capeff}");
    assert_ne!(
        caps & (1 << 10),
        0,
        "CAP_NET_BIND_SERVICE missing: {capeff}"
    );
    // DNS config comes from the host.
    let resolv = std::fs::read_to_string(root.join("etc/resolv.conf")).unwrap();
    assert_eq!(resolv, std::fs::read_to_string("/etc/resolv.conf").unwrap());

    h.stop("UserInitiated", "Task stopped by test");
    let out = h.wait().unwrap();
    assert_eq!(out.stop_code, "UserInitiated");
    assert_eq!(out.stopped_reason, "Task stopped by test");
    assert_eq!(
        out.exit_codes.get("sample-fargate-app"),
        Some(&137),
        "{out:?}"
    );
    let evs = events.lock().unwrap().clone();
    assert!(
        matches!(evs.last(), Some(TaskEvent::Stopped { stop_code, .. }) if stop_code == "UserInitiated"),
        "{evs:?}"
    );
    // busybox httpd -v logs each request to stderr: captured into the awslogs stream.
    let stream = format!("ecs/sample-fargate-app/{id}");
    let logs = env.sink.events("/ecs/fargate-task-definition", &stream);
    assert!(
        logs.iter()
            .any(|e| e.message.contains("GET") || e.message.contains("response")),
        "{logs:?}"
    );
    // Not `is_err()`: where the host has a default route, something
    // beyond it may answer (this development machine's sandbox answers
    // any TCP); the task's page must not, and assert_no_leaks checks the
    // route to the task is gone.
    assert!(
        !matches!(http_get(&ip), Ok(b) if b.contains("Amazon ECS Sample App")),
        "still serving after stop"
    );
    env.assert_no_leaks(&id, &root, &out);
}

#[test]
fn dependencies_volumes_user_readonly_and_essential_exit() {
    let env = Env::new(12);
    let id = task_id();
    let root = env.task_root(&id);
    let logs = AwsLogs {
        group: "g".into(),
        stream_prefix: Some("p".into()),
        create_group: false,
    };
    let mut init = container("init", "busybox-docker:1");
    init.essential = false;
    init.entry_point = vec!["sh".into(), "-c".into()];
    init.command = vec!["echo shared-by-init > /data/x".into()];
    init.mount_points = vec![MountPoint {
        source_volume: "scratch".into(),
        container_path: "/data".into(),
        read_only: false,
    }];
    let mut main = container("main", "docker.io/library/busybox-docker:1");
    main.entry_point = vec!["sh".into(), "-c".into()];
    main.command = vec![
        "echo user=$(id -u):$(id -g) env=$GREETING data=$(cat /data/x) cwd=$(pwd) secret=$DB_PASSWORD; touch /rootfile 2>/dev/null || echo readonly-root; echo to-stderr >&2; exit 3".into(),
    ];
    main.user = Some("app".into());
    main.environment = vec![
        ("GREETING".into(), "hello".into()),
        ("DB_PASSWORD".into(), "overridden".into()),
    ];
    // A resolved secret: in the environment, winning over `environment`.
    main.secret_env = SecretEnv::new(vec![(
        "DB_PASSWORD".into(),
        zeroize::Zeroizing::new("s3cr3t-value".into()),
    )]);
    main.working_directory = Some("/tmp".into());
    main.readonly_root_filesystem = true;
    main.mount_points = vec![MountPoint {
        source_volume: "scratch".into(),
        container_path: "/data".into(),
        read_only: true,
    }];
    main.depends_on = vec![Dependency {
        container_name: "init".into(),
        condition: "SUCCESS".into(),
    }];
    main.awslogs = Some(logs);
    let volumes = vec![VolumePlan {
        name: "scratch".into(),
        kind: VolumeKind::Ephemeral,
    }];
    let (h, events) = run(&env, plan(&id, vec![init, main], volumes), &root);
    let out = h.wait().unwrap();
    assert_eq!(out.stop_code, "EssentialContainerExited", "{out:?}");
    assert_eq!(out.stopped_reason, "Essential container in task exited");
    assert_eq!(out.exit_codes.get("init"), Some(&0));
    assert_eq!(out.exit_codes.get("main"), Some(&3));
    // init completed before main started.
    let evs = events.lock().unwrap().clone();
    let pos = |f: &dyn Fn(&TaskEvent) -> bool| evs.iter().position(f).unwrap();
    let init_exit =
        pos(&|e| matches!(e, TaskEvent::ContainerExited { name, .. } if name == "init"));
    let main_run = pos(&|e| matches!(e, TaskEvent::ContainerRunning { name } if name == "main"));
    assert!(init_exit < main_run, "{evs:?}");
    let lines: Vec<String> = env
        .sink
        .events("g", &format!("p/main/{id}"))
        .into_iter()
        .map(|e| e.message)
        .collect();
    assert!(
        lines.contains(
            &"user=1234:2345 env=hello data=shared-by-init cwd=/tmp secret=s3cr3t-value"
                .to_string()
        ),
        "{lines:?}"
    );
    assert!(lines.contains(&"readonly-root".to_string()), "{lines:?}");
    assert!(lines.contains(&"to-stderr".to_string()), "{lines:?}");
    // The shared volume lives on task_root.
    assert_eq!(
        std::fs::read_to_string(root.join("volumes/scratch/x")).unwrap(),
        "shared-by-init\n"
    );
    env.assert_no_leaks(&id, &root, &out);
}

#[test]
fn missing_image_fails_to_start_and_stop_timeout_kills() {
    let env = Env::new(13);
    // An image that is not stored and cannot be pulled (nothing listens
    // on port 1): it is pulled once provisioned, as on Fargate, and the
    // task fails to start saying why; everything made is released.
    let id = task_id();
    let root = env.task_root(&id);
    let (h, events) = run(
        &env,
        plan(&id, vec![container("web", "127.0.0.1:1/httpd:9.9")], vec![]),
        &root,
    );
    let out = h.wait().unwrap();
    assert_eq!(out.stop_code, "TaskFailedToStart");
    assert!(
        out.stopped_reason.starts_with(
            "CannotPullContainerError: pull image manifest has been retried 3 time(s): failed to resolve ref 127.0.0.1:1/httpd:9.9: "
        ) && out.stopped_reason.ends_with("connect: connection refused"),
        "{}",
        out.stopped_reason
    );
    {
        let evs = events.lock().unwrap();
        assert!(
            matches!(
                &evs[..],
                [
                    TaskEvent::Provisioned { .. },
                    TaskEvent::PullStarted,
                    TaskEvent::PullStopped { failed },
                    TaskEvent::Stopped { .. }
                ] if failed.get("web") == Some(&out.stopped_reason)
            ),
            "{evs:?}"
        );
    }
    env.assert_no_leaks(&id, &root, &out);

    // Stopped right away, while it is still starting: UserInitiated, and
    // whatever was already made is released.
    let id = task_id();
    let root = env.task_root(&id);
    let mut c = container("web", "httpd:2.4");
    c.stop_timeout_secs = 1;
    let (h, _) = run(&env, plan(&id, vec![c], vec![]), &root);
    h.stop("UserInitiated", "changed my mind");
    let out = h.wait().unwrap();
    assert_eq!(
        (out.stop_code.as_str(), out.stopped_reason.as_str()),
        ("UserInitiated", "changed my mind")
    );
    env.assert_no_leaks(&id, &root, &out);

    // A command that does not exist: TaskFailedToStart from the runtime.
    let id = task_id();
    let root = env.task_root(&id);
    let mut c = container("web", "httpd:2.4");
    c.entry_point = vec!["/no/such/binary".into()];
    let (h, _) = run(&env, plan(&id, vec![c], vec![]), &root);
    let out = h.wait().unwrap();
    assert_eq!(out.stop_code, "TaskFailedToStart");
    assert!(
        out.stopped_reason.contains("CannotStartContainerError")
            && out.stopped_reason.contains("/no/such/binary"),
        "{}",
        out.stopped_reason
    );
    env.assert_no_leaks(&id, &root, &out);

    // stopTimeout: one container ignores SIGTERM and is killed after its
    // timeout; one exits cleanly on SIGTERM.
    let id = task_id();
    let root = env.task_root(&id);
    let mut stubborn = container("stubborn", "httpd:2.4");
    stubborn.entry_point = vec![
        "sh".into(),
        "-c".into(),
        "trap '' TERM; while :; do sleep 0.1; done".into(),
    ];
    stubborn.stop_timeout_secs = 2;
    let mut polite = container("polite", "httpd:2.4");
    polite.entry_point = vec![
        "sh".into(),
        "-c".into(),
        "trap 'exit 0' TERM; while :; do sleep 0.1; done".into(),
    ];
    let (h, events) = run(&env, plan(&id, vec![stubborn, polite], vec![]), &root);
    wait_for(&events, "Running", |e| matches!(e, TaskEvent::Running));
    // The same task id again is refused without touching the running task.
    let (dup, _) = run(
        &env,
        plan(&id, vec![container("web", "httpd:2.4")], vec![]),
        &root,
    );
    let dup = dup.wait().unwrap();
    assert_eq!(dup.stop_code, "TaskFailedToStart");
    assert!(
        dup.stopped_reason.contains("already running"),
        "{}",
        dup.stopped_reason
    );
    assert!(
        Path::new(&format!("/run/netns/ferry-{id}")).exists(),
        "duplicate tore down the netns"
    );
    let t0 = Instant::now();
    h.stop("UserInitiated", "bye");
    let out = h.wait().unwrap();
    let took = t0.elapsed();
    assert_eq!(out.exit_codes.get("polite"), Some(&0), "{out:?}");
    assert_eq!(out.exit_codes.get("stubborn"), Some(&137), "{out:?}");
    assert!(
        took >= Duration::from_secs(2),
        "SIGKILL before stopTimeout: {took:?}"
    );
    assert!(took < Duration::from_secs(15), "stop took {took:?}");
    assert_eq!(out.stop_code, "UserInitiated");
    let evs = events.lock().unwrap().clone();
    assert!(
        evs.iter().any(
            |e| matches!(e, TaskEvent::ContainerExited { name, reason: Some(r), .. }
        if name == "stubborn" && r.contains("stopTimeout"))
        ),
        "{evs:?}"
    );
    assert!(evs.iter().any(|e| matches!(e, TaskEvent::ContainerExited { name, reason: None, .. } if name == "polite")), "{evs:?}");
    env.assert_no_leaks(&id, &root, &out);
}

/// A storage that mounts a tmpfs per task and records what happened.
struct TmpfsStorage {
    base: PathBuf,
    fail: Option<String>,
    log: Arc<Mutex<Vec<String>>>,
}

impl ferry_agent::TaskStorage for TmpfsStorage {
    fn attach(&self, plan: &TaskPlan) -> Result<PathBuf, TaskFailure> {
        if let Some(f) = &self.fail {
            return Err(TaskFailure::plain(f.clone()));
        }
        let dir = self.base.join(&plan.task_id);
        std::fs::create_dir_all(&dir).unwrap();
        nix::mount::mount(
            Some("tmpfs"),
            &dir,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("size=64m"),
        )
        .map_err(|e| TaskFailure::plain(e.to_string()))?;
        self.log.lock().unwrap().push("attach".into());
        Ok(dir)
    }

    fn detach(&self, _plan: &TaskPlan, root: &Path) -> Result<(), TaskFailure> {
        // Nothing of the task may still use the volume.
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let inside = format!("{}/", root.display());
        let busy = mountinfo.lines().filter(|l| l.contains(&inside)).count();
        let file = std::fs::read_to_string(root.join("volumes/v/f")).unwrap_or_default();
        self.log
            .lock()
            .unwrap()
            .push(format!("detach busy={busy} file={}", file.trim()));
        nix::mount::umount(root).map_err(|e| TaskFailure::plain(e.to_string()))
    }
}

#[test]
fn storage_is_attached_before_and_detached_after_everything() {
    let env = Env::new(14);
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let base = env.dir.join("volumes");

    // Attach failure (e.g. the KMS key is disabled) is the stoppedReason.
    let id = task_id();
    let st = Arc::new(TmpfsStorage {
        base: base.clone(),
        fail: Some("KMS key is disabled".into()),
        log: log.clone(),
    });
    let events: Events = Arc::default();
    let ev = events.clone();
    let h = env.agent.run_task_with_storage(
        plan(&id, vec![container("web", "httpd:2.4")], vec![]),
        st,
        move |e| ev.lock().unwrap().push(e),
    );
    let out = h.wait().unwrap();
    assert_eq!(out.stop_code, "TaskFailedToStart");
    assert_eq!(out.stopped_reason, "KMS key is disabled");
    assert!(
        log.lock().unwrap().is_empty(),
        "detach without attach: {:?}",
        log.lock().unwrap()
    );

    // A task on the attached volume: its files live there, and detach
    // comes after every overlay is gone, before Stopped.
    let id = task_id();
    let st = Arc::new(TmpfsStorage {
        base: base.clone(),
        fail: None,
        log: log.clone(),
    });
    let mut c = container("web", "httpd:2.4");
    c.entry_point = vec![
        "sh".into(),
        "-c".into(),
        "echo data > /data/f; exit 0".into(),
    ];
    c.mount_points = vec![MountPoint {
        source_volume: "v".into(),
        container_path: "/data".into(),
        read_only: false,
    }];
    let l2 = log.clone();
    let h = env.agent.run_task_with_storage(
        plan(
            &id,
            vec![c],
            vec![VolumePlan {
                name: "v".into(),
                kind: VolumeKind::Ephemeral,
            }],
        ),
        st,
        move |e| {
            if matches!(e, TaskEvent::Stopped { .. }) {
                l2.lock().unwrap().push("stopped".into());
            }
            if let TaskEvent::ContainerExited { .. } = e {
                // The volume is still mounted while containers run.
                l2.lock().unwrap().push("exited".into());
            }
        },
    );
    let out = h.wait().unwrap();
    assert_eq!(out.stop_code, "EssentialContainerExited");
    assert_eq!(out.exit_codes.get("web"), Some(&0));
    assert_eq!(
        *log.lock().unwrap(),
        ["attach", "exited", "detach busy=0 file=data", "stopped"]
    );
    let root = base.join(&id);
    assert!(
        !root.join("volumes/v/f").exists(),
        "volume still mounted after detach"
    );
    env.assert_no_leaks(&id, &root, &out);
}

#[test]
#[ignore = "helper process of crashed_agent_leaves_nothing_after_cleanup_orphan"]
fn crash_helper() {
    let var = |k: &str| {
        std::env::var(k).expect("run by crashed_agent_leaves_nothing_after_cleanup_orphan")
    };
    let dir = PathBuf::from(var("FERRY_CRASH_DIR"));
    let id = var("FERRY_CRASH_TASK");
    let agent = make_agent(&dir, 15, &var("FERRY_CRASH_NETWORK"), MemorySink::new());
    let root = dir.join("tasks").join(&id);
    std::fs::create_dir_all(&root).unwrap();
    // busybox httpd without -v: its log pipe dies with the agent (no shim
    // holds it).
    let c = web();
    let (tx, rx) = std::sync::mpsc::channel();
    let _h = agent.run_task(plan(&id, vec![c], vec![]), &root, move |e| {
        if matches!(e, TaskEvent::Running) {
            let _ = tx.send(());
        }
    });
    rx.recv_timeout(Duration::from_secs(60)).unwrap();
    // Crash: no stop, no cleanup.
    std::process::exit(0);
}

#[test]
fn crashed_agent_leaves_nothing_after_cleanup_orphan() {
    let env = Env::new(15);
    let id = task_id();
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "crash_helper", "--nocapture"])
        .env("FERRY_CRASH_DIR", &env.dir)
        .env("FERRY_CRASH_NETWORK", &env.network)
        .env("FERRY_CRASH_TASK", &id)
        .status()
        .unwrap();
    assert!(status.success(), "helper failed");
    // The task outlived its agent: still serving, and listed as an orphan.
    let rec = ferry_agent::recovery::TaskRecord::load(&env.dir.join("state"), &id).unwrap();
    let ip = rec.ip.clone().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match http_get(&ip) {
            Ok(b) if b.contains("It works!") => break,
            other => assert!(Instant::now() < deadline, "orphan not serving: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(Path::new(&format!("/run/netns/ferry-{id}")).exists());
    assert_eq!(env.agent.orphaned_tasks(), vec![id.clone()]);

    env.agent.cleanup_orphan(&id).unwrap();
    assert!(env.agent.orphaned_tasks().is_empty());
    // Not `is_err()`: where the host has a default route, something
    // beyond it may answer (this development machine's sandbox answers
    // any TCP); the task's page must not, and assert_no_leaks checks the
    // route to the task is gone.
    assert!(
        !matches!(http_get(&ip), Ok(b) if b.contains("It works!")),
        "still serving after cleanup"
    );
    let out = TaskOutcome {
        stop_code: String::new(),
        stopped_reason: String::new(),
        private_ip: Some(ip),
        exit_codes: Default::default(),
        cleanup_errors: vec![],
        timings: Default::default(),
    };
    env.assert_no_leaks(&id, &rec.task_root, &out);
}

/// A health check that outlives its timeout is killed inside the container
/// and counts as a failure; UNHEALTHY fails a HEALTHY dependency (the
/// non-essential dependent is skipped, the task runs on); a later success
/// makes the container HEALTHY again.
#[test]
fn health_check_timeout_kill_and_healthy_dependency() {
    let env = Env::new(16);
    let id = task_id();
    let root = env.task_root(&id);
    let mut app = container("app", "httpd:2.4");
    app.entry_point = vec!["sh".into(), "-c".into()];
    app.command = vec!["sleep 7; echo ok > /tmp/ok; sleep 3600".into()];
    app.stop_timeout_secs = 1;
    app.health_check = Some(HealthCheck {
        // busybox sh execs the last command: the pid file names `sleep`.
        command: HealthCommand::Exec(vec![
            "sh".into(),
            "-c".into(),
            "test -f /tmp/ok && exit 0; sleep 3131".into(),
        ]),
        interval_secs: 2,
        timeout_secs: 1,
        retries: 1,
        start_period_secs: 0,
    });
    let mut side = container("side", "httpd:2.4");
    side.essential = false;
    side.entry_point = vec!["sh".into(), "-c".into()];
    side.command = vec!["sleep 3600".into()];
    side.depends_on = vec![Dependency {
        container_name: "app".into(),
        condition: "HEALTHY".into(),
    }];
    let (h, events) = run(&env, plan(&id, vec![app, side], vec![]), &root);
    wait_for(
        &events,
        "UNHEALTHY",
        |e| matches!(e, TaskEvent::ContainerHealth { name, status: HealthStatus::Unhealthy } if name == "app"),
    );
    // The timed-out check was killed before the failure was reported (the
    // next one starts only an interval later).
    let ps = sh("ps -eo args");
    assert!(
        !ps.lines().any(|l| l.trim() == "sleep 3131"),
        "timed-out health check still running:\n{ps}"
    );
    wait_for(
        &events,
        "HEALTHY",
        |e| matches!(e, TaskEvent::ContainerHealth { name, status: HealthStatus::Healthy } if name == "app"),
    );
    let evs = events.lock().unwrap().clone();
    assert!(
        !evs.iter()
            .any(|e| matches!(e, TaskEvent::ContainerRunning { name } if name == "side")),
        "side started although app was UNHEALTHY first: {evs:?}"
    );
    assert!(
        !evs.iter().any(|e| matches!(e, TaskEvent::Stopped { .. })),
        "{evs:?}"
    );
    h.stop("UserInitiated", "done");
    let out = h.wait().unwrap();
    assert_eq!(out.stop_code, "UserInitiated");
    assert!(!out.exit_codes.contains_key("side"), "{out:?}");
    env.assert_no_leaks(&id, &root, &out);
}

// ---- Task networking: security groups, anti-spoofing, host, NET_RAW ----

use ferry_proto::net::{FirewallRules, GroupRules, Peer, Rule, Traffic, VpcNet};

/// A container serving busybox httpd's "It works!" page on port 80.
fn web() -> ContainerPlan {
    let mut c = container("web", "httpd:2.4");
    c.entry_point = [
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/usr/local/apache2/htdocs",
    ]
    .map(String::from)
    .to_vec();
    c.stop_timeout_secs = 1;
    c
}

/// A running task, stopped on drop (a failed assertion leaves nothing).
struct Running {
    id: String,
    h: Option<TaskHandle>,
    root: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(h) = self.h.take() {
            h.stop("UserInitiated", "test");
            let _ = h.wait();
        }
    }
}

/// Starts a web task with `iface`.
fn start_web(env: &Env, ifp: ferry_proto::net::InterfacePlan) -> Running {
    let id = task_id();
    let root = env.task_root(&id);
    let mut p = plan(&id, vec![web()], vec![]);
    p.network = Some(ifp);
    let (h, events) = run(env, p, &root);
    let t = Running {
        id,
        h: Some(h),
        root,
    };
    wait_for(&events, "Running", |e| matches!(e, TaskEvent::Running));
    t
}

/// Stops the task and checks it left nothing.
fn stop(env: &Env, t: Running) {
    stop_all(env, vec![t]);
}

/// Stops every task, then checks that none left anything (the tasks share
/// the agent's runc root).
fn stop_all(env: &Env, mut ts: Vec<Running>) {
    let outs: Vec<TaskOutcome> = ts
        .iter_mut()
        .map(|t| {
            let h = t.h.take().unwrap();
            h.stop("UserInitiated", "test");
            h.wait().unwrap()
        })
        .collect();
    for (t, out) in ts.iter().zip(&outs) {
        env.assert_no_leaks(&t.id, &t.root, out);
    }
}

/// The host side of task `id`'s veth: the peer of its `eth0`.
fn in_task_host_iface(id: &str) -> String {
    let out = in_task(id, "cat /sys/class/net/eth0/iflink");
    let idx = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let links = sh("ip -o link show");
    links
        .lines()
        .find_map(|l| {
            let (i, rest) = l.split_once(": ")?;
            (i == idx).then(|| rest.split(['@', ':']).next().unwrap_or("").to_string())
        })
        .unwrap_or_else(|| panic!("no host interface with index {idx}: {links}"))
}

/// `cmd` run in task `id`'s network namespace (as the task would send).
fn in_task(id: &str, cmd: &str) -> std::process::Output {
    Command::new("ip")
        .args(["netns", "exec", &format!("ferry-{id}"), "sh", "-c", cmd])
        .output()
        .unwrap()
}

/// Whether task `from` gets the page of `ip:port` (2 s timeout).
fn reaches(from: &str, ip: &str, port: u16) -> bool {
    let out = in_task(from, &format!("curl -s -m 2 http://{ip}:{port}/"));
    String::from_utf8_lossy(&out.stdout).contains("It works!")
}

fn rule(traffic: Traffic, peer: Peer) -> Rule {
    Rule { traffic, peer }
}

fn anywhere() -> Peer {
    Peer::Cidr("0.0.0.0/0".parse().unwrap())
}

fn group(id: &str, vpc: &str, ingress: Vec<Rule>) -> GroupRules {
    GroupRules {
        group_id: id.into(),
        vpc_id: vpc.into(),
        ingress,
        egress: vec![rule(Traffic::All, anywhere())],
    }
}

fn vpc(id: &str, subnets: &[&str]) -> VpcNet {
    VpcNet {
        vpc_id: id.into(),
        subnets: subnets.iter().map(|s| s.parse().unwrap()).collect(),
    }
}

/// Sets the task's eth0 to `ip` (and routes as ptp made them) from the
/// host: what a task with NET_ADMIN could do.
fn set_task_ip(id: &str, ip: &str, gw: &str) {
    let out = in_task(
        id,
        &format!(
            "ip addr flush dev eth0 && ip addr add {ip}/24 dev eth0 noprefixroute && \
             ip route add {gw}/32 dev eth0 scope link && ip route add default via {gw}"
        ),
    );
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn security_groups_allow_deny_revoke_and_refuse_spoofed_senders() {
    let env = Env::new(17);
    let (n, v) = (17, "vpc-test");
    let allow_80_from_a = rule(
        Traffic::Tcp { from: 80, to: 80 },
        Peer::Group("sg-a".into()),
    );
    let rules = |b_ingress: Vec<Rule>| FirewallRules {
        vpcs: vec![vpc(v, &["198.19.17.0/24"])],
        groups: vec![
            group("sg-a", v, vec![]),
            group("sg-b", v, b_ingress),
            group("sg-c", v, vec![]),
        ],
    };
    let fw = env.agent.firewall();
    fw.set_rules(&rules(vec![allow_80_from_a.clone()])).unwrap();
    let ta = start_web(&env, iface(n, 10, &["sg-a"], v));
    let tb = start_web(&env, iface(n, 11, &["sg-b"], v));
    let tc = start_web(&env, iface(n, 12, &["sg-c"], v));
    let (a, b, c) = (ta.id.clone(), tb.id.clone(), tc.id.clone());
    let (ipa, ipb, ipc) = ("198.19.17.10", "198.19.17.11", "198.19.17.12");
    let table = sh(&format!("nft list table inet {}", env.network));
    assert!(table.contains("chain antispoof"), "{table}");

    // The host reaches every task (host-originated traffic is allowed).
    for ip in [ipa, ipb, ipc] {
        assert!(http_get(ip).unwrap().contains("It works!"), "host -> {ip}");
    }
    assert!(reaches(&a, ipb, 80), "A -> B:80 is allowed");
    assert!(!reaches(&b, ipa, 80), "B -> A is not");
    assert!(
        !reaches(&c, ipa, 80) && !reaches(&c, ipb, 80),
        "C reaches neither"
    );
    assert!(!reaches(&a, ipc, 80), "A -> C is not allowed");

    // An established connection A -> B is cut by revoking the rule.
    let held = |id: &str| {
        Command::new("ip")
            .args(["netns", "exec", &format!("ferry-{id}")])
            .args(["busybox", "nc", "-w", "3", ipb, "80"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let ask = |mut child: std::process::Child| {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"GET / HTTP/1.0\r\n\r\n")
            .unwrap();
        // A cut connection never closes: give up after 3 s.
        let t = Instant::now();
        while child.try_wait().unwrap().is_none() && t.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).contains("It works!")
    };
    // Control: a connection held open for a while still gets the page.
    let conn = held(&a);
    std::thread::sleep(Duration::from_millis(500));
    assert!(ask(conn), "held connection works while allowed");
    let conn = held(&a);
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    fw.set_rules(&rules(vec![])).unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "applying took {:?}",
        t.elapsed()
    );
    assert!(!ask(conn), "established connection survived the revoke");
    assert!(!reaches(&a, ipb, 80), "new connection after the revoke");
    // Granting again works at once.
    fw.set_rules(&rules(vec![allow_80_from_a])).unwrap();
    assert!(reaches(&a, ipb, 80), "A -> B:80 after granting again");

    // A task that takes another address gets nothing through; back on its
    // own address it does again; with another MAC it does not.
    set_task_ip(&a, "198.19.17.200", "198.19.17.1");
    assert!(!reaches(&a, ipb, 80), "spoofed address got through");
    assert!(http_get(ipa).is_err(), "host reached A on its old address");
    set_task_ip(&a, ipa, "198.19.17.1");
    assert!(reaches(&a, ipb, 80), "A on its own address again");
    let out = in_task(&a, "ip link set eth0 address 0a:58:c6:13:11:ee");
    assert!(out.status.success(), "{out:?}");
    assert!(!reaches(&a, ipb, 80), "spoofed MAC got through");
    stop_all(&env, vec![ta, tb, tc]);
    assert!(fw.members().is_empty());
    let table = sh(&format!("nft list table inet {}", env.network));
    assert!(
        !table.contains("antispoof"),
        "no members, no device hook: {table}"
    );
}

#[test]
fn tasks_cannot_open_connections_to_the_host() {
    let env = Env::new(18);
    let v = "vpc-test";
    env.agent
        .firewall()
        .set_rules(&FirewallRules {
            vpcs: vec![vpc(v, &["198.19.18.0/24"])],
            groups: vec![group("sg-open", v, vec![rule(Traffic::All, anywhere())])],
        })
        .unwrap();
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let t = start_web(&env, iface(18, 20, &["sg-open"], v));
    let a = t.id.clone();
    let out = in_task(
        &a,
        &format!("timeout 3 busybox nc -w 2 198.19.18.1 {port} </dev/null && echo connected"),
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("connected"),
        "task reached a host listener: {out:?}"
    );
    listener.set_nonblocking(true).unwrap();
    assert!(
        listener.accept().is_err(),
        "host accepted a task's connection"
    );
    // Inside its own namespace (where the metadata endpoints listen) the
    // task is not filtered: its own page on loopback and on its address.
    assert!(reaches(&a, "127.0.0.1", 80));
    assert!(reaches(&a, "198.19.18.20", 80));
    // And the host still reaches the task.
    assert!(http_get("198.19.18.20").unwrap().contains("It works!"));
    stop(&env, t);
}

#[test]
fn different_vpcs_cannot_talk_even_with_allow_all_rules() {
    let env = Env::new(19);
    let all = || vec![rule(Traffic::All, anywhere())];
    env.agent
        .firewall()
        .set_rules(&FirewallRules {
            vpcs: vec![
                vpc("vpc-1", &["198.19.19.0/24"]),
                vpc("vpc-2", &["198.19.20.0/24"]),
            ],
            groups: vec![group("sg-1", "vpc-1", all()), group("sg-2", "vpc-2", all())],
        })
        .unwrap();
    let a = start_web(&env, iface(19, 30, &["sg-1"], "vpc-1"));
    let a2 = start_web(&env, iface(19, 31, &["sg-1"], "vpc-1"));
    let b = start_web(&env, iface(20, 30, &["sg-2"], "vpc-2"));
    assert!(reaches(&a2.id, "198.19.19.30", 80), "same VPC talks");
    assert!(!reaches(&a.id, "198.19.20.30", 80), "vpc-1 -> vpc-2");
    assert!(!reaches(&b.id, "198.19.19.30", 80), "vpc-2 -> vpc-1");
    stop_all(&env, vec![a, a2, b]);
}

#[test]
fn ping_needs_net_raw() {
    let env = Env::new(21);
    let ping = |add: bool| {
        let id = task_id();
        let root = env.task_root(&id);
        let mut c = container("ping", "httpd:2.4");
        c.entry_point = vec!["sh".into(), "-c".into()];
        c.command = vec![
            "cat /proc/sys/net/ipv4/ping_group_range; busybox ping -c 1 -W 2 127.0.0.1".into(),
        ];
        if add {
            c.capabilities_add = vec!["NET_RAW".into()];
        }
        let (h, _) = run(&env, plan(&id, vec![c], vec![]), &root);
        let out = h.wait().unwrap();
        env.assert_no_leaks(&id, &root, &out);
        out.exit_codes.get("ping").copied()
    };
    assert_ne!(ping(false), Some(0), "ping worked without NET_RAW");
    assert_eq!(ping(true), Some(0), "ping failed with NET_RAW");
    // ICMP datagram sockets are off in a task's namespace.
    let id = task_id();
    let root = env.task_root(&id);
    let (h, events) = run(&env, plan(&id, vec![web()], vec![]), &root);
    let t = Running {
        id: id.clone(),
        h: Some(h),
        root,
    };
    wait_for(&events, "Running", |e| matches!(e, TaskEvent::Running));
    let range =
        String::from_utf8_lossy(&in_task(&id, "cat /proc/sys/net/ipv4/ping_group_range").stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>();
    assert_eq!(range, ["1", "0"]);
    stop(&env, t);
}

/// The `i`th interface's MAC in the address-reuse test.
fn ifp_mac(i: u8) -> String {
    format!("0a:58:c6:13:16:{i:02x}")
}

#[test]
fn a_reused_address_is_reachable_from_the_host_at_once() {
    let env = Env::new(22);
    let v = "vpc-test";
    env.agent
        .firewall()
        .set_rules(&FirewallRules {
            vpcs: vec![vpc(v, &["198.19.22.0/24"])],
            groups: vec![group("sg-default", v, vec![])],
        })
        .unwrap();
    for i in 0..20u8 {
        let mut ifp = iface(22, 40, &["sg-default"], v);
        // A new interface (MAC) on the same address, as EC2 would give it.
        ifp.mac = ifp_mac(i);
        let t = start_web(&env, ifp);
        // A stale neighbour entry (the old MAC) would leave the first
        // packets unanswered for seconds: the host must have no entry
        // for the address on any other interface, and the first ping
        // must be answered.
        let host_if = in_task_host_iface(&t.id);
        let neigh = sh("ip -4 neigh show to 198.19.22.40");
        for line in neigh.lines().filter(|l| !l.trim().is_empty()) {
            assert!(
                line.contains(&format!("dev {host_if} ")),
                "task {i}: a neighbour entry for the address on another interface: {neigh}"
            );
        }
        let route = sh("ip -4 route get 198.19.22.40");
        assert!(
            route.contains(&format!("dev {host_if} ")),
            "task {i}: the host does not route the address to its veth: {route}"
        );
        // The first connection attempt is answered (accepted, or refused
        // while the server starts) and the host then holds the task's
        // MAC for the address on its veth.
        let first =
            TcpStream::connect_timeout(&"198.19.22.40:80".parse().unwrap(), Duration::from_secs(1));
        assert!(
            first.is_ok()
                || first.as_ref().err().map(|e| e.kind())
                    == Some(std::io::ErrorKind::ConnectionRefused),
            "task {i} on the reused address did not answer at once: {first:?}"
        );
        let neigh = sh(&format!("ip -4 neigh show to 198.19.22.40 dev {host_if}"));
        assert!(
            neigh.contains(&format!("lladdr {} ", ifp_mac(i))),
            "task {i}: the host's neighbour entry is not the task's MAC: {neigh}"
        );
        // Then its server, once it listens (readiness, not speed).
        let t0 = Instant::now();
        loop {
            match http_get("198.19.22.40") {
                Ok(b) if b.contains("It works!") => break,
                other => assert!(
                    t0.elapsed() < Duration::from_secs(10),
                    "task {i} on the reused address not serving: {other:?}"
                ),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        stop(&env, t);
    }
}

#[test]
fn nft_accepts_a_large_rule_set() {
    assert!(nix::unistd::geteuid().is_root(), "needs root (nft -c)");
    use ferry_agent::net::nft::{Member, render};
    // Real devices for the ingress hook (a veth pair: no dummy driver
    // needed).
    let devs = ["fytnftd0", "fytnftd1"];
    let _ = Command::new("ip").args(["link", "del", devs[0]]).status();
    assert!(
        Command::new("ip")
            .args([
                "link", "add", devs[0], "type", "veth", "peer", "name", devs[1]
            ])
            .status()
            .unwrap()
            .success()
    );
    let mut groups = Vec::new();
    for g in 0..50 {
        let mut ingress = Vec::new();
        for r in 0..20u16 {
            let peer = if r % 2 == 0 {
                Peer::Group(format!("sg-{}", (g + 1) % 50))
            } else {
                Peer::Cidr(format!("10.{g}.{r}.0/24").parse().unwrap())
            };
            let traffic = match r % 5 {
                0 => Traffic::Tcp {
                    from: r,
                    to: r + 100,
                },
                1 => Traffic::Udp { from: 53, to: 53 },
                2 => Traffic::Icmp {
                    icmp_type: Some(8),
                    code: Some(0),
                },
                3 => Traffic::Protocol(47),
                _ => Traffic::All,
            };
            ingress.push(rule(traffic, peer));
        }
        groups.push(group(
            &format!("sg-{g}"),
            &format!("vpc-{}", g % 3),
            ingress,
        ));
    }
    let rules = FirewallRules {
        vpcs: (0..3)
            .map(|v| {
                vpc(
                    &format!("vpc-{v}"),
                    &[&format!("10.{v}.0.0/16"), &format!("172.16.{v}.0/24")],
                )
            })
            .collect(),
        groups,
    };
    let members: Vec<Member> = devs
        .iter()
        .enumerate()
        .map(|(i, d)| Member {
            task_id: format!("t{i}"),
            host_iface: d.to_string(),
            ip: std::net::Ipv4Addr::new(10, 0, 0, 10 + i as u8),
            mac: format!("0a:00:00:00:00:{i:02x}"),
            vpc_id: "vpc-0".into(),
            groups: vec![format!("sg-{i}"), "sg-3".into()],
        })
        .collect();
    let text = render("fytnftbig", &rules, &members);
    let mut child = Command::new("nft")
        .args(["-c", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let _ = Command::new("ip").args(["link", "del", devs[0]]).status();
    assert!(
        out.status.success(),
        "nft -c refused the table: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `bench/net.sh`: TCP throughput (iperf3) and new connections per second
/// between two tasks with the security-group table in place and with it
/// removed, alternating, in one run. Not a test (no assertion on timings).
#[test]
#[ignore = "benchmark: bench/net.sh"]
fn net_bench() {
    let env = Env::new(23);
    let v = "vpc-bench";
    let rules = FirewallRules {
        vpcs: vec![vpc(v, &["198.19.23.0/24"])],
        groups: vec![
            group("sg-client", v, vec![]),
            group(
                "sg-server",
                v,
                vec![
                    rule(
                        Traffic::Tcp { from: 80, to: 80 },
                        Peer::Group("sg-client".into()),
                    ),
                    rule(
                        Traffic::Tcp {
                            from: 5201,
                            to: 5201,
                        },
                        Peer::Group("sg-client".into()),
                    ),
                    rule(
                        Traffic::Tcp {
                            from: 9000,
                            to: 9000,
                        },
                        Peer::Group("sg-client".into()),
                    ),
                ],
            ),
        ],
    };
    let fw = env.agent.firewall();
    fw.set_rules(&rules).unwrap();
    let a = start_web(&env, iface(23, 10, &["sg-client"], v));
    let b = start_web(&env, iface(23, 11, &["sg-server"], v));
    let secs: u32 = std::env::var("FERRY_NET_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let rounds: u32 = std::env::var("FERRY_NET_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    // Servers in B's namespace: iperf3, and an accept-and-close loop.
    let ns_b = format!("ferry-{}", b.id);
    let mut iperf = Command::new("ip")
        .args(["netns", "exec", &ns_b, "iperf3", "-s", "-p", "5201"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("iperf3 (scripts/setup installs it)");
    let accept = "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('0.0.0.0',9000))\ns.listen(1024)\nwhile True:\n  c,_=s.accept(); c.close()\n";
    let mut acceptor = Command::new("ip")
        .args(["netns", "exec", &ns_b, "python3", "-c", accept])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let throughput = || -> f64 {
        let out = in_task(
            &a.id,
            &format!("iperf3 -c 198.19.23.11 -p 5201 -t {secs} -J"),
        );
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("iperf3: {out:?}"));
        v["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .unwrap_or_else(|| panic!("iperf3 result: {v}"))
            / 1e9
    };
    let conn_rate = || -> f64 {
        let script = format!(
            "import socket,time\nn=0\nt=time.time()\nwhile time.time()-t<{secs}:\n  s=socket.create_connection(('198.19.23.11',9000))\n  s.setsockopt(socket.SOL_SOCKET,socket.SO_LINGER,b'\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00')\n  s.close(); n+=1\nprint(n/(time.time()-t))\n"
        );
        let out = in_task(&a.id, &format!("python3 -c \"{script}\""));
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("connection loop: {out:?}"))
    };
    let mut with = (Vec::new(), Vec::new());
    let mut without = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        fw.set_rules(&rules).unwrap();
        assert!(sh(&format!("nft list table inet {}", env.network)).contains("chain eg"));
        with.0.push(throughput());
        with.1.push(conn_rate());
        ferry_agent::net::firewall::delete_table(&env.network).unwrap();
        without.0.push(throughput());
        without.1.push(conn_rate());
    }
    let _ = iperf.kill();
    let _ = iperf.wait();
    let _ = acceptor.kill();
    let _ = acceptor.wait();
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|x, y| x.partial_cmp(y).unwrap());
        v[v.len() / 2]
    };
    let (tw, tn) = (median(&mut with.0), median(&mut without.0));
    let (cw, cn) = (median(&mut with.1), median(&mut without.1));
    println!("net bench: {rounds} rounds of {secs} s each, alternating, medians:");
    println!(
        "  TCP throughput  with rules {tw:.2} Gbit/s  without {tn:.2} Gbit/s  ratio {:.3}",
        tw / tn
    );
    println!(
        "  new TCP conns/s with rules {cw:.0}  without {cn:.0}  ratio {:.3}",
        cw / cn
    );
    println!("  raw: with {with:?} without {without:?}");
    fw.set_rules(&rules).unwrap();
    stop_all(&env, vec![a, b]);
}
