//! The client against real servers on loopback sockets.

mod actions;
mod support;
