//! The deployment files in `deploy/` agree with the binaries they run: every variable and flag
//! they set is one the binary knows (`--help`), ports line up from the container to the probes
//! to the Service, the probe paths really answer 200, B is pointed at A's Service, the drain
//! fits in the termination grace period, the Containerfile builds exactly the binaries the
//! manifests start, as a non-root user, every Deployment has a disruption budget that lets a
//! drain proceed, only B and Prometheus may reach A, and `kustomization.yaml` lists every file.
//!
//! No YAML dependency: `entries` reads the block-style subset these files use, line by line,
//! into `path = value` pairs.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{Service, get};

// ---- reading the files ----

fn deploy_file(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// One scalar of a YAML file: the keys leading to it joined with `.`, and its value without
/// quotes. `doc` counts `---` separators. A scalar list item (`- x`) has its parent's path.
#[derive(Debug, Clone)]
struct Entry {
    doc: usize,
    path: String,
    value: String,
}

/// Reads block-style YAML (mappings, `- ` lists, `#` comments, `---`): enough for the files in
/// `deploy/`, which keep to that subset. Flow lists like `["a"]` stay one value.
fn entries(yaml: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut doc = 0;
    let mut stack: Vec<(usize, String)> = Vec::new();
    for raw in yaml.lines() {
        if raw.trim_end() == "---" {
            doc += 1;
            stack.clear();
            continue;
        }
        let line = strip_comment(raw);
        if line.trim().is_empty() {
            continue;
        }
        let mut indent = line.len() - line.trim_start().len();
        let mut text = line.trim();
        while let Some(rest) = text.strip_prefix("- ") {
            indent += 2;
            text = rest.trim_start();
        }
        while stack.last().is_some_and(|(i, _)| *i >= indent) {
            stack.pop();
        }
        let parent: Vec<&str> = stack.iter().map(|(_, k)| k.as_str()).collect();
        let key_value = if text.starts_with(['"', '\'']) {
            None
        } else if let Some(key) = text.strip_suffix(':') {
            Some((key, ""))
        } else {
            text.split_once(": ")
        };
        match key_value {
            Some((key, "")) => stack.push((indent, key.trim().to_owned())),
            Some((key, value)) => out.push(Entry {
                doc,
                path: [parent.as_slice(), &[key.trim()]].concat().join("."),
                value: unquote(value),
            }),
            None => out.push(Entry {
                doc,
                path: parent.join("."),
                value: unquote(text),
            }),
        }
    }
    out
}

/// The line without a `#` comment (one outside quotes, at the start or after a space).
fn strip_comment(line: &str) -> &str {
    let mut quote = None;
    let mut previous = ' ';
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '#') if previous == ' ' => return &line[..i],
            _ => {}
        }
        previous = c;
    }
    line
}

fn unquote(value: &str) -> String {
    let v = value.trim();
    for q in ['"', '\''] {
        if let Some(inner) = v.strip_prefix(q).and_then(|v| v.strip_suffix(q)) {
            return inner.to_owned();
        }
    }
    v.to_owned()
}

/// `["a", "b"]` → `a`, `b`.
fn flow_list(value: &str) -> Vec<String> {
    value
        .trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .split(',')
        .map(unquote)
        .filter(|s| !s.is_empty())
        .collect()
}

// ---- the Kubernetes manifests ----

const CONTAINER: &str = "spec.template.spec.containers";

/// One `deploy/k8s/<name>.yaml`: a Deployment and a Service.
struct Manifest {
    file: String,
    entries: Vec<Entry>,
}

impl Manifest {
    /// Any file under `deploy/`, whatever it holds.
    fn load_file(file: &str) -> Manifest {
        Manifest {
            file: file.to_owned(),
            entries: entries(&deploy_file(file)),
        }
    }

