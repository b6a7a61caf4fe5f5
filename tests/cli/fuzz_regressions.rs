//! Every input kept in `fuzz/regressions/` (what the fuzzers found, each fixed) goes through the
//! fuzz targets' own properties (`fuzz/props.rs`) in plain `cargo test`, so it stays fixed.

use std::path::{Path, PathBuf};

use crate::util::Dir;

#[path = "../../fuzz/props.rs"]
mod props;

/// The inputs kept for one fuzz target, by file name.
fn kept(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let mut inputs: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&folder)
        .unwrap_or_else(|e| panic!("{}: {e}", folder.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "no inputs kept in {}", folder.display());
    inputs
}

fn each_manifest(target: &str, format: props::Format) {
    let dir = Dir::new();
    props::make_audio(dir.path());
    for (path, bytes) in kept(target) {
        eprintln!("{}", path.display());
        props::manifest_in(dir.path(), &bytes, format);
    }
}

#[test]
fn every_kept_csv_input_keeps_the_manifest_properties() {
    each_manifest("manifest_csv", props::Format::Csv);
}

#[test]
fn every_kept_jsonl_input_keeps_the_manifest_properties() {
    each_manifest("manifest_jsonl", props::Format::Jsonl);
}

#[test]
fn every_kept_call_1_answer_keeps_the_response_properties() {
    for (path, bytes) in kept("call1_response") {
        eprintln!("{}", path.display());
        props::call1_response(&bytes);
    }
}
