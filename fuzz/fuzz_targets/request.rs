//! Fuzz target `request`: the checks are in `common/request.rs`, where `cargo test` at the
//! repository root can run them on the seed corpus too.

#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::request::check(data));
