//! `--version` and `-V` on every binary, and the exit statuses a supervisor or script reads:
//! 0 for `--help`/`--version`, 2 for a usage error (fix the configuration), 1 for a service
//! that was configured right but could not start (port taken, address or permission refused).

use std::net::TcpListener;
use std::process::{Command, Output, Stdio};

const BINARIES: [(&str, &str); 5] = [
    ("service-a", env!("CARGO_BIN_EXE_service-a")),
    ("service-b", env!("CARGO_BIN_EXE_service-b")),
    ("demo", env!("CARGO_BIN_EXE_demo")),
    ("loadgen", env!("CARGO_BIN_EXE_loadgen")),
    ("lab", env!("CARGO_BIN_EXE_lab")),
];

const SERVICES: [&str; 2] = [
    env!("CARGO_BIN_EXE_service-a"),
    env!("CARGO_BIN_EXE_service-b"),
];

/// Exit statuses, as docs/contract.md documents them.
const EXIT_USAGE: i32 = 2;
const EXIT_START_FAILED: i32 = 1;

fn run(bin: &str, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("PORT")
        .env_remove("HOST")
        .stdin(Stdio::null())
        .output()
        .expect("run binary")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn every_binary_prints_its_name_and_version() {
    let expected_version = env!("CARGO_PKG_VERSION");
    for (name, bin) in BINARIES {
        for flag in ["--version", "-V"] {
            let out = run(bin, &[flag]);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{name} {flag}: {}",
                stderr(&out)
            );
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert_eq!(
                stdout,
                format!("{name} {expected_version}\n"),
                "{name} {flag}"
            );
            assert!(out.stderr.is_empty(), "{name} {flag}: {}", stderr(&out));
        }
        let help = run(bin, &["--help"]);
        let help = String::from_utf8_lossy(&help.stdout);
        assert!(help.contains("--version"), "{name} --help lists --version");
    }
}

#[test]
fn a_usage_error_exits_2() {
    for bin in SERVICES {
        for args in [
            &["--no-such-flag"][..],
            &["--port", "nope"],
            &["--log-format", "xml"],
        ] {
            let out = run(bin, args);
            assert_eq!(
                out.status.code(),
                Some(EXIT_USAGE),
                "{args:?}: {}",
                stderr(&out)
            );
        }
    }
}

#[test]
fn a_port_in_use_exits_1_not_2() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    for bin in SERVICES {
        let out = run(bin, &["--host", "127.0.0.1", "--port", &port]);
        let text = stderr(&out);
        assert_eq!(out.status.code(), Some(EXIT_START_FAILED), "{text}");
        assert!(
            text.contains(&port) && text.to_lowercase().contains("in use"),
            "{text}"
        );
    }
}

#[test]
fn an_address_that_cannot_be_bound_exits_1() {
    // 192.0.2.1 is TEST-NET-1 (RFC 5737): never an address of this host, root or not.
    for bin in SERVICES {
        let out = run(bin, &["--host", "192.0.2.1", "--port", "0"]);
        let text = stderr(&out);
        assert_eq!(out.status.code(), Some(EXIT_START_FAILED), "{text}");
        assert!(text.contains("cannot listen on 192.0.2.1"), "{text}");
    }
}

#[test]
fn a_privileged_port_without_the_privilege_exits_1() {
    // Whether we may bind port 80 depends on who runs the tests; ask the kernel first.
    if TcpListener::bind("127.0.0.1:80").is_ok() || port_80_is_open() {
        eprintln!("SKIP: this user may bind port 80 (or it is taken), no permission to lack");
        return;
    }
    for bin in SERVICES {
        let out = run(bin, &["--host", "127.0.0.1", "--port", "80"]);
        let text = stderr(&out);
        assert_eq!(out.status.code(), Some(EXIT_START_FAILED), "{text}");
        assert!(text.to_lowercase().contains("permission denied"), "{text}");
    }
}

/// Something already listens on port 80, so a bind would fail as "in use" instead.
fn port_80_is_open() -> bool {
    std::net::TcpStream::connect("127.0.0.1:80").is_ok()
}
