//! A fleet in one process: two replicas (two `EcsService`s, each with its
//! own fake runtime as its host's agent, hosts `a` and `b`) over one
//! shared store. Placement, the assignment loop, the scheduler lease and
//! its fencing, lost hosts and concurrent service updates.
//!
//! Every test runs twice: over one embedded store both replicas share
//! (`redb::`), and over a throwaway PostgreSQL cluster to which each
//! replica has its own connection (`postgres::`, as two processes would;
//! needs root and PostgreSQL 15, as `ferry_store::testing` says).

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use ferry_proto::plan::TaskEvent;
use ferry_store::Store;
use serde_json::{Value, json};

use crate::hosts::{self, HostConfig, assign};
use crate::leader;
use crate::model::service::ServiceRecord;
use crate::model::task::{TaskRecord, TaskStatus};
use crate::tests::{FakeKeys, FakeNetworks, FakeRuntime, ctx, source_doc};
use crate::{EcsConfig, EcsService, db, scheduler};
use ferry_proto::JsonService;

/// How a replica is set up.
#[derive(Clone)]
struct Opts {
    /// CPU units and MiB of its host (`None`: `--no-agent`).
    size: Option<(u64, u64)>,
    /// Overcommit ratios (CPU, memory).
    ratios: (f64, f64),
    subnet: Option<&'static str>,
    host_ttl: Duration,
    scheduler_ttl: Duration,
    /// The assignment loop's thread (`None`: the test runs passes).
    assign_every: Option<Duration>,
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            size: Some((4 * 1024, 16 * 1024)),
            ratios: (1.0, 1.0),
            subnet: None,
            host_ttl: Duration::from_secs(30),
            scheduler_ttl: Duration::from_secs(10),
            assign_every: None,
        }
    }
}

struct Replica {
    name: &'static str,
    rt: Arc<FakeRuntime>,
    svc: Arc<EcsService>,
}

impl Replica {
    fn call(&self, op: &str, body: Value) -> Result<Value, ferry_proto::AwsError> {
        self.svc
            .call(&ctx(), op, &serde_json::to_vec(&body).unwrap())
    }
    fn ok(&self, op: &str, body: Value) -> Value {
        self.call(op, body)
            .unwrap_or_else(|e| panic!("{op} through {} failed: {e}", self.name))
    }
    fn core(&self) -> &Arc<crate::service::Core> {
        self.svc.core()
    }
    fn started(&self) -> Vec<String> {
        self.rt
            .started
            .lock()
            .unwrap()
            .iter()
            .map(|(p, _)| p.task_arn.clone())
            .collect()
    }
    fn stopped(&self) -> Vec<String> {
        self.rt.stopped.lock().unwrap().clone()
    }
    /// The event sink the runtime got for `arn`.
    fn sink(&self, arn: &str) -> crate::runtime::EventSink {
        self.rt
            .started
            .lock()
            .unwrap()
            .iter()
            .find(|(p, _)| p.task_arn == arn)
            .map(|(_, s)| s.clone())
            .unwrap_or_else(|| panic!("{} never started {arn}", self.name))
    }
    fn assign(&self) -> assign::Work {
        assign::pass(self.core()).unwrap()
    }
    fn heartbeat(&self) {
        hosts::heartbeat(self.core()).unwrap();
    }
}

/// Opens a replica over `store`.
fn replica(store: &Arc<Store>, nets: &Arc<FakeNetworks>, name: &'static str, o: &Opts) -> Replica {
    let mut cfg = EcsConfig::new("us-east-1", "000000000000");
    cfg.scheduler_interval = None;
    cfg.fleet = true;
    cfg.host = o.size.map(|(cpu, mem)| HostConfig {
        cpu_overcommit: o.ratios.0,
        memory_overcommit: o.ratios.1,
        subnet: o.subnet.map(|s| s.parse().unwrap()),
        ..HostConfig::new(name, cpu, mem)
    });
    cfg.timings.heartbeat = None;
    cfg.timings.assign_every = o.assign_every;
    cfg.timings.host_ttl = o.host_ttl;
    cfg.timings.scheduler_ttl = o.scheduler_ttl;
    cfg.timings.scheduler_renew = Duration::from_millis(20);
    cfg.timings.scheduler_try = Duration::ZERO;
    let rt = Arc::new(FakeRuntime::default());
    let svc = EcsService::new(
        cfg,
        store.clone(),
        rt.clone(),
        Arc::new(FakeKeys),
        nets.clone(),
    )
    .unwrap();
    Replica {
        name,
        rt,
        svc: Arc::new(svc),
    }
}

/// Which store the replicas share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Redb,
    Postgres,
}

/// Where the replicas' stores come from.
enum Backing {
    /// The directory is kept for the store's file.
    Redb(Arc<Store>, #[allow(dead_code)] tempfile::TempDir),
    Postgres(ferry_store::testing::TempPostgres),
}

impl Backing {
    fn new(kind: Kind) -> Self {
        match kind {
            Kind::Redb => {
                let dir = tempfile::tempdir().unwrap();
                let store = Arc::new(Store::open(&dir.path().join("state.redb")).unwrap());
                Backing::Redb(store, dir)
            }
            Kind::Postgres => Backing::Postgres(ferry_store::testing::TempPostgres::new()),
        }
    }

