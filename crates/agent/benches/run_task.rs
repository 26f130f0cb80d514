//! RunTask-to-RUNNING latency of the agent (root only): 50 tasks one after
//! another (p50, p99, and the mean of each start-up phase), then ten at
//! once. Each task is the stand-in httpd image (busybox, ~1 MiB) with its
//! own network namespace, cgroup, overlay rootfs and runc container; its
//! task_root is a plain directory (the volume engine is not in this
//! measurement). `FERRY_BENCH_TASKS` changes the count.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../ferry/tests/tools/testimage.rs"]
mod testimage;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use ferry_agent::image::{ImageStore, archive};
use ferry_agent::logs::NullSink;
use ferry_agent::net::NetworkConfig;
use ferry_agent::{Agent, AgentConfig, TaskHandle, TaskOutcome};
use ferry_proto::plan::*;

/// The tasks' subnet: room for the 50 + 10 (or FERRY_BENCH_TASKS) tasks.
const SUBNET: &str = "198.19.200.0/22";

fn plan(n: usize) -> TaskPlan {
    let task_id = format!("bench{:08x}{n:04}", std::process::id());
    TaskPlan {
        task_arn: format!("arn:aws:ecs:us-east-1:012345678910:task/bench/{task_id}"),
        task_id,
        cluster_name: "bench".into(),
        account: "012345678910".into(),
        region: "us-east-1".into(),
        cpu_units: 256,
        memory_mib: 512,
        ephemeral_storage_gib: 20,
        storage: StoragePlan::Unencrypted,
        containers: vec![ContainerPlan {
            name: "web".into(),
            image: "httpd:2.4".into(),
            entry_point: vec![],
            command: vec![],
            environment: vec![],
            working_directory: None,
            user: None,
            essential: true,
            depends_on: vec![],
            // busybox httpd is PID 1 and ignores SIGTERM: SIGKILL after 1 s.
            stop_timeout_secs: 1,
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
        }],
        volumes: vec![],
        network: Some(ferry_proto::net::InterfacePlan {
            eni_id: format!("eni-{n:017x}"),
            vpc_id: "vpc-bench".into(),
            subnet_id: "subnet-bench".into(),
            subnet_cidr: SUBNET.parse().unwrap(),
            ip: SUBNET
                .parse::<ferry_proto::net::Ipv4Cidr>()
                .unwrap()
                .nth(n as u64 + 2)
                .unwrap(),
            gateway: "198.19.200.1".parse().unwrap(),
            mac: format!("0a:00:00:00:{:02x}:{:02x}", n / 256, n % 256),
            security_groups: vec!["sg-bench".into()],
            availability_zone: "us-east-1a".into(),
        }),
    }
}

fn start(
    agent: &Agent,
    root: &std::path::Path,
    n: usize,
) -> (TaskHandle, mpsc::Receiver<Instant>, Instant) {
    let (tx, rx) = mpsc::channel();
    let dir = root.join(format!("t{n}"));
    std::fs::create_dir_all(&dir).unwrap();
    let t0 = Instant::now();
    let h = agent.run_task(plan(n), &dir, move |e| {
        if matches!(e, TaskEvent::Running | TaskEvent::Stopped { .. }) {
            let _ = tx.send(Instant::now());
        }
    });
    (h, rx, t0)
}

