//! OCI bundle generation: a container plan plus its image config become a
//! runtime `config.json` (oci-spec types), Docker/ECS semantics:
//!
//! - args: `entryPoint` (else the image's Entrypoint) + `command` (else,
//!   unless `entryPoint` was given, the image's Cmd);
//! - env: the image's Env, then the task's `environment` overriding by name,
//!   then the resolved `secrets` (values only ever here and in the
//!   `config.json` on the task's encrypted volume);
//! - cwd: `workingDirectory`, else the image's WorkingDir, else `/`;
//! - user: `user` (else the image's User): `uid`, `uid:gid`, or names
//!   resolved in the image's /etc/passwd and /etc/group;
//! - namespaces: own pid/ipc/uts/mount, the task's network namespace by path;
//! - cgroup: `cgroupsPath` under the task's cgroup (limits are on the task);
//! - mounts: /proc, /dev, /sys (the runtime's defaults), the task's
//!   /etc/hosts, /etc/hostname and /etc/resolv.conf, and task volumes;
//! - user namespace (when the task has an id range): the task's, joined by
//!   path, container ids 0..65535 mapped to the task's host range, the
//!   rootfs by absolute path (see `userns`).

use std::path::{Path, PathBuf};

use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::{
    Arch, Capability, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDeviceCgroupBuilder,
    LinuxIdMappingBuilder, LinuxMemoryBuilder, LinuxNamespace, LinuxNamespaceType,
    LinuxResourcesBuilder, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder,
    LinuxSeccompBuilder, LinuxSeccompOperator, LinuxSyscallBuilder, Mount, MountBuilder,
    ProcessBuilder, RootBuilder, Spec, UserBuilder, get_default_mounts,
};

use ferry_proto::plan::ContainerPlan;
use zeroize::Zeroizing;

use crate::userns::{IdRange, RANGE_SIZE};

/// Why a container cannot be configured.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// Neither the task nor the image gives a command.
    #[error("no command specified for container {0}")]
    NoCommand(String),
    /// The user or group is not in the image.
    #[error("unable to find user {0}: no matching entries in passwd/group file")]
    UnknownUser(String),
    /// oci-spec refused a value.
    #[error("building the OCI spec: {0}")]
    Spec(#[from] oci_spec::OciSpecError),
    /// A kernel capability this runtime does not know.
    #[error("unknown kernel capability {0}")]
    UnknownCapability(String),
}

/// Host-side facts the spec needs.
#[derive(Debug)]
pub struct BundleInput<'a> {
    /// The container.
    pub container: &'a ContainerPlan,
    /// Its image's config.
    pub image: &'a ImageConfiguration,
    /// The unpacked image (for /etc/passwd and /etc/group).
    pub image_rootfs: &'a Path,
    /// The task's network namespace (`/run/netns/NAME`).
    pub netns: &'a Path,
    /// runc `cgroupsPath`.
    pub cgroups_path: String,
    /// The container's hostname.
    pub hostname: String,
    /// Directory holding the task's `hosts`, `hostname` and `resolv.conf`.
    pub etc_dir: &'a Path,
    /// Task volumes to bind: (host dir, container path, read-only).
    pub volumes: Vec<(PathBuf, String, bool)>,
    /// The task's user namespace, if it runs in one.
    pub userns: Option<BundleUserns>,
}

/// A container in the task's user namespace.
#[derive(Debug, Clone)]
pub struct BundleUserns {
    /// The task's host ids.
    pub ids: IdRange,
    /// The task's user namespace (joined by path: the task's containers
    /// share it, and it owns the task's network namespace).
    pub path: PathBuf,
    /// The rootfs as runc reaches it from inside the namespace (absolute;
    /// `userns::TaskView`).
    pub rootfs: PathBuf,
}

