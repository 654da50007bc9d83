//! The client against real servers on loopback sockets: actions, the
//! event stream, the export download, https.

mod actions;
mod events;
mod export;
mod support;
mod tls;
