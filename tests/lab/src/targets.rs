//! Target programs of the cpu tools' tests, built from `tests/targets/` on first use (Rust
//! with frame pointers and full debug information), and run held at a start line so a tool
//! attaches first; and a cgroup v2 directory a test moves targets into.
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;

fn sources() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../targets")
}

fn rustc() -> PathBuf {
    // cargo runs tests with CARGO set; rustc is its sibling (rustup's proxies, or a toolchain).
    std::env::var_os("CARGO")
        .map(PathBuf::from)
        .and_then(|c| c.parent().map(|d| d.join("rustc")))
        .filter(|r| r.exists())
        .unwrap_or_else(|| PathBuf::from("rustc"))
}

/// Where built targets live: `<test executable's dir>/../targets/` (target/debug/targets),
/// which the VM tier's image carries at the same path (`tests/vm/run.sh` builds them there).
fn targets_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable");
    let deps = exe.parent().expect("its directory");
    deps.parent().unwrap_or(deps).join("targets")
}

/// `tests/targets/NAME.EXT` built into [`targets_dir`] by the command `build(out, src)` gives,
/// unless a build newer than the source is there (the VM tier has no compilers: run.sh builds
/// the targets there before the guest boots).
fn build_target(name: &str, ext: &str, build: impl FnOnce(&Path, &Path) -> Command) -> PathBuf {
    build_target_as(name, name, ext, build)
}

/// [`build_target`] of `tests/targets/SRC.EXT` into a file named `out`.
fn build_target_as(
    src: &str,
    out: &str,
    ext: &str,
    build: impl FnOnce(&Path, &Path) -> Command,
) -> PathBuf {
    let src = sources().join(format!("{src}.{ext}"));
    let out = targets_dir().join(out);
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if modified(&out).is_some() && (modified(&src).is_none() || modified(&out) >= modified(&src)) {
        return out;
    }
    std::fs::create_dir_all(targets_dir()).expect("targets dir");
    let tmp = out.with_extension(format!("tmp{}", std::process::id()));
    let mut cmd = build(&tmp, &src);
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("run {cmd:?} to build {}: {e}", src.display()));
    assert!(status.success(), "building {} failed", src.display());
    std::fs::rename(&tmp, &out).expect("move the built target into place");
    out
}

/// `tests/targets/NAME.rs` built with `-O -g -C force-frame-pointers=yes`.
fn rust_target(name: &str) -> PathBuf {
    rust_target_with(name, name, &[])
}

/// `tests/targets/SRC.rs` built as in [`rust_target`] with `extra` rustc flags, into `out`.
fn rust_target_with(src: &str, out: &str, extra: &[&str]) -> PathBuf {
    build_target_as(src, out, "rs", |out, src| {
        let mut c = Command::new(rustc());
        c.args([
            "--edition",
            "2021",
            "-O",
            "-g",
            "-C",
            "force-frame-pointers=yes",
        ])
        .args(extra)
        .arg("-o")
        .arg(out)
        .arg(src);
        c
    })
}

/// `tests/targets/cpu_burn.rs` with Rust's v0 symbol mangling (`_RNv…` names), as
/// `cpu_burn_v0` (tests/vm/run.sh builds it the same way).
pub fn cpu_burn_v0() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        rust_target_with(
            "cpu_burn",
            "cpu_burn_v0",
            &["-C", "symbol-mangling-version=v0"],
        )
    })
}

/// `tests/targets/NAME.go` built with `go build`; the Go toolchain comes from the
/// distribution (`golang-go`, installed by scripts/setup.sh).
fn go_target(name: &str) -> PathBuf {
    let cache = targets_dir().join("go-cache");
    build_target(name, "go", |out, src| {
        let mut c = Command::new("go");
        c.args(["build", "-o"])
            .arg(out)
            .arg(src)
            .env("GOCACHE", &cache)
            .env("GOPATH", targets_dir().join("go-path"))
            .env("GO111MODULE", "off");
        c
    })
}

