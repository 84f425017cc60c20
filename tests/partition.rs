//! Network partition: A and B in two network namespaces joined by a veth pair. With the link
//! cut, B's `/call-echo` fails with `503` `timeout` after its 1 s deadline (not a hang, not a
//! `connect` error); with the link back, it succeeds again at once.
//!
//! Needs root and iproute2. Without them the test prints `SKIP: ...` and passes, except in CI
//! (`CI` set, see `common::in_ci`), where it fails.
//!
//! The test process stays in the root namespace. Requests to B are made from inside B's
//! namespace by this same test binary, re-run under `ip netns exec` in a client mode (see
//! `partition_client_helper`), so the test needs no tool beyond `ip`.

mod common;

use std::io::Read;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{Service, timed_get};

/// Environment of the client mode: the address of B and the request target.
const CLIENT_ADDR_VAR: &str = "ECHO_PARTITION_CLIENT_ADDR";
const CLIENT_TARGET_VAR: &str = "ECHO_PARTITION_CLIENT_TARGET";
/// The line the client mode prints its result on.
const REPLY_MARK: &str = "PARTITION_REPLY ";
/// How long one client-mode request may take before it counts as a hang.
const CLIENT_HANG: Duration = Duration::from_secs(5);

/// Not a test of its own: the client mode of this binary. When run with the variables above
/// set (under `ip netns exec`, by `call_b`), it makes one `GET` and prints
/// `PARTITION_REPLY {"status":..,"ms":..,"body":..}` or `{"error":..}`. Otherwise it does
/// nothing.
#[test]
fn partition_client_helper() {
    let (Ok(addr), Ok(target)) = (
        std::env::var(CLIENT_ADDR_VAR),
        std::env::var(CLIENT_TARGET_VAR),
    ) else {
        return;
    };
    let addr: SocketAddr = addr.parse().expect("client address");
    let result = match timed_get(addr, &target, CLIENT_HANG) {
        Ok((reply, took)) => serde_json::json!({
            "status": reply.status,
            "ms": took.as_secs_f64() * 1000.0,
            "body": reply.text(),
        }),
        Err(error) => serde_json::json!({"error": error}),
    };
    println!("{REPLY_MARK}{result}");
}

/// What B answered, as seen from inside its namespace.
#[derive(Debug)]
struct Answer {
    status: u16,
    ms: f64,
    body: serde_json::Value,
}