    fn load(name: &str) -> Manifest {
        let manifest = Manifest::load_file(&format!("k8s/{name}.yaml"));
        let kinds = manifest.values("kind");
        assert_eq!(
            kinds,
            ["Deployment", "Service"],
            "{}: one Deployment, one Service",
            manifest.file
        );
        manifest
    }

    /// The one value at `path` in document `doc` (for files with several of one kind).
    fn one_in(&self, doc: usize, path: &str) -> String {
        let all: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|e| e.doc == doc && e.path == path)
            .collect();
        assert_eq!(all.len(), 1, "{}: doc {doc}: {path}: {all:?}", self.file);
        all[0].value.clone()
    }

    fn values(&self, path: &str) -> Vec<String> {
        self.entries
            .iter()
            .filter(|e| e.path == path)
            .map(|e| e.value.clone())
            .collect()
    }

    /// The document holding `kind: <kind>`.
    fn doc(&self, kind: &str) -> usize {
        self.entries
            .iter()
            .find(|e| e.path == "kind" && e.value == kind)
            .unwrap_or_else(|| panic!("{}: no {kind}", self.file))
            .doc
    }

    /// Every value at `path` in the `kind` document.
    fn all(&self, kind: &str, path: &str) -> Vec<String> {
        let doc = self.doc(kind);
        self.entries
            .iter()
            .filter(|e| e.doc == doc && e.path == path)
            .map(|e| e.value.clone())
            .collect()
    }

    /// The one value at `path` in the `kind` document.
    fn one(&self, kind: &str, path: &str) -> String {
        let all = self.all(kind, path);
        assert_eq!(all.len(), 1, "{}: {kind} {path}: {all:?}", self.file);
        all[0].clone()
    }

    /// The container's `env` as (name, value) pairs, in order.
    fn env(&self) -> Vec<(String, String)> {
        let doc = self.doc("Deployment");
        let name_path = format!("{CONTAINER}.env.name");
        let value_path = format!("{CONTAINER}.env.value");
        let env: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|e| e.doc == doc && (e.path == name_path || e.path == value_path))
            .collect();
        env.chunks(2)
            .map(|pair| match pair {
                [name, value] if name.path == name_path && value.path == value_path => {
                    (name.value.clone(), value.value.clone())
                }
                _ => panic!(
                    "{}: env entries must be name, then value: {pair:?}",
                    self.file
                ),
            })
            .collect()
    }

    fn env_value(&self, name: &str) -> String {
        self.env()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("{}: env {name} is not set", self.file))
    }

    /// The container's `command`: the binary, then any arguments; and its `args`.
    fn command_and_args(&self) -> (String, Vec<String>) {
        let mut command = flow_list(&self.one("Deployment", &format!("{CONTAINER}.command")));
        let mut args = command.split_off(1);
        for a in self.all("Deployment", &format!("{CONTAINER}.args")) {
            args.extend(flow_list(&a));
        }
        (command.remove(0), args)
    }

    fn annotation(&self, name: &str) -> String {
        self.one(
            "Deployment",
            &format!("spec.template.metadata.annotations.{name}"),
        )
    }
}

/// Both manifests, with the binary each runs.
fn manifests() -> Vec<(Manifest, Binary)> {
    ["service-a", "service-b"]
        .into_iter()
        .map(|name| {
            let manifest = Manifest::load(name);
            let (command, _) = manifest.command_and_args();
            assert_eq!(command, name, "{} runs its own service", manifest.file);
            (manifest, Binary::named(&command))
        })
        .collect()
}

// ---- the binaries ----

/// A service binary and what its `--help` says it accepts.
struct Binary {
    name: String,
    path: &'static str,
    help: String,
}

impl Binary {
    fn named(name: &str) -> Binary {
        let path = match name {
            "service-a" => env!("CARGO_BIN_EXE_service-a"),
            "service-b" => env!("CARGO_BIN_EXE_service-b"),
            other => panic!("the deployment runs {other:?}, which is not a service binary"),
        };
        let output =
            common::output_within(Command::new(path).arg("--help"), Duration::from_secs(10));
        assert!(output.status.success(), "{name} --help fails");
        Binary {
            name: name.to_owned(),
            path,
            help: String::from_utf8_lossy(&output.stdout).into_owned(),
        }
    }

