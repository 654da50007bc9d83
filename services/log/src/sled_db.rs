//! Opening a sled database the way every powernode store does.

use std::path::Path;
use std::time::{Duration, Instant};

/// How long [`open`] keeps retrying while the directory lock is taken: sled
/// releases its lock shortly *after* the last handle is dropped (its I/O
/// threads finish first), so a quick close-and-reopen in one process would
/// otherwise fail spuriously. Another live process holding the lock still
/// fails, after this grace period.
pub const LOCK_GRACE: Duration = Duration::from_millis(1500);

/// True when `e` is sled failing to take the directory lock.
pub fn is_lock_error(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

/// sled's page cache per database (its default is 1 GiB; checkpoints and
/// secrets are written far more than read, and the embedded log reads
/// mostly what it just wrote).
pub const CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// Opens the sled database in `dir`, waiting out (for at most
/// [`LOCK_GRACE`]) a lock that a just-dropped handle is still releasing.
pub fn open(dir: &Path) -> Result<sled::Db, sled::Error> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        match sled::Config::new()
            .path(dir)
            .cache_capacity(CACHE_BYTES)
            .open()
        {
            Err(e) if is_lock_error(&e) && started.elapsed() < LOCK_GRACE => {
                // Blocking sleep: opening is synchronous and this only happens
                // when the directory is contended, for at most LOCK_GRACE.
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}