    /// A replica's store: the one embedded store, or a connection of its
    /// own to the database.
    fn store(&self) -> Arc<Store> {
        match self {
            Backing::Redb(s, _) => s.clone(),
            Backing::Postgres(pg) => Arc::new(Store::connect(&pg.url()).unwrap()),
        }
    }
}

struct Fleet {
    // Dropped last: the replicas' stores are connections to it.
    store: Arc<Store>,
    nets: Arc<FakeNetworks>,
    a: Replica,
    b: Replica,
    backing: Backing,
}

fn fleet(kind: Kind, a: Opts, b: Opts) -> Fleet {
    let backing = Backing::new(kind);
    let nets = Arc::new(FakeNetworks::default());
    let a = replica(&backing.store(), &nets, "a", &a);
    let b = replica(&backing.store(), &nets, "b", &b);
    a.ok("RegisterTaskDefinition", source_doc());
    Fleet {
        store: backing.store(),
        nets,
        a,
        b,
        backing,
    }
}

impl Fleet {
    fn task(&self, arn: &str) -> TaskRecord {
        let id = arn.rsplit('/').next().unwrap();
        self.store
            .get(db::TASKS, &db::task_key("default", id))
            .unwrap()
            .unwrap()
    }
    fn tasks(&self) -> Vec<TaskRecord> {
        self.store
            .scan::<TaskRecord>(db::TASKS, "")
            .unwrap()
            .into_iter()
            .map(|(_, t)| t)
            .collect()
    }
    fn live_on(&self, host: &str) -> usize {
        self.tasks()
            .iter()
            .filter(|t| t.host == host && t.last_status != TaskStatus::Stopped)
            .count()
    }
    fn service(&self, name: &str) -> ServiceRecord {
        self.store
            .get(db::SERVICES, &db::service_key("default", name))
            .unwrap()
            .unwrap()
    }
}

fn run(subnets: &[&str], count: u32) -> Value {
    json!({
        "taskDefinition": "fargate-task-definition", "launchType": "FARGATE",
        "count": count,
        "networkConfiguration": {"awsvpcConfiguration": {"subnets": subnets}}
    })
}

fn arns(r: &Value) -> Vec<String> {
    r["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["taskArn"].as_str().unwrap().to_owned())
        .collect()
}

fn service(name: &str, count: u32) -> Value {
    json!({
        "serviceName": name, "taskDefinition": "fargate-task-definition",
        "desiredCount": count, "launchType": "FARGATE",
        "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-1"]}}
    })
}

fn a_service_spreads_over_both_hosts_and_each_host_starts_its_own(kind: Kind) {
    let f = fleet(kind, Opts::default(), Opts::default());
    f.b.ok("CreateService", service("web", 6));
    // The first pass's holder launches; `a` asked first.
    scheduler::pass(f.a.core()).unwrap();
    scheduler::pass(f.b.core()).unwrap();
    assert_eq!((f.live_on("a"), f.live_on("b")), (3, 3));
    // a's own started at once (the fast path); b's wait for b.
    assert_eq!((f.a.started().len(), f.b.started().len()), (3, 0));
    assert_eq!(f.a.assign(), assign::Work::default());
    let w = f.b.assign();
    assert_eq!(w.started.len(), 3);
    let on_b: Vec<String> = f
        .tasks()
        .into_iter()
        .filter(|t| t.host == "b")
        .map(|t| t.arn().to_owned())
        .collect();
    let mut started = f.b.started();
    started.sort();
    let mut want = on_b.clone();
    want.sort();
    assert_eq!(started, want);
    // Never twice.
    assert_eq!(f.b.assign(), assign::Work::default());
    assert_eq!(f.a.started().len() + f.b.started().len(), 6);
    // b's runtime reports through its own sink; any replica reads it.
    let arn = &on_b[0];
    f.b.sink(arn)(TaskEvent::Provisioned {
        private_ip: "198.18.0.7".into(),
    });
    f.b.sink(arn)(TaskEvent::Running);
    assert_eq!(f.task(arn).last_status, TaskStatus::Running);
}

fn a_task_that_fits_nowhere_fails_with_the_resource_that_is_short(kind: Kind) {
    // 1024 CPU units and 1024 MiB each, no overcommit: 4 source tasks by
    // CPU, 2 by memory.
    let small = Opts {
        size: Some((1024, 1024)),
        ..Opts::default()
    };
    let f = fleet(kind, small.clone(), small);
    let r = f.a.ok("RunTask", run(&["subnet-1"], 5));
    assert_eq!(arns(&r).len(), 4);
    assert_eq!(r["failures"][0]["reason"], "RESOURCE:MEMORY");
    assert!(r["failures"][0].get("arn").is_none(), "{r}");
    let detail = r["failures"][0]["detail"].as_str().unwrap();
    assert!(detail.contains("512 MiB"), "{detail}");
    // A task bigger than any host's CPU.
    let mut doc = source_doc();
    doc["family"] = "big".into();
    doc["cpu"] = "2048".into();
    doc["memory"] = "4096".into();
    f.a.ok("RegisterTaskDefinition", doc);
    let mut body = run(&["subnet-1"], 1);
    body["taskDefinition"] = "big".into();
    let r = f.b.ok("RunTask", body);
    assert!(arns(&r).is_empty());
    assert_eq!(r["failures"][0]["reason"], "RESOURCE:CPU");
    assert!(
        r["failures"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("2048 CPU units")
    );
    // No task record and no ENI left by a refused task.
    assert_eq!(f.tasks().len(), 4);
    assert_eq!(
        f.nets.attached.lock().unwrap().len() - f.nets.detached.lock().unwrap().len(),
        4
    );
    // A stopped task gives its capacity back.
    let first = f.tasks()[0].clone();
    let owner = if first.host == "a" { &f.a } else { &f.b };
    owner.assign();
    owner.sink(first.arn())(TaskEvent::Stopped {
        stop_code: "EssentialContainerExited".into(),
        stopped_reason: "done".into(),
    });
    assert_eq!(arns(&f.a.ok("RunTask", run(&["subnet-1"], 1))).len(), 1);
}

fn two_launches_racing_for_the_last_capacity_cannot_both_have_it(kind: Kind) {
    // Room for exactly one source task in the whole fleet (b is an API
    // replica only).
    let f = fleet(
        kind,
        Opts {
            size: Some((256, 512)),
            ..Opts::default()
        },
        Opts {
            size: None,
            ..Opts::default()
        },
    );
    for round in 0..3 {
        // Both launches make their first choice and their ENI before
        // either records its task.
        *f.nets.gate.lock().unwrap() = Some(Arc::new(Barrier::new(2)));
        let (a, b) = (f.a.svc.clone(), f.b.svc.clone());
        let go = |svc: Arc<EcsService>| {
            std::thread::spawn(move || {
                let body = serde_json::to_vec(&run(&["subnet-1"], 1)).unwrap();
                svc.call(&ctx(), "RunTask", &body).unwrap()
            })
        };
        let (ra, rb) = (go(a), go(b));
        let (ra, rb) = (ra.join().unwrap(), rb.join().unwrap());
        *f.nets.gate.lock().unwrap() = None;
        let won: Vec<String> = arns(&ra).into_iter().chain(arns(&rb)).collect();
        assert_eq!(won.len(), 1, "round {round}: {ra} {rb}");
        let failures: Vec<&Value> = ra["failures"]
            .as_array()
            .unwrap()
            .iter()
            .chain(rb["failures"].as_array().unwrap())
            .collect();
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0]["reason"], "RESOURCE:CPU");
        // The loser's ENI went back.
        let attached = f.nets.attached.lock().unwrap().len();
        let detached = f.nets.detached.lock().unwrap().len();
        assert_eq!(attached - detached, 1, "round {round}");
        // Free the capacity for the next round.
        f.a.assign();
        f.a.sink(&won[0])(TaskEvent::Stopped {
            stop_code: "EssentialContainerExited".into(),
            stopped_reason: "done".into(),
        });
    }
}

