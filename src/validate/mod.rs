//! Validation: the rules every row must satisfy before anything is sent.

pub mod fields;

use crate::Status;
use crate::cli::ValidateArgs;

/// `voyc-import validate`: check every row, print every problem, exit 2 if any is an error.
pub fn command(_args: &ValidateArgs) -> anyhow::Result<Status> {
    anyhow::bail!("validate is not implemented yet")
}
