//! The client side of the wire: SigV4-signed POSTs to a ferry (or AWS)
//! endpoint over HTTP/1.1, for ferry's own command-line tools and plugins
//! (`ferry spot`, the CSI plugin's KMS calls). One implementation of
//! "sign with [`crate::sigv4::Signer`], send, read a bounded answer".
//!
//! [`kms`] is the KMS client over it, shared by the CSI plugin and a
//! remote host's storage keys.

pub mod kms;

use std::time::Duration;

use zeroize::Zeroizing;

use crate::sigv4::{Signer, SigningCredentials};

/// Largest answer read (the services' answers are small JSON documents).
const MAX_ANSWER: u64 = 1 << 20;

/// Why a call did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The endpoint URL is unusable.
    #[error("bad endpoint {0:?}: expected http://HOST:PORT or https://HOST[:PORT]")]
    Endpoint(String),
    /// The endpoint could not be reached, or did not answer.
    #[error("cannot reach {endpoint}: {detail}")]
    Transport {
        /// The endpoint.
        endpoint: String,
        /// Why.
        detail: String,
    },
}

/// A client for one endpoint (or several equivalent ones: replicas),
/// signing as one principal for one region.
pub struct SignedClient {
    agent: ureq::Agent,
    /// `(url, host)` of each endpoint.
    targets: Vec<(String, String)>,
    /// The endpoint asked first: the one that answered last.
    current: std::sync::atomic::AtomicUsize,
    region: String,
    creds: SigningCredentials,
}

impl std::fmt::Debug for SignedClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedClient")
            .field("url", &self.url())
            .field("region", &self.region)
            .field("access_key_id", &self.creds.access_key_id)
            .finish_non_exhaustive()
    }
}

impl SignedClient {
    /// A client for `endpoint` (`http://HOST:PORT`, an origin without a
    /// path), signing for `region`; each call gives up after `timeout`.
    pub fn new(
        endpoint: &str,
        region: &str,
        creds: SigningCredentials,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        Self::new_any(&[endpoint], region, creds, timeout)
    }

    /// A client for equivalent `endpoints` (replicas of one API, at least
    /// one): a call that cannot reach one goes to the next, and the one
    /// that answered is asked first next time.
    pub fn new_any(
        endpoints: &[&str],
        region: &str,
        creds: SigningCredentials,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        if endpoints.is_empty() {
            return Err(ClientError::Endpoint(String::new()));
        }
        let targets = endpoints
            .iter()
            .map(|e| origin(e))
            .collect::<Result<Vec<_>, _>>()?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .build()
            .into();
        Ok(SignedClient {
            agent,
            targets,
            current: std::sync::atomic::AtomicUsize::new(0),
            region: region.into(),
            creds,
        })
    }

    /// The URL of the endpoint asked first.
    pub fn url(&self) -> &str {
        let i = self.current.load(std::sync::atomic::Ordering::Relaxed) % self.targets.len();
        &self.targets[i].0
    }

