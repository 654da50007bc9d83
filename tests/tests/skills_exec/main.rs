//! The skills service against a real nats-server: executions appended to
//! the log run batch by batch as (hand-driven) agents report, agents learn
//! their step from their heartbeat's answer, reports are checked by the
//! intake, silent steps time out, and a restart of the service mid-way
//! goes on where it was without starting any step twice.

mod run;
mod world;