    /// The variables `--help` names: `  --flag VALUE  (VARIABLE)`.
    fn env_vars(&self) -> BTreeSet<String> {
        self.help
            .lines()
            .filter(|l| l.trim_start().starts_with("--"))
            .filter_map(|l| l.rsplit_once('(')?.1.strip_suffix(')').map(str::to_owned))
            .collect()
    }

    /// The flags `--help` names, with their dashes.
    fn flags(&self) -> BTreeSet<String> {
        self.help
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|w| w.starts_with("--"))
            .map(str::to_owned)
            .collect()
    }

    /// Starts the binary on 127.0.0.1 and a free port (flags win over the variables), with
    /// `env` as the deployment sets it: the configuration itself must be accepted.
    fn start(&self, env: &[(String, String)]) -> Service {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Service::start(self.path, &[], &env)
    }
}

fn number(value: &str, what: &str) -> u64 {
    value
        .parse()
        .unwrap_or_else(|_| panic!("{what}: {value:?} is not a number"))
}

// ---- Kubernetes ----

#[test]
fn manifest_env_vars_and_args_are_known_to_the_binary() {
    for (manifest, binary) in manifests() {
        let known = binary.env_vars();
        assert!(known.contains("PORT"), "parsed {}'s --help", binary.name);
        for (name, _) in manifest.env() {
            assert!(
                known.contains(&name),
                "{}: env {name} is not a variable of {} (--help lists {known:?})",
                manifest.file,
                binary.name
            );
        }
        let flags = binary.flags();
        let (_, args) = manifest.command_and_args();
        for arg in args.iter().filter(|a| a.starts_with("--")) {
            let flag = arg.split('=').next().unwrap_or(arg);
            assert!(
                flags.contains(flag),
                "{}: {flag} is not a flag of {}",
                manifest.file,
                binary.name
            );
        }
    }
}

#[test]
fn ports_agree_from_container_to_probes_to_service() {
    for (manifest, _) in manifests() {
        let port = manifest.env_value("PORT");
        let file = &manifest.file;
        let c = |field: &str| manifest.one("Deployment", &format!("{CONTAINER}.{field}"));
        assert_eq!(
            c("ports.containerPort"),
            port,
            "{file}: containerPort vs PORT"
        );
        assert_eq!(c("readinessProbe.httpGet.port"), port, "{file}: readiness");
        assert_eq!(c("livenessProbe.httpGet.port"), port, "{file}: liveness");
        assert_eq!(
            manifest.one("Service", "spec.ports.targetPort"),
            port,
            "{file}: Service targetPort"
        );
        assert_eq!(manifest.annotation("prometheus.io/port"), port, "{file}");
        assert_eq!(
            manifest.env_value("HOST"),
            "0.0.0.0",
            "{file}: listen on the pod's interfaces"
        );
        // The Service selects the pods of this Deployment.
        let label = "app.kubernetes.io/name";
        let pods = manifest.one(
            "Deployment",
            &format!("spec.template.metadata.labels.{label}"),
        );
        assert_eq!(
            manifest.one("Deployment", &format!("spec.selector.matchLabels.{label}")),
            pods
        );
        assert_eq!(
            manifest.one("Service", &format!("spec.selector.{label}")),
            pods
        );
    }
}

#[test]
fn probes_get_ready_and_health_and_the_binary_answers_200_there() {
    for (manifest, binary) in manifests() {
        let service = binary.start(&manifest.env());
        // Readiness and liveness differ: /ready goes 503 at the connection cap and in shutdown.
        for (probe, expected) in [("readinessProbe", "/ready"), ("livenessProbe", "/health")] {
            let path = manifest.one("Deployment", &format!("{CONTAINER}.{probe}.httpGet.path"));
            assert_eq!(path, expected, "{}: {probe}", manifest.file);
            let reply = get(service.addr, &path);
            assert_eq!(
                reply.status, 200,
                "{} answers {path} with {}",
                binary.name, reply.status_line
            );
        }
    }
}

