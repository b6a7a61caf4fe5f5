//! End-to-end tests: the real binary, real files, real sockets. One test binary for all of
//! `tests/`, one module per command; shared helpers in `util`.

mod fuzz_regressions;
mod hostile;
mod hostile_files;
mod real_s3;
mod sandbox;
mod upload;
mod util;
mod validate;
