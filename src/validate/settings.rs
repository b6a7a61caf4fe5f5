//! How a manifest is read, checked: the format, where relative audio paths resolve, and the
//! `--map` renames and `--set` fills. A flag that cannot work is a usage error here, before any
//! row is read.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::Value;

use super::fields;
use super::times::TimeSettings;
use crate::manifest::{self, Format};
use crate::objects::{ObjectUrl, SourceOptions, is_object_url};
use crate::shard::Shard;

#[derive(Clone, Debug)]
pub struct ManifestSettings {
    pub manifest: PathBuf,
    pub format: Format,
    /// Relative audio paths are joined to this (as typed, so messages show the user's path).
    pub base_dir: PathBuf,
    /// `--map SOURCE=TARGET`, in the order given.
    pub renames: Vec<(String, String)>,
    /// `--set KEY=VALUE`, in the order given.
    pub fills: Vec<(String, String)>,
    /// `--timestamp-column` and the date and time formats, and `--timezone`.
    pub times: TimeSettings,
    /// `--base-dir s3://BUCKET/PREFIX/` (or `gs://`, `az://`): relative audio paths are keys under
    /// this prefix.
    pub remote_base: Option<ObjectUrl>,
    /// `--source-endpoint` and `--source-region`: how `s3://`, `gs://` and `az://` objects are
    /// reached.
    pub sources: SourceOptions,
    /// `upload --shard`: the rows of other shards have their fields checked, not their files.
    pub shard: Option<Shard>,
}

/// Where a row's audio is: a local file, or an object in a store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    File(PathBuf),
    Object(ObjectUrl),
}

impl ManifestSettings {
    /// `manifest`, read as `format` (by default from its extension), with relative audio paths
    /// resolved against `base_dir` (by default the manifest's folder), and the `--map` and
    /// `--set` pairs as given.
    pub fn new(
        manifest: &Path,
        format: Option<Format>,
        base_dir: Option<&Path>,
        map: &[String],
        set: &[String],
    ) -> anyhow::Result<ManifestSettings> {
        let format = manifest::format_of(manifest, format)?;
        let remote_base = match base_dir.and_then(Path::to_str) {
            Some(text) if is_object_url(text) => Some(
                ObjectUrl::parse_prefix(text)
                    .map_err(|e| anyhow::anyhow!("--base-dir {}: {e}", text))?,
            ),
            _ => None,
        };
        let base_dir = match base_dir.filter(|_| remote_base.is_none()) {
            Some(dir) => {
                let meta = std::fs::metadata(dir)
                    .with_context(|| format!("--base-dir {}: cannot open it", dir.display()))?;
                if !meta.is_dir() {
                    bail!("--base-dir {}: not a folder", dir.display());
                }
                dir.to_path_buf()
            }
            None => manifest.parent().map(Path::to_path_buf).unwrap_or_default(),
        };
        Ok(ManifestSettings {
            manifest: manifest.to_path_buf(),
            format,
            base_dir,
            renames: parse_renames(map)?,
            fills: parse_fills(set)?,
            times: TimeSettings::default(),
            remote_base,
            sources: SourceOptions::default(),
            shard: None,
        })
    }

    /// With objects (`s3://`, `gs://`, `az://`) reached as `sources` says.
    pub fn with_sources(mut self, sources: SourceOptions) -> ManifestSettings {
        self.sources = sources;
        self
    }

    /// With dates and times read as `times` says.
    pub fn with_times(mut self, times: TimeSettings) -> ManifestSettings {
        self.times = times;
        self
    }

    /// Taking only the rows of `shard` (`upload --shard`).
    pub fn with_shard(mut self, shard: Option<Shard>) -> ManifestSettings {
        self.shard = shard;
        self
    }

    /// True for a row of another shard (never without `--shard`); `file` is its path as the
    /// manifest writes it, empty for a row that has none.
    pub fn elsewhere(&self, file: &str) -> bool {
        self.shard.is_some_and(|shard| !shard.takes(file))
    }

    /// The manifest as the user wrote it, for messages (`manifest.csv:17: ...`).
    pub fn shown(&self) -> String {
        crate::human::one_line(&self.manifest.display().to_string()).into_owned()
    }

    /// A manifest column's name after `--map`.
    pub fn rename<'a>(&'a self, name: &'a str) -> &'a str {
        self.renames
            .iter()
            .find(|(source, _)| source == name)
            .map_or(name, |(_, target)| target)
    }

    /// The column `--map` renames to `key`, if any.
    pub fn renamed_to<'a>(&'a self, key: &str) -> Option<&'a str> {
        self.renames
            .iter()
            .find(|(_, target)| target == key)
            .map(|(source, _)| source.as_str())
    }

    /// The `--set` value for a key, if any.
    pub fn fill(&self, key: &str) -> Option<&str> {
        self.fills
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, value)| value.as_str())
    }

    /// Where a row's audio path points: absolute as written, relative to the base folder.
    pub fn resolve(&self, file: &str) -> PathBuf {
        self.base_dir.join(file)
    }

    /// Where a row's audio is: an object URL as written, a relative path under an object
    /// `--base-dir`, else a local path ([`ManifestSettings::resolve`]). `Err` says why the
    /// value names no object.
    pub fn locate(&self, file: &str) -> Result<Location, String> {
        if is_object_url(file) {
            return ObjectUrl::parse(file).map(Location::Object);
        }
        match &self.remote_base {
            Some(base) if Path::new(file).is_relative() => base.join(file).map(Location::Object),
            _ => Ok(Location::File(self.resolve(file))),
        }
    }
}

