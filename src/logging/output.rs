//! Where log lines go: stdout, in as few `write(2)` calls as can be, in the order they were
//! logged.
//!
//! A service logs one line per request. Written one at a time, those lines cost a system call
//! per request, as many as reading the request or sending its answer (bench/README.md, "What
//! made it faster, and why"). So **request lines wait in a batch**, for at most
//! [`BATCH_WAIT`], and leave together in one `write` (with them the lines that share their
//! structured format: `/control`'s audit lines, the HTTP layer's rejections). Envoy writes its
//! access logs this way (a buffer, and a flush thread: `--file-flush-interval-msec`), and
//! nginx when told to (`access_log ... buffer=32k flush=1s`). **Every other line** (listening,
//! stopped, a drain, the wire trace) is written at once, with the batch before it, so the
//! output keeps the order in which lines were logged.
//!
//! Three parts:
//!
//! * the **batch**: the bytes of the lines waiting, behind a mutex; logging threads append;
//! * the **pen**: the writer, behind a mutex of its own. Whoever holds it takes the batch and
//!   writes it, so batches reach stdout in the order they were taken;
//! * the **flusher**: a thread that sleeps while the batch is empty and, once a line is in it,
//!   waits `BATCH_WAIT` and writes what has gathered.
//!
//! What it costs: a request line reaches stdout up to `BATCH_WAIT` after it was logged, and a
//! process killed outright (SIGKILL, an abort) loses the request lines of its last
//! `BATCH_WAIT`. A clean stop loses none: its last line (`stopped`) takes the batch with it.
//!
//! When stdout goes away (its reader exited: `service-a | head`, a log collector that died), a
//! log line is not worth a request: the service says so once on stderr and drops lines from
//! then on, while it goes on answering.

use std::io::{self, Write as _};
use std::mem;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, Once, PoisonError};
use std::thread;
use std::time::Duration;

/// How long a request line may wait for others to leave with it. At a thousand requests a
/// second that is twenty lines a write (under more load the batch fills first, see
/// [`BATCH_LIMIT`]); a person reading the log, or the lab, which shows it every 500 ms, cannot
/// tell the difference.
pub const BATCH_WAIT: Duration = Duration::from_millis(20);

/// A batch this large is written at once by the thread that filled it, without waiting for the
/// flusher: the bound on what waiting lines hold when they come faster than one write every
/// `BATCH_WAIT` takes them. 16 KiB is about a hundred request lines, a hundredth of a system
/// call per request; a larger batch saves nothing that counts and holds more memory (two of
/// them: one filling, one being written).
pub const BATCH_LIMIT: usize = 16 * 1024;

/// The process's log output.
pub static STDOUT: Output<RawStdout> = Output::new(RawStdout);

/// Whether a line may wait for others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    /// A request line: it waits at most `BATCH_WAIT`, with the lines of other requests.
    MayWait,
    /// Any other line: written now, after the lines waiting before it.
    Now,
}

/// Log lines on their way to one writer.
pub struct Output<W> {
    /// The lines waiting.
    batch: Mutex<Vec<u8>>,
    /// Rung when a line goes into an empty batch: the flusher waits for it.
    batch_started: Condvar,
    /// Whoever holds it takes the batch and writes it: batches reach the writer in the order
    /// they were taken.
    pen: Mutex<Pen<W>>,
    /// The flusher is running, so lines may wait (until then, or without it, none does).
    flushing: AtomicBool,
    flusher: Once,
    /// A write failed: lines are dropped from now on.
    gone: AtomicBool,
}

/// The writer, and the bytes it is writing: the batch it took, swapped for this buffer's empty
/// one, so both allocations are kept and reused.
struct Pen<W> {
    out: W,
    bytes: Vec<u8>,
}

