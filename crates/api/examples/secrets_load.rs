//! Load generator for Secrets Manager GetSecretValue (and SSM GetParameter
//! of a SecureString) over HTTP/1.1 keep-alive with SigV4, next to KMS
//! GenerateRandom as the baseline in the same run (`bench/secrets.sh`
//! starts the server and runs this in its own process).
//!
//! ```text
//! secrets_load --endpoint http://127.0.0.1:PORT --credentials DIR/credentials \
//!              [--connections 32] [--seconds 10] [--region us-east-1] [--threads 1] \
//!              [--rounds 1]
//! ```
//!
//! Setup: a secret (a 64-byte JSON document under `aws/secretsmanager`) and
//! a SecureString parameter (under `aws/ssm`). Then, per round, phases of
//! `--seconds` each over `--connections` connections with one request in
//! flight each (as an SDK client pool): GenerateRandom (the baseline: the
//! same HTTP, SigV4, JSON and KMS-audit path with no store read and no
//! key), GetSecretValue (a store read, a KMS Decrypt of the version's data
//! key as the caller with its audit record, AES-256-GCM), and GetParameter
//! WithDecryption (the same for SSM). Every response is checked. Prints
//! requests/s and p50/p99 per phase, and the ratio to the baseline of the
//! same round.
//!
//! A fourth phase, STS AssumeRole (query protocol: a form in, XML out),
//! issues a session per request for a role trusting the account: a trust
//! policy evaluation, fresh random credentials, and the session's sealed
//! record written to the store.

mod load;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use load::{Conn, Opts, Service, micros, pct};

const KMS: Service = Service {
    name: "kms",
    target: "TrentService",
};
const SECRETS: Service = Service {
    name: "secretsmanager",
    target: "secretsmanager",
};
const SSM: Service = Service {
    name: "ssm",
    target: "AmazonSSM",
};
const IAM: Service = Service {
    name: "iam",
    target: "",
};
const STS: Service = Service {
    name: "sts",
    target: "",
};

/// The secret's value: 64 bytes of JSON, a typical database credential.
const SECRET: &str = r#"{"username":"bench","password":"0123456789abcdef0123456789ab"}"#;
/// The parameter's value.
const PARAMETER: &str = "bench-parameter-value-0123456789";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// KMS GenerateRandom: the baseline.
    Baseline,
    /// Secrets Manager GetSecretValue.
    GetSecretValue,
    /// SSM GetParameter of a SecureString, WithDecryption.
    GetParameter,
    /// STS AssumeRole of a role trusting the account.
    AssumeRole,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Self::Baseline => "GenerateRandom (baseline)",
            Self::GetSecretValue => "GetSecretValue",
            Self::GetParameter => "GetParameter (SecureString)",
            Self::AssumeRole => "AssumeRole",
        }
    }

    fn service(self) -> Service {
        match self {
            Self::Baseline => KMS,
            Self::GetSecretValue => SECRETS,
            Self::GetParameter => SSM,
            Self::AssumeRole => STS,
        }
    }
}

#[derive(serde::Deserialize)]
struct SecretOut<'a> {
    #[serde(rename = "SecretString", borrow)]
    secret_string: Cow<'a, str>,
}

#[derive(serde::Deserialize)]
struct ParameterOut<'a> {
    #[serde(rename = "Parameter", borrow)]
    parameter: ParameterInner<'a>,
}

#[derive(serde::Deserialize)]
struct ParameterInner<'a> {
    #[serde(rename = "Value", borrow)]
    value: Cow<'a, str>,
}

#[derive(serde::Deserialize)]
struct RandomOut<'a> {
    #[serde(rename = "Plaintext", borrow)]
    plaintext: Cow<'a, str>,
}

