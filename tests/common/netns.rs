//! Two network namespaces joined by a veth pair: a small network of two machines, `a` and
//! `b`, for the tests that need one. The partition test cuts the link between them; the
//! control test needs a peer that is not loopback.
//!
//! Needs root and iproute2. `Net::create` says why it could not; the test then skips with
//! `common::skip_unless_ci` (and fails in CI, where `.ci/run` runs as root).
//!
//! The test process stays in the root namespace. Requests from inside a namespace are made by
//! the test binary itself, re-run under `ip netns exec` in a client mode, so the tests need no
//! tool beyond `ip`. Every test file that calls `Net::request` or `Net::get` therefore has
//! the client mode as a test of its own, under the name `CLIENT_HELPER`:
//!
//! ```ignore
//! #[test]
//! fn netns_client_helper() {
//!     common::netns::client_mode();
//! }
//! ```

use std::io::Read;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::{Service, timed_exchange};

/// The name of the test that runs `client_mode`, in every file that uses `Net::request`.
pub const CLIENT_HELPER: &str = "netns_client_helper";
/// Environment of the client mode: where to connect, and the raw request to send there.
const CLIENT_ADDR_VAR: &str = "ECHO_NETNS_CLIENT_ADDR";
const CLIENT_REQUEST_VAR: &str = "ECHO_NETNS_CLIENT_REQUEST";
/// The line the client mode prints its result on.
const REPLY_MARK: &str = "NETNS_REPLY ";
/// How long one client-mode request may take before it counts as a hang.
const CLIENT_HANG: Duration = Duration::from_secs(5);

/// Not a test of its own: the client mode of a test binary. When run with the variables above
/// set (under `ip netns exec`, by `Net::request`), it sends the request and prints
/// `NETNS_REPLY {"status":..,"ms":..,"body":..}` or `{"error":..}`. Otherwise it does
/// nothing.
pub fn client_mode() {
    let (Ok(addr), Ok(request)) = (
        std::env::var(CLIENT_ADDR_VAR),
        std::env::var(CLIENT_REQUEST_VAR),
    ) else {
        return;
    };
    let addr: SocketAddr = addr.parse().expect("client address");
    let result = match timed_exchange(addr, request.as_bytes(), CLIENT_HANG) {
        Ok((reply, took)) => serde_json::json!({
            "status": reply.status,
            "ms": took.as_secs_f64() * 1000.0,
            "body": reply.text(),
        }),
        Err(error) => serde_json::json!({"error": error}),
    };
    println!("{REPLY_MARK}{result}");
}

/// What a service answered, as seen from inside a namespace.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub ms: f64,
    pub body: serde_json::Value,
}

/// The network of a test: two namespaces and the veth pair between them, `ip_a` on `ns_a`'s
/// end and `ip_b` on `ns_b`'s. Dropping it deletes them all (deleting a namespace deletes the
/// veth end in it, and so the pair).
pub struct Net {
    pub ns_a: String,
    pub ns_b: String,
    veth_a: String,
    veth_b: String,
    pub ip_a: String,
    pub ip_b: String,
}

