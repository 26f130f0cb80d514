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

/// A client for one endpoint, signing as one principal for one region.
pub struct SignedClient {
    agent: ureq::Agent,
    url: String,
    host: String,
    region: String,
    creds: SigningCredentials,
}

impl std::fmt::Debug for SignedClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedClient")
            .field("url", &self.url)
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
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .build()
            .into();
        Ok(SignedClient {
            agent,
            url: format!("{}://{host}/", uri.scheme_str().unwrap_or("http")),
            host,
            region: region.into(),
            creds,
        })
    }

    /// The endpoint's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// POSTs `body` to `/` with `headers`, signed for `service`; returns
    /// the status and the answer (wiped on drop: it may hold key material).
    pub fn post(
        &self,
        service: &str,
        headers: &[(&'static str, String)],
        body: Vec<u8>,
    ) -> Result<(u16, Zeroizing<Vec<u8>>), ClientError> {
        let transport = |detail: String| ClientError::Transport {
            endpoint: self.url.clone(),
            detail,
        };
        let hv = |s: &str| {
            http::HeaderValue::from_str(s).map_err(|_| ClientError::Endpoint(self.url.clone()))
        };
        let mut map = http::HeaderMap::new();
        map.insert(http::header::HOST, hv(&self.host)?);
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
        let mut req = http::Request::post(&self.url);
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