/// A fleet whose host a has no room, and a task RunTask through a placed
/// on b.
fn a_task_placed_on_b(kind: Kind) -> (Fleet, String) {
    let f = fleet(
        kind,
        Opts {
            size: Some((128, 128)),
            ..Opts::default()
        },
        Opts::default(),
    );
    let arn = arns(&f.a.ok("RunTask", run(&["subnet-1"], 1))).remove(0);
    assert_eq!(f.task(&arn).host, "b");
    (f, arn)
}

fn another_hosts_task_is_started_and_stopped_by_that_host_only(kind: Kind) {
    let (f, arn) = a_task_placed_on_b(kind);
    assert_eq!(f.task(&arn).last_status, TaskStatus::Provisioning);
    assert!(f.a.started().is_empty());
    assert_eq!(f.a.assign(), assign::Work::default());
    assert_eq!(f.b.assign().started, std::slice::from_ref(&arn));
    assert_eq!(f.b.started(), std::slice::from_ref(&arn));
    // StopTask through a: recorded, carried out by b.
    let s = f.a.ok("StopTask", json!({"task": arn}));
    assert_eq!(s["task"]["desiredStatus"], "STOPPED");
    assert!(f.a.stopped().is_empty());
    assert_eq!(f.b.assign().stopped, std::slice::from_ref(&arn));
    assert_eq!(f.b.stopped(), std::slice::from_ref(&arn));
    // Once.
    assert_eq!(f.b.assign(), assign::Work::default());
    f.b.sink(&arn)(TaskEvent::Stopped {
        stop_code: "UserInitiated".into(),
        stopped_reason: "Task stopped by user".into(),
    });
    assert_eq!(f.task(&arn).last_status, TaskStatus::Stopped);
    assert_eq!(f.b.assign(), assign::Work::default());
    assert!(
        !f.b.core()
            .local
            .held
            .contains(&db::task_key("default", arn.rsplit('/').next().unwrap()))
    );
    // A task stopped before its host started it is finished by its host,
    // with nothing started.
    let arn = arns(&f.a.ok("RunTask", run(&["subnet-1"], 1))).remove(0);
    f.a.ok("StopTask", json!({"task": arn}));
    let w = f.b.assign();
    assert!(w.started.is_empty() && w.stopped.is_empty());
    assert_eq!(w.finished.len(), 1);
    let t = f.task(&arn);
    assert_eq!(
        (t.last_status, t.stop_code.as_deref()),
        (TaskStatus::Stopped, Some("UserInitiated"))
    );
    assert_eq!(f.b.started().len(), 1);
}

