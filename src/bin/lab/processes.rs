//! The lab's four children: three replicas of A and one B over them, the real binaries, each
//! one's output read into the log book. A replica can be stopped (SIGTERM: it drains and
//! exits), killed (SIGKILL: a crash) and restarted on the port it had, so that B's list of
//! replicas stays true. No child outlives the lab: `shutdown` stops them on a clean exit, and
//! `ChildService`'s `Drop` kills them on a panic or an early return.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use echo_lab::child::{Binaries, ChildService, Lines};
use serde_json::{Value, json};

use crate::logbook::LogBook;

/// The replicas' names, in the order B's list has them; `/replicas/N/...` is `A<N>`.
pub const REPLICA_NAMES: [&str; 3] = ["A1", "A2", "A3"];

/// How long a service may take to announce its address.
const STARTUP_WAIT: Duration = Duration::from_secs(10);

/// The children's drain on SIGTERM: short, so that a stop clicked on the page is over within a
/// second or two, yet long enough for the calls in flight at 50 a second to be answered.
const DRAIN_MS: u64 = 1000;

/// How long the lab waits for a child to exit after SIGTERM before it kills it: the drain,
/// and as long again for a loaded machine.
const EXIT_WAIT: Duration = Duration::from_millis(2 * DRAIN_MS);

/// Lines each `ChildService` keeps for itself; the lab reads them from the log book instead.
const LINES_KEPT: usize = 100;

/// What the lab knows of a child process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessState {
    /// Started again, its address not announced yet.
    Starting,
    Running,
    /// Sent SIGTERM or SIGKILL, not exited yet.
    Stopping,
    /// Gone: how it ended (`exit status: 0`, `signal: 9 (SIGKILL)`), or why it did not start.
    Exited(String),
}

impl ProcessState {
    /// The state's name in events: `starting`, `running`, `stopping`, `exited`.
    fn name(&self) -> &'static str {
        match self {
            ProcessState::Starting => "starting",
            ProcessState::Running => "running",
            ProcessState::Stopping => "stopping",
            ProcessState::Exited(_) => "exited",
        }
    }
}

/// The two signals the page can send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Stop: the service stops accepting, answers what it has, and exits.
    Term,
    /// Kill: the process is gone at once, as in a crash; its connections are reset.
    Kill,
}

impl Signal {
    /// The name kill(1) takes.
    fn name(self) -> &'static str {
        match self {
            Signal::Term => "TERM",
            Signal::Kill => "KILL",
        }
    }
}

/// Why the page's action on a process was not done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionError {
    /// It is not running (stopped, killed, or never started), so there is nothing to signal.
    NotRunning(&'static str),
    /// It is being restarted; try again once it runs.
    Busy(&'static str),
    /// kill(1) failed.
    Signal(String),
    /// The new process did not start.
    Start(String),
}

impl fmt::Display for ActionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActionError::NotRunning(name) => write!(f, "{name} is not running"),
            ActionError::Busy(name) => write!(f, "{name} is being restarted"),
            ActionError::Signal(text) => write!(f, "cannot signal: {text}"),
            ActionError::Start(text) => write!(f, "cannot start: {text}"),
        }
    }
}

/// One child: its name, its address (kept across restarts), its process and state.
#[derive(Debug)]
pub struct Member {
    pub name: &'static str,
    pub addr: SocketAddr,
    slot: Mutex<Slot>,
}

#[derive(Debug)]
struct Slot {
    /// `None` once it has exited, and while it is restarted.
    process: Option<ChildService>,
    state: ProcessState,
}