/// Sends one request of `phase` and checks its response.
async fn one(
    conn: &mut Conn,
    phase: Phase,
    secret_id: &str,
    parameter: &str,
) -> Result<(), String> {
    let bad = |e: serde_json::Error| format!("{}: unexpected response: {e}", phase.name());
    match phase {
        Phase::Baseline => {
            let r = conn
                .call("GenerateRandom", br#"{"NumberOfBytes":32}"#)
                .await?;
            let out: RandomOut<'_> = serde_json::from_slice(r).map_err(bad)?;
            if out.plaintext.len() != 44 {
                return Err("GenerateRandom returned no 32 bytes".into());
            }
        }
        Phase::GetSecretValue => {
            let secret_id = secret_id.split_once('|').map_or(secret_id, |(s, _)| s);
            let body = format!(r#"{{"SecretId":"{secret_id}"}}"#);
            let r = conn.call("GetSecretValue", body.as_bytes()).await?;
            let out: SecretOut<'_> = serde_json::from_slice(r).map_err(bad)?;
            if out.secret_string != SECRET {
                return Err("GetSecretValue returned another value".into());
            }
        }
        Phase::GetParameter => {
            let body = format!(r#"{{"Name":"{parameter}","WithDecryption":true}}"#);
            let r = conn.call("GetParameter", body.as_bytes()).await?;
            let out: ParameterOut<'_> = serde_json::from_slice(r).map_err(bad)?;
            if out.parameter.value != PARAMETER {
                return Err("GetParameter returned another value".into());
            }
        }
        Phase::AssumeRole => {
            let body = format!(
                "Action=AssumeRole&Version=2011-06-15&RoleArn={}&RoleSessionName=bench",
                form(secret_id_role(secret_id))
            );
            let r = conn.call("AssumeRole", body.as_bytes()).await?;
            if !r.windows(14).any(|w| w == b"<SessionToken>") {
                return Err("AssumeRole returned no session token".into());
            }
        }
    }
    Ok(())
}

/// The role ARN travels with the secret's ARN (`SECRET_ARN|ROLE_ARN`) so
/// the phases share one signature.
fn secret_id_role(ids: &str) -> &str {
    ids.split_once('|').map_or("", |(_, r)| r)
}

/// Form-encodes a value (query protocol bodies).
fn form(v: &str) -> String {
    form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

/// The text of the first `<tag>...</tag>` in an XML answer.
fn xml_text<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find('<')? + start;
    Some(&xml[start..end])
}

struct PhaseResult {
    requests: usize,
    elapsed: Duration,
    /// Latencies in microseconds, sorted.
    latencies: Vec<u32>,
}

async fn phase(
    o: Arc<Opts>,
    p: Phase,
    secret_id: Arc<String>,
    parameter: Arc<String>,
) -> Result<PhaseResult, String> {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(o.seconds);
    let mut workers = Vec::new();
    for _ in 0..o.connections {
        let (o, s, n) = (o.clone(), secret_id.clone(), parameter.clone());
        workers.push(tokio::spawn(async move {
            let mut conn = Conn::open(o, p.service()).await?;
            let mut lat = Vec::with_capacity(1 << 16);
            while Instant::now() < deadline {
                let t = Instant::now();
                one(&mut conn, p, &s, &n).await?;
                lat.push(micros(t.elapsed()));
            }
            Ok::<_, String>(lat)
        }));
    }
    let mut latencies = Vec::new();
    for w in workers {
        latencies.extend(w.await.map_err(|e| e.to_string())??);
    }
    let elapsed = start.elapsed();
    latencies.sort_unstable();
    Ok(PhaseResult {
        requests: latencies.len(),
        elapsed,
        latencies,
    })
}

/// Creates the secret, the parameter and a role the account may assume;
/// returns `SECRET_ARN|ROLE_ARN`.
async fn setup(o: &Arc<Opts>, parameter: &str) -> Result<String, String> {
    let mut sm = Conn::open(o.clone(), SECRETS).await?;
    let name = format!("bench/secret-{}", std::process::id());
    let body = serde_json::json!({"Name": name, "SecretString": SECRET}).to_string();
    let r = sm.call("CreateSecret", body.as_bytes()).await?;
    let v: serde_json::Value = serde_json::from_slice(r).map_err(|e| e.to_string())?;
    let arn = v["ARN"]
        .as_str()
        .ok_or("CreateSecret returned no ARN")?
        .to_owned();
    let mut ssm = Conn::open(o.clone(), SSM).await?;
    let body = serde_json::json!({
        "Name": parameter, "Value": PARAMETER, "Type": "SecureString", "Overwrite": true
    })
    .to_string();
    ssm.call("PutParameter", body.as_bytes()).await?;

    let mut sts = Conn::open(o.clone(), STS).await?;
    let r = sts
        .call(
            "GetCallerIdentity",
            b"Action=GetCallerIdentity&Version=2011-06-15",
        )
        .await?;
    let xml = String::from_utf8_lossy(r).into_owned();
    let account = xml_text(&xml, "Account").ok_or("GetCallerIdentity returned no Account")?;
    let trust = serde_json::json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{account}:root")},
        "Action": "sts:AssumeRole"}]})
    .to_string();
    let mut iam = Conn::open(o.clone(), IAM).await?;
    let body = format!(
        "Action=CreateRole&Version=2010-05-08&RoleName=bench-role-{}&AssumeRolePolicyDocument={}",
        std::process::id(),
        form(&trust)
    );
    let r = iam.call("CreateRole", body.as_bytes()).await?;
    let xml = String::from_utf8_lossy(r).into_owned();
    let role = xml_text(&xml, "Arn").ok_or("CreateRole returned no Arn")?;
    Ok(format!("{arn}|{role}"))
}

async fn run(o: Arc<Opts>) -> Result<(), String> {
    let rounds = o.num("--rounds", 1)?.max(1);
    let parameter = Arc::new(format!("/bench/parameter-{}", std::process::id()));
    let arn = Arc::new(setup(&o, &parameter).await?);
    println!(
        "secrets_load: {} connections (HTTP/1.1 keep-alive, one request in flight each), {} s per \
         phase, {} round(s), {} thread(s)",
        o.connections, o.seconds, rounds, o.threads
    );
    for round in 1..=rounds {
        let mut base = 0.0;
        for p in [
            Phase::Baseline,
            Phase::GetSecretValue,
            Phase::GetParameter,
            Phase::AssumeRole,
        ] {
            let r = phase(o.clone(), p, arn.clone(), parameter.clone()).await?;
            let rps = r.requests as f64 / r.elapsed.as_secs_f64();
            if p == Phase::Baseline {
                base = rps;
            }
            println!(
                "round {round} {:<28} {:>8} requests = {:>8.0} req/s   p50 {:>6.2} ms   p99 {:>6.2} ms   {:.2}x baseline",
                p.name(),
                r.requests,
                rps,
                pct(&r.latencies, 0.50),
                pct(&r.latencies, 0.99),
                if base > 0.0 { rps / base } else { 0.0 },
            );
        }
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    load::main("secrets_load", 32, 1, run)
}
