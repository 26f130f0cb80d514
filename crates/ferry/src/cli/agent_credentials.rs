//! `ferry agent-credentials`: the operator issues (or revokes) the service
//! key a remote `ferry agent` host signs with, through the
//! administrator-only `FerryAdmin_20261201.CreateAgentCredentials` and
//! `DeleteAgentCredentials` operations (docs/control-plane.md, "Agent
//! credentials"). The key is written in the AWS shared-credentials format
//! of the server's own `credentials` file (mode 0600), which `ferry agent
//! --credentials` and the AWS CLI read.
//!
//! The secret is printed nowhere: it goes from the server's answer to the
//! file only.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use ferry_api::client::SignedClient;
use ferry_api::sigv4::SigningCredentials;
use zeroize::Zeroizing;

/// The admin service's `X-Amz-Target` prefix.
const TARGET_PREFIX: &str = "FerryAdmin_20261201";

/// Arguments of `ferry agent-credentials`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The server's API endpoint, e.g. http://127.0.0.1:4566.
    #[arg(long)]
    endpoint: String,
    /// The administrator's credentials file (the server's data directory
    /// has it as `credentials`).
    #[arg(long)]
    credentials: PathBuf,
    /// The agent's host name, as it joins the fleet (`ferry agent --name`):
    /// 1 to 64 letters, digits, '.', '_' or '-'.
    #[arg(long)]
    name: String,
    /// Where to write the host's credentials (AWS shared-credentials
    /// format, profile `default`, mode 0600). Issuing again for the same
    /// host revokes its previous key.
    #[arg(long, required_unless_present = "delete", conflicts_with = "delete")]
    output: Option<PathBuf>,
    /// Revoke the host's credentials instead of issuing them.
    #[arg(long)]
    delete: bool,
    /// The region to sign for.
    #[arg(long, default_value = "us-east-1")]
    region: String,
}

/// `CreateAgentCredentials`' answer. The secret is moved into a
/// `Zeroizing` as soon as it is parsed.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Issued {
    access_key_id: String,
    secret_access_key: String,
    name: String,
}

/// Runs `ferry agent-credentials`.
pub fn run(args: Args) -> anyhow::Result<()> {
    // Checked here too, so a typo costs no round trip (and, when issuing,
    // revokes nothing).
    ferry_control::hosts::check_name(&args.name)?;
    let output = match (&args.output, args.delete) {
        (Some(o), false) => Some(writable_target(o)?),
        _ => None,
    };
    let (access_key_id, secret_access_key) =
        ferry_api::credentials::read_credentials(&args.credentials)
            .with_context(|| format!("reading {}", args.credentials.display()))?;
    let client = SignedClient::new(
        &args.endpoint,
        &args.region,
        SigningCredentials {
            access_key_id,
            secret_access_key,
        },
        Duration::from_secs(60),
    )?;
    let Some(output) = output else {
        call(&client, "DeleteAgentCredentials", &args.name)?;
        println!("revoked the agent credentials of host {}", args.name);
        return Ok(());
    };
    let answer = call(&client, "CreateAgentCredentials", &args.name)?;
    let issued: Issued = serde_json::from_slice(&answer)
        .context("the server's CreateAgentCredentials answer is not what ferry expects")?;
    let Issued {
        access_key_id,
        secret_access_key,
        name,
    } = issued;
    let secret = Zeroizing::new(secret_access_key);
    if name != args.name {
        bail!(
            "the server issued credentials for host {name:?}, not {:?}",
            args.name
        );
    }
    // The server has already replaced the host's previous key: say so if
    // the new one cannot be kept.
    ferry_api::credentials::write_credentials(&output, &access_key_id, &secret).with_context(
        || {
            format!(
                "host {name}'s new key {access_key_id} was issued (its previous key is revoked) \
                 but could not be written; run again to issue another"
            )
        },
    )?;
    println!(
        "wrote {}: agent credentials of host {name} (access key id {access_key_id})",
        output.display()
    );
    Ok(())
}

