//! The confirmation store: ids a destructive tool's first call answers,
//! each bound to the principal (token id), the tool and the object, single
//! use, expiring. It lives in the process that serves MCP: the API process
//! for `/mcp`, the `powernode mcp` process for stdio.

use rand::RngCore;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a confirmation id is good for, unless configured otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(120);

/// The environment variable that overrides [`DEFAULT_TTL`] (seconds).
pub const TTL_ENV: &str = "POWERNODE_MCP_CONFIRMATION_TTL_SECS";

/// The most confirmations waiting at once; the oldest go first.
const MAX_PENDING: usize = 10_000;

#[derive(Debug, Clone)]
struct Pending {
    principal: String,
    tool: String,
    object: String,
    expires: Instant,
}

/// Why a presented confirmation id is refused: each is a tool error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// No such id (never issued, already used, or issued by another process).
    Unknown,
    /// Its time ran out.
    Expired,
    /// Issued to another token.
    OtherPrincipal,
    /// Issued for another tool.
    OtherTool,
    /// Issued for another object.
    OtherObject,
}

impl Refused {
    /// The error code.
    pub fn code(self) -> &'static str {
        match self {
            Refused::Unknown => "confirmation_unknown",
            Refused::Expired => "confirmation_expired",
            Refused::OtherPrincipal => "confirmation_of_another_principal",
            Refused::OtherTool => "confirmation_for_another_tool",
            Refused::OtherObject => "confirmation_for_another_object",
        }
    }

    /// The message naming the problem.
    pub fn message(self, id: &str, object: &str) -> String {
        match self {
            Refused::Unknown => format!(
                "confirmation id {id} is unknown: never issued here, already used, or issued by \
                 another MCP server process; call the tool without it to get a new one"
            ),
            Refused::Expired => format!(
                "confirmation id {id} has expired; call the tool without it to get a new one"
            ),
            Refused::OtherPrincipal => format!(
                "confirmation id {id} was issued to another operator token; it confirms nothing for this one"
            ),
            Refused::OtherTool => format!("confirmation id {id} was issued for another tool"),
            Refused::OtherObject => format!(
                "confirmation id {id} was issued for another object, not {object}; call the tool \
                 without it to get one for {object}"
            ),
        }
    }
}

/// The pending confirmations (cheap to clone; clones share them).
#[derive(Debug, Clone)]
pub struct Store {
    pending: Arc<Mutex<HashMap<String, Pending>>>,
    ttl: Duration,
}

impl Default for Store {
    fn default() -> Self {
        Self::new(ttl_from_env())
    }
}

/// [`DEFAULT_TTL`], or what [`TTL_ENV`] says.
pub fn ttl_from_env() -> Duration {
    std::env::var(TTL_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|s| *s > 0)
        .map_or(DEFAULT_TTL, Duration::from_secs)
}

impl Store {
    /// An empty store whose ids last `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            pending: Arc::default(),
            ttl,
        }
    }

    /// How long ids last.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A new id for `principal` calling `tool` on `object`.
    pub fn issue(&self, principal: &str, tool: &str, object: &str) -> String {
        let mut bytes = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut bytes);
        let id = format!("cf-{}", hex(&bytes));
        let now = Instant::now();
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.retain(|_, p| p.expires > now);
        if pending.len() >= MAX_PENDING {
            if let Some(oldest) = pending
                .iter()
                .min_by_key(|(_, p)| p.expires)
                .map(|(k, _)| k.clone())
            {
                pending.remove(&oldest);
            }
        }
        pending.insert(
            id.clone(),
            Pending {
                principal: principal.to_string(),
                tool: tool.to_string(),
                object: object.to_string(),
                expires: now + self.ttl,
            },
        );
        id
    }

    /// Uses `id` for `principal` calling `tool` on `object`: removed when it
    /// matches (single use) or has expired; kept when presented by another
    /// principal or for another tool or object (they cannot spend it).
    pub fn redeem(
        &self,
        id: &str,
        principal: &str,
        tool: &str,
        object: &str,
    ) -> Result<(), Refused> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let Some(p) = pending.get(id) else {
            return Err(Refused::Unknown);
        };
        if p.principal != principal {
            return Err(Refused::OtherPrincipal);
        }
        if p.expires <= Instant::now() {
            pending.remove(id);
            return Err(Refused::Expired);
        }
        if p.tool != tool {
            return Err(Refused::OtherTool);
        }
        if p.object != object {
            return Err(Refused::OtherObject);
        }
        pending.remove(id);
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_single_use_and_bound() {
        let s = Store::new(Duration::from_secs(60));
        let id = s.issue("tok-a", "t", "cl-1");
        assert_eq!(
            s.redeem(&id, "tok-b", "t", "cl-1"),
            Err(Refused::OtherPrincipal)
        );
        assert_eq!(
            s.redeem(&id, "tok-a", "t", "cl-2"),
            Err(Refused::OtherObject)
        );
        assert_eq!(s.redeem(&id, "tok-a", "u", "cl-1"), Err(Refused::OtherTool));
        assert_eq!(s.redeem(&id, "tok-a", "t", "cl-1"), Ok(()));
        assert_eq!(s.redeem(&id, "tok-a", "t", "cl-1"), Err(Refused::Unknown));
        let s = Store::new(Duration::from_millis(1));
        let id = s.issue("tok-a", "t", "cl-1");
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(s.redeem(&id, "tok-a", "t", "cl-1"), Err(Refused::Expired));
    }
}
