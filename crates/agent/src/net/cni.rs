//! Executing a CNI plugin (CNI spec 1.0): the plugin binary named by the
//! config's `type`, found in the plugin directory, with `CNI_*` variables
//! set and the network config on stdin; the result (or a CNI error object)
//! comes back on stdout.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// One plugin invocation.
#[derive(Debug)]
pub struct Call<'a> {
    /// `CNI_PATH`.
    pub bin_dir: &'a Path,
    /// `ADD`, `DEL` or `CHECK`.
    pub command: &'a str,
    /// `CNI_CONTAINERID`.
    pub container_id: &'a str,
    /// `CNI_NETNS`.
    pub netns: &'a Path,
    /// `CNI_IFNAME`.
    pub ifname: &'a str,
    /// The network configuration (its `type` names the plugin).
    pub config: &'a serde_json::Value,
}

/// A failed plugin call.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    /// The plugin could not be run.
    #[error("CNI plugin {plugin}: {err}")]
    Exec {
        /// Plugin name.
        plugin: String,
        /// OS error.
        err: std::io::Error,
    },
    /// The plugin reported an error.
    #[error("CNI plugin {plugin} {command} failed: {msg}")]
    Plugin {
        /// Plugin name.
        plugin: String,
        /// `ADD`/`DEL`.
        command: String,
        /// The plugin's `msg` (and `details`), or its raw output.
        msg: String,
    },
    /// The config has no `type`.
    #[error("CNI config has no plugin type")]
    NoType,
}

/// Runs the plugin and returns its parsed result (`null` when it printed
/// nothing, as DEL may).
pub fn exec(call: &Call<'_>) -> Result<serde_json::Value, CniError> {
    let plugin = call
        .config
        .get("type")
        .and_then(|t| t.as_str())
        .filter(|t| !t.contains('/'))
        .ok_or(CniError::NoType)?
        .to_string();
    let exec_err = |err| CniError::Exec {
        plugin: plugin.clone(),
        err,
    };
    let mut child = Command::new(call.bin_dir.join(&plugin))
        .env_clear()
        // Plugins run iptables and friends from PATH.
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("CNI_COMMAND", call.command)
        .env("CNI_CONTAINERID", call.container_id)
        .env("CNI_NETNS", call.netns)
        .env("CNI_IFNAME", call.ifname)
        .env("CNI_PATH", call.bin_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(exec_err)?;
    let body = serde_json::to_vec(call.config).unwrap_or_default();
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(&body).map_err(exec_err)?;
    }
    let out = child.wait_with_output().map_err(exec_err)?;
    let parsed: Option<serde_json::Value> = serde_json::from_slice(&out.stdout).ok();
    if !out.status.success() {
        let msg = match &parsed {
            Some(v) => {
                let m = v.get("msg").and_then(|m| m.as_str()).unwrap_or("");
                match v.get("details").and_then(|d| d.as_str()) {
                    Some(d) if !d.is_empty() => format!("{m}: {d}"),
                    _ => m.to_string(),
                }
            }
            None => format!(
                "{} {}",
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        };
        return Err(CniError::Plugin {
            plugin,
            command: call.command.to_string(),
            msg,
        });
    }
    Ok(parsed.unwrap_or(serde_json::Value::Null))
}

/// The first IPv4 address of a CNI result, without its prefix length.
pub fn first_ipv4(result: &serde_json::Value) -> Option<String> {
    result
        .get("ips")?
        .as_array()?
        .iter()
        .filter_map(|ip| ip.get("address")?.as_str())
        .filter_map(|a| a.split('/').next())
        .find(|a| a.parse::<std::net::Ipv4Addr>().is_ok())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_result_address() {
        let r = serde_json::json!({"cniVersion":"1.0.0","ips":[
            {"address":"fd00::2/64"},{"address":"198.18.0.7/16","gateway":"198.18.0.1"}]});
        assert_eq!(first_ipv4(&r).as_deref(), Some("198.18.0.7"));
        assert_eq!(first_ipv4(&serde_json::json!({})), None);
    }
}
