//! The upload engine: call 1 with each row's metadata, then the presigned S3 upload, through a
//! bounded pool of workers with retries, a crash-safe journal and the results report.

pub mod client;
pub mod command;
pub mod lock;
pub mod pool;
pub mod response;
pub mod retry;
pub mod server_error;

#[cfg(test)]
mod test_server;
