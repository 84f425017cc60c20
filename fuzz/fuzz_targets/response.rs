//! Fuzz target `response`: the checks are in `common/response.rs`, where `cargo test` at the
//! repository root can run them on the seed corpus too.

#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::response::check(data));
