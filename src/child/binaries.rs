//! Finding the service binaries a program runs as children (the demo, the lab): next to the
//! program itself, where cargo puts every binary of the package, or in a directory given with
//! `--bin-dir`. Under `cargo run`, which builds only the program that runs, the services are
//! built first with the same cargo, so a fresh clone works and a stale service is never run.

use std::env::consts::EXE_SUFFIX;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

/// Where `service-a` and `service-b` are.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub dir: PathBuf,
    pub a: PathBuf,
    pub b: PathBuf,
}

impl Binaries {
    /// `bin_dir` if given, else the directory of this program (`program` is its name in
    /// messages: `demo`, `lab`). `say` is told what is run and what looks stale.
    pub fn find(bin_dir: &str, program: &str, say: impl Fn(&str)) -> Result<Binaries, String> {
        let exe = std::env::current_exe().map_err(|e| {
            format!("cannot tell where the {program} binary is ({e}); use --bin-dir")
        })?;
        let dir = match bin_dir {
            "" => exe.parent().map(Path::to_path_buf).ok_or_else(|| {
                format!("the {program} binary has no parent directory; use --bin-dir")
            })?,
            dir => PathBuf::from(dir),
        };
        let built = bin_dir.is_empty() && build_with_cargo(&dir, &say)?;
        let a = dir.join(format!("service-a{EXE_SUFFIX}"));
        let b = dir.join(format!("service-b{EXE_SUFFIX}"));
        let missing: Vec<&str> = [(&a, "service-a"), (&b, "service-b")]
            .into_iter()
            .filter(|(path, _)| !path.is_file())
            .map(|(_, name)| name)
            .collect();
        if !missing.is_empty() {
            let missing = missing.join(" and ");
            if !bin_dir.is_empty() {
                return Err(format!("{missing} not found in {bin_dir} (from --bin-dir)"));
            }
            let build = cargo_build_command(&dir);
            return Err(format!(
                "{missing} not found next to the {program}, in {}.\n\
                 Build them ({build}), or run the {program} through cargo, which builds them \
                 first:\n    cargo run{} --bin {program}\n\
                 (or point --bin-dir at a directory that holds service-a and service-b)",
                dir.display(),
                build.trim_start_matches("cargo build"),
            ));
        }
        for (path, name) in [(&a, "service-a"), (&b, "service-b")] {
            if let Some(behind) = older_than(path, &exe).filter(|_| !built) {
                say(&format!(
                    "note: {name} was built {}s before this {program}. If you changed the \
                     library since, rebuild it: {}",
                    behind.as_secs(),
                    cargo_build_command(&dir)
                ));
            }
        }
        Ok(Binaries { dir, a, b })
    }
}

/// Under `cargo run`, which builds only the program it runs, builds the two services first,
/// with the same cargo, profile and target directory. Whether it ran (not under cargo: no).
fn build_with_cargo(dir: &Path, say: &impl Fn(&str)) -> Result<bool, String> {
    let var = |name| std::env::var_os(name);
    let (Some(cargo), Some(manifest_dir), Some(package)) = (
        var("CARGO"),
        var("CARGO_MANIFEST_DIR"),
        var("CARGO_PKG_NAME"),
    ) else {
        return Ok(false);
    };
    let Some(target_dir) = dir.parent().filter(|_| package == env!("CARGO_PKG_NAME")) else {
        return Ok(false);
    };
    let mut args = vec!["build".to_owned()];
    args.extend(profile_args(dir));
    args.extend(["--bin", "service-a", "--bin", "service-b"].map(String::from));
    say(&format!("$ cargo {}", args.join(" ")));
    let status = Command::new(cargo)
        .args(&args)
        .arg("--manifest-path")
        .arg(Path::new(&manifest_dir).join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run cargo to build the services: {e}"))?;
    if status.success() {
        Ok(true)
    } else {
        Err(format!("building the services failed ({status})"))
    }
}

/// The profile flags of the `cargo build` that fills `dir`, from its name (`target/<profile>`).
fn profile_args(dir: &Path) -> Vec<String> {
    match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => Vec::new(),
        Some("release") | None => vec!["--release".to_owned()],
        Some(profile) => vec!["--profile".to_owned(), profile.to_owned()],
    }
}

/// The `cargo build` that fills `dir`, as the user would type it.
fn cargo_build_command(dir: &Path) -> String {
    ["cargo".to_owned(), "build".to_owned()]
        .into_iter()
        .chain(profile_args(dir))
        .collect::<Vec<_>>()
        .join(" ")
}

/// How long before `reference` the file `path` was last written, when that is more than a few
/// seconds (binaries built by one `cargo build` are written within moments of each other).
fn older_than(path: &Path, reference: &Path) -> Option<Duration> {
    const SAME_BUILD: Duration = Duration::from_secs(10);
    let modified = |p: &Path| -> Option<SystemTime> { p.metadata().ok()?.modified().ok() };
    let behind = modified(reference)?.duration_since(modified(path)?).ok()?;
    (behind > SAME_BUILD).then_some(behind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_hint_follows_the_profile() {
        assert_eq!(
            cargo_build_command(Path::new("target/release")),
            "cargo build --release"
        );
        assert_eq!(
            cargo_build_command(Path::new("target/debug")),
            "cargo build"
        );
        assert_eq!(
            cargo_build_command(Path::new("target/bench")),
            "cargo build --profile bench"
        );
    }
}