/// Docker's default capability set (what ECS containers get) less
/// NET_RAW: a task crafts no raw packets (and cannot ping) unless its
/// definition adds NET_RAW (docs/runtime.md, "Task networking").
const CAPS: &[Capability] = &[
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Syscalls refused (EPERM) on top of the capability set: kernel-global
/// state that is not namespaced (keyrings, modules, kexec, swap, accounting,
/// clock), and attack surface a web task does not need (bpf, userfaultfd,
/// perf). A deny list rather than Docker's long allow list: the
/// capability set already stops most of the rest.
const DENIED_SYSCALLS: &[&str] = &[
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "delete_module",
    "finit_module",
    "init_module",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "open_by_handle_at",
    "perf_event_open",
    "quotactl",
    "reboot",
    "request_key",
    "settimeofday",
    "swapoff",
    "swapon",
    "userfaultfd",
    // Namespaces and mounts: what Docker's default profile refuses a
    // container without CAP_SYS_ADMIN (`unshare -Ur` would otherwise make
    // a user namespace with a root of its own). clone's namespace flags are
    // refused below.
    "mount",
    "pivot_root",
    "setns",
    "umount2",
    "unshare",
];

/// clone(2) flags that make new namespaces (linux/sched.h).
const CLONE_NAMESPACE_FLAGS: &[u64] = &[
    0x0002_0000, // CLONE_NEWNS
    0x0200_0000, // CLONE_NEWCGROUP
    0x0400_0000, // CLONE_NEWUTS
    0x0800_0000, // CLONE_NEWIPC
    0x1000_0000, // CLONE_NEWUSER
    0x2000_0000, // CLONE_NEWPID
    0x4000_0000, // CLONE_NEWNET
];

fn seccomp() -> Result<LinuxSeccomp, BundleError> {
    // Every ABI this machine can run, or a 32-bit call would bypass the list.
    let arches = match std::env::consts::ARCH {
        "x86_64" => vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32],
        "aarch64" => vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm],
        _ => vec![Arch::ScmpArchNative],
    };
    let mut rules = vec![
        LinuxSyscallBuilder::default()
            .names(
                DENIED_SYSCALLS
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>(),
            )
            .action(LinuxSeccompAction::ScmpActErrno)
            .errno_ret(1u32)
            .build()?,
    ];
    // clone with any namespace flag: one rule per flag, (flags & f) == f.
    for flag in CLONE_NAMESPACE_FLAGS {
        rules.push(
            LinuxSyscallBuilder::default()
                .names(vec!["clone".to_string()])
                .action(LinuxSeccompAction::ScmpActErrno)
                .errno_ret(1u32)
                .args(vec![
                    LinuxSeccompArgBuilder::default()
                        .index(0usize)
                        .value(*flag)
                        .value_two(*flag)
                        .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
                        .build()?,
                ])
                .build()?,
        );
    }
    // clone3 passes its flags in memory, out of seccomp's reach: ENOSYS
    // makes libc fall back to clone, as with Docker's profile.
    rules.push(
        LinuxSyscallBuilder::default()
            .names(vec!["clone3".to_string()])
            .action(LinuxSeccompAction::ScmpActErrno)
            .errno_ret(38u32)
            .build()?,
    );
    Ok(LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActAllow)
        .architectures(arches)
        .syscalls(rules)
        .build()?)
}

