//! `upload --shard K/N`: which rows of a manifest one of N copies of the tool takes, so that N
//! machines (a Kubernetes Indexed Job, an AWS Batch array) split one manifest with no
//! coordination. A row's shard comes from a hash of its path as the journal normalises it
//! ([`identity_path`]), never of its metadata or size: a re-export with a corrected field keeps
//! every row on its shard, and rows listing one file twice land together, where validation
//! finds the repeat. The hash is part of the contract: it must never change between versions,
//! or a rerun after an upgrade would take other rows (the golden test below pins it).

use std::fmt;

use anyhow::bail;
use sha2::{Digest, Sha256};

use crate::journal::identity_path;

/// What the hash is keyed with, so that it is this hash and no other SHA-256 of a path.
const DOMAIN: &[u8] = b"voyc-import shard v1\0";

/// The 0-based index of a Kubernetes Indexed Job's pod.
pub const KUBERNETES_INDEX: &str = "JOB_COMPLETION_INDEX";
/// The 0-based index of an AWS Batch array job's child.
pub const AWS_BATCH_INDEX: &str = "AWS_BATCH_JOB_ARRAY_INDEX";
/// How many shards there are, for `--shard auto`.
pub const SHARDS: &str = "VOYC_SHARDS";

/// Shard `index` of `count`, counted from 1 as people count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    index: u64,
    count: u64,
}

/// `2/4`.
impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// `--shard K/N`, or `auto` with the variables read through `var`.
    pub fn resolve(text: &str, var: impl Fn(&str) -> Option<String>) -> anyhow::Result<Shard> {
        let text = text.trim();
        if text == "auto" {
            return Shard::from_env(var);
        }
        let Some((k, n)) = text.split_once('/') else {
            bail!("--shard {text:?}: expected K/N (e.g. 2/4: the second of four shards) or auto");
        };
        let (Ok(index), Ok(count)) = (k.trim().parse::<u64>(), n.trim().parse::<u64>()) else {
            bail!(
                "--shard {text:?}: expected two whole numbers K/N (e.g. 2/4: the second of four shards) or auto"
            );
        };
        Shard::new(index, count, &format!("--shard {text}"))
    }

    /// `--shard auto`: the 0-based index from `JOB_COMPLETION_INDEX` (else
    /// `AWS_BATCH_JOB_ARRAY_INDEX`), the count from `VOYC_SHARDS`.
    fn from_env(var: impl Fn(&str) -> Option<String>) -> anyhow::Result<Shard> {
        let set = |name: &str| var(name).filter(|value| !value.trim().is_empty());
        let Some((name, zero_based)) = [KUBERNETES_INDEX, AWS_BATCH_INDEX]
            .into_iter()
            .find_map(|name| set(name).map(|value| (name, value)))
        else {
            bail!(
                "--shard auto: neither {KUBERNETES_INDEX} (a Kubernetes Indexed Job) nor {AWS_BATCH_INDEX} (an AWS Batch array job) is set; give the shard as --shard K/N"
            );
        };
        let Ok(zero_based) = zero_based.trim().parse::<u64>() else {
            bail!(
                "--shard auto: {name} is {zero_based:?}, not a whole number (the 0-based index of this copy)"
            );
        };
        let Some(count) = set(SHARDS) else {
            bail!(
                "--shard auto: {SHARDS} is not set; set it to the number of shards (the Job's completions)"
            );
        };
        let Ok(count) = count.trim().parse::<u64>() else {
            bail!("--shard auto: {SHARDS} is {count:?}, not a whole number of shards");
        };
        Shard::new(
            zero_based.saturating_add(1),
            count,
            &format!("--shard auto ({name}={zero_based}, {SHARDS}={count})"),
        )
    }

    fn new(index: u64, count: u64, given: &str) -> anyhow::Result<Shard> {
        if count == 0 {
            bail!("{given}: there must be at least 1 shard");
        }
        if index == 0 {
            bail!("{given}: shards are counted from 1, so the first of {count} is 1/{count}");
        }
        if index > count {
            bail!("{given}: there is no shard {index} of {count}; K runs from 1 to {count}");
        }
        Ok(Shard { index, count })
    }

    /// True for a row whose path (as the manifest writes it) falls in this shard.
    pub fn takes(&self, file: &str) -> bool {
        shard_of(file, self.count) == self.index
    }
}

