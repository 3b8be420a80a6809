//! Processes the harness starts and what /proc says about them. Every child
//! is stopped by its own pid (SIGTERM, then SIGKILL after a grace period):
//! when dropped, or by the signal thread when the harness is interrupted
//! (SIGTERM, SIGINT, SIGHUP). A parent-death signal is a last resort for a
//! harness killed outright.

use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::Mutex;
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Pids to stop if the harness is interrupted: children, and processes of
/// theirs that would not follow them (nginx workers). Each with its command
/// name when registered: a pid is signalled only while it still names the
/// same program.
static LIVE: Mutex<Vec<(u32, String)>> = Mutex::new(Vec::new());

static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// When the harness was interrupted, parks the calling thread for good: the
/// signal thread is stopping everything and will exit the process.
pub fn yield_if_interrupted() {
    while INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
        sleep(Duration::from_secs(1));
    }
}

fn live() -> std::sync::MutexGuard<'static, Vec<(u32, String)>> {
    LIVE.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn comm(pid: u32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|name| name.trim().to_owned())
}

/// Adds pids the signal thread must stop, named as they are now.
fn register(pids: &[u32]) {
    let named: Vec<(u32, String)> = pids
        .iter()
        .map(|&pid| (pid, comm(pid).unwrap_or_default()))
        .collect();
    live().extend(named);
}

fn unregister(pid: u32) {
    live().retain(|(p, _)| *p != pid);
}

/// Signals `pid` if it still runs the program it was registered as.
fn signal_same(pid: u32, name: &str, sig: i32) {
    if comm(pid).is_some_and(|now| now == name) {
        signal(pid, sig);
    }
}

fn interrupt_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, signal);
        }
        set
    }
}

/// Blocks SIGTERM, SIGINT and SIGHUP (call it before any other thread
/// exists, so every thread inherits the mask) and starts a thread that
/// waits for them: it stops every registered process, removes `tmp` and
/// exits with 128 + the signal.
pub fn handle_interrupts(tmp: PathBuf) {
    let set = interrupt_signals();
    // SAFETY: changes this thread's mask only.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    std::thread::spawn(move || {
        let mut signal = 0;
        // SAFETY: waits for one of the blocked signals.
        unsafe {
            libc::sigwait(&set, &mut signal);
        }
        INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
        eprintln!("\nmwbench: interrupted (signal {signal}); stopping every process it started");
        let pids: Vec<(u32, String)> = live().clone();
        for (pid, name) in &pids {
            signal_same(*pid, name, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut left = pids.clone();
        while !left.is_empty() && Instant::now() < deadline {
            left.retain(|(pid, _)| {
                let pid = *pid;
                // Reaps our children; others (nginx workers) are gone once
                // kill(pid, 0) fails.
                // SAFETY: plain waitpid/kill on pids this harness started.
                unsafe {
                    let mut status = 0;
                    let reaped = libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG);
                    reaped == 0 || (reaped < 0 && libc::kill(pid as libc::pid_t, 0) == 0)
                }
            });
            sleep(Duration::from_millis(50));
        }
        for (pid, name) in left {
            signal_same(pid, &name, libc::SIGKILL);
        }
        let _ = fs::remove_dir_all(&tmp);
        std::process::exit(128 + signal);
    });
}

/// A started process, stopped when dropped.
pub struct Proc {
    pub name: &'static str,
    child: Child,
    /// Processes of the child's that stop with it (nginx workers).
    adopted: Vec<u32>,
}

