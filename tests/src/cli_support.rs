//! Running the `powernode` binary in CLI tests: a clean client
//! environment, a free port, a child killed on drop.

use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The binary with a clean client environment and stdin closed (no TTY).
pub fn powernode(bin: &Path) -> Command {
    let mut c = Command::new(bin);
    for var in [
        "POWERNODE_URL",
        "POWERNODE_TOKEN",
        "POWERNODE_DATA_DIR",
        "POWERNODE_LISTEN",
        "RUST_LOG",
    ] {
        c.env_remove(var);
    }
    c.stdin(Stdio::null());
    c
}

/// A TCP port free right now on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed (and reaped) when dropped.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Output bytes as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
