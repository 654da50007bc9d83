//! Approval requests for actions that wait for an operator.

payload! {
    /// An action is waiting for an operator's approval.
    pub struct ApprovalRequested {
        /// Approval id.
        pub approval_id: String,
        /// What is to be approved, e.g. `vip_promotion`.
        pub action: String,
        /// The aggregate the action targets, as `type/id`.
        pub subject: String,
        /// Human summary.
        pub summary: String,
        /// When the request stops being approvable (RFC 3339).
        pub expires_at: String,
    }
}

payload! {
    /// An operator approved a request.
    pub struct ApprovalGranted {
        /// Approval id.
        pub approval_id: String,
    }
}

payload! {
    /// An operator rejected a request.
    pub struct ApprovalRejected {
        /// Approval id.
        pub approval_id: String,
        /// The operator's reason.
        pub reason: String,
    }
}

payload! {
    /// A request expired before anyone decided.
    pub struct ApprovalExpired {
        /// Approval id.
        pub approval_id: String,
    }
}

payload! {
    /// A request can no longer be approved: what it was about changed
    /// (the silent holder recovered, another promotion landed).
    pub struct ApprovalSuperseded {
        /// Approval id.
        pub approval_id: String,
        /// What changed.
        pub reason: String,
    }
}
