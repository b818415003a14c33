//! A child process that cannot outlive its test.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};

/// A child process killed and reaped on drop. Its stdout and stderr go to a log file whose tail
/// is printed when the test is panicking, so a failed live test shows why.
pub struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Starts `cmd` with both output streams in `log`; panics (naming the command) on failure.
    pub fn spawn(mut cmd: Command, log: PathBuf) -> Self {
        let out = std::fs::File::create(&log).expect("create the log file");
        let err = out.try_clone().expect("clone the log file handle");
        let child = cmd
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("failed to start {cmd:?}: {e}"));
        Self { child, log }
    }

    /// The last 4000 bytes of the log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let mut start = text.len().saturating_sub(4000);
        while !text.is_char_boundary(start) {
            start += 1;
        }
        text[start..].to_owned()
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The exit status once the process has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- {} ---\n{}", self.log.display(), self.log_tail());
        }
    }
}