impl Proc {
    /// Starts `command`; the child gets SIGTERM if the harness dies.
    /// Must be called from the main thread: the parent-death signal fires
    /// when the thread that forked exits.
    pub fn spawn(name: &'static str, mut command: Command) -> io::Result<Self> {
        // SAFETY: prctl and getppid are async-signal-safe; nothing else runs
        // between fork and exec.
        let blocked = interrupt_signals();
        unsafe {
            command.pre_exec(move || {
                // The harness blocks these for its signal thread; the child
                // must not inherit that.
                libc::pthread_sigmask(libc::SIG_UNBLOCK, &blocked, std::ptr::null_mut());
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                if libc::getppid() == 1 {
                    return Err(io::Error::other("parent already gone"));
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .map_err(|err| io::Error::new(err.kind(), format!("cannot start {name}: {err}")))?;
        // The name the kernel will show once the child has exec'd (it may
        // not have yet): the program's file name, cut to 15 bytes.
        let program = std::path::Path::new(command.get_program())
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let shown: String = program.bytes().take(15).map(char::from).collect();
        live().push((child.id(), shown));
        Ok(Self {
            name,
            child,
            adopted: Vec::new(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Processes the child started that stop with it; listed so that an
    /// interrupted harness stops them even if the child must be killed.
    pub fn adopt(&mut self, pids: &[u32]) {
        register(pids);
        self.adopted.extend_from_slice(pids);
    }

    fn forget(&mut self) {
        unregister(self.pid());
        for pid in std::mem::take(&mut self.adopted) {
            unregister(pid);
        }
    }

    /// The exit status if it has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// SIGTERM, up to `grace` to exit, then SIGKILL.
    pub fn stop(&mut self, grace: Duration) {
        if self.exited().is_some() {
            self.forget();
            return;
        }
        signal(self.pid(), libc::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.exited().is_some() {
                self.forget();
                return;
            }
            sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let adopted: Vec<(u32, String)> = live()
            .iter()
            .filter(|(pid, _)| self.adopted.contains(pid))
            .cloned()
            .collect();
        for (pid, name) in adopted {
            signal_same(pid, &name, libc::SIGKILL);
        }
        self.forget();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

pub fn signal(pid: u32, signal: i32) {
    // SAFETY: kill(2) with a pid this harness started.
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}

/// Clock ticks per second for /proc/PID/stat times.
pub fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// Fields of /proc/PID/stat after the command name (field 3 onwards).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// (utime, stime) of a process (all its threads), in clock ticks.
pub fn cpu_split(pid: u32) -> Option<(u64, u64)> {
    let fields = stat_fields(pid)?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime, stime))
}

/// The summed (utime, stime) ticks of several processes.
pub fn cpu_split_of(pids: &[u32]) -> (u64, u64) {
    pids.iter()
        .filter_map(|&pid| cpu_split(pid))
        .fold((0, 0), |(u, s), (du, ds)| (u + du, s + ds))
}

/// The direct children of `parent` (nginx's workers).
pub fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            stat_fields(pid)
                .and_then(|f| f.get(1)?.parse::<u32>().ok())
                .is_some_and(|ppid| ppid == parent)
        })
        .collect()
}

/// VmRSS in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

pub fn rss_kib_of(pids: &[u32]) -> u64 {
    pids.iter().filter_map(|&pid| rss_kib(pid)).sum()
}

/// A port free on 127.0.0.1 now (bound, read, released).
pub fn free_port() -> io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Raises the soft open-files limit to the hard one (1,000 connections and
/// their upstream twins need more than the usual 1,024).
pub fn raise_nofile() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain get/setrlimit on this process.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            let wanted = limit.rlim_max.min(65536);
            if limit.rlim_cur < wanted {
                limit.rlim_cur = wanted;
                libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            }
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
    }
    limit.rlim_cur
}

/// Machine-wide (busy, total) ticks from the first line of /proc/stat.
pub fn machine_ticks() -> (u64, u64) {
    let Ok(text) = fs::read_to_string("/proc/stat") else {
        return (0, 0);
    };
    let Some(line) = text.lines().next() else {
        return (0, 0);
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let at = |i: usize| v.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal
    let busy = at(0) + at(1) + at(2) + at(5) + at(6) + at(7);
    (busy, busy + at(3) + at(4))
}

/// CPU ticks of this process and of its reaped children (wrk), so that
/// what the benchmark itself used can be told from other load.
pub fn own_and_reaped_ticks(ticks_per_second: f64) -> u64 {
    let mut total = 0.0;
    for who in [libc::RUSAGE_SELF, libc::RUSAGE_CHILDREN] {
        // SAFETY: getrusage fills the struct it is given.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(who, &mut usage) } == 0 {
            for t in [usage.ru_utime, usage.ru_stime] {
                total += t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
            }
        }
    }
    (total * ticks_per_second) as u64
}