impl Member {
    fn running(name: &'static str, process: ChildService) -> Member {
        Member {
            name,
            addr: process.addr,
            slot: Mutex::new(Slot {
                process: Some(process),
                state: ProcessState::Running,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn state(&self) -> ProcessState {
        self.lock().state.clone()
    }

    /// Sends `signal` to the process, if it is running (or stopping: a kill after a stop).
    fn signal(&self, signal: Signal) -> Result<u32, ActionError> {
        let mut slot = self.lock();
        let process = match (&slot.process, &slot.state) {
            (Some(process), ProcessState::Running | ProcessState::Stopping) => process,
            (_, ProcessState::Starting) => return Err(ActionError::Busy(self.name)),
            _ => return Err(ActionError::NotRunning(self.name)),
        };
        process.signal(signal.name()).map_err(ActionError::Signal)?;
        let pid = process.child.id();
        slot.state = ProcessState::Stopping;
        Ok(pid)
    }

    /// Notices that the process has exited, and says how.
    fn reap(&self) -> Option<String> {
        let mut slot = self.lock();
        let status = slot.process.as_mut()?.child.try_wait().ok()??;
        slot.process = None;
        slot.state = ProcessState::Exited(status.to_string());
        Some(status.to_string())
    }

    /// Takes the process out to end it (`None` if it has exited), sending SIGTERM unless
    /// that was done already (a second SIGTERM would find the service's handler gone and kill
    /// it mid-drain); the state becomes `next`. Refused while a restart is under way.
    fn take_and_stop(&self, next: ProcessState) -> Result<Option<ChildService>, ActionError> {
        let mut slot = self.lock();
        if slot.state == ProcessState::Starting {
            return Err(ActionError::Busy(self.name));
        }
        let signalled = slot.state != ProcessState::Running;
        slot.state = next;
        let process = slot.process.take();
        if let Some(process) = process.as_ref().filter(|_| !signalled) {
            let _ = process.signal(Signal::Term.name());
        }
        Ok(process)
    }

    /// The member as events show it: `{"name":"A1","addr":…,"process":"running","pid":…}`,
    /// with `detail` once it has exited.
    pub fn view(&self) -> Value {
        let slot = self.lock();
        let mut view = json!({
            "name": self.name,
            "addr": self.addr.to_string(),
            "process": slot.state.name(),
            "pid": slot.process.as_ref().map(|p| p.child.id()),
        });
        if let ProcessState::Exited(how) = &slot.state {
            view["detail"] = how.as_str().into();
        }
        view
    }
}

/// The three replicas of A and B over them.
#[derive(Debug)]
pub struct Processes {
    pub replicas: Vec<Member>,
    pub b: Member,
    bins: Binaries,
    logbook: Arc<LogBook>,
}

impl Processes {
    /// Starts the replicas on free ports, then B with every pattern on (`--resilient`) over
    /// them. If one does not start, those already started are killed (dropped).
    pub fn start(bins: Binaries, logbook: Arc<LogBook>) -> Result<Processes, String> {
        let mut replicas = Vec::new();
        for name in REPLICA_NAMES {
            let process = spawn(name, &mut a_command(&bins.a, 0), &logbook)?;
            replicas.push(Member::running(name, process));
        }
        let urls: Vec<String> = replicas
            .iter()
            .map(|r| format!("http://{}", r.addr))
            .collect();
        let b = spawn("B", &mut b_command(&bins.b, &urls.join(",")), &logbook)?;
        Ok(Processes {
            replicas,
            b: Member::running("B", b),
            bins,
            logbook,
        })
    }

    /// Replica `n` (1, 2 or 3, as the page numbers them).
    pub fn replica(&self, n: usize) -> Option<&Member> {
        self.replicas.get(n.checked_sub(1)?)
    }

    /// Sends SIGTERM or SIGKILL to a replica.
    pub fn signal(&self, replica: &Member, signal: Signal) -> Result<(), ActionError> {
        let pid = replica.signal(signal)?;
        self.logbook.note(&format!(
            "SIG{} to {} (pid {pid})",
            signal.name(),
            replica.name
        ));
        Ok(())
    }

    /// Starts a replica again on its port: first stops it if it still runs (SIGTERM, then
    /// SIGKILL after `EXIT_WAIT`). Blocks until the new process announces its address.
    pub fn restart(&self, replica: &Member) -> Result<(), ActionError> {
        let old = replica.take_and_stop(ProcessState::Starting)?;
        self.logbook
            .note(&format!("restarting {} on {}", replica.name, replica.addr));
        if let Some(old) = old {
            wait_then_kill(old);
        }
        let started = spawn(
            replica.name,
            &mut a_command(&self.bins.a, replica.addr.port()),
            &self.logbook,
        );
        let mut slot = replica.lock();
        match started {
            Ok(process) => {
                slot.process = Some(process);
                slot.state = ProcessState::Running;
                Ok(())
            }
            Err(why) => {
                slot.state = ProcessState::Exited(why.clone());
                Err(ActionError::Start(why))
            }
        }
    }

    /// Notices every child that has exited, and notes how it ended.
    pub fn reap(&self) {
        for member in self.replicas.iter().chain([&self.b]) {
            if let Some(how) = member.reap() {
                self.logbook.note(&format!("{} exited: {how}", member.name));
            }
        }
    }

    /// Stops every child: SIGTERM to all (B first: it stops calling), then SIGKILL to any
    /// still running after `EXIT_WAIT`.
    pub fn shutdown(&self) {
        let stopped = || ProcessState::Exited("stopped with the lab".to_owned());
        let stopping: Vec<ChildService> = [&self.b]
            .into_iter()
            .chain(&self.replicas)
            .filter_map(|member| member.take_and_stop(stopped()).ok().flatten())
            .collect();
        stopping.into_iter().for_each(wait_then_kill);
    }
}

/// Waits up to `EXIT_WAIT` for a signalled process to exit; dropping it then kills it if it
/// has not.
fn wait_then_kill(mut process: ChildService) {
    process.wait_exit(EXIT_WAIT);
}

/// `service-a` on `port` (0: a free one) with its runtime control endpoint, which is how the
/// page changes its faults.
fn a_command(bin: &Path, port: u16) -> Command {
    let mut command = service_command(bin);
    command.args(["--port", &port.to_string(), "--control"]);
    command
}

/// `service-b` over the replicas at `urls`, every pattern on.
fn b_command(bin: &Path, urls: &str) -> Command {
    let mut command = service_command(bin);
    command.args(["--port", "0", "--resilient", "--service-a-url", urls]);
    command
}

/// A service on 127.0.0.1 with JSON log lines (fields the page can find without parsing
/// text), a short drain, and its output piped to the lab.
fn service_command(bin: &Path) -> Command {
    let mut command = Command::new(bin);
    command
        .args(["--host", "127.0.0.1", "--log-format", "json"])
        .args(["--shutdown-grace-ms", &DRAIN_MS.to_string()])
        // The startup line is logged at info: a quieter RUST_LOG would hide it.
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Spawns `command`, its every line into the log book as `name`, and waits for its address.
fn spawn(
    name: &'static str,
    command: &mut Command,
    logbook: &Arc<LogBook>,
) -> Result<ChildService, String> {
    let book = logbook.clone();
    let lines = Lines::newest(LINES_KEPT);
    let mut process = ChildService::spawn_into(command, lines, move |line| book.add(name, line))?;
    process
        .wait_for_address(STARTUP_WAIT)
        .map_err(|e| format!("{name} {e}"))?;
    logbook.note(&format!(
        "{name} started (pid {}) on {}",
        process.child.id(),
        process.addr
    ));
    Ok(process)
}