#[test]
fn service_b_calls_a_by_its_service_name_and_port() {
    let a = Manifest::load("service-a");
    let b = Manifest::load("service-b");
    let expected = format!(
        "http://{}:{}",
        a.one("Service", "metadata.name"),
        a.one("Service", "spec.ports.port")
    );
    assert_eq!(b.env_value("SERVICE_A_URL"), expected);
}

#[test]
fn termination_grace_outlasts_prestop_and_drain() {
    for (manifest, _) in manifests() {
        let grace_s = number(
            &manifest.one(
                "Deployment",
                "spec.template.spec.terminationGracePeriodSeconds",
            ),
            "terminationGracePeriodSeconds",
        );
        let drain_ms = number(
            &manifest.env_value("SHUTDOWN_GRACE_MS"),
            "SHUTDOWN_GRACE_MS",
        );
        let pre_stop_s: u64 = manifest
            .all(
                "Deployment",
                &format!("{CONTAINER}.lifecycle.preStop.sleep.seconds"),
            )
            .iter()
            .map(|s| number(s, "preStop sleep"))
            .sum();
        assert!(
            grace_s * 1000 > pre_stop_s * 1000 + drain_ms,
            "{}: terminationGracePeriodSeconds {grace_s} s must exceed the preStop sleep \
             ({pre_stop_s} s) plus the drain ({drain_ms} ms)",
            manifest.file
        );
    }
}

#[test]
fn pods_run_as_non_root_on_a_read_only_root() {
    for (manifest, _) in manifests() {
        let c = |field: &str| manifest.one("Deployment", &format!("{CONTAINER}.{field}"));
        assert_eq!(
            c("securityContext.runAsNonRoot"),
            "true",
            "{}",
            manifest.file
        );
        assert_eq!(
            c("securityContext.readOnlyRootFilesystem"),
            "true",
            "{}",
            manifest.file
        );
        assert_eq!(
            manifest.one("Deployment", "spec.template.spec.securityContext.runAsUser"),
            containerfile_uid(),
            "{}: the same user as the image's USER",
            manifest.file
        );
    }
}

#[test]
fn prometheus_annotations_point_at_metrics() {
    for (manifest, _) in manifests() {
        assert_eq!(manifest.annotation("prometheus.io/scrape"), "true");
        assert_eq!(manifest.annotation("prometheus.io/path"), "/metrics");
    }
}

#[test]
fn metrics_path_is_served() {
    for (manifest, binary) in manifests() {
        let path = manifest.annotation("prometheus.io/path");
        let service = binary.start(&manifest.env());
        let reply = get(service.addr, &path);
        assert_eq!(
            reply.status, 200,
            "{} answers {path} with {}",
            binary.name, reply.status_line
        );
        let content_type = reply.header("content-type").unwrap_or_default();
        assert!(
            content_type.starts_with("text/plain"),
            "Prometheus text format, got {content_type:?}"
        );
    }
}

// ---- the Containerfile ----

/// The instructions of the Containerfile, with `\` continuations joined.
fn containerfile() -> Vec<String> {
    let text = deploy_file("Containerfile");
    let mut out: Vec<String> = Vec::new();
    let mut continuing = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || trimmed.is_empty() {
            continue;
        }
        let (body, more) = match trimmed.strip_suffix('\\') {
            Some(body) => (body.trim(), true),
            None => (trimmed, false),
        };
        match out.last_mut() {
            Some(last) if continuing => {
                last.push(' ');
                last.push_str(body);
            }
            _ => out.push(body.to_owned()),
        }
        continuing = more;
    }
    out
}

