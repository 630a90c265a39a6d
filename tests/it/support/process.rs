//! Processes a test starts, each in its own process group and stopped with the whole group
//! on drop, pass or fail (SIGTERM, a grace period, then SIGKILL).

use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A process in its own process group, stopped with its whole group on drop.
pub struct Guarded(pub Child);

impl Guarded {
    pub fn spawn(command: &mut Command) -> Self {
        Guarded(command.process_group(0).spawn().unwrap())
    }

    pub fn exited(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(Some(_)))
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        use nix::sys::signal::{Signal, killpg};
        use nix::unistd::Pid;
        let group = Pid::from_raw(self.0.id() as i32);
        let _ = killpg(group, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if self.exited() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.0.wait();
    }
}