/// `output` if its directory exists and it is not a directory itself:
/// checked before the server issues a key that could not be written.
fn writable_target(output: &Path) -> anyhow::Result<PathBuf> {
    if output.is_dir() {
        bail!("--output {} is a directory", output.display());
    }
    let dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        bail!(
            "--output {}: the directory {} does not exist",
            output.display(),
            dir.display()
        );
    }
    Ok(output.to_owned())
}

/// Calls `FerryAdmin_20261201.OPERATION {"name": HOST}`: the answer of a
/// 2xx, else an error naming the server's refusal.
fn call(client: &SignedClient, operation: &str, host: &str) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let body = serde_json::to_vec(&serde_json::json!({ "name": host }))?;
    let headers = [
        ("x-amz-target", format!("{TARGET_PREFIX}.{operation}")),
        ("content-type", "application/x-amz-json-1.1".to_owned()),
    ];
    let (status, answer) = client.post("ecs", &headers, body)?;
    if !(200..300).contains(&status) {
        bail!("{operation}: {}", refusal(status, &answer));
    }
    Ok(answer)
}

/// A refused call in one line: the AWS error's code and message, or the
/// start of whatever else the endpoint answered.
fn refusal(status: u16, answer: &[u8]) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(answer).ok();
    let field = |names: &[&str]| -> Option<String> {
        let v = parsed.as_ref()?;
        names
            .iter()
            .find_map(|n| v.get(*n).and_then(serde_json::Value::as_str))
            .map(str::to_owned)
    };
    match field(&["__type", "code"]) {
        Some(code) => {
            // `__type` may be qualified (`namespace#Code`).
            let code = code.rsplit('#').next().unwrap_or(&code).to_owned();
            let message = field(&["message", "Message"]).unwrap_or_default();
            format!("the server refused: {code}: {message} (HTTP {status})")
        }
        None => {
            let text = String::from_utf8_lossy(answer);
            let text: String = text.chars().take(200).collect();
            format!("the server answered HTTP {status}: {}", text.trim())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::os::unix::fs::PermissionsExt;

    use clap::Parser;

    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn parse(argv: &[&str]) -> Result<Args, clap::Error> {
        let mut full = vec!["agent-credentials"];
        full.extend_from_slice(argv);
        Cli::try_parse_from(full).map(|c| c.args)
    }

    /// A one-request HTTP server answering `status` and `body`; the
    /// request's target and body come back through the handle.
    fn answer_once(
        status: u16,
        body: &'static str,
    ) -> (String, std::thread::JoinHandle<(String, String)>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let h = std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let (mut target, mut len) = (String::new(), 0usize);
            loop {
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("x-amz-target:") {
                    target = v.trim().to_owned();
                }
                if let Some(v) = lower.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
            }
            let mut req = vec![0; len];
            r.read_exact(&mut req).unwrap();
            let mut s = s;
            write!(
                s,
                "HTTP/1.1 {status} X\r\ncontent-type: application/x-amz-json-1.1\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            (target, String::from_utf8(req).unwrap())
        });
        (url, h)
    }

    fn admin_file(dir: &Path) -> PathBuf {
        let p = dir.join("admin");
        ferry_api::credentials::write_credentials(&p, "AKIAADMIN", "admin-secret").unwrap();
        p
    }

    fn args(endpoint: &str, creds: &Path, rest: &[&str]) -> Args {
        let mut argv = vec![
            "--endpoint",
            endpoint,
            "--credentials",
            creds.to_str().unwrap(),
        ];
        argv.extend_from_slice(rest);
        parse(&argv).unwrap()
    }

    #[test]
    fn output_or_delete_exactly_one() {
        let base = [
            "--endpoint",
            "http://h:1",
            "--credentials",
            "c",
            "--name",
            "n",
        ];
        assert!(parse(&base).is_err());
        let both = [&base[..], &["--output", "f", "--delete"]].concat();
        assert!(parse(&both).is_err());
        let a = parse(&[&base[..], &["--output", "f"]].concat()).unwrap();
        assert_eq!((a.region.as_str(), a.delete), ("us-east-1", false));
        assert!(parse(&[&base[..], &["--delete"]].concat()).unwrap().delete);
    }

    #[test]
    fn issued_credentials_are_written_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let creds = admin_file(dir.path());
        let out = dir.path().join("agent-creds");
        let (url, h) = answer_once(
            200,
            r#"{"accessKeyId":"AKIAAGENT","secretAccessKey":"agent/secret+1","name":"node-1"}"#,
        );
        let o = out.to_str().unwrap();
        run(args(&url, &creds, &["--name", "node-1", "--output", o])).unwrap();
        let (target, body) = h.join().unwrap();
        assert_eq!(target, "ferryadmin_20261201.createagentcredentials");
        assert_eq!(body, r#"{"name":"node-1"}"#);
        let (id, secret) = ferry_api::credentials::read_credentials(&out).unwrap();
        assert_eq!(
            (id.as_str(), secret.as_str()),
            ("AKIAAGENT", "agent/secret+1")
        );
        let mode = std::fs::metadata(&out).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn refusals_and_unreachable_servers_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let creds = admin_file(dir.path());
        let out = dir.path().join("agent-creds");
        let o = out.to_str().unwrap();
        let (url, h) = answer_once(
            400,
            r#"{"__type":"AccessDeniedException","message":"arn:aws:iam::1:user/bob is not the account administrator"}"#,
        );
        let e = run(args(&url, &creds, &["--name", "node-1", "--output", o])).unwrap_err();
        h.join().unwrap();
        let msg = format!("{e:#}");
        assert!(
            msg.starts_with("CreateAgentCredentials: the server refused: AccessDeniedException: arn:aws:iam::1:user/bob")
                && msg.ends_with("(HTTP 400)"),
            "{msg}"
        );
        assert!(!out.exists());

        let (url, h) = answer_once(
            400,
            r#"{"__type":"ResourceNotFoundException","message":"The host node-1 has no agent credentials."}"#,
        );
        let e = run(args(&url, &creds, &["--name", "node-1", "--delete"])).unwrap_err();
        let (target, _) = h.join().unwrap();
        assert_eq!(target, "ferryadmin_20261201.deleteagentcredentials");
        assert!(format!("{e:#}").contains("ResourceNotFoundException"));

        // Nothing listening.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}");
        let e = run(args(&url, &creds, &["--name", "node-1", "--delete"])).unwrap_err();
        assert!(format!("{e:#}").contains("cannot reach"), "{e:#}");

        // Refused before any call: a bad name, a missing directory, a bad
        // endpoint, a missing credentials file.
        let e = run(args(&url, &creds, &["--name", "a/b", "--delete"])).unwrap_err();
        assert!(format!("{e:#}").contains("host name"), "{e:#}");
        let nowhere = dir.path().join("no/such/dir/creds");
        let e = run(args(
            &url,
            &creds,
            &["--name", "n", "--output", nowhere.to_str().unwrap()],
        ))
        .unwrap_err();
        assert!(format!("{e:#}").contains("does not exist"), "{e:#}");
        let e = run(args("ftp://x", &creds, &["--name", "n", "--delete"])).unwrap_err();
        assert!(format!("{e:#}").contains("bad endpoint"), "{e:#}");
        let e = run(args(
            &url,
            &dir.path().join("none"),
            &["--name", "n", "--delete"],
        ))
        .unwrap_err();
        assert!(format!("{e:#}").starts_with("reading "), "{e:#}");
        // Not the AWS error shape: the start of the answer.
        assert_eq!(
            refusal(502, b"Bad Gateway\n"),
            "the server answered HTTP 502: Bad Gateway"
        );
    }
}
