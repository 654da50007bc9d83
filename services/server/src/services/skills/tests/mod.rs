//! Given/when/then for the executor's rules.

mod provision;
mod rolling;
mod world;