    /// POSTs `body` to `/` with `headers`, signed for `service`, to the
    /// endpoint asked first, then to each other while they cannot be
    /// reached; returns the status and the answer (wiped on drop: it may
    /// hold key material). A call whose answer was lost may thus reach two
    /// replicas: the calls made through it are safe to repeat (the agent
    /// API's, and the KMS calls a host makes, whose callers retry anyway).
    pub fn post(
        &self,
        service: &str,
        headers: &[(&'static str, String)],
        body: Vec<u8>,
    ) -> Result<(u16, Zeroizing<Vec<u8>>), ClientError> {
        use std::sync::atomic::Ordering;
        let n = self.targets.len();
        let first = self.current.load(Ordering::Relaxed) % n;
        let mut last = None;
        for k in 0..n {
            let at = (first + k) % n;
            match self.post_to(at, service, headers, body.clone()) {
                Ok(answer) => {
                    self.current.store(at, Ordering::Relaxed);
                    return Ok(answer);
                }
                Err(e @ ClientError::Endpoint(_)) => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(ClientError::Endpoint(String::new())))
    }

    /// One POST to endpoint `at`.
    fn post_to(
        &self,
        at: usize,
        service: &str,
        headers: &[(&'static str, String)],
        body: Vec<u8>,
    ) -> Result<(u16, Zeroizing<Vec<u8>>), ClientError> {
        let (url, host) = &self.targets[at];
        let transport = |detail: String| ClientError::Transport {
            endpoint: url.clone(),
            detail,
        };
        let hv = |s: &str| {
            http::HeaderValue::from_str(s).map_err(|_| ClientError::Endpoint(url.clone()))
        };
        let mut map = http::HeaderMap::new();
        map.insert(http::header::HOST, hv(host)?);
        for (k, v) in headers {
            map.insert(*k, hv(v)?);
        }
        Signer {
            creds: &self.creds,
            region: &self.region,
            service,
        }
        .sign(
            "POST",
            "/",
            "",
            &mut map,
            &body,
            time::OffsetDateTime::now_utc(),
        )
        .map_err(|e| transport(format!("signing: {e}")))?;
        let mut req = http::Request::post(url);
        for (k, v) in &map {
            req = req.header(k, v);
        }
        let req = req
            .body(body)
            .map_err(|e| transport(format!("request: {e}")))?;
        let mut resp = self.agent.run(req).map_err(|e| transport(e.to_string()))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .read_to_vec()
            .map_err(|e| transport(e.to_string()))?;
        Ok((status, Zeroizing::new(bytes)))
    }
}

/// An AWS JSON error answer's code (`__type`, less any `namespace#`
/// prefix some services put before it) and message (`message` or
/// `Message`); `None` if it names no code.
pub fn aws_error(v: &serde_json::Value) -> Option<(String, String)> {
    let code = v.get("__type").and_then(serde_json::Value::as_str)?;
    let code = code.rsplit('#').next().unwrap_or(code).to_owned();
    let message = v
        .get("message")
        .or_else(|| v.get("Message"))
        .and_then(serde_json::Value::as_str)
        .unwrap_or("")
        .to_owned();
    Some((code, message))
}

/// `(url, host)` of an endpoint: `http://HOST:PORT` or `https://HOST[:PORT]`,
/// an origin without a path.
fn origin(endpoint: &str) -> Result<(String, String), ClientError> {
    let uri: http::Uri = endpoint
        .parse()
        .map_err(|_| ClientError::Endpoint(endpoint.into()))?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    let host = match (scheme_ok, uri.authority()) {
        (true, Some(a)) => a.as_str().to_owned(),
        _ => return Err(ClientError::Endpoint(endpoint.into())),
    };
    if uri.path() != "/" && !uri.path().is_empty() {
        return Err(ClientError::Endpoint(endpoint.into()));
    }
    Ok((
        format!("{}://{host}/", uri.scheme_str().unwrap_or("http")),
        host,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> SigningCredentials {
        SigningCredentials {
            access_key_id: "AKIATEST".into(),
            secret_access_key: Zeroizing::new("secret".into()),
        }
    }

    #[test]
    fn endpoint_must_be_an_http_origin() {
        let t = Duration::from_secs(1);
        for bad in ["ftp://h:1", "h:1", "http://h:1/path", "not a url"] {
            assert!(
                matches!(
                    SignedClient::new(bad, "us-east-1", creds(), t),
                    Err(ClientError::Endpoint(_))
                ),
                "{bad}"
            );
        }
        let c = SignedClient::new("http://127.0.0.1:9", "us-east-1", creds(), t).unwrap();
        assert_eq!(c.url(), "http://127.0.0.1:9/");
    }

    #[test]
    fn unreachable_endpoint_is_a_transport_error() {
        // Port 9 (discard) on loopback: nothing listens.
        let c = SignedClient::new(
            "http://127.0.0.1:9",
            "us-east-1",
            creds(),
            Duration::from_secs(5),
        )
        .unwrap();
        assert!(matches!(
            c.post("kms", &[], b"{}".to_vec()),
            Err(ClientError::Transport { .. })
        ));
    }
}
