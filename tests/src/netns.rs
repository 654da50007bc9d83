//! Network namespaces for the data-plane tests: the harness lives in
//! `powernode-bench` ([`powernode_bench::dataplane::netlab`], shared with
//! `powernode bench dataplane`) and is re-exported here — an underlay
//! bridge, hosts plugged into it, processes run inside them, sockets opened
//! from them, hand-made WireGuard tunnels and HTTPS probes — plus
//! [`fleet`]: the platform with every agent in its own host, data plane on.

pub mod fleet;

pub use powernode_bench::dataplane::netlab::*;