impl<W: io::Write + Send + 'static> Output<W> {
    pub const fn new(out: W) -> Output<W> {
        Output {
            batch: Mutex::new(Vec::new()),
            batch_started: Condvar::new(),
            pen: Mutex::new(Pen {
                out,
                bytes: Vec::new(),
            }),
            flushing: AtomicBool::new(false),
            flusher: Once::new(),
            gone: AtomicBool::new(false),
        }
    }

    /// Takes one whole line, newline included.
    pub fn line(&'static self, line: &[u8], urgency: Urgency) {
        if self.is_gone() {
            return;
        }
        self.flusher.call_once(|| self.start_flusher());
        if urgency == Urgency::MayWait && self.flushing.load(Ordering::Relaxed) {
            self.add_to_batch(line);
        } else {
            self.write_batch_then(line);
        }
    }

    /// Whether a write failed, so that lines are dropped: a logger need not even make them.
    pub fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Relaxed)
    }

    /// Writes the lines waiting now.
    pub fn flush(&self) {
        self.write_batch_then(&[]);
    }

    fn start_flusher(&'static self) {
        let started = thread::Builder::new()
            .name("log-flusher".into())
            .spawn(move || self.flush_batches());
        match started {
            Ok(_) => self.flushing.store(true, Ordering::Relaxed),
            // Without the thread every line is written as it comes, as if it could not wait.
            Err(e) => {
                let _ = writeln!(io::stderr(), "warning: log lines unbatched: {e}");
            }
        }
    }

    fn add_to_batch(&self, line: &[u8]) {
        let mut batch = lock(&self.batch);
        let first = batch.is_empty();
        batch.extend_from_slice(line);
        let full = batch.len() >= BATCH_LIMIT;
        drop(batch);
        if full {
            self.write_batch_then(&[]);
        } else if first {
            self.batch_started.notify_one();
        }
    }

    /// The flusher's loop: asleep while nothing waits, then one write per `BATCH_WAIT`.
    fn flush_batches(&self) {
        while !self.is_gone() {
            self.wait_for_a_line();
            thread::sleep(BATCH_WAIT);
            self.flush();
        }
    }

    fn wait_for_a_line(&self) {
        let mut batch = lock(&self.batch);
        while batch.is_empty() {
            batch = self
                .batch_started
                .wait(batch)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Writes the batch and `line` after it, in one write.
    fn write_batch_then(&self, line: &[u8]) {
        let mut pen = lock(&self.pen);
        let Pen { out, bytes } = &mut *pen;
        mem::swap(&mut *lock(&self.batch), bytes);
        bytes.extend_from_slice(line);
        if bytes.is_empty() || self.is_gone() {
            bytes.clear();
            return;
        }
        let written = out.write_all(bytes);
        bytes.clear();
        if let Err(e) = written {
            self.give_up(&e);
        }
    }

    fn give_up(&self, error: &io::Error) {
        if !self.gone.swap(true, Ordering::Relaxed) {
            let _ = writeln!(
                io::stderr(),
                "error: the log output (stdout) is gone ({error}); log lines are dropped from now on"
            );
        }
    }
}

/// A mutex's guard, even if a thread panicked while holding it: what it guards is bytes, and a
/// log line half-appended is still worth writing.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The process's stdout, written with plain `write(2)`s: not `std::io::Stdout`, whose own lock
/// and line buffer would be a second batch around ours.
pub struct RawStdout;

impl io::Write for RawStdout {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        Ok(rustix::io::write(rustix::stdio::stdout(), bytes)?)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Instant;

    /// A writer that keeps each `write` apart, to count them.
    #[derive(Clone, Default)]
    struct Writes(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Writes {
        fn taken(&self) -> Vec<Vec<u8>> {
            lock(&self.0).clone()
        }

        fn all(&self) -> String {
            String::from_utf8(self.taken().concat()).expect("utf-8")
        }
    }

    impl io::Write for Writes {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            lock(&self.0).push(bytes.to_vec());
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn output<W: io::Write + Send + 'static>(out: W) -> &'static Output<W> {
        Box::leak(Box::new(Output::new(out)))
    }

    #[test]
    fn lines_that_may_wait_leave_with_the_next_line_that_may_not_in_one_write() {
        let writes = Writes::default();
        let output = output(writes.clone());
        // No flusher here: the test is the only one who writes.
        output.add_to_batch(b"GET 1\n");
        output.add_to_batch(b"GET 2\n");
        assert!(writes.taken().is_empty(), "written before their time");
        output.write_batch_then(b"stopped\n");
        assert_eq!(writes.taken(), [b"GET 1\nGET 2\nstopped\n".to_vec()]);
        output.flush();
        assert_eq!(writes.taken().len(), 1, "an empty batch is no write");
    }

    #[test]
    fn a_full_batch_is_written_by_the_thread_that_filled_it() {
        let writes = Writes::default();
        let output = output(writes.clone());
        let line = [b'x'; 99];
        let lines_to_fill = BATCH_LIMIT.div_ceil(line.len() + 1);
        for _ in 0..lines_to_fill - 1 {
            output.add_to_batch(&[&line[..], b"\n"].concat());
        }
        assert!(writes.taken().is_empty(), "written before it was full");
        output.add_to_batch(&[&line[..], b"\n"].concat());
        let taken = writes.taken();
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].len(), lines_to_fill * 100);
        assert!(lock(&output.batch).is_empty());
    }

    #[test]
    fn a_request_line_waits_in_the_batch_and_is_not_written_by_its_thread() {
        let writes = Writes::default();
        let output = output(writes.clone());
        output.line(b"listening\n", Urgency::Now);
        // While the test holds the pen nobody can write: a line that did not wait would
        // block here for good.
        let pen = lock(&output.pen);
        output.line(b"GET 1\n", Urgency::MayWait);
        assert_eq!(lock(&output.batch).as_slice(), b"GET 1\n");
        drop(pen);
        output.flush();
        assert_eq!(writes.all(), "listening\nGET 1\n");
    }

    #[test]
    fn the_flusher_writes_a_waiting_line_soon() {
        let writes = Writes::default();
        let output = output(writes.clone());
        output.line(b"GET 1\n", Urgency::MayWait);
        let logged = Instant::now();
        // Generous: the bound is BATCH_WAIT, the machine may be busy.
        while writes.taken().is_empty() && logged.elapsed() < Duration::from_secs(5) {
            thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(writes.all(), "GET 1\n");
        output.line(b"GET 2\n", Urgency::MayWait);
        output.line(b"GET 3\n", Urgency::MayWait);
        output.line(b"stopped\n", Urgency::Now);
        assert_eq!(writes.all(), "GET 1\nGET 2\nGET 3\nstopped\n");
    }

    #[test]
    fn lines_from_many_threads_arrive_whole_once_each_and_in_each_threads_order() {
        let writes = Writes::default();
        let output = output(writes.clone());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                thread::spawn(move || {
                    for n in 0..5_000 {
                        let urgency = match n % 1000 {
                            0 => Urgency::Now,
                            _ => Urgency::MayWait,
                        };
                        output.line(format!("thread={t} n={n}\n").as_bytes(), urgency);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("a logging thread");
        }
        output.flush();
        let mut next = [0; 4];
        for line in writes.all().lines() {
            let (t, n) = line
                .strip_prefix("thread=")
                .and_then(|rest| rest.split_once(" n="))
                .unwrap_or_else(|| panic!("a mixed line: {line:?}"));
            let (t, n): (usize, usize) = (t.parse().expect("t"), n.parse().expect("n"));
            assert_eq!(n, next[t], "thread {t}'s lines out of order");
            next[t] += 1;
        }
        assert_eq!(next, [5_000; 4], "lines lost");
    }

    /// A writer whose reader has gone, and that would take bytes again if asked.
    #[derive(Clone, Default)]
    struct GoneOnce {
        failed: Arc<AtomicBool>,
        writes: Writes,
    }

    impl io::Write for GoneOnce {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            if !self.failed.swap(true, Ordering::Relaxed) {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            self.writes.write(bytes)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn when_the_output_is_gone_lines_are_dropped_without_a_panic() {
        let out = GoneOnce::default();
        let output = output(out.clone());
        output.line(b"listening\n", Urgency::Now);
        assert!(output.is_gone());
        output.line(b"GET 1\n", Urgency::MayWait);
        output.line(b"stopped\n", Urgency::Now);
        assert!(lock(&output.batch).is_empty(), "a dropped line was kept");
        // Not even a batch that was filling when it went is written.
        output.add_to_batch(b"GET 2\n");
        output.flush();
        assert!(
            out.writes.taken().is_empty(),
            "written after the output went"
        );
    }
}