/// Runs `ip args...`; its stderr on failure.
fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("`ip {}`: {e}", args.join(" ")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}`: {} {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Networks made by this process so far: with the pid, it makes every name unique, also
/// between tests running at once.
static NETS: AtomicU32 = AtomicU32::new(0);

impl Net {
    /// Builds the namespaces and the link. `Err`: why it could not.
    pub fn create() -> Result<Net, String> {
        let pid = std::process::id();
        let n = NETS.fetch_add(1, Ordering::Relaxed);
        let net = Net {
            ns_a: format!("echo-a-{pid}-{n}"),
            ns_b: format!("echo-b-{pid}-{n}"),
            // At most 15 characters: "v", a pid of up to 7 digits, "x", n, "a".
            veth_a: format!("v{pid}x{n}a"),
            veth_b: format!("v{pid}x{n}b"),
            // Each pair is a network of its own, so two may use the same addresses.
            ip_a: "10.231.0.1".to_owned(),
            ip_b: "10.231.0.2".to_owned(),
        };
        if !is_root() {
            return Err("not running as root".into());
        }
        ip(&["netns", "add", &net.ns_a])?;
        // From here on, `net` is dropped (and everything removed) if a step fails.
        ip(&["netns", "add", &net.ns_b])?;
        let (a, b) = (net.veth_a.as_str(), net.veth_b.as_str());
        ip(&["link", "add", a, "type", "veth", "peer", "name", b])?;
        ip(&["link", "set", a, "netns", &net.ns_a])?;
        ip(&["link", "set", b, "netns", &net.ns_b])?;
        for (ns, dev, addr) in [(&net.ns_a, a, &net.ip_a), (&net.ns_b, b, &net.ip_b)] {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        Ok(net)
    }

    /// Takes `ns_a`'s end of the link down (`false`) or up (`true`).
    pub fn link(&self, up: bool) {
        let state = if up { "up" } else { "down" };
        ip(&["-n", &self.ns_a, "link", "set", &self.veth_a, state])
            .unwrap_or_else(|e| panic!("set the link {state}: {e}"));
    }

    /// Starts `bin --host host --port 0 args...` inside namespace `ns`.
    pub fn start(&self, ns: &str, bin: &str, host: &str, args: &[&str]) -> Service {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", ns, bin, "--host", host, "--port", "0"])
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Service::spawn(command)
    }

    /// `GET target` with `Connection: close` to `addr`, from inside namespace `ns`.
    pub fn get(&self, ns: &str, addr: SocketAddr, target: &str) -> Answer {
        let request = format!("GET {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        self.request(ns, addr, &request)
    }

    /// Sends the raw `request` to `addr` from inside namespace `ns`, and reads one answer.
    /// Panics if there is none within `CLIENT_HANG`, or its body is not JSON.
    pub fn request(&self, ns: &str, addr: SocketAddr, request: &str) -> Answer {
        let first_line = request.lines().next().unwrap_or_default();
        let exe = std::env::current_exe().expect("current exe");
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(exe)
            .args([CLIENT_HELPER, "--exact", "--nocapture", "--test-threads=1"])
            .env(CLIENT_ADDR_VAR, addr.to_string())
            .env(CLIENT_REQUEST_VAR, request)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the client mode");
        let end = Instant::now() + CLIENT_HANG + Duration::from_secs(5);
        while matches!(child.try_wait(), Ok(None)) {
            if Instant::now() > end {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the client for {first_line} did not finish: the service hangs?");
            }
            thread::sleep(Duration::from_millis(10));
        }
        let mut out = String::new();
        child
            .stdout
            .take()
            .expect("piped")
            .read_to_string(&mut out)
            .expect("client output");
        let line = out
            .lines()
            // The harness may print "test ... " just before it, on the same line.
            .find_map(|l| l.split_once(REPLY_MARK).map(|(_, json)| json))
            .unwrap_or_else(|| panic!("no reply line from the client for {first_line}: {out:?}"));
        let result: serde_json::Value = serde_json::from_str(line).expect("reply line");
        if let Some(error) = result.get("error") {
            panic!("{first_line}: no response: {error}");
        }
        let body = result["body"].as_str().expect("body");
        Answer {
            status: result["status"].as_u64().expect("status") as u16,
            ms: result["ms"].as_f64().expect("ms"),
            body: serde_json::from_str(body)
                .unwrap_or_else(|e| panic!("{first_line}: body is not JSON ({e}): {body:?}")),
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // The services were stopped first (they are declared after the `Net`).
        let _ = ip(&["netns", "del", &self.ns_a]);
        let _ = ip(&["netns", "del", &self.ns_b]);
        // Only there if it never made it into a namespace.
        let _ = ip(&["link", "del", &self.veth_a]);
    }
}

/// Whether this process runs with effective uid 0.
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}
