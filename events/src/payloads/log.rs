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
