//! Any bytes as a CSV manifest: read, validated, every property in `props.rs` holds.
#![no_main]

#[path = "../props.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::manifest(data, props::Format::Csv));