fn hosts_with_a_subnet_take_tasks_of_their_subnets_only(kind: Kind) {
    let f = fleet(
        kind,
        Opts {
            subnet: Some("10.1.0.0/16"),
            ..Opts::default()
        },
        Opts {
            subnet: Some("10.2.0.0/16"),
            ..Opts::default()
        },
    );
    let arn = arns(&f.a.ok("RunTask", run(&["subnet-10-2"], 1))).remove(0);
    let t = f.task(&arn);
    assert_eq!(
        (t.host.as_str(), t.subnet_id.as_str()),
        ("b", "subnet-10-2")
    );
    // Both subnets: spread, each ENI in its host's subnet.
    let r = f.b.ok("RunTask", run(&["subnet-10-1", "subnet-10-2"], 4));
    for arn in arns(&r) {
        let t = f.task(&arn);
        let want = if t.host == "a" {
            "subnet-10-1"
        } else {
            "subnet-10-2"
        };
        assert_eq!(t.subnet_id, want, "{}", t.host);
    }
    // b had one: a, a (tie: by name), b, a.
    assert_eq!((f.live_on("a"), f.live_on("b")), (3, 2));
    // A subnet no host serves.
    let r = f.a.ok("RunTask", run(&["subnet-10-3"], 1));
    assert!(arns(&r).is_empty());
    assert_eq!(r["failures"][0]["reason"], "RESOURCE:ENI");
    assert!(
        r["failures"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("subnet-10-3")
    );
}

fn the_scheduler_runs_on_one_replica_and_another_takes_over_when_it_stops(kind: Kind) {
    let ttl = Duration::from_millis(400);
    let o = Opts {
        scheduler_ttl: ttl,
        ..Opts::default()
    };
    let f = fleet(kind, o.clone(), o);
    f.a.ok("CreateService", service("web", 2));
    let la = leader::tick(f.a.core()).expect("a takes the lease first");
    assert!(leader::tick(f.b.core()).is_none());
    // b's pass does nothing; a's launches.
    scheduler::pass(f.b.core()).unwrap();
    assert!(f.tasks().is_empty());
    scheduler::pass(f.a.core()).unwrap();
    assert_eq!(f.tasks().len(), 2);
    assert!(leader::is_leader(f.a.core()) && !leader::is_leader(f.b.core()));
    // a stops renewing (paused, or killed): b takes over within the lease.
    let stopped_at = Instant::now();
    let lb = loop {
        if let Some(l) = leader::tick(f.b.core()) {
            break l;
        }
        assert!(stopped_at.elapsed() < ttl * 3, "b never took the lease");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(stopped_at.elapsed() <= ttl + Duration::from_millis(200));
    let (ea, eb) = (la.0.unwrap().epoch, lb.0.unwrap().epoch);
    assert!(eb > ea, "{ea} {eb}");
    // b now keeps the service: a task that stops is replaced by b's pass.
    let first = f.tasks()[0].clone();
    let owner = if first.host == "a" { &f.a } else { &f.b };
    owner.assign();
    owner.sink(first.arn())(TaskEvent::Stopped {
        stop_code: "EssentialContainerExited".into(),
        stopped_reason: "gone".into(),
    });
    scheduler::pass(f.b.core()).unwrap();
    let live = f
        .tasks()
        .iter()
        .filter(|t| t.last_status != TaskStatus::Stopped)
        .count();
    assert_eq!(live, 2);
    // And a, back, is not the holder.
    assert!(leader::tick(f.a.core()).is_none());
}

fn a_paused_ex_holder_cannot_launch(kind: Kind) {
    let ttl = Duration::from_millis(200);
    let o = Opts {
        scheduler_ttl: ttl,
        ..Opts::default()
    };
    let f = fleet(kind, o.clone(), o);
    f.a.ok("CreateService", service("web", 2));
    // a holds the lease, then pauses past it; b takes over.
    let old = leader::tick(f.a.core()).unwrap();
    std::thread::sleep(ttl + Duration::from_millis(50));
    assert!(leader::tick(f.b.core()).is_some());
    // a wakes up and runs the pass it had begun, with its old fence.
    let err = scheduler::pass_as(f.a.core(), &old).unwrap_err();
    assert_eq!(err.code(), "ServerException");
    assert!(err.to_string().contains("no longer holds"), "{err}");
    assert!(f.tasks().is_empty(), "the ex-holder launched");
    // Its ENIs went back.
    let attached = f.nets.attached.lock().unwrap().len();
    assert_eq!(f.nets.detached.lock().unwrap().len(), attached);
    // Nothing of its pass was written to the service either.
    assert!(f.service("web").tracked.is_empty());
    // The holder launches once.
    scheduler::pass(f.b.core()).unwrap();
    assert_eq!(f.tasks().len(), 2);
}

fn a_lost_hosts_tasks_are_stopped_and_replaced_and_it_stops_them_when_back(kind: Kind) {
    let o = Opts {
        host_ttl: Duration::from_millis(600),
        ..Opts::default()
    };
    let f = fleet(kind, o.clone(), o);
    f.a.ok("CreateService", service("web", 4));
    scheduler::pass(f.a.core()).unwrap();
    f.b.assign();
    assert_eq!((f.live_on("a"), f.live_on("b")), (2, 2));
    // One of b's runs, one is still being set up.
    let on_b: Vec<TaskRecord> = f.tasks().into_iter().filter(|t| t.host == "b").collect();
    f.b.sink(on_b[0].arn())(TaskEvent::Running);
    // b goes silent; a keeps heartbeating.
    let lead = leader::tick(f.a.core()).unwrap();
    f.b.heartbeat();
    f.a.heartbeat();
    std::thread::sleep(Duration::from_millis(250));
    f.a.heartbeat();
    assert_eq!(hosts::check_lost(f.a.core(), &lead).unwrap(), 0);
    std::thread::sleep(Duration::from_millis(450));
    f.a.heartbeat();
    assert_eq!(hosts::check_lost(f.a.core(), &lead).unwrap(), 2);
    for t in &on_b {
        let t = f.task(t.arn());
        assert_eq!(t.last_status, TaskStatus::Stopped);
        assert_eq!(
            t.stopped_reason.as_deref(),
            Some("Host ferry-agent b stopped responding (no heartbeat for 600 ms)")
        );
    }
    assert_eq!(
        f.task(on_b[0].arn()).stop_code.as_deref(),
        Some("EssentialContainerExited")
    );
    assert_eq!(
        f.task(on_b[1].arn()).stop_code.as_deref(),
        Some("TaskFailedToStart")
    );
    // Their ENIs were freed.
    let detached = f.nets.detached.lock().unwrap().clone();
    for t in &on_b {
        assert!(detached.contains(&t.eni_id));
    }
    // The service replaces them on the live host, without counting them as
    // failed starts.
    scheduler::pass(f.a.core()).unwrap();
    assert_eq!((f.live_on("a"), f.live_on("b")), (4, 0));
    let svc = f.service("web");
    assert_eq!(svc.consecutive_failures, 0);
    assert_eq!(svc.deployments[0].failed_tasks, 0);
    // b comes back: it stops what the control plane gave up on (its
    // runtime then shreds their volumes), and starts nothing.
    f.b.heartbeat();
    let w = f.b.assign();
    assert!(w.started.is_empty());
    let mut stopped = w.stopped.clone();
    stopped.sort();
    let mut want: Vec<String> = on_b.iter().map(|t| t.arn().to_owned()).collect();
    want.sort();
    assert_eq!(stopped, want);
    assert_eq!(hosts::check_lost(f.a.core(), &lead).unwrap(), 0);
    // New tasks may go to b again.
    f.a.ok(
        "UpdateService",
        json!({"service": "web", "desiredCount": 8}),
    );
    scheduler::pass(f.a.core()).unwrap();
    assert!(f.live_on("b") > 0);
}

fn an_update_through_another_replica_during_a_pass_is_not_lost(kind: Kind) {
    let f = fleet(kind, Opts::default(), Opts::default());
    f.a.ok("CreateService", service("web", 2));
    // While a's pass launches (between its read of the service and its
    // write), the service is updated through b.
    let b = f.b.svc.clone();
    *f.nets.on_attach.lock().unwrap() = Some(Box::new(move || {
        let body = json!({"service": "web", "desiredCount": 5,
                          "deploymentConfiguration": {"maximumPercent": 300}});
        b.call(&ctx(), "UpdateService", &serde_json::to_vec(&body).unwrap())
            .unwrap();
    }));
    scheduler::pass(f.a.core()).unwrap();
    let svc = f.service("web");
    // b's update stands...
    assert_eq!((svc.desired_count, svc.maximum_percent), (5, 300));
    assert_eq!(svc.deployments[0].desired_count, 5);
    // ...and so does the pass's work: its event and the tasks it tracks.
    assert_eq!(svc.tracked.len(), 2);
    assert!(
        svc.events
            .iter()
            .any(|e| e.message.contains("has started 2 tasks")),
        "{:?}",
        svc.events
    );
    // The next pass acts on the update.
    scheduler::pass(f.a.core()).unwrap();
    assert_eq!(f.service("web").tracked.len(), 5);
}

fn a_pass_merges_its_own_changes_onto_a_record_written_meanwhile(kind: Kind) {
    let f = fleet(kind, Opts::default(), Opts::default());
    f.a.ok("CreateService", service("web", 1));
    let before = f.service("web");
    // What a pass made of it: an event, a tracked task, a backoff, the
    // rollout completed.
    let mut after = before.clone();
    after.event(1.0, "(service web) has started 1 tasks: (task t1).".into());
    after.tracked.push("t1".into());
    after.next_launch_at = 99.0;
    after.deployments[0].rollout_state = "COMPLETED".into();
    // What an UpdateService wrote meanwhile: a new deployment, a new
    // desired count, the backoff reset.
    f.b.ok(
        "UpdateService",
        json!({"service": "web", "desiredCount": 4, "forceNewDeployment": true}),
    );
    let fresh = f.service("web");
    assert_eq!(fresh.version, before.version + 1);
    let m = scheduler::merge(&before, &after, fresh.clone());
    assert_eq!(m.desired_count, 4);
    assert_eq!(m.deployments.len(), 2);
    assert_eq!(m.deployments[0].id, fresh.deployments[0].id);
    assert_eq!(m.deployments[0].rollout_state, "IN_PROGRESS");
    // The old deployment (now ACTIVE) takes the pass's rollout state.
    assert_eq!(m.deployments[1].rollout_state, "COMPLETED");
    assert_eq!(m.tracked, ["t1"]);
    assert!(m.events[0].message.contains("has started 1 tasks"));
    assert_eq!(m.events.len(), fresh.events.len() + 1);
    // The update reset the backoff: its value stands.
    assert_eq!(m.next_launch_at, 0.0);
    // A task the pass stopped tracking leaves; one it never knew stays.
    let mut fresh2 = fresh.clone();
    fresh2.tracked = vec!["t0".into(), "x".into()];
    let mut before2 = before.clone();
    before2.tracked = vec!["t0".into()];
    let mut after2 = before2.clone();
    after2.tracked = vec![];
    let m = scheduler::merge(&before2, &after2, fresh2);
    assert_eq!(m.tracked, ["x"]);
}

fn each_replica_reconciles_only_its_own_hosts_tasks(kind: Kind) {
    let f = fleet(kind, Opts::default(), Opts::default());
    f.a.ok("RunTask", run(&["subnet-1"], 4));
    f.b.assign();
    let store = f.store.clone();
    let nets = f.nets.clone();
    let (on_a, on_b) = (f.live_on("a"), f.live_on("b"));
    assert_eq!((on_a, on_b), (2, 2));
    // b restarts; its runtime has nothing left: only b's tasks are
    // offered and recorded gone.
    drop(f.b);
    let b = replica(&f.backing.store(), &nets, "b", &Opts::default());
    assert_eq!(b.svc.reconciled().lost, 2);
    let tasks: Vec<TaskRecord> = store
        .scan::<TaskRecord>(db::TASKS, "")
        .unwrap()
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    for t in tasks {
        let stopped = t.last_status == TaskStatus::Stopped;
        assert_eq!(stopped, t.host == "b", "{}", t.host);
    }
}

fn the_loop_thread_starts_and_stops_another_replicas_task_soon(kind: Kind) {
    let f = fleet(
        kind,
        Opts {
            size: Some((128, 128)),
            ..Opts::default()
        },
        Opts {
            assign_every: Some(Duration::from_millis(100)),
            ..Opts::default()
        },
    );
    let within = |what: &str, done: &dyn Fn() -> bool| {
        let t0 = Instant::now();
        while !done() {
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "{what} took too long"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    for _ in 0..2 {
        let arn = arns(&f.a.ok("RunTask", run(&["subnet-1"], 1))).remove(0);
        within("the start", &|| f.b.started().contains(&arn));
        f.a.ok("StopTask", json!({"task": arn}));
        within("the stop", &|| f.b.stopped().contains(&arn));
        f.b.sink(&arn)(TaskEvent::Stopped {
            stop_code: "UserInitiated".into(),
            stopped_reason: "Task stopped by user".into(),
        });
    }
    // Each once.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!((f.b.started().len(), f.b.stopped().len()), (2, 2));
}

#[test]
fn on_a_single_host_store_tasks_from_before_hosts_are_the_local_hosts() {
    use crate::tests::{env_with, run_body};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let arn;
    {
        let e = env_with(dir, FakeRuntime::default());
        e.ok("RegisterTaskDefinition", source_doc());
        arn = e.run_one();
        // As a server from before hosts wrote it: no host, no reservation.
        let key = db::task_key("default", arn.rsplit('/').next().unwrap());
        let mut t: TaskRecord = e.store.get(db::TASKS, &key).unwrap().unwrap();
        t.host.clear();
        e.store.put(db::TASKS, &key, &t).unwrap();
        e.store
            .delete(db::PLACEMENTS, &db::placement_key("local", &key))
            .unwrap();
        drop(e.svc);
        std::mem::forget(e._dir);
    }
    // The next start (another name even) adopts it and counts it.
    let store = Arc::new(Store::open(&path.join("state.redb")).unwrap());
    let rt = Arc::new(FakeRuntime {
        adopt: true,
        ..FakeRuntime::default()
    });
    let mut cfg = EcsConfig::new("us-east-1", "000000000000");
    cfg.scheduler_interval = None;
    cfg.timings.assign_every = None;
    // Room for two source tasks: the old one and one more.
    cfg.host = Some(HostConfig {
        cpu_overcommit: 1.0,
        memory_overcommit: 1.0,
        ..HostConfig::new("renamed", 512, 1024)
    });
    let svc = EcsService::new(
        cfg,
        store.clone(),
        rt.clone(),
        Arc::new(FakeKeys),
        Arc::new(FakeNetworks::default()),
    )
    .unwrap();
    assert_eq!(svc.reconciled().adopted, 1);
    let call = |body: Value| {
        svc.call(&ctx(), "RunTask", &serde_json::to_vec(&body).unwrap())
            .unwrap()
    };
    assert_eq!(arns(&call(run_body())).len(), 1);
    let r = call(run_body());
    assert_eq!(r["failures"][0]["reason"], "RESOURCE:CPU", "{r}");
    // StopTask of the old task reaches this runtime.
    svc.call(
        &ctx(),
        "StopTask",
        &serde_json::to_vec(&json!({"task": arn})).unwrap(),
    )
    .unwrap();
    assert!(rt.stopped.lock().unwrap().contains(&arn));
    let _ = std::fs::remove_dir_all(&path);
}

/// The agent API's extras: host `r`'s agent key is `AKIAR`.
struct Support;

impl crate::agents::AgentSupport for Support {
    fn host_of_key(&self, access_key_id: &str) -> Option<String> {
        (access_key_id == "AKIAR").then(|| "r".to_owned())
    }
    fn firewall_rules(&self) -> ferry_proto::net::FirewallRules {
        ferry_proto::net::FirewallRules::default()
    }
    fn open_log_stream(&self, _: &str, _: &str, _: bool) -> Result<(), ferry_proto::AwsError> {
        Ok(())
    }
    fn put_log_lines(
        &self,
        _: &str,
        _: &str,
        _: &[crate::agents::wire::LogLine],
    ) -> Result<(), ferry_proto::AwsError> {
        Ok(())
    }
}

fn agent_ctx(key: &str) -> ferry_proto::RequestContext {
    let mut caller = ferry_proto::Caller::service("000000000000", "fargate.amazonaws.com");
    caller.access_key_id = Some(key.to_owned());
    ferry_proto::RequestContext::internal(caller, "us-east-1")
}

fn a_remote_agent_registers_polls_runs_and_stops_its_tasks(kind: Kind) {
    use crate::agents::{AgentApi, wire::*};
    let f = fleet(
        kind,
        Opts::default(),
        Opts {
            size: None,
            ..Opts::default()
        },
    );
    let api = AgentApi::new(f.b.core().clone(), Arc::new(Support));
    let call = |key: &str, op: &str, body: Value| {
        api.call(&agent_ctx(key), op, &serde_json::to_vec(&body).unwrap())
    };
    let register = json!({"name": "r", "cpuUnits": 4096, "memoryMib": 16384,
        "cpuOvercommit": 1.0, "memoryOvercommit": 1.0, "instance": "r#1", "version": "test"});
    // Another host's key, and a key that is no agent's, are refused.
    let mut other = register.clone();
    other["name"] = "a".into();
    assert_eq!(
        call("AKIAR", "RegisterAgent", other).unwrap_err().code,
        "AccessDeniedException"
    );
    assert_eq!(
        call("AKIAX", "RegisterAgent", register.clone())
            .unwrap_err()
            .code,
        "AccessDeniedException"
    );
    let reg: RegisterAgentResponse =
        serde_json::from_value(call("AKIAR", "RegisterAgent", register).unwrap()).unwrap();
    assert!(reg.tasks.is_empty());
    assert_eq!(reg.account_id, "000000000000");

    // Placement spreads over the local host `a` and the remote host `r`.
    let r = f.a.ok("RunTask", run(&["subnet-1"], 4));
    assert_eq!(arns(&r).len(), 4);
    assert_eq!((f.live_on("a"), f.live_on("r")), (2, 2));
    let on_r: Vec<String> = f
        .tasks()
        .into_iter()
        .filter(|t| t.host == "r")
        .map(|t| t.arn().to_owned())
        .collect();
    let poll = |held: Vec<(String, bool)>| -> PollAgentResponse {
        let held: Vec<Value> = held
            .into_iter()
            .map(|(a, d)| json!({"taskArn": a, "done": d}))
            .collect();
        serde_json::from_value(
            call(
                "AKIAR",
                "PollAgent",
                json!({"name": "r", "instance": "r#1", "held": held}),
            )
            .unwrap(),
        )
        .unwrap()
    };
    let p = poll(vec![]);
    let mut started: Vec<String> = p.start.iter().map(|p| p.task_arn.clone()).collect();
    started.sort();
    let mut want = on_r.clone();
    want.sort();
    assert_eq!(started, want);
    assert!(!p.replaced);
    // Held: not started again.
    let held: Vec<(String, bool)> = on_r.iter().map(|a| (a.clone(), false)).collect();
    assert!(poll(held.clone()).start.is_empty());
    // Events reach the record.
    let report = |arn: &str, ev: TaskEvent| {
        call(
            "AKIAR",
            "ReportTaskEvents",
            json!({"name": "r", "events": [{"taskArn": arn, "event": ev}]}),
        )
        .unwrap();
    };
    report(
        &on_r[0],
        TaskEvent::Provisioned {
            private_ip: "198.18.0.9".into(),
        },
    );
    report(&on_r[0], TaskEvent::Running);
    assert_eq!(f.task(&on_r[0]).last_status, TaskStatus::Running);
    // An event for host a's task is skipped.
    let on_a = f.tasks().into_iter().find(|t| t.host == "a").unwrap();
    report(on_a.arn(), TaskEvent::Running);
    assert_ne!(f.task(on_a.arn()).last_status, TaskStatus::Running);
    // A stop through replica a reaches the agent at its next poll; its
    // `Stopped` finishes the task; then it is forgotten.
    f.a.ok("StopTask", json!({"task": on_r[0]}));
    let p = poll(held.clone());
    assert_eq!(p.stop.len(), 1);
    assert_eq!(p.stop[0].task_arn, on_r[0]);
    assert_eq!(p.stop[0].stop_code, "UserInitiated");
    report(
        &on_r[0],
        TaskEvent::Stopped {
            stop_code: "UserInitiated".into(),
            stopped_reason: "stopped".into(),
        },
    );
    assert_eq!(f.task(&on_r[0]).last_status, TaskStatus::Stopped);
    let p = poll(vec![(on_r[0].clone(), true), (on_r[1].clone(), false)]);
    assert_eq!(p.forget, vec![on_r[0].clone()]);
    assert_eq!(p.tasks.len(), 1, "the view has the live task only");
    // The registration was replaced: the old process hears it.
    let again = json!({"name": "r", "cpuUnits": 4096, "memoryMib": 16384,
        "cpuOvercommit": 1.0, "memoryOvercommit": 1.0, "instance": "r#2", "version": "test"});
    let reg: RegisterAgentResponse =
        serde_json::from_value(call("AKIAR", "RegisterAgent", again).unwrap()).unwrap();
    assert_eq!(
        reg.tasks.len(),
        1,
        "the live task is offered for re-adoption"
    );
    assert!(poll(vec![]).replaced);
}

fn tasks_with_a_task_role_stay_off_remote_agents(kind: Kind) {
    let f = fleet(
        kind,
        Opts::default(),
        Opts {
            size: None,
            ..Opts::default()
        },
    );
    let api = crate::agents::AgentApi::new(f.b.core().clone(), Arc::new(Support));
    let register = json!({"name": "r", "cpuUnits": 65536, "memoryMib": 262144,
        "cpuOvercommit": 1.0, "memoryOvercommit": 1.0, "instance": "r#1", "version": "test"});
    api.call(
        &agent_ctx("AKIAR"),
        "RegisterAgent",
        &serde_json::to_vec(&register).unwrap(),
    )
    .unwrap();
    let mut doc = source_doc();
    doc["family"] = "with-role".into();
    doc["taskRoleArn"] = "arn:aws:iam::000000000000:role/app".into();
    f.a.ok("RegisterTaskDefinition", doc);
    let mut req = run(&["subnet-1"], 4);
    req["taskDefinition"] = "with-role".into();
    let r = f.a.ok("RunTask", req);
    assert_eq!(arns(&r).len(), 4);
    // (They may have stopped since: the test has no role sessions.)
    let hosts: Vec<String> = f.tasks().into_iter().map(|t| t.host).collect();
    assert_eq!(hosts, vec!["a".to_owned(); 4]);
}

fn a_remote_agent_cut_off_is_lost_and_told_to_stop_when_it_polls_again(kind: Kind) {
    use crate::agents::{AgentApi, wire::*};
    let o = Opts {
        host_ttl: Duration::from_millis(600),
        ..Opts::default()
    };
    let f = fleet(kind, o.clone(), Opts { size: None, ..o });
    let api = AgentApi::new(f.b.core().clone(), Arc::new(Support));
    let call = |op: &str, body: Value| {
        api.call(&agent_ctx("AKIAR"), op, &serde_json::to_vec(&body).unwrap())
            .unwrap()
    };
    call(
        "RegisterAgent",
        json!({"name": "r", "cpuUnits": 65536, "memoryMib": 262144,
        "cpuOvercommit": 1.0, "memoryOvercommit": 1.0, "instance": "r#1", "version": "test"}),
    );
    f.a.heartbeat();
    f.a.ok("RunTask", run(&["subnet-1"], 2));
    let on_r: Vec<String> = f
        .tasks()
        .into_iter()
        .filter(|t| t.host == "r")
        .map(|t| t.arn().to_owned())
        .collect();
    assert_eq!(on_r.len(), 1);
    let poll = |held: Value| -> PollAgentResponse {
        serde_json::from_value(call(
            "PollAgent",
            json!({"name": "r", "instance": "r#1", "held": held}),
        ))
        .unwrap()
    };
    assert_eq!(poll(json!([])).start.len(), 1);
    let lead = leader::tick(f.a.core()).unwrap();
    std::thread::sleep(Duration::from_millis(700));
    f.a.heartbeat();
    assert_eq!(hosts::check_lost(f.a.core(), &lead).unwrap(), 1);
    assert_eq!(f.task(&on_r[0]).last_status, TaskStatus::Stopped);
    // Back: it still runs the task; it is told to stop it.
    let p = poll(json!([{"taskArn": on_r[0], "done": false}]));
    assert_eq!(p.stop.len(), 1, "{p:?}");
    assert!(
        p.stop[0]
            .reason
            .starts_with("Host ferry-agent r stopped responding"),
        "{p:?}"
    );
    assert!(p.start.is_empty() && p.tasks.is_empty(), "{p:?}");
    // Once its runtime is done, it forgets it.
    assert_eq!(
        poll(json!([{"taskArn": on_r[0], "done": true}])).forget,
        on_r
    );
}

/// File systems `fs-...a` live on host a, `fs-...b` on b.
struct FsHosts;

impl hosts::FileSystemHosts for FsHosts {
    fn host_of(&self, id: &str) -> Option<String> {
        id.strip_prefix("fs-0123456789abcdef")
            .filter(|h| ["a", "b"].contains(h))
            .map(str::to_owned)
    }
}

fn tasks_that_mount_a_file_system_run_on_its_host(kind: Kind) {
    let f = fleet(kind, Opts::default(), Opts::default());
    let _ = f.a.core().file_system_hosts.set(Arc::new(FsHosts));
    let with_fs = |family: &str, ids: &[&str]| {
        let mut doc = source_doc();
        doc["family"] = family.into();
        doc["volumes"] = ids
            .iter()
            .enumerate()
            .map(|(i, id)| json!({"name": format!("v{i}"), "efsVolumeConfiguration": {"fileSystemId": id}}))
            .collect();
        f.a.ok("RegisterTaskDefinition", doc);
    };
    with_fs("on-b", &["fs-0123456789abcdefb"]);
    let mut req = run(&["subnet-1"], 4);
    req["taskDefinition"] = "on-b".into();
    assert_eq!(arns(&f.a.ok("RunTask", req)).len(), 4);
    let hosts: Vec<String> = f.tasks().into_iter().map(|t| t.host).collect();
    assert_eq!(hosts, vec!["b".to_owned(); 4]);
    // On two hosts: no host can run it.
    with_fs("split", &["fs-0123456789abcdefa", "fs-0123456789abcdefb"]);
    let mut req = run(&["subnet-1"], 1);
    req["taskDefinition"] = "split".into();
    let e = f.a.call("RunTask", req).unwrap_err();
    assert_eq!(e.code, "InvalidParameterException");
    assert!(e.message.contains("different hosts"), "{}", e.message);
}

/// Each test over both stores.
macro_rules! over_both {
    ($($name:ident),* $(,)?) => {
        mod redb {
            $(#[test]
            fn $name() {
                super::$name(super::Kind::Redb)
            })*
        }
        mod postgres {
            $(#[test]
            fn $name() {
                super::$name(super::Kind::Postgres)
            })*
        }
    };
}

over_both!(
    a_service_spreads_over_both_hosts_and_each_host_starts_its_own,
    a_task_that_fits_nowhere_fails_with_the_resource_that_is_short,
    two_launches_racing_for_the_last_capacity_cannot_both_have_it,
    another_hosts_task_is_started_and_stopped_by_that_host_only,
    hosts_with_a_subnet_take_tasks_of_their_subnets_only,
    the_scheduler_runs_on_one_replica_and_another_takes_over_when_it_stops,
    a_paused_ex_holder_cannot_launch,
    a_lost_hosts_tasks_are_stopped_and_replaced_and_it_stops_them_when_back,
    an_update_through_another_replica_during_a_pass_is_not_lost,
    a_pass_merges_its_own_changes_onto_a_record_written_meanwhile,
    each_replica_reconciles_only_its_own_hosts_tasks,
    the_loop_thread_starts_and_stops_another_replicas_task_soon,
    a_remote_agent_registers_polls_runs_and_stops_its_tasks,
    tasks_with_a_task_role_stay_off_remote_agents,
    a_remote_agent_cut_off_is_lost_and_told_to_stop_when_it_polls_again,
    tasks_that_mount_a_file_system_run_on_its_host,
);

#[test]
fn after_resign_nothing_is_launched_or_started() {
    let (f, _) = a_task_placed_on_b(Kind::Redb);
    assert!(leader::tick(f.a.core()).is_some());
    f.a.ok("CreateService", service("web", 2));
    // Both shut down cleanly: a's scheduler launches nothing any more (a
    // service would replace the tasks a drain stops), b's loop starts
    // nothing.
    f.a.core().resign();
    f.b.core().resign();
    scheduler::pass(f.a.core()).unwrap();
    assert_eq!(f.tasks().len(), 1);
    assert_eq!(f.b.assign(), assign::Work::default());
    assert!(f.b.started().is_empty());
    // And the lease is free for another replica at once.
    assert!(
        f.store
            .leases(leader::SCHEDULER_LEASE)
            .unwrap()
            .iter()
            .all(|l| !l.live)
    );
}
