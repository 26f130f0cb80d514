//! Two VPC services (replicas) over one PostgreSQL database (issue 19): one
//! default VPC, ENIs and rules made through one are seen through the other,
//! addresses are never given twice, and a rule changed through one reaches
//! the other's firewall listener within seconds.
//!
//! Needs root and PostgreSQL's server binaries (`scripts/setup`):
//! `ferry_store::testing::TempPostgres` fails the test with the reason
//! when either is missing.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_ec2::{AttachRequest, Ec2, Ec2Service};
use ferry_proto::net::{FirewallRules, Peer, Traffic};
use ferry_proto::query::{Params, QueryService};
use ferry_proto::{Caller, RequestContext};
use ferry_store::Store;
use ferry_store::testing::TempPostgres;

const ACC: &str = "111122223333";

fn replica(pg: &TempPostgres) -> Arc<Ec2> {
    let store = Arc::new(Store::connect(&pg.url()).unwrap());
    Ec2::open(store, ACC, "us-east-1", "198.18.0.0/16".parse().unwrap()).unwrap()
}

fn call(ec2: &Arc<Ec2>, action: &str, params: &[(&str, &str)]) -> String {
    let mut p = Params::default();
    for (k, v) in params {
        p.insert(*k, *v);
    }
    let ctx = RequestContext::internal(Caller::admin(ACC), "us-east-1");
    Ec2Service::new(ec2.clone())
        .call(&ctx, action, &p)
        .unwrap_or_else(|e| panic!("{action}: {}: {}", e.code, e.message))
        .as_str()
        .to_owned()
}

#[test]
fn replicas_share_vpcs_enis_and_rules() {
    let pg = TempPostgres::new();
    // Started together on an empty database: one default VPC.
    let url = pg.url();
    let opened: Vec<Arc<Ec2>> = (0..2)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let store = Arc::new(Store::connect(&url).unwrap());
                Ec2::open(store, ACC, "us-east-1", "198.18.0.0/16".parse().unwrap()).unwrap()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let (a, b) = (opened[0].clone(), opened[1].clone());
    let vpcs = call(&b, "DescribeVpcs", &[]);
    assert_eq!(
        vpcs.matches("<isDefault>true</isDefault>").count(),
        1,
        "{vpcs}"
    );
    assert_eq!(a.default_network(), b.default_network());

    // An ENI attached through A is seen through B, and freed through B.
    let (subnet, group) = a.default_network();
    let req = AttachRequest {
        subnets: vec![subnet.clone()],
        security_groups: vec![group.clone()],
        description: "task".into(),
    };
    let plan = a.attach(&req).unwrap();
    let seen = b.eni(&plan.eni_id).unwrap();
    assert_eq!(seen.ip, plan.ip);
    assert!(call(&b, "DescribeNetworkInterfaces", &[]).contains(&plan.eni_id));
    b.detach(&plan.eni_id).unwrap();
    assert!(a.eni(&plan.eni_id).is_none());

    // Attaches through both at once: every address once.
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let (ec2, req) = (if i % 2 == 0 { a.clone() } else { b.clone() }, req.clone());
            std::thread::spawn(move || {
                (0..10)
                    .map(|_| ec2.attach(&req).unwrap().ip)
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let ips: Vec<_> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let unique: BTreeSet<_> = ips.iter().collect();
    assert_eq!(unique.len(), 80, "an address was given twice");
    let enis = call(&a, "DescribeNetworkInterfaces", &[]);
    assert_eq!(enis.matches("<networkInterfaceId>").count(), 80);
}

#[test]
fn a_rule_changed_through_one_replica_reaches_the_others_firewall() {
    let pg = TempPostgres::new();
    let (a, b) = (replica(&pg), replica(&pg));
    let heard: Arc<Mutex<Vec<FirewallRules>>> = Arc::default();
    let h = heard.clone();
    b.on_rules_changed(Box::new(move |r| h.lock().unwrap().push(r.clone())));
    let (_, group) = a.default_network();
    let t0 = Instant::now();
    call(
        &a,
        "AuthorizeSecurityGroupIngress",
        &[
            ("GroupId", &group),
            ("IpPermissions.1.IpProtocol", "tcp"),
            ("IpPermissions.1.FromPort", "8080"),
            ("IpPermissions.1.ToPort", "8080"),
            ("IpPermissions.1.IpRanges.1.CidrIp", "10.9.0.0/16"),
        ],
    );
    let has_rule = |r: &FirewallRules| {
        r.groups.iter().any(|g| {
            g.group_id == group
                && g.ingress.iter().any(|x| {
                    x.traffic
                        == Traffic::Tcp {
                            from: 8080,
                            to: 8080,
                        }
                        && x.peer == Peer::Cidr("10.9.0.0/16".parse().unwrap())
                })
        })
    };
    // B hears it from its poll, without any call through B.
    loop {
        if heard.lock().unwrap().iter().any(has_rule) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "B's listener did not hear the rule within 3 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Once: a change of ENIs only (no rule) tells it nothing new.
    let told = heard.lock().unwrap().len();
    let (subnet, _) = a.default_network();
    a.attach(&AttachRequest {
        subnets: vec![subnet],
        security_groups: Vec::new(),
        description: "t".into(),
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(heard.lock().unwrap().len(), told);
    assert!(has_rule(&b.firewall_rules()));
}