/// `tests/targets/NAME.c` built with `cc -O2 -g -fno-omit-frame-pointer -pthread`.
fn c_target(name: &str) -> PathBuf {
    build_target(name, "c", |out, src| {
        let mut c = Command::new("cc");
        c.args(["-O2", "-g", "-fno-omit-frame-pointer", "-pthread", "-o"])
            .arg(out)
            .arg(src);
        c
    })
}

/// `tests/targets/c_locks.c`, built once per test binary (see [`c_target`]).
pub fn c_locks() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| c_target("c_locks"))
}

/// `tests/targets/c_leaf.c`, built once per test binary (see [`c_target`]).
pub fn c_leaf() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| c_target("c_leaf"))
}

/// `tests/targets/go_calls.go`, built once per test binary (see [`go_target`]).
pub fn go_calls() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| go_target("go_calls"))
}

/// `tests/targets/cpu_burn.rs`, built once per test binary (see [`rust_target`]).
pub fn cpu_burn() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| rust_target("cpu_burn"))
}

/// A target process waiting on its start line; killed when dropped.
pub struct Target {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
}

impl Target {
    /// Spawns `bin args...`, held until [`Target::go`].
    pub fn spawn(bin: &Path, args: &[&str]) -> Target {
        Self::spawn_command(Command::new(bin).args(args))
    }

    /// Spawns `cmd` (stdin and stdout piped), held until [`Target::go`].
    pub fn spawn_command(cmd: &mut Command) -> Target {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let stdin = child.stdin.take();
        Target {
            child: Some(child),
            stdin,
        }
    }

    /// The target's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Waits (up to 10 s) until the target maps a file whose path contains `needle` (the
    /// loader maps libraries after exec: a tool that reads the maps at once may miss them).
    pub fn wait_mapped(&self, needle: &str) {
        let maps = format!("/proc/{}/maps", self.pid());
        crate::wait_until(
            &format!("the target maps {needle}"),
            std::time::Duration::from_secs(10),
            || std::fs::read_to_string(&maps).is_ok_and(|m| m.contains(needle)),
        );
    }

    /// Lets the target start its work.
    pub fn go(&mut self) {
        if let Some(mut s) = self.stdin.take() {
            s.write_all(b"go\n").expect("write the start line");
        }
    }

    /// Waits for the target to finish and returns its stdout.
    pub fn finish(mut self) -> String {
        self.go();
        let out = self
            .child
            .take()
            .expect("target running")
            .wait_with_output()
            .expect("wait for the target");
        assert!(out.status.success(), "target failed: {:?}", out.status);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A cgroup v2 directory of the test's own, removed (its processes moved back to the root
/// group first) when dropped.
pub struct Cgroup {
    /// The directory.
    pub dir: PathBuf,
    root: PathBuf,
}

impl Cgroup {
    /// Creates `netprobe-test-<tag>-<pid>` under the cgroup v2 mount (`/sys/fs/cgroup`, or
    /// `/sys/fs/cgroup/unified` on a hybrid hierarchy).
    pub fn new(tag: &str) -> Cgroup {
        let root = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.join("cgroup.procs").exists() && p.join("cgroup.subtree_control").exists())
            .expect("no cgroup v2 mount at /sys/fs/cgroup or /sys/fs/cgroup/unified");
        let dir = root.join(format!("netprobe-test-{tag}-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        Cgroup { dir, root }
    }

    /// Moves process `pid` into the group.
    pub fn add(&self, pid: u32) {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string())
            .unwrap_or_else(|e| panic!("move {pid} into {}: {e}", self.dir.display()));
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        if let Ok(procs) = std::fs::read_to_string(self.dir.join("cgroup.procs")) {
            for p in procs.lines() {
                let _ = std::fs::write(self.root.join("cgroup.procs"), p);
            }
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// The running kernel's (major, minor) version, from uname.
pub fn kernel_version() -> (u32, u32) {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut it = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse().ok());
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

/// Does this kernel give uprobe programs their attach cookie (`bpf_get_attach_cookie`,
/// Linux 5.15), which uprobe_trace needs?
pub fn uprobe_cookies() -> bool {
    kernel_version() >= (5, 15)
}