fn split_pair<'a>(flag: &str, given: &'a str, example: &str) -> anyhow::Result<(&'a str, &'a str)> {
    match given.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim(), value.trim())),
        _ => bail!("{flag} {given:?}: expected {example}"),
    }
}

fn parse_renames(given: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    let mut renames: Vec<(String, String)> = Vec::new();
    for map in given {
        let (source, target) =
            split_pair("--map", map, "SOURCE=TARGET, e.g. --map recording=file")?;
        if target.is_empty() {
            bail!("--map {map:?}: expected SOURCE=TARGET, e.g. --map recording=file");
        }
        if let Some((_, earlier)) = renames.iter().find(|(s, _)| s == source) {
            bail!("--map {map:?}: column {source:?} is already renamed to {earlier:?}");
        }
        if let Some((other, _)) = renames.iter().find(|(_, t)| t == target) {
            bail!("--map {map:?}: column {other:?} is already renamed to {target:?}");
        }
        renames.push((source.to_string(), target.to_string()));
    }
    Ok(renames)
}

pub(crate) fn parse_fills(given: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    let mut fills: Vec<(String, String)> = Vec::new();
    for set in given {
        let (key, value) = split_pair("--set", set, "KEY=VALUE, e.g. --set channel_id=42")?;
        if key == "file" {
            bail!("--set {set:?}: every row names its own audio file; --set cannot give one");
        }
        if value.is_empty() {
            bail!("--set {set:?}: the value is empty");
        }
        if fills.iter().any(|(k, _)| k == key) {
            bail!("--set {set:?}: {key} is already set");
        }
        let json = Value::String(value.to_string());
        let checked = match key {
            "call_date" => fields::parse_date(&json).map(drop),
            "call_time" => fields::parse_time(&json).map(drop),
            "direction" => fields::parse_direction(&json).map(drop),
            "speakers" => fields::parse_speakers(&json).map(drop),
            _ => Ok(()),
        };
        if let Err(problem) = checked {
            bail!("--set {set:?}: {problem}");
        }
        fills.push((key.to_string(), value.to_string()));
    }
    Ok(fills)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(map: &[&str], set: &[&str]) -> anyhow::Result<ManifestSettings> {
        let strings = |given: &[&str]| given.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        ManifestSettings::new(
            Path::new("exports/today.csv"),
            None,
            None,
            &strings(map),
            &strings(set),
        )
    }

    fn error(map: &[&str], set: &[&str]) -> String {
        format!("{:#}", settings(map, set).unwrap_err())
    }

    #[test]
    fn relative_paths_resolve_against_the_manifests_folder() {
        let settings = settings(&[], &[]).unwrap();
        assert_eq!(
            settings.resolve("calls/a.wav"),
            Path::new("exports/calls/a.wav")
        );
        assert_eq!(settings.resolve("/abs/a.wav"), Path::new("/abs/a.wav"));
    }

    #[test]
    fn a_base_dir_that_is_not_a_folder_is_a_usage_error() {
        let err = ManifestSettings::new(
            Path::new("exports/today.csv"),
            None,
            Some(Path::new("/definitely/not/here")),
            &[],
            &[],
        )
        .unwrap_err();
        let err = format!("{err:#}");
        assert!(err.starts_with("--base-dir /definitely/not/here"), "{err}");
    }

    #[test]
    fn map_and_set_take_pairs_and_apply_in_order() {
        let settings = settings(
            &["recording = file", "Agent Name=agent"],
            &["channel_id=42", "direction=Inbound"],
        )
        .unwrap();
        assert_eq!(settings.rename("recording"), "file");
        assert_eq!(settings.rename("Agent Name"), "agent");
        assert_eq!(settings.rename("team"), "team");
        assert_eq!(settings.fill("channel_id"), Some("42"));
        assert_eq!(settings.fill("agent"), None);
    }

    #[test]
    fn malformed_map_and_set_flags_say_what_was_expected() {
        assert_eq!(
            error(&["recording"], &[]),
            r#"--map "recording": expected SOURCE=TARGET, e.g. --map recording=file"#
        );
        assert_eq!(
            error(&[], &["=42"]),
            r#"--set "=42": expected KEY=VALUE, e.g. --set channel_id=42"#
        );
        assert!(error(&["a=x", "b=x"], &[]).contains("already renamed to \"x\""));
        assert!(error(&["a=x", "a=y"], &[]).contains("already renamed"));
        assert!(error(&[], &["agent=", "x=1"]).contains("the value is empty"));
        assert!(error(&[], &["file=a.wav"]).contains("every row names its own audio file"));
    }

    #[test]
    fn a_set_value_for_a_reserved_key_is_checked_once_up_front() {
        assert_eq!(
            error(&[], &["call_date=2024-13-01"]),
            r#"--set "call_date=2024-13-01": call_date "2024-13-01": not a valid date, expected YYYY-MM-DD"#
        );
        assert!(error(&[], &["speakers=0"]).contains("positive whole number"));
        assert!(error(&[], &["direction=up"]).contains("inbound, outbound, internal"));
        assert!(error(&[], &["call_time=25:00:00"]).contains("hh:mm:ss"));
    }
}
