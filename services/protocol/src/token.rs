//! Join and bootstrap tokens: minted by the server (rotation) and by the
//! agent's drivers (a first server's bootstrap), so both share one rule.

use rand::RngCore;

/// A fresh bootstrap token for `k3s server --cluster-init --token <token>`:
/// 64 random hex characters.
///
/// It is a *short* token (password only) on purpose: k3s refuses a
/// `K10<ca hash>::server:<password>` token on the first server, whose CA does
/// not exist yet. The secure token joiners need is the node token the
/// server then writes (the agent's `Runtime::read_artifacts`), which is
/// `K10<ca hash>::server:<this token>`. Used by both drivers.
pub fn new_token() -> String {
    random_hex(32)
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    hex::encode(buf)
}
