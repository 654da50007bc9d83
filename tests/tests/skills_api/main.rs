//! The day-2 actions against a real nats-server and the API alone (no
//! service runs executions here: what the log holds is what the actions
//! appended): the module catalog and version pins, `execute_skill` dry
//! runs (the runbook's call as written), bad input that appends nothing,
//! one execution per template at a time, and pause, resume and cancel.
//!
//! * `world` — the API, an account and a 3-server + 3-worker cluster;
//! * `catalog` — `system_create_module_version`, `system_list_modules`, pins;
//! * `execute` — dry runs, refusals, concurrent starts, pause/resume/cancel;
//! * `provision` — `provision_cluster`'s start, attachments and bootstrap assignment.

mod catalog;
mod execute;
mod provision;
mod world;
