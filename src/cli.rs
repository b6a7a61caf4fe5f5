//! The command line, as clap derive definitions only; the commands live in their modules.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "voyc-import",
    version,
    about = "Move call recordings into Voyc in bulk."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check every row of a manifest and print every problem, without sending anything.
    Validate(ValidateArgs),
}

/// How a manifest is read; shared by every command that takes one.
#[derive(Debug, Args, Clone)]
pub struct ManifestArgs {
    /// The manifest: CSV with a header row, or JSONL with one object per line.
    #[arg(value_name = "MANIFEST")]
    pub manifest: PathBuf,

    /// Manifest format; by default taken from the extension (.csv, .jsonl, .ndjson).
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<Format>,

    /// Folder that relative audio paths resolve against [default: the manifest's folder].
    #[arg(long, value_name = "DIR")]
    pub base_dir: Option<PathBuf>,

    /// Rename a manifest column before anything else (repeatable), e.g. --map recording=file.
    #[arg(long = "map", value_name = "SOURCE=TARGET")]
    pub map: Vec<String>,

    /// Give every row a value where its own is empty (repeatable), e.g. --set channel_id=42.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Csv,
    Jsonl,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub manifest: ManifestArgs,
}