/// The shard, 1 to `count`, of a row whose path the manifest writes as `file`: SHA-256 over
/// [`DOMAIN`] and the normalised path, its first 8 bytes as a big-endian number, modulo
/// `count`, plus 1. A row with no path is the shard of the empty path.
pub fn shard_of(file: &str, count: u64) -> u64 {
    let mut hash = Sha256::new();
    hash.update(DOMAIN);
    hash.update(identity_path(file).as_bytes());
    let digest = hash.finalize();
    let first = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes of 32"));
    first % count + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    fn error(text: &str, env: &[(&str, &str)]) -> String {
        Shard::resolve(text, vars(env)).unwrap_err().to_string()
    }

    /// The promise that a shard takes the same rows in every version of voyc-import: a rerun
    /// of one shard after an upgrade must not take rows another shard already uploaded. If
    /// this test fails, the hash changed: do not update the expectations, put the hash back.
    /// (They were also computed outside this code, with Python's hashlib over the same bytes:
    /// the prefix, then the path as `identity_path` gives it.)
    #[test]
    fn the_shard_of_a_path_never_changes_between_versions() {
        let paths = [
            "calls/0001.wav",
            "calls/0002.wav",
            "calls/0003.wav",
            "2024/03/05/agent-ann/inbound-0931.mp3",
            "/srv/archive/calls/0001.wav",
            "exports/2024-03-05 calls.csv.d/0001.WAV",
            "s3://voyc-archive/2024/0001.wav",
            "recordings/Ωmega call.ogg",
            "a.wav",
            "b.wav",
            "z/y/x/w.flac",
            "",
        ];
        let of = |count| paths.map(|path| shard_of(path, count));
        assert_eq!(of(4), [1, 3, 2, 2, 2, 2, 2, 3, 2, 2, 2, 4]);
        assert_eq!(of(7), [5, 4, 5, 4, 1, 7, 6, 1, 2, 4, 6, 1]);
    }

    #[test]
    fn the_path_is_taken_as_the_journal_normalises_it() {
        for count in [2, 3, 4, 7, 16] {
            let shard = shard_of("calls/0001.wav", count);
            for same in ["./calls/0001.wav", "calls//0001.wav", "calls/x/../0001.wav"] {
                assert_eq!(shard_of(same, count), shard, "{same} of {count}");
            }
        }
    }

    #[test]
    fn every_row_is_in_exactly_one_shard_and_the_shards_are_about_even() {
        let count = 4;
        let shards: Vec<Shard> = (1..=count)
            .map(|k| Shard::resolve(&format!("{k}/{count}"), vars(&[])).unwrap())
            .collect();
        let mut sizes = [0u32; 4];
        for i in 0..10_000 {
            let file = format!("calls/{i:05}.wav");
            let takers: Vec<usize> = (0..4).filter(|&s| shards[s].takes(&file)).collect();
            assert_eq!(takers.len(), 1, "{file}");
            sizes[takers[0]] += 1;
        }
        assert!(
            sizes.iter().all(|&n| (2300..2700).contains(&n)),
            "{sizes:?}"
        );
    }

    #[test]
    fn k_of_n_is_counted_from_1_and_anything_else_is_refused_with_a_sentence() {
        let ok = Shard::resolve(" 2/4 ", vars(&[])).unwrap();
        assert_eq!(ok.to_string(), "2/4");
        assert_eq!(Shard::resolve("1/1", vars(&[])).unwrap().to_string(), "1/1");
        assert_eq!(
            error("0/4", &[]),
            "--shard 0/4: shards are counted from 1, so the first of 4 is 1/4"
        );
        assert_eq!(
            error("5/4", &[]),
            "--shard 5/4: there is no shard 5 of 4; K runs from 1 to 4"
        );
        assert_eq!(
            error("1/0", &[]),
            "--shard 1/0: there must be at least 1 shard"
        );
        assert_eq!(
            error("2", &[]),
            "--shard \"2\": expected K/N (e.g. 2/4: the second of four shards) or auto"
        );
        for bad in ["a/4", "2/four", "-1/4", "2/4/8", "/"] {
            assert!(
                error(bad, &[]).contains("expected two whole numbers K/N"),
                "{bad}: {}",
                error(bad, &[])
            );
        }
    }

    #[test]
    fn auto_takes_the_0_based_index_of_kubernetes_or_aws_batch_and_the_count_from_voyc_shards() {
        let auto = |env: &[(&str, &str)]| Shard::resolve("auto", vars(env)).unwrap().to_string();
        assert_eq!(auto(&[(KUBERNETES_INDEX, "0"), (SHARDS, "4")]), "1/4");
        assert_eq!(auto(&[(AWS_BATCH_INDEX, "3"), (SHARDS, "4")]), "4/4");
        assert_eq!(
            auto(&[
                (KUBERNETES_INDEX, "1"),
                (AWS_BATCH_INDEX, "3"),
                (SHARDS, "4")
            ]),
            "2/4",
            "Kubernetes' index first"
        );
    }

    #[test]
    fn auto_names_the_variable_that_is_missing_or_wrong() {
        assert!(error("auto", &[(SHARDS, "4")]).starts_with(
            "--shard auto: neither JOB_COMPLETION_INDEX (a Kubernetes Indexed Job) nor AWS_BATCH_JOB_ARRAY_INDEX"
        ));
        assert_eq!(
            error("auto", &[(KUBERNETES_INDEX, "1")]),
            "--shard auto: VOYC_SHARDS is not set; set it to the number of shards (the Job's completions)"
        );
        assert_eq!(
            error("auto", &[(KUBERNETES_INDEX, "x1"), (SHARDS, "4")]),
            "--shard auto: JOB_COMPLETION_INDEX is \"x1\", not a whole number (the 0-based index of this copy)"
        );
        assert_eq!(
            error("auto", &[(KUBERNETES_INDEX, "1"), (SHARDS, "four")]),
            "--shard auto: VOYC_SHARDS is \"four\", not a whole number of shards"
        );
        assert_eq!(
            error("auto", &[(KUBERNETES_INDEX, "4"), (SHARDS, "4")]),
            "--shard auto (JOB_COMPLETION_INDEX=4, VOYC_SHARDS=4): there is no shard 5 of 4; K runs from 1 to 4"
        );
    }
}
