//! Processes and threads, from /proc.

/// The thread group (process) of thread `tid`, from `/proc/<tid>/status`; `None` once the
/// thread is gone.
pub fn thread_group(tid: u32) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/{tid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// A process given as a pid or a command name (`/proc/PID/comm`; `*` and `?` glob).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessSpec {
    /// One process.
    Pid(u32),
    /// Every process whose command name matches.
    Name(String),
}

impl ProcessSpec {
    /// `1234` is a pid, anything else a command name.
    pub fn parse(s: &str) -> Self {
        match s.parse() {
            Ok(p) => ProcessSpec::Pid(p),
            Err(_) => ProcessSpec::Name(s.to_string()),
        }
    }

    /// The processes (thread group ids) it names now.
    pub fn tgids(&self) -> Vec<u32> {
        match self {
            ProcessSpec::Pid(p) => thread_group(*p).into_iter().collect(),
            ProcessSpec::Name(n) => {
                let Ok(dir) = std::fs::read_dir("/proc") else {
                    return Vec::new();
                };
                let mut v: Vec<u32> = dir
                    .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                    .filter(|pid| {
                        std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| {
                            crate::sets::uprobe::resolve::glob_match(n, c.trim_end())
                        })
                    })
                    .collect();
                v.sort_unstable();
                v
            }
        }
    }
}

impl std::fmt::Display for ProcessSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProcessSpec::Pid(p) => write!(f, "pid {p}"),
            ProcessSpec::Name(n) => write!(f, "{n:?}"),
        }
    }
}

/// A command started held before its `exec`, so a tool follows its pid before it runs a single
/// instruction of its own: `sh -c 'read _ <&3; exec "$@"'` waits on a pipe (fd 3) that
/// [`HeldCommand::release`] writes to, then execs the command in the same process.
pub struct HeldCommand {
    child: std::process::Child,
    release: Option<std::fs::File>,
}

impl HeldCommand {
    /// Starts `argv` held; one clear error when its program is not found. With
    /// `stdout_to_stderr` its output goes to this process's stderr (a JSON stream on stdout
    /// stays parseable).
    pub fn spawn(argv: &[String], stdout_to_stderr: bool) -> crate::Result<Self> {
        use std::os::fd::{AsFd, AsRawFd};
        use std::os::unix::process::CommandExt;
        let prog = argv
            .first()
            .ok_or_else(|| crate::Error::usage("give a command to run"))?;
        if !prog.contains('/') && !on_path(prog) {
            return Err(crate::Error::usage(format!(
                "{prog}: command not found in PATH"
            )));
        }
        // Both ends close on exec: the shell keeps only the read end, as fd 3.
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| crate::Error::usage(format!("pipe for {prog}: {e}")))?;
        let read_fd = read.as_raw_fd();
        let mut cmd = std::process::Command::new("/bin/sh");
        // Without the release line (the tool died) the command does not run.
        cmd.args(["-c", "read _ <&3 || exit 125; exec 3<&-; exec \"$@\"", "sh"])
            .args(argv);
        // SAFETY: between fork and exec the closure only calls dup2 and fcntl, which are
        // async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                // dup2 onto itself keeps close-on-exec: clear it then.
                let rc = if read_fd == 3 {
                    libc::fcntl(3, libc::F_SETFD, 0)
                } else {
                    libc::dup2(read_fd, 3)
                };
                if rc < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        if stdout_to_stderr {
            let err = std::io::stderr()
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| crate::Error::usage(format!("stderr for {prog}: {e}")))?;
            cmd.stdout(err);
        }
        let child = cmd
            .spawn()
            .map_err(|e| crate::Error::usage(format!("start {prog}: {e}")))?;
        drop(read);
        Ok(Self {
            child,
            release: Some(std::fs::File::from(write)),
        })
    }

    /// Its pid (the command keeps the shell's).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Lets it exec and run.
    pub fn release(&mut self) {
        use std::io::Write;
        if let Some(mut w) = self.release.take() {
            let _ = w.write_all(b"\n");
        }
    }

    /// Its exit status once it has exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for HeldCommand {
    fn drop(&mut self) {
        // One still held never ran (the tool failed before tracing it): it is stopped. One
        // released runs on when the tool stops early (--duration).
        if self.release.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn on_path(prog: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|d| {
            std::fs::metadata(d.join(prog)).is_ok_and(|m| {
                use std::os::unix::fs::PermissionsExt;
                m.is_file() && m.permissions().mode() & 0o111 != 0
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_belongs_to_its_process() {
        let me = std::process::id();
        assert_eq!(thread_group(me), Some(me));
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            tx.send(nix::unistd::gettid().as_raw() as u32).unwrap();
            let _ = done_rx.recv();
        });
        let tid = rx.recv().unwrap();
        assert_ne!(tid, me);
        assert_eq!(thread_group(tid), Some(me), "while the thread lives");
        drop(done_tx);
        t.join().unwrap();
        assert_eq!(thread_group(u32::MAX), None);
    }

    #[test]
    fn a_process_is_found_by_pid_or_by_its_command_name() {
        let me = std::process::id();
        assert_eq!(ProcessSpec::parse(&me.to_string()).tgids(), vec![me]);
        let comm = std::fs::read_to_string("/proc/self/comm").unwrap();
        let by_name = ProcessSpec::parse(comm.trim_end()).tgids();
        assert!(by_name.contains(&me), "{by_name:?}");
        assert!(ProcessSpec::parse("no-such-process-name")
            .tgids()
            .is_empty());
    }
}
