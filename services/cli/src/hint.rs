//! Hints for empty lists (the TLS/contexts work replaces this stub): why a
//! list may be empty, e.g. a token of another account.

use powernode_client::Api;

/// A hint to print (on stderr) when the list of `kind` came back empty,
/// or `None`. (Stub: no hint yet.)
pub async fn empty_list_hint(_api: &Api, _kind: &str) -> Option<String> {
    None
}
