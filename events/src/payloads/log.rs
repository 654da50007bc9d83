//! Facts about the log itself.

payload! {
    /// A record in the log could not be used (bad CBOR, unknown kind, missing
    /// field, bad signature …). The consumer that met it moved on.
    pub struct RecordRejected {
        /// Log sequence of the rejected record.
        pub rejected_seq: u64,
        /// Kind of the rejected record, when it could be read.
        pub rejected_kind: Option<String>,
        /// Event id of the rejected record, when it could be read.
        pub rejected_event_id: Option<String>,
        /// Why it was rejected.
        pub reason: String,
        /// The consumer that rejected it.
        pub observed_by: String,
    }
}

payload! {
    /// Agent submissions the intake refused without being able to attribute
    /// them to a verified sender (not signed by an enrolled key: unknown
    /// instance, bad signature, malformed, oversized …), counted in memory
    /// and summarised: at most one of these per window, so junk from
    /// unauthenticated senders cannot grow the log. Refusals of submissions
    /// signed by an enrolled key are recorded one by one
    /// (`system.agent.submission_rejected`).
    pub struct AgentSubmissionsRejectedSummary {
        /// Who counted them (`intake`).
        pub observed_by: String,
        /// When the window opened (its first refusal).
        pub window_start: chrono::DateTime<chrono::Utc>,
        /// When the window closed.
        pub window_end: chrono::DateTime<chrono::Utc>,
        /// Submissions refused in the window.
        pub count: u64,
        /// The same, per refusal code (`bad_signature`, `unknown_instance` …).
        pub by_reason: std::collections::BTreeMap<String, u64>,
    }
}
