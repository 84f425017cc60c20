//! Service A: answers `/health` and `/echo?msg=...`. Run with `--help` for its flags.

use std::process::ExitCode;

use echo_lab::run;
use echo_lab::services::echo::EchoService;

const USAGE: &str = "service-a: the echo service\n\nusage: service-a [--host ADDR] [--port PORT]";

fn main() -> ExitCode {
    let settings = match run::settings(USAGE, &[]) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    let (addr, config) = match run::server_setup(&settings, 8080) {
        Ok(setup) => setup,
        Err(e) => return run::fail(&e.to_string()),
    };
    run::init_logging();
    run::serve("A", addr, config, EchoService)
}
