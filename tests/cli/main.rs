//! End-to-end tests: the real binary, real files, real sockets. One test binary for all of
//! `tests/`, one module per command; shared helpers in `util`.

mod cloud_source;
mod docs;
mod fuzz_regressions;
mod generated;
mod hostile;
mod hostile_files;
mod logs;
mod merge;
mod nightly;
mod real_azure;
mod real_gcs;
mod real_s3;
mod run_edges;
mod sandbox;
mod scan;
mod shard;
mod upload;
mod util;
mod validate;
