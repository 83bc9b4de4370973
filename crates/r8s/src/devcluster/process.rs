//! The devcluster's processes: started detached (a session of their own, output to a log
//! file) inside a node's network namespace, their PID written to a file; stopped by that PID
//! only once its command line shows it is the process `up` started.

use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

/// The descriptor a started process finds its inherited listening socket at (as with
/// systemd's socket activation).
pub const LISTEN_FD: RawFd = 3;

/// A process to start: the command, the namespace to enter, and where its output and PID go.
pub struct Detached<'a> {
    pub command: Command,
    /// `/run/netns/<name>` of the network namespace it runs in.
    pub netns: &'a str,
    pub log: &'a Path,
    pub pid_file: &'a Path,
    /// A socket handed to it as [`LISTEN_FD`].
    pub listener: Option<&'a std::net::TcpListener>,
}

impl Detached<'_> {
    pub fn spawn(mut self) -> anyhow::Result<Child> {
        let netns_path = format!("/run/netns/{}", self.netns);
        let netns = File::open(&netns_path).with_context(|| format!("cannot open {netns_path}"))?;
        let log = File::create(self.log)
            .with_context(|| format!("cannot create {}", self.log.display()))?;
        let netns_fd = netns.as_raw_fd();
        let listen_fd = self.listener.map(AsRawFd::as_raw_fd);
        self.command
            // A log file, not a terminal: no colour codes.
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // SAFETY: only async-signal-safe calls between fork and exec. setns comes before
        // dup2, which would replace the namespace's descriptor were its number LISTEN_FD.
        unsafe {
            self.command.pre_exec(move || {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // Only the network namespace: the host's mounts (and cgroups) stay visible,
                // as runc needs them.
                if libc::setns(netns_fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if let Some(fd) = listen_fd {
                    // dup2 leaves the copy open across exec; onto itself it would not.
                    let moved = if fd == LISTEN_FD {
                        libc::fcntl(fd, libc::F_SETFD, 0)
                    } else {
                        libc::dup2(fd, LISTEN_FD)
                    };
                    if moved < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let program = self.command.get_program().to_string_lossy().into_owned();
        let child = self
            .command
            .spawn()
            .with_context(|| format!("cannot start {program} in {netns_path}"))?;
        std::fs::write(self.pid_file, format!("{}\n", child.id()))
            .with_context(|| format!("cannot write {}", self.pid_file.display()))?;
        Ok(child)
    }
}

/// A process the devcluster started, as its PID file records it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub pid_file: PathBuf,
    /// Arguments its command line holds (a data dir), which tell it from a process that
    /// later got the same PID.
    pub markers: Vec<String>,
}

impl Recorded {
    /// The PID, if the file names a live process whose command line holds the markers.
    pub fn running(&self) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(&self.pid_file)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        let ours = self.markers.iter().all(|m| args.contains(&m.as_bytes()));
        (pid > 0 && ours && alive(pid)).then_some(pid)
    }
}

/// Whether `pid` exists and is not a zombie (an exited process its parent has not reaped).
pub fn alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name, which is in parentheses and may hold anything.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, None | Some("Z" | "X"))
}

/// SIGTERM to each process, SIGKILL to those still there after `grace`; returns the PIDs that
/// outlived even that.
pub fn stop(pids: &[i32], grace: Duration) -> Vec<i32> {
    for &pid in pids {
        // SAFETY: a process this devcluster started, checked by its command line.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    if wait_gone(pids, grace) {
        return Vec::new();
    }
    for &pid in pids.iter().filter(|&&pid| alive(pid)) {
        // SAFETY: as above; it ignored SIGTERM for the whole grace period.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    wait_gone(pids, Duration::from_secs(5));
    pids.iter().copied().filter(|&pid| alive(pid)).collect()
}

fn wait_gone(pids: &[i32], limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if !pids.iter().any(|&pid| alive(pid)) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The last lines of a log, to show why a process stopped.
pub fn log_tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