/// A phase's name and how to read it from an outcome.
type Phase<'a> = (&'a str, &'a dyn Fn(&TaskOutcome) -> Duration);

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the agent benchmark needs root"
    );
    let count: usize = std::env::var("FERRY_BENCH_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let tmp = tempfile::Builder::new()
        .prefix("ferry-agent-bench-")
        .tempdir()
        .unwrap();
    let images = ImageStore::open(
        tmp.path().join("images"),
        std::sync::Arc::new(ferry_blob::testing::MemoryKeys::default()),
        Default::default(),
    )
    .unwrap();
    let archive_path = tmp.path().join("httpd.tar");
    testimage::write_oci_archive(&testimage::httpd_image(), &archive_path, Some("httpd:2.4"));
    archive::import(&images, &archive_path, None).unwrap();
    let state = tmp.path().join("state");
    let network = NetworkConfig::new("ferry-bench");
    let agent = Agent::new(AgentConfig {
        images,
        state_dir: state,
        runtime: ferry_agent::runc::resolve("auto"),
        network,
        cgroup_parent: "ferry-bench".into(),
        task_pids_max: ferry_agent::task::DEFAULT_TASK_PIDS_MAX,
        log_sink: std::sync::Arc::new(NullSink),
        own_registry: None,
        userns: ferry_agent::userns::UsernsMode::Auto,
        // The shim is the ferry binary's `shim` subcommand: FERRY_BIN names it.
        shim_exe: std::env::var_os("FERRY_BIN")
            .map(Into::into)
            .unwrap_or_else(|| "target/debug/ferry".into()),
        shim_dir: tmp.path().join("shims"),
    })
    .unwrap();
    let roots = tmp.path().join("tasks");

    let mut lat = Vec::new();
    let mut outcomes: Vec<TaskOutcome> = Vec::new();
    for n in 0..count {
        let (h, rx, t0) = start(&agent, &roots, n);
        let at = rx.recv().unwrap();
        lat.push(at - t0);
        h.stop("UserInitiated", "bench");
        let out = h.wait().unwrap();
        assert!(out.cleanup_errors.is_empty(), "{:?}", out.cleanup_errors);
        assert_ne!(out.stop_code, "TaskFailedToStart", "{}", out.stopped_reason);
        outcomes.push(out);
    }
    lat.sort();
    println!(
        "agent RunTask->RUNNING, {count} tasks sequentially (busybox httpd image, plain task_root):"
    );
    println!(
        "  p50 {:.1} ms   p99 {:.1} ms   max {:.1} ms",
        ms(pct(&lat, 0.5)),
        ms(pct(&lat, 0.99)),
        ms(lat[lat.len() - 1])
    );
    let mean = |f: &dyn Fn(&TaskOutcome) -> Duration| {
        ms(outcomes.iter().map(f).sum::<Duration>() / outcomes.len() as u32)
    };
    let phases: [Phase<'_>; 7] = [
        ("resolve", &|o| o.timings.resolve),
        ("cgroup", &|o| o.timings.cgroup),
        ("network (netns + CNI)", &|o| o.timings.network),
        ("image (store or pull)", &|o| o.timings.pull),
        ("unpack image", &|o| o.timings.unpack),
        ("overlay + bundle", &|o| o.timings.bundles),
        ("cleanup at stop", &|o| o.timings.cleanup),
    ];
    for (name, f) in phases {
        println!("  mean {name:<22} {:.1} ms", mean(f));
    }
    let runtime = mean(&|o| {
        let t = &o.timings;
        t.to_running
            .saturating_sub(t.resolve + t.cgroup + t.network + t.pull + t.unpack + t.bundles)
    });
    println!("  mean {:<22} {runtime:.1} ms", "runtime create + start");

    let t0 = Instant::now();
    let tasks: Vec<_> = (0..10).map(|n| start(&agent, &roots, 1000 + n)).collect();
    let mut each = Vec::new();
    for (_, rx, t) in &tasks {
        each.push(rx.recv().unwrap() - *t);
    }
    let all = t0.elapsed();
    for (h, _, _) in &tasks {
        h.stop("UserInitiated", "bench");
    }
    for (h, _, _) in &tasks {
        let out = h.wait().unwrap();
        assert!(out.cleanup_errors.is_empty(), "{:?}", out.cleanup_errors);
    }
    each.sort();
    println!(
        "ten tasks at once: all RUNNING after {:.1} ms; per task p50 {:.1} ms, max {:.1} ms",
        ms(all),
        ms(pct(&each, 0.5)),
        ms(each[each.len() - 1])
    );
    let _ = std::process::Command::new("ip")
        .args(["link", "del", "fybench0"])
        .status();
}
