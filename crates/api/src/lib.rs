//! ferry's API front end: one HTTP/1.1 listener for every AWS protocol ferry
//! speaks. It authenticates each request with SigV4, frames it, and hands it
//! to the service registered for it; it never sees domain types.
//!
//! Module map:
//! - [`sigv4`]: canonical request, signer and verifier (AWS Signature V4).
//! - [`auth`]: who owns which access key (the credential table), and why a
//!   key is refused (invalid, or an expired session).
//! - [`calls`]: the services as an already-authenticated caller (the
//!   console's session) through the same authorization as a signed request.
//! - [`client`]: the client side: SigV4-signed POSTs for ferry's own
//!   tools and plugins, and [`client::kms`], their KMS client.
//! - [`credentials`]: the credentials file (shared-credentials format) that
//!   hands the administrator's access key to clients.
//! - `gate`: the authorization gate: identity policies for the services
//!   that do not authorize themselves (ECS, Logs, EFS).
//! - [`router`]: the services a server answers: JSON 1.1 services by
//!   `X-Amz-Target` prefix, query services (IAM, STS) by the credential
//!   scope's service name, REST services by path.
//! - [`health`]: `GET /health`, unauthenticated: whether the store
//!   answers, for load balancers.
//! - [`http`]: the listener: body limits, JSON 1.1 and query (XML) framing,
//!   error rendering, graceful shutdown.
//! - [`listener`]: header, idle and body timeouts; connection caps (in all
//!   and per source address) that evict waiting connections first.

#![forbid(unsafe_code)]

pub mod auth;
pub mod calls;
pub mod client;
pub mod credentials;
mod gate;
pub mod health;
pub mod http;
pub mod listener;
pub mod router;
pub mod sigv4;

pub use auth::{Authenticator, KeyRefused, StaticKeys};
pub use calls::Calls;
pub use http::{Body, HttpResponse, HttpService, full_body, serve};
pub use listener::Limits;
pub use router::Router;
