//! Whether an event is about an object: its aggregate is the object, or its
//! payload names the object's id anywhere (a join request names its target
//! cluster, a promotion its virtual IP and instances).

use powernode_events::Envelope;
use serde_json::Value;

/// True when `event` is about the object with id `id`.
pub fn concerns(event: &Envelope, id: &str) -> bool {
    if event.aggregate.id == id {
        return true;
    }
    match serde_json::to_value(&event.payload) {
        Ok(v) => names(&v, id),
        Err(_) => false,
    }
}

/// True when some string in `v` (keys excluded) equals `id`.
pub fn names(v: &Value, id: &str) -> bool {
    match v {
        Value::String(s) => s == id,
        Value::Array(a) => a.iter().any(|x| names(x, id)),
        Value::Object(o) => o.values().any(|x| names(x, id)),
        _ => false,
    }
}
