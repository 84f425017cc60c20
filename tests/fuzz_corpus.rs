//! The fuzz targets' checks, without libFuzzer: every file of `fuzz/corpus/request/` and
//! `fuzz/corpus/response/` goes through the same invariants as `cargo fuzz run` applies
//! (`fuzz/fuzz_targets/common/`), so a regression on a known input shows in `cargo test`.

#[path = "../fuzz/fuzz_targets/common/mod.rs"]
mod fuzz;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

/// Runs `check` on every file of `fuzz/corpus/<target>/`; names each input that fails.
fn replay(target: &str, check: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        // libFuzzer's own bookkeeping files start with a dot.
        .filter(|path| {
            !path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    assert!(
        files.len() >= 10,
        "only {} seeds in {}",
        files.len(),
        dir.display()
    );
    let failed: Vec<String> = files
        .iter()
        .filter_map(|path| {
            let input = std::fs::read(path).expect("read a seed");
            catch_unwind(AssertUnwindSafe(|| check(&input)))
                .err()
                .map(|_| {
                    path.file_name()
                        .expect("a name")
                        .to_string_lossy()
                        .into_owned()
                })
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} {target} seeds break the target's invariants (the panics are above): {failed:?}",
        failed.len(),
        files.len()
    );
}

#[test]
fn every_request_seed_passes_the_request_target_checks() {
    replay("request", fuzz::request::check);
}

#[test]
fn every_response_seed_passes_the_response_target_checks() {
    replay("response", fuzz::response::check);
}