/// Builds the container's runtime spec (root path `rootfs`, relative to
/// the bundle).
pub fn spec(input: &BundleInput<'_>) -> Result<Spec, BundleError> {
    let c = input.container;
    let cfg = input.image.config().clone().unwrap_or_default();

    let entry: Vec<String> = if c.entry_point.is_empty() {
        cfg.entrypoint().clone().unwrap_or_default()
    } else {
        c.entry_point.clone()
    };
    let cmd: Vec<String> = if !c.command.is_empty() {
        c.command.clone()
    } else if c.entry_point.is_empty() {
        cfg.cmd().clone().unwrap_or_default()
    } else {
        Vec::new()
    };
    let args: Vec<String> = entry.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(BundleError::NoCommand(c.name.clone()));
    }

    // Values are kept zeroizing until they become the spec's strings:
    // secrets are among them.
    let mut env: Vec<(String, Zeroizing<String>)> = Vec::new();
    let mut set = |k: &str, v: &str| match env.iter_mut().find(|(ek, _)| ek == k) {
        Some(e) => e.1 = Zeroizing::new(v.to_string()),
        None => env.push((k.to_string(), Zeroizing::new(v.to_string()))),
    };
    set(
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    );
    set("HOSTNAME", &input.hostname);
    for e in cfg.env().iter().flatten() {
        let (k, v) = e.split_once('=').unwrap_or((e.as_str(), ""));
        set(k, v);
    }
    for (k, v) in &c.environment {
        set(k, v);
    }
    // `secrets` last: a secret wins over a variable of the same name.
    for (k, v) in c.secret_env.iter() {
        set(k, v);
    }
    let env: Vec<String> = env
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str()))
        .collect();

    let cwd = c
        .working_directory
        .clone()
        .or_else(|| cfg.working_dir().clone())
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".to_string());

    let user_spec = c
        .user
        .clone()
        .or_else(|| cfg.user().clone())
        .filter(|u| !u.is_empty());
    let (uid, gid) = match &user_spec {
        Some(u) => resolve_user(input.image_rootfs, u)?,
        None => (0, 0),
    };

    let caps = capabilities(input.container)?;
    let process = ProcessBuilder::default()
        .terminal(false)
        .args(args)
        .env(env)
        .cwd(cwd)
        .user(UserBuilder::default().uid(uid).gid(gid).build()?)
        .capabilities(
            LinuxCapabilitiesBuilder::default()
                .bounding(caps.clone())
                .effective(caps.clone())
                .permitted(caps)
                .build()?,
        )
        .no_new_privileges(false)
        .build()?;

    let mut mounts: Vec<Mount> = get_default_mounts();
    let bind = |src: PathBuf, dst: &str, ro: bool| -> Result<Mount, BundleError> {
        let mut opts = vec!["rbind".to_string(), "rprivate".to_string()];
        opts.push(if ro { "ro" } else { "rw" }.to_string());
        Ok(MountBuilder::default()
            .destination(dst)
            .typ("bind")
            .source(src)
            .options(opts)
            .build()?)
    };
    mounts.push(bind(input.etc_dir.join("hosts"), "/etc/hosts", false)?);
    mounts.push(bind(
        input.etc_dir.join("hostname"),
        "/etc/hostname",
        false,
    )?);
    mounts.push(bind(
        input.etc_dir.join("resolv.conf"),
        "/etc/resolv.conf",
        false,
    )?);
    for (src, dst, ro) in &input.volumes {
        mounts.push(bind(src.clone(), dst, *ro)?);
    }

    let mut spec = Spec::default();
    spec.set_hostname(Some(input.hostname.clone()));
    spec.set_process(Some(process));
    let root_path = match &input.userns {
        Some(u) => u.rootfs.clone(),
        None => PathBuf::from("rootfs"),
    };
    spec.set_root(Some(
        RootBuilder::default()
            .path(root_path)
            .readonly(c.readonly_root_filesystem)
            .build()?,
    ));
    spec.set_mounts(Some(mounts));
    if let Some(linux) = spec.linux_mut() {
        // The user namespace comes first: the others are made in it.
        let user = input.userns.as_ref().map(|u| {
            let mut ns = LinuxNamespace::default();
            ns.set_typ(LinuxNamespaceType::User);
            ns.set_path(Some(u.path.clone()));
            ns
        });
        let namespaces: Vec<LinuxNamespace> = user
            .into_iter()
            .chain(
                [
                    LinuxNamespaceType::Pid,
                    LinuxNamespaceType::Ipc,
                    LinuxNamespaceType::Uts,
                    LinuxNamespaceType::Mount,
                ]
                .into_iter()
                .map(|t| {
                    let mut ns = LinuxNamespace::default();
                    ns.set_typ(t);
                    ns
                }),
            )
            .chain(std::iter::once({
                let mut ns = LinuxNamespace::default();
                ns.set_typ(LinuxNamespaceType::Network);
                ns.set_path(Some(input.netns.to_path_buf()));
                ns
            }))
            .collect();
        linux.set_namespaces(Some(namespaces));
        if let Some(u) = &input.userns {
            let map = LinuxIdMappingBuilder::default()
                .container_id(0u32)
                .host_id(u.ids.base())
                .size(RANGE_SIZE)
                .build()?;
            linux.set_uid_mappings(Some(vec![map]));
            linux.set_gid_mappings(Some(vec![map]));
        }
        linux.set_cgroups_path(Some(PathBuf::from(&input.cgroups_path)));
        linux.set_seccomp(Some(seccomp()?));
        // Deny all devices; the runtime adds the standard allowed set. The
        // container's own limits (`memory`, `memoryReservation`, `cpu`) sit
        // under the task's, in the container's child cgroup.
        let mut resources = LinuxResourcesBuilder::default().devices(vec![
            LinuxDeviceCgroupBuilder::default()
                .allow(false)
                .access("rwm")
                .build()?,
        ]);
        let c = input.container;
        if c.memory_limit_mib.is_some() || c.memory_reservation_mib.is_some() {
            let bytes = |mib: u32| i64::from(mib) * 1024 * 1024;
            let mut memory = LinuxMemoryBuilder::default();
            if let Some(m) = c.memory_limit_mib {
                memory = memory.limit(bytes(m));
            }
            if let Some(m) = c.memory_reservation_mib {
                memory = memory.reservation(bytes(m));
            }
            resources = resources.memory(memory.build()?);
        }
        if let Some(units) = c.cpu_units {
            // CPU units are shares (1024 = one vCPU); the kernel's minimum is 2.
            resources = resources.cpu(
                LinuxCpuBuilder::default()
                    .shares(u64::from(units.max(2)))
                    .build()?,
            );
        }
        linux.set_resources(Some(resources.build()?));
    }
    Ok(spec)
}

