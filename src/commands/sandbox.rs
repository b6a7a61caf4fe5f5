//! `voyc-import sandbox`: run the stand-in for Voyc's API and S3 until stopped.

use crate::Status;
use crate::cli::SandboxArgs;

pub fn command(args: &SandboxArgs) -> anyhow::Result<Status> {
    crate::sandbox::command(args)
}
