//! TLS for the operator API (issue 17 item 1): `powernode up` / `serve api`
//! serve https by default with a CA and server certificate made in the data
//! dir on first start, or the operator's `--tls-cert/--tls-key`;
//! `--insecure-http` serves plain http on loopback only.
//!
//! (Stub of the contract commit: filled in by the TLS work.)

/// TLS options of a node that serves the API.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {}
