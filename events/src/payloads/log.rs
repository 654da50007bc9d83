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

payload! {
    /// The platform sealed a contiguous range of the log: `digest` is a hash
    /// chain over every stored record of `from_seq..=through_seq` (each
    /// record's sequence, subject and bytes, see [`crate::seal`]), signed
    /// with the platform's seal key. A verifier that trusts `key` need not
    /// check the per-event signatures inside the range again: any changed,
    /// missing, reordered or inserted record changes the digest.
    pub struct LogSealed {
        /// The seal chain (one per log: `log`); the aggregate every seal is
        /// appended to, so two sealers cannot both seal the same range.
        pub chain: String,
        /// First sequence of the range (the previous seal's `through_seq` + 1).
        pub from_seq: u64,
        /// Last sequence of the range (inclusive).
        pub through_seq: u64,
        /// SHA-256 hash chain over the range's records (hex).
        pub digest: String,
        /// The first 4 bytes of each record's leaf hash, in order (hex): not
        /// needed to trust the range, only to name the record that differs.
        pub fingerprints: String,
        /// The platform seal key's public half (hex ed25519).
        pub key: String,
        /// ed25519 signature of the seal message (hex, see [`crate::seal`]).
        pub signature: String,
    }
}
