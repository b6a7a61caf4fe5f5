//! Any bytes as call 1's answer (and as an API or S3 error body): every property in
//! `props.rs` holds.
#![no_main]

#[path = "../props.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::call1_response(data));