/// The `--bin` names of the image's `cargo build`.
fn containerfile_built_binaries() -> BTreeSet<String> {
    let builds: Vec<String> = containerfile()
        .into_iter()
        .filter(|i| i.starts_with("RUN") && i.contains("cargo build"))
        .collect();
    assert_eq!(builds.len(), 1, "one cargo build: {builds:?}");
    let words: Vec<&str> = builds[0].split_whitespace().collect();
    assert!(words.contains(&"--release") && words.contains(&"--locked"));
    words
        .windows(2)
        .filter(|w| w[0] == "--bin")
        .map(|w| w[1].to_owned())
        .collect()
}

/// The user of the final stage (`USER uid[:gid]`), which must be numeric and not root.
fn containerfile_uid() -> String {
    let instructions = containerfile();
    let last_stage = instructions
        .iter()
        .rposition(|i| i.starts_with("FROM "))
        .expect("a FROM");
    let user = instructions[last_stage..]
        .iter()
        .filter_map(|i| i.strip_prefix("USER "))
        .next_back()
        .expect("the runtime stage sets a USER");
    let uid = user.split(':').next().unwrap_or(user).trim();
    let n = number(uid, "USER (numeric, so runAsNonRoot can check it)");
    assert_ne!(n, 0, "USER must not be root");
    uid.to_owned()
}

/// Every binary the deployment files start: the manifests' and compose's commands.
fn commanded_binaries() -> BTreeSet<String> {
    let mut names: BTreeSet<String> = manifests()
        .into_iter()
        .map(|(m, _)| m.command_and_args().0)
        .collect();
    names.extend(compose_services().into_iter().map(|s| s.command));
    names
}

#[test]
fn containerfile_builds_exactly_the_commanded_binaries_as_non_root() {
    assert_eq!(containerfile_built_binaries(), commanded_binaries());
    containerfile_uid();
    let instructions = containerfile();
    let runtime = &instructions[instructions
        .iter()
        .rposition(|i| i.starts_with("FROM "))
        .expect("a FROM")..];
    for binary in commanded_binaries() {
        assert!(
            runtime
                .iter()
                .any(|i| i.starts_with("COPY --from=") && i.contains(&format!("/{binary}"))),
            "the runtime stage copies {binary}"
        );
    }
    assert!(
        runtime.iter().any(|i| i == "ENV HOST=0.0.0.0"),
        "the image listens on all interfaces"
    );
    let exposed: BTreeSet<String> = runtime
        .iter()
        .filter_map(|i| i.strip_prefix("EXPOSE "))
        .flat_map(|ports| ports.split_whitespace().map(str::to_owned))
        .collect();
    for (manifest, _) in manifests() {
        let port = manifest.env_value("PORT");
        assert!(exposed.contains(&port), "EXPOSE {port} ({})", manifest.file);
    }
}

// ---- compose ----

/// One service of `compose.yaml`.
#[derive(Debug)]
struct ComposeService {
    name: String,
    command: String,
    env: Vec<(String, String)>,
    entries: Vec<(String, String)>,
}

impl ComposeService {
    fn get(&self, field: &str) -> Vec<&str> {
        self.entries
            .iter()
            .filter(|(p, _)| p == field)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn env_value(&self, name: &str) -> &str {
        self.env
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("compose {}: {name} is not set", self.name))
    }
}

fn compose_services() -> Vec<ComposeService> {
    let all = entries(&deploy_file("compose.yaml"));
    let mut services: Vec<ComposeService> = Vec::new();
    for entry in all {
        let Some(rest) = entry.path.strip_prefix("services.") else {
            continue;
        };
        let (name, field) = rest.split_once('.').unwrap_or((rest, ""));
        if !services.iter().any(|s| s.name == name) {
            services.push(ComposeService {
                name: name.to_owned(),
                command: String::new(),
                env: Vec::new(),
                entries: Vec::new(),
            });
        }
        let service = services
            .iter_mut()
            .find(|s| s.name == name)
            .expect("just added");
        if let Some(var) = field.strip_prefix("environment.") {
            service.env.push((var.to_owned(), entry.value.clone()));
        }
        if field == "command" {
            service.command = flow_list(&entry.value).remove(0);
        }
        service.entries.push((field.to_owned(), entry.value));
    }
    let names: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["service-a", "service-b"], "compose services");
    services
}