/// Docker's default set, with the container's `linuxParameters`
/// capabilities added and dropped (`ALL` drops every one). Validation let
/// only known names through.
fn capabilities(c: &ContainerPlan) -> Result<oci_spec::runtime::Capabilities, BundleError> {
    // oci-spec parses the names without the prefix, as ECS writes them.
    let parse = |name: &str| {
        name.parse::<Capability>()
            .map_err(|_| BundleError::UnknownCapability(name.to_owned()))
    };
    let mut caps: oci_spec::runtime::Capabilities = CAPS.iter().copied().collect();
    if c.capabilities_drop.iter().any(|d| d == "ALL") {
        caps.clear();
    }
    for d in c.capabilities_drop.iter().filter(|d| *d != "ALL") {
        caps.remove(&parse(d)?);
    }
    for a in &c.capabilities_add {
        caps.insert(parse(a)?);
    }
    Ok(caps)
}

/// Resolves `user[:group]` against the image's passwd/group files.
fn resolve_user(rootfs: &Path, spec: &str) -> Result<(u32, u32), BundleError> {
    let unknown = || BundleError::UnknownUser(spec.to_string());
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap_or_default();
    // passwd line `name:x:uid:gid:...`, matched by name or uid.
    let entry = |name: &str, file: &str| -> Option<(u32, Option<u32>)> {
        file.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 3 || (f[0] != name && f[2] != name) {
                return None;
            }
            let uid = f[2].parse::<u32>().ok()?;
            Some((uid, f.get(3).and_then(|g| g.parse::<u32>().ok())))
        })
    };
    let (uid, primary) = match user.parse::<u32>() {
        Ok(u) => (u, entry(user, &passwd).and_then(|(_, g)| g)),
        Err(_) => entry(user, &passwd).ok_or_else(unknown)?,
    };
    let gid = match group {
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                let groups = std::fs::read_to_string(rootfs.join("etc/group")).unwrap_or_default();
                groups
                    .lines()
                    .find_map(|l| {
                        let f: Vec<&str> = l.split(':').collect();
                        (f.len() >= 3 && f[0] == g).then(|| f[2].parse().ok())?
                    })
                    .ok_or_else(unknown)?
            }
        },
        None => primary.unwrap_or(0),
    };
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> ContainerPlan {
        serde_json::from_value(serde_json::json!({
            "name": "web", "image": "httpd:2.4", "entry_point": [], "command": [],
            "environment": [["A", "task"], ["B", "b"]], "working_directory": null,
            "user": null, "essential": true, "depends_on": [], "stop_timeout_secs": 30,
            "readonly_root_filesystem": true, "port_mappings": [], "mount_points": [],
            "awslogs": null
        }))
        .unwrap()
    }

    #[test]
    fn linux_parameters_capabilities_change_dockers_default_set() {
        let mut c = plan();
        c.capabilities_add = vec!["SYS_PTRACE".into()];
        c.capabilities_drop = vec!["CHOWN".into()];
        let caps = capabilities(&c).unwrap();
        assert!(caps.contains(&Capability::SysPtrace));
        // NET_RAW is not in the default set; adding it brings it back.
        assert!(!caps.contains(&Capability::NetRaw) && !caps.contains(&Capability::Chown));
        assert!(caps.contains(&Capability::Kill));
        c.capabilities_add.push("NET_RAW".into());
        assert!(capabilities(&c).unwrap().contains(&Capability::NetRaw));
        c.capabilities_add = vec!["SYS_PTRACE".into()];
        c.capabilities_drop = vec!["ALL".into()];
        assert_eq!(
            capabilities(&c).unwrap().into_iter().collect::<Vec<_>>(),
            [Capability::SysPtrace]
        );
    }

    fn image() -> ImageConfiguration {
        serde_json::from_value(serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Entrypoint": ["/init"], "Cmd": ["serve"], "Env": ["A=image", "PATH=/bin"],
                       "WorkingDir": "/srv", "User": "app"},
            "rootfs": {"type": "layers", "diff_ids": []}
        }))
        .unwrap()
    }

    fn build(c: &ContainerPlan, rootfs: &Path) -> Result<Spec, BundleError> {
        build_in(c, rootfs, None)
    }

    fn build_in(
        c: &ContainerPlan,
        rootfs: &Path,
        userns: Option<BundleUserns>,
    ) -> Result<Spec, BundleError> {
        spec(&BundleInput {
            container: c,
            image: &image(),
            image_rootfs: rootfs,
            netns: Path::new("/run/netns/ferry-x"),
            cgroups_path: "/ferry/t/web".into(),
            hostname: "ip-198-18-0-2".into(),
            etc_dir: Path::new("/t/etc"),
            volumes: vec![(PathBuf::from("/t/volumes/data"), "/data".into(), true)],
            userns,
        })
    }

    #[test]
    fn user_namespace_is_the_tasks_and_maps_its_range() {
        let t = tempfile::tempdir().unwrap();
        let mut c = plan();
        c.user = Some("1000:1000".into());
        let ids = IdRange::slot(2).unwrap();
        let s = build_in(
            &c,
            t.path(),
            Some(BundleUserns {
                ids,
                path: PathBuf::from("/run/ferry-userns/t/user"),
                rootfs: PathBuf::from("/run/ferry-userns/t/task/containers/web/rootfs"),
            }),
        )
        .unwrap();
        let linux = s.linux().as_ref().unwrap();
        let ns = linux.namespaces().as_ref().unwrap();
        // Joined by path, and first: the new pid/ipc/uts/mount namespaces
        // are made inside it.
        assert_eq!(ns[0].typ(), LinuxNamespaceType::User);
        assert_eq!(
            ns[0].path().as_deref(),
            Some(Path::new("/run/ferry-userns/t/user"))
        );
        assert_eq!(
            ns.iter()
                .filter(|n| n.typ() == LinuxNamespaceType::User)
                .count(),
            1
        );
        assert!(ns.iter().any(|n| n.typ() == LinuxNamespaceType::Network
            && n.path().as_deref() == Some(Path::new("/run/netns/ferry-x"))));
        for maps in [linux.uid_mappings(), linux.gid_mappings()] {
            let maps = maps.as_ref().unwrap();
            assert_eq!(maps.len(), 1);
            assert_eq!(
                (maps[0].container_id(), maps[0].host_id(), maps[0].size()),
                (0, 231_072, 65_536)
            );
        }
        // The process's ids are the container's; the kernel maps them.
        let p = s.process().as_ref().unwrap();
        assert_eq!((p.user().uid(), p.user().gid()), (1000, 1000));
        assert_eq!(
            s.root().as_ref().unwrap().path(),
            Path::new("/run/ferry-userns/t/task/containers/web/rootfs")
        );

        // Without a range: no user namespace, the bundle's rootfs.
        let s = build(&c, t.path()).unwrap();
        let linux = s.linux().as_ref().unwrap();
        assert!(
            !linux
                .namespaces()
                .as_ref()
                .unwrap()
                .iter()
                .any(|n| n.typ() == LinuxNamespaceType::User)
        );
        assert!(linux.uid_mappings().is_none() && linux.gid_mappings().is_none());
        assert_eq!(s.root().as_ref().unwrap().path(), Path::new("rootfs"));
    }

    #[test]
    fn secrets_reach_the_environment_last() {
        let t = tempfile::tempdir().unwrap();
        let mut c = plan();
        c.user = Some("0".into());
        c.secret_env = ferry_proto::plan::SecretEnv::new(vec![
            ("DB_PASSWORD".into(), Zeroizing::new("s3cr3t".into())),
            ("B".into(), Zeroizing::new("from-secret".into())),
        ]);
        let s = build(&c, t.path()).unwrap();
        let env = s.process().as_ref().unwrap().env().as_ref().unwrap();
        assert!(env.contains(&"DB_PASSWORD=s3cr3t".to_string()), "{env:?}");
        assert!(env.contains(&"B=from-secret".to_string()), "{env:?}");
        assert!(env.contains(&"A=task".to_string()));
        assert_eq!(env.iter().filter(|e| e.starts_with("B=")).count(), 1);
        // The value is in the spec (config.json on the task's volume), not
        // in the plan's Debug.
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }

    #[test]
    fn docker_semantics() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("etc")).unwrap();
        std::fs::write(
            t.path().join("etc/passwd"),
            "root:x:0:0::/:/bin/sh\napp:x:1234:2345::/:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(t.path().join("etc/group"), "staff:x:50:\n").unwrap();
        let mut c = plan();
        let s = build(&c, t.path()).unwrap();
        let p = s.process().as_ref().unwrap();
        assert_eq!(p.args().as_ref().unwrap(), &["/init", "serve"]);
        let env = p.env().as_ref().unwrap();
        assert!(env.contains(&"A=task".to_string()) && env.contains(&"PATH=/bin".to_string()));
        assert_eq!(p.cwd(), Path::new("/srv"));
        assert_eq!((p.user().uid(), p.user().gid()), (1234, 2345));
        assert_eq!(s.root().as_ref().unwrap().readonly(), Some(true));
        let ns = s.linux().as_ref().unwrap().namespaces().as_ref().unwrap();
        assert!(ns.iter().any(|n| n.typ() == LinuxNamespaceType::Network
            && n.path().as_deref() == Some(Path::new("/run/netns/ferry-x"))));
        let sc = s.linux().as_ref().unwrap().seccomp().as_ref().unwrap();
        assert_eq!(sc.default_action(), LinuxSeccompAction::ScmpActAllow);
        let denied = sc.syscalls().as_ref().unwrap()[0].names();
        assert!(
            denied.contains(&"keyctl".to_string()) && denied.contains(&"kexec_load".to_string())
        );
        let mounts = s.mounts().as_ref().unwrap();
        assert!(mounts.iter().any(|m| m.destination() == Path::new("/data")
            && m.options().as_ref().unwrap().contains(&"ro".to_string())));

        // An entryPoint override drops the image's Cmd.
        c.entry_point = vec!["sh".into(), "-c".into()];
        c.command = vec!["echo hi".into()];
        c.user = Some("7:staff".into());
        let s = build(&c, t.path()).unwrap();
        let p = s.process().as_ref().unwrap();
        assert_eq!(p.args().as_ref().unwrap(), &["sh", "-c", "echo hi"]);
        assert_eq!((p.user().uid(), p.user().gid()), (7, 50));
        c.command.clear();
        assert_eq!(
            build(&c, t.path())
                .unwrap()
                .process()
                .as_ref()
                .unwrap()
                .args()
                .as_ref()
                .unwrap(),
            &["sh", "-c"]
        );
        c.user = Some("nobody".into());
        assert!(matches!(
            build(&c, t.path()),
            Err(BundleError::UnknownUser(_))
        ));
    }
}