/// The network of the test: two namespaces and the veth pair between them. Dropping it
/// deletes them all (deleting a namespace deletes the veth end in it, and so the pair).
struct Net {
    ns_a: String,
    ns_b: String,
    veth_a: String,
    veth_b: String,
    ip_a: String,
    ip_b: String,
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

impl Net {
    /// Builds the namespaces and the link. `Err`: why it could not.
    fn create() -> Result<Net, String> {
        let pid = std::process::id();
        let x = pid % 256;
        let net = Net {
            ns_a: format!("echo-a-{pid}"),
            ns_b: format!("echo-b-{pid}"),
            // At most 15 characters: "veth-a" and a pid of up to 7 digits.
            veth_a: format!("veth-a{pid}"),
            veth_b: format!("veth-b{pid}"),
            ip_a: format!("10.231.{x}.1"),
            ip_b: format!("10.231.{x}.2"),
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

    /// Takes A's end of the link down (`false`) or up (`true`).
    fn link(&self, up: bool) {
        let state = if up { "up" } else { "down" };
        ip(&["-n", &self.ns_a, "link", "set", &self.veth_a, state])
            .unwrap_or_else(|e| panic!("set the link {state}: {e}"));
    }

    /// Starts `bin --host host --port 0 args...` inside namespace `ns`.
    fn start(&self, ns: &str, bin: &str, host: &str, args: &[&str]) -> Service {
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

    /// `GET target` to B at `addr`, made from inside B's namespace.
    fn call_b(&self, addr: SocketAddr, target: &str) -> Answer {
        let exe = std::env::current_exe().expect("current exe");
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns_b])
            .arg(exe)
            .args([
                "partition_client_helper",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CLIENT_ADDR_VAR, addr.to_string())
            .env(CLIENT_TARGET_VAR, target)
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
                panic!("the client for {target} did not finish: B hangs?");
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
            .unwrap_or_else(|| panic!("no reply line from the client for {target}: {out:?}"));
        let result: serde_json::Value = serde_json::from_str(line).expect("reply line");
        if let Some(error) = result.get("error") {
            panic!("{target}: no response from B: {error}");
        }
        let body = result["body"].as_str().expect("body");
        Answer {
            status: result["status"].as_u64().expect("status") as u16,
            ms: result["ms"].as_f64().expect("ms"),
            body: serde_json::from_str(body)
                .unwrap_or_else(|e| panic!("{target}: body is not JSON ({e}): {body:?}")),
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

#[test]
fn b_times_out_while_partitioned_from_a_and_recovers() {
    let net = match Net::create() {
        Ok(net) => net,
        Err(why) => {
            common::skip_unless_ci(&format!("partition test needs root and iproute2 ({why})"));
            return;
        }
    };
    let mut a = net.start(&net.ns_a, env!("CARGO_BIN_EXE_service-a"), &net.ip_a, &[]);
    let a_url = format!("http://{}", a.addr);
    let mut b = net.start(
        &net.ns_b,
        env!("CARGO_BIN_EXE_service-b"),
        &net.ip_b,
        &["--service-a-url", &a_url],
    );
    println!(
        "A on {} in {}, B on {} in {}",
        a.addr, net.ns_a, b.addr, net.ns_b
    );

    // Connected: a round trip, which also leaves a kept-alive connection in B's pool.
    let answer = net.call_b(b.addr, "/call-echo?msg=before");
    assert_eq!(answer.status, 200, "before the cut: {answer:?}");
    assert_eq!(
        answer.body,
        serde_json::json!({"service_b": "ok", "service_a": {"echo": "before"}})
    );

    // Cut: packets are lost, nothing is refused. First the pooled connection (no response head
    // ever comes), then a new one (its SYN is lost): both must be a timeout at the deadline.
    net.link(false);
    for msg in ["cut-pooled", "cut-new"] {
        let answer = net.call_b(b.addr, &format!("/call-echo?msg={msg}"));
        println!(
            "{msg}: {} in {:.1} ms: {}",
            answer.status, answer.ms, answer.body
        );
        assert_eq!(answer.status, 503, "{msg}: {answer:?}");
        assert_eq!(answer.body["error_kind"], "timeout", "{msg}: {answer:?}");
        assert!(
            (1000.0..=1500.0).contains(&answer.ms),
            "{msg}: answered in {:.1} ms, expected 1000–1500 ms: {answer:?}",
            answer.ms
        );
    }
    let health = net.call_b(b.addr, "/health");
    assert_eq!(
        health.status, 200,
        "B's /health while partitioned: {health:?}"
    );

    // Healed: 200 again within 2 s.
    net.link(true);
    let healed = Instant::now();
    let mut tries = Vec::new();
    loop {
        let answer = net.call_b(b.addr, "/call-echo?msg=after");
        let took = healed.elapsed();
        if answer.status == 200 {
            assert_eq!(
                answer.body,
                serde_json::json!({"service_b": "ok", "service_a": {"echo": "after"}})
            );
            println!("healed: 200 {took:?} after the link came up (earlier tries: {tries:?})");
            assert!(took <= Duration::from_secs(2), "200 only after {took:?}");
            break;
        }
        tries.push((answer.status, answer.body["error"].clone()));
        assert!(
            took < Duration::from_secs(2),
            "no 200 within 2 s of the link coming back: {tries:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
    assert!(a.is_running(), "A died");
    assert!(b.is_running(), "B died");
}
