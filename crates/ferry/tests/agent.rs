//! The agent end to end, as root: real runc, CNI plugins, overlayfs,
//! cgroups, network namespaces. Each test uses its own bridge, subnet,
//! state directory and task root, and checks that nothing of the task
//! remains afterwards.

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
    bridge: String,
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
        let bridge = format!("fyt{}", &suffix[suffix.len() - 6..]);
        let images = teststore::open(&dir.join("data/images"));
        let img = testimage::httpd_image();
        let oci = dir.join("httpd-oci.tar");
        let docker = dir.join("httpd-docker.tar");
        testimage::write_oci_archive(&img, &oci, Some("docker.io/library/httpd:2.4"));
        testimage::write_docker_archive(&img, &docker, "busybox-docker:1");
        archive::import(&images, &oci, None).unwrap();
        archive::import(&images, &docker, None).unwrap();
        let sink = MemorySink::new();
        let agent = make_agent(&dir, net, &bridge, sink.clone());
        Env {
            _tmp: tmp,
            dir,
            bridge,
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
        let links = sh(&format!(
            "ip -o link show master {} 2>/dev/null || true",
            self.bridge
        ));
        assert!(
            links.trim().is_empty(),
            "veth left on {}: {links}",
            self.bridge
        );
        for e in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            let p = e.path().join(CGROUP_PARENT).join(task_id);
            assert!(!p.exists(), "cgroup left: {}", p.display());
        }
        let runc = sh(&format!(
            "runc --root {} list -q",
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
fn make_agent(dir: &Path, net: u8, bridge: &str, sink: Arc<MemorySink>) -> Agent {
    let state = dir.join("state");
    let mut network = NetworkConfig::new(&state);
    network.bridge = bridge.to_string();
    network.subnet = format!("198.19.{net}.0/24");
    network.network_name = format!("ferry-test-{net}");
    Agent::new(AgentConfig {
        images: teststore::open(&dir.join("data/images")),
        state_dir: state,
        runtime: "runc".into(),
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
        // The bridge is per test here (on a server it is shared and stays).
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
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
        network: None,
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
    // network namespace) and the host through the bridge gateway.
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
    assert!(http_get(&ip).is_err(), "still serving after stop");
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
    let agent = make_agent(&dir, 15, &var("FERRY_CRASH_BRIDGE"), MemorySink::new());
    let root = dir.join("tasks").join(&id);
    std::fs::create_dir_all(&root).unwrap();
    let mut c = container("web", "httpd:2.4");
    // Not -v: its log pipe dies with the agent (no shim holds it).
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
        .env("FERRY_CRASH_BRIDGE", &env.bridge)
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
    assert!(http_get(&ip).is_err(), "still serving after cleanup");
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
