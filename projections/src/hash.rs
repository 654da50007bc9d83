//! The digest of a projection's state: what `powernode replay --hash`, the
//! API's `system_state_hash` and the rig compare.

use crate::{FleetState, Projection};
use sha2::{Digest, Sha256};

/// Hex SHA-256 of the state's canonical snapshot bytes
/// ([`Projection::snapshot`]): equal states, equal digests. `powernode
/// replay --hash` prints it as `sha256:<hex>`.
pub fn state_hash(state: &FleetState) -> String {
    // The fleet holds only maps, strings, numbers and addresses, all of
    // which CBOR represents; encoding cannot fail.
    let bytes = state
        .snapshot()
        .expect("a fleet state always encodes to CBOR");
    hex::encode(Sha256::digest(&bytes))
}