#[test]
fn compose_is_consistent_with_the_binaries() {
    let services = compose_services();
    for service in &services {
        assert_eq!(
            service.command, service.name,
            "compose runs each by its name"
        );
        let binary = Binary::named(&service.command);
        let known = binary.env_vars();
        for (name, _) in &service.env {
            assert!(
                known.contains(name),
                "compose {}: {name} is not a variable of {}",
                service.name,
                binary.name
            );
        }
        let port = service.env_value("PORT");
        assert_eq!(service.env_value("HOST"), "0.0.0.0");
        for mapping in service.get("ports") {
            assert!(
                mapping.ends_with(&format!(":{port}")),
                "compose {}: published port {mapping} goes to PORT {port}",
                service.name
            );
        }
        let check = service.get("healthcheck.test").join(" ");
        assert!(
            check.contains(&format!("/dev/tcp/127.0.0.1/{port}")) && check.contains("GET /health "),
            "compose {}: the healthcheck GETs /health on PORT: {check}",
            service.name
        );
        let stop = service.get("stop_grace_period");
        let stop_s = number(
            stop.first().and_then(|s| s.strip_suffix('s')).unwrap_or(""),
            "stop_grace_period (in s)",
        );
        let drain_ms = number(service.env_value("SHUTDOWN_GRACE_MS"), "SHUTDOWN_GRACE_MS");
        assert!(
            stop_s * 1000 > drain_ms,
            "compose {}: stop_grace_period",
            service.name
        );
        // The configuration is one the binary accepts.
        let started = binary.start(&service.env);
        assert_eq!(get(started.addr, "/health").status, 200);
    }
    let a = &services[0];
    assert_eq!(
        services[1].env_value("SERVICE_A_URL"),
        format!("http://{}:{}", a.name, a.env_value("PORT")),
        "compose: B calls A by its service name"
    );
}

// ---- the reader itself ----

#[test]
fn entries_reads_the_yaml_subset() {
    let yaml = [
        "# comment",
        "kind: Deployment",
        "spec:",
        "  containers:",
        "    - name: x   # trailing comment",
        "      command: [\"service-a\"]",
        "      env:",
        "        - name: PORT",
        "          value: \"8080\"",
        "      test:",
        "        - CMD",
        "        - 'a: b # not a comment'",
        "---",
        "kind: Service",
    ]
    .join("\n");
    let got: Vec<(usize, String, String)> = entries(&yaml)
        .into_iter()
        .map(|e| (e.doc, e.path, e.value))
        .collect();
    let want = [
        (0, "kind", "Deployment"),
        (0, "spec.containers.name", "x"),
        (0, "spec.containers.command", "[\"service-a\"]"),
        (0, "spec.containers.env.name", "PORT"),
        (0, "spec.containers.env.value", "8080"),
        (0, "spec.containers.test", "CMD"),
        (0, "spec.containers.test", "a: b # not a comment"),
        (1, "kind", "Service"),
    ];
    let want: Vec<(usize, String, String)> = want
        .iter()
        .map(|(d, p, v)| (*d, p.to_string(), v.to_string()))
        .collect();
    assert_eq!(got, want);
}

// ---- disruption budgets, network policy, kustomization ----

const NAME_LABEL: &str = "app.kubernetes.io/name";

