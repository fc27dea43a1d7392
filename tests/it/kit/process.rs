//! Child processes of a test: killed when the test ends, waited for by the
//! event they announce.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::*;

/// A child process killed (and reaped) when the test ends, pass or fail.
pub struct Guard {
    pub child: Child,
    pub log: PathBuf,
}

impl Guard {
    pub fn spawn(mut cmd: Command, log_name: &str) -> Guard {
        let log = log_dir().join(log_name);
        let out = File::create(&log).unwrap();
        cmd.stdout(Stdio::from(out.try_clone().unwrap())).stderr(Stdio::from(out)).stdin(Stdio::null());
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        Guard { child, log }
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Guard {
    /// Wait (without blocking the test's runtime) until the process exits.
    pub async fn exited(&mut self, within: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(start.elapsed() < within, "still running after {within:?}:\n{}", self.log_tail());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll `url` until it answers with `want`, or panic with the log's tail.
pub async fn wait_for(url: &str, want: u16, within: Duration, guard: &mut Guard) {
    let http = reqwest::Client::new();
    let start = Instant::now();
    loop {
        if let Ok(Some(status)) = guard.child.try_wait() {
            panic!("process exited with {status} before {url} answered:\n{}", guard.log_tail());
        }
        if let Ok(resp) = http.get(url).send().await {
            if resp.status().as_u16() == want {
                return;
            }
        }
        if start.elapsed() > within {
            panic!("{url} did not answer {want} within {within:?}:\n{}", guard.log_tail());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
