//! The client against real servers on loopback sockets: actions and the
//! event stream.

mod actions;
mod events;
mod support;
