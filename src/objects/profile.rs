//! The AWS shared files: `~/.aws/credentials` and `~/.aws/config`, profile `AWS_PROFILE` (else
//! `default`), as the AWS CLI writes them. Their keys count when the environment has none,
//! before the roles object_store asks for (web identity, ECS, instance metadata), and their
//! region when neither `AWS_REGION` nor `AWS_DEFAULT_REGION` is set: the AWS SDKs' order. Only static keys are read; a profile that names a role, SSO or a
//! `credential_process` is not run here, and one named by `AWS_PROFILE` that has no keys is an
//! error saying how to export them.

use std::path::{Path, PathBuf};

/// A profile's static keys. Never shown: no `Debug`.
pub struct Keys {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

/// What the shared files give for the profile in force.
#[derive(Default)]
pub struct FromProfile {
    pub keys: Option<Keys>,
    pub region: Option<String>,
}

/// Reads the profile named by `AWS_PROFILE` (else `default`) from the files
/// `AWS_SHARED_CREDENTIALS_FILE` and `AWS_CONFIG_FILE` name (else `~/.aws/credentials` and
/// `~/.aws/config`). `Err` is a sentence: keys are needed (`needs_keys`: the environment has
/// none) and the profile `AWS_PROFILE` names has none.
pub fn from_env(needs_keys: bool) -> Result<FromProfile, String> {
    let named = std::env::var("AWS_PROFILE")
        .ok()
        .filter(|name| !name.trim().is_empty());
    let profile = named.as_deref().unwrap_or("default").trim();
    let home = std::env::var_os("HOME")
        .or_else(|| std::env::var_os("USERPROFILE"))
        .map(PathBuf::from);
    let file = |var: &str, name: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|home| home.join(".aws").join(name)))
    };
    let credentials_file = file("AWS_SHARED_CREDENTIALS_FILE", "credentials");
    let config_file = file("AWS_CONFIG_FILE", "config");
    let read = |path: &Option<PathBuf>| {
        path.as_deref()
            .and_then(|path| std::fs::read_to_string(path).ok())
    };
    let credentials = read(&credentials_file);
    let config = read(&config_file);
    let found = profile_of(credentials.as_deref(), config.as_deref(), profile);
    if needs_keys && found.keys.is_none() && named.is_some() {
        let shown = |path: &Option<PathBuf>| {
            path.as_deref()
                .map_or_else(|| "~/.aws".to_string(), |p: &Path| p.display().to_string())
        };
        return Err(format!(
            "AWS_PROFILE={profile}: {} and {} give this profile no aws_access_key_id and aws_secret_access_key (voyc-import reads static keys only); for SSO, an assumed role or a credential_process, export the keys first: eval \"$(aws configure export-credentials --profile {profile} --format env)\"",
            shown(&credentials_file),
            shown(&config_file)
        ));
    }
    Ok(found)
}

/// The keys and region of `profile`: keys from the credentials file, else from the config
/// file; the region from the config file, else the credentials file.
pub fn profile_of(credentials: Option<&str>, config: Option<&str>, profile: &str) -> FromProfile {
    // In the config file a profile other than `default` is `[profile NAME]`.
    let in_config = |text: &str, key: &str| {
        value(text, profile, key).or_else(|| value(text, &format!("profile {profile}"), key))
    };
    let get = |key: &str| {
        credentials
            .and_then(|text| value(text, profile, key))
            .or_else(|| config.and_then(|text| in_config(text, key)))
    };
    let keys = match (get("aws_access_key_id"), get("aws_secret_access_key")) {
        (Some(access_key_id), Some(secret_access_key)) => Some(Keys {
            access_key_id,
            secret_access_key,
            session_token: get("aws_session_token"),
        }),
        _ => None,
    };
    let region = config
        .and_then(|text| in_config(text, "region"))
        .or_else(|| credentials.and_then(|text| value(text, profile, "region")));
    FromProfile { keys, region }
}

/// `key`'s value in section `[section]` of an INI text (`key = value`, `#` and `;` comments).
fn value(text: &str, section: &str, key: &str) -> Option<String> {
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.split_whitespace().collect::<Vec<_>>().join(" ") == section;
            continue;
        }
        if let Some((name, given)) = line.split_once('=')
            && inside
            && name.trim().eq_ignore_ascii_case(key)
        {
            let given = given.trim();
            return (!given.is_empty()).then(|| given.to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREDENTIALS: &str = "
# written by aws configure
[default]
aws_access_key_id = AKIADEFAULT
aws_secret_access_key = secret-default

[archive]
aws_access_key_id=AKIAARCHIVE
aws_secret_access_key=secret-archive
aws_session_token = token-archive
";

    const CONFIG: &str = "
[default]
region = eu-west-2
[profile archive]
region = us-west-1
[profile sso]
sso_start_url = https://example.awsapps.com/start
region = eu-central-1
[profile in-config]
aws_access_key_id = AKIACONFIG
aws_secret_access_key = secret-config
";

    #[test]
    fn a_profile_gives_its_own_keys_and_region() {
        let found = profile_of(Some(CREDENTIALS), Some(CONFIG), "archive");
        let keys = found.keys.unwrap();
        assert_eq!(keys.access_key_id, "AKIAARCHIVE");
        assert_eq!(keys.secret_access_key, "secret-archive");
        assert_eq!(keys.session_token.as_deref(), Some("token-archive"));
        assert_eq!(found.region.as_deref(), Some("us-west-1"));

        let found = profile_of(Some(CREDENTIALS), Some(CONFIG), "default");
        assert_eq!(found.keys.unwrap().access_key_id, "AKIADEFAULT");
        assert_eq!(found.region.as_deref(), Some("eu-west-2"));
    }

    #[test]
    fn keys_may_be_in_the_config_file_and_a_profile_without_keys_has_none() {
        let found = profile_of(Some(CREDENTIALS), Some(CONFIG), "in-config");
        assert_eq!(found.keys.unwrap().access_key_id, "AKIACONFIG");
        let sso = profile_of(Some(CREDENTIALS), Some(CONFIG), "sso");
        assert!(sso.keys.is_none());
        assert_eq!(sso.region.as_deref(), Some("eu-central-1"));
        let missing = profile_of(None, None, "default");
        assert!(missing.keys.is_none() && missing.region.is_none());
    }
}