#[test]
fn every_deployment_has_a_disruption_budget_that_lets_a_drain_proceed() {
    let budgets = Manifest::load_file("k8s/disruption-budgets.yaml");
    for (manifest, _) in manifests() {
        let pods = manifest.one(
            "Deployment",
            &format!("spec.template.metadata.labels.{NAME_LABEL}"),
        );
        let replicas = number(&manifest.one("Deployment", "spec.replicas"), "replicas");
        let selector = format!("spec.selector.matchLabels.{NAME_LABEL}");
        let doc = budgets
            .entries
            .iter()
            .find(|e| e.path == selector && e.value == pods)
            .unwrap_or_else(|| panic!("no PodDisruptionBudget selects {pods}"))
            .doc;
        assert_eq!(budgets.one_in(doc, "kind"), "PodDisruptionBudget");
        assert_eq!(budgets.one_in(doc, "apiVersion"), "policy/v1");
        let min = number(&budgets.one_in(doc, "spec.minAvailable"), "minAvailable");
        // At least one pod stays; at least one may go, or no node could ever be drained.
        assert!(
            (1..replicas).contains(&min),
            "{pods}: minAvailable {min} with {replicas} replicas"
        );
        assert_eq!(
            budgets.one_in(doc, "spec.unhealthyPodEvictionPolicy"),
            "AlwaysAllow"
        );
    }
}

#[test]
fn only_b_and_the_prometheus_namespace_may_reach_a() {
    let policy = Manifest::load_file("k8s/network-policy.yaml");
    let a = Manifest::load("service-a");
    let b = Manifest::load("service-b");
    let pods = |m: &Manifest| {
        m.one(
            "Deployment",
            &format!("spec.template.metadata.labels.{NAME_LABEL}"),
        )
    };
    let one = |path: &str| policy.one("NetworkPolicy", path);
    assert_eq!(one("apiVersion"), "networking.k8s.io/v1");
    assert_eq!(
        one(&format!("spec.podSelector.matchLabels.{NAME_LABEL}")),
        pods(&a),
        "the policy applies to A's pods"
    );
    assert_eq!(one("spec.policyTypes"), "Ingress");
    // Exactly two sources, B's pods and Prometheus's namespace, and nothing that admits all.
    let sources: Vec<String> = policy
        .entries
        .iter()
        .filter(|e| e.path.starts_with("spec.ingress.from."))
        .map(|e| format!("{}={}", e.path, e.value))
        .collect();
    assert_eq!(
        sources,
        [
            format!("spec.ingress.from.podSelector.matchLabels.{NAME_LABEL}={}", pods(&b)),
            "spec.ingress.from.namespaceSelector.matchLabels.kubernetes.io/metadata.name=monitoring"
                .to_owned(),
        ]
    );
    // On A's port only.
    assert_eq!(one("spec.ingress.ports.port"), a.env_value("PORT"));
    assert_eq!(one("spec.ingress.ports.protocol"), "TCP");
    // The namespace it admits is the one Prometheus is documented to run in.
    assert!(deploy_file("README.md").contains("`monitoring`"));
}

#[test]
fn kustomization_lists_every_manifest_and_the_image_they_run() {
    let kustomization = Manifest::load_file("k8s/kustomization.yaml");
    let listed: BTreeSet<String> = kustomization.values("resources").into_iter().collect();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/k8s");
    let present: BTreeSet<String> = std::fs::read_dir(&dir)
        .expect("read deploy/k8s")
        .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
        .filter(|name| name.ends_with(".yaml") && name != "kustomization.yaml")
        .collect();
    assert_eq!(
        listed, present,
        "kustomization.yaml resources vs deploy/k8s"
    );
    assert_eq!(
        kustomization.one("Kustomization", "apiVersion"),
        "kustomize.config.k8s.io/v1beta1"
    );
    // The image override names the image the Deployments run, with the tag they run.
    for (manifest, _) in manifests() {
        let image = manifest.one("Deployment", &format!("{CONTAINER}.image"));
        let (name, tag) = image.split_once(':').expect("image:tag");
        assert_eq!(kustomization.one("Kustomization", "images.name"), name);
        assert_eq!(kustomization.one("Kustomization", "images.newTag"), tag);
    }
}
