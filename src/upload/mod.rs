//! The upload engine: call 1 with each row's metadata (`client`), then the presigned S3 upload
//! (`transfer`), over one HTTP client (`http`); what a failure means (`failure`) and how long
//! to wait before another try (`retry`); the bounded pool of workers that takes each row
//! through both calls with the journal (`pool`).

pub mod client;
pub mod clock;
pub mod failure;
pub mod http;
pub mod lock;
pub mod outage;
pub mod pool;
pub mod rate;
pub mod response;
pub mod retry;
pub mod server_error;
pub mod transfer;
