//! The monitor's configuration (TOML). `deploy/config/monitor.toml`
//! documents every setting.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not valid TOML, or not the expected shape.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the key.
        message: String,
    },
    /// A setting has a wrong value.
    #[error("{key}: {reason}")]
    Invalid {
        /// The setting.
        key: String,
        /// Why.
        reason: String,
    },
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the trusted state, the alert journal and evidence files go.
    pub state_dir: PathBuf,
    /// How often to poll each log (the checkpoint stream wakes the monitor
    /// sooner when the log offers one).
    #[serde(default = "default_poll", with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Alert when a log's size has not grown for this long (default: off;
    /// a log that is idle by design would alert).
    #[serde(default, with = "humantime_serde")]
    pub max_checkpoint_age: Option<Duration>,
    /// How often the state is saved while following a log (and always at
    /// the end of `check` and at shutdown). The state is a consistent
    /// audited point: after a crash the monitor re-audits from the last
    /// save, skipping nothing, and the alert journal keeps alerts from
    /// repeating. Saving rewrites the rules' memory, so not every round.
    #[serde(default = "default_save", with = "humantime_serde")]
    pub save_interval: Duration,
    /// Alert when no endpoint of a log answered for this many polls in a
    /// row.
    #[serde(default = "default_unreachable")]
    pub unreachable_after: u32,
    /// HTTP address for `/metrics` and `POST /gossip` (optional).
    #[serde(default)]
    pub listen: Option<String>,
    /// A folder where clients drop checkpoints they saw (one signed note
    /// per file); each is checked and moved to `done/`.
    #[serde(default)]
    pub gossip_dir: Option<PathBuf>,
    /// The logs to watch.
    #[serde(rename = "log", default)]
    pub logs: Vec<LogConfig>,
    /// Artifact rules.
    #[serde(default)]
    pub rules: RulesConfig,
    /// Where alerts go.
    #[serde(default)]
    pub alerts: AlertsConfig,
    /// Run as a witness (c2sp.org/tlog-witness) too, or only.
    #[serde(default)]
    pub witness: Option<WitnessConfig>,
}

/// The `[witness]` section: the monitor cosigns the checkpoints of these
/// logs when they are consistent with what it cosigned before.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessConfig {
    /// The witness's name (the key's name), a schema-less URL.
    pub name: String,
    /// The key from `tlog-monitor witness keygen`.
    pub key_file: PathBuf,
    /// The HTTP address of the witness endpoints.
    pub listen: String,
    /// The submission and monitoring prefix (default: none, so the
    /// endpoint is `/add-checkpoint`).
    #[serde(default)]
    pub prefix: String,
    /// The logs witnessed.
    #[serde(rename = "log", default)]
    pub logs: Vec<WitnessedLog>,
}

/// One log a witness cosigns.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessedLog {
    /// The log's verifier key (its name is the origin).
    #[serde(default)]
    pub vkey: Option<String>,
    /// A file holding it.
    #[serde(default)]
    pub vkey_file: Option<PathBuf>,
    /// The origin, if not the key's name.
    #[serde(default)]
    pub origin: Option<String>,
}

fn default_poll() -> Duration {
    Duration::from_secs(5)
}

fn default_save() -> Duration {
    Duration::from_secs(10)
}

fn default_unreachable() -> u32 {
    3
}

/// One log and its vantage points.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// A short name for files and metrics (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// The log's verifier key (its name is the log's origin).
    #[serde(default)]
    pub vkey: Option<String>,
    /// A file holding the verifier key.
    #[serde(default)]
    pub vkey_file: Option<PathBuf>,
    /// The origin the checkpoints must carry (default: the key's name; if
    /// given, it must equal it).
    #[serde(default)]
    pub origin: Option<String>,
    /// The log reached through one or more addresses (replicas, proxies,
    /// other networks). The first that answers is audited in full; the
    /// others are vantage points compared with it.
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// The log's C2SP tiles (`http://host:port[/prefix]`: the server's
    /// `[http]` listener, or a published mirror behind any web server),
    /// audited like an endpoint; after the gRPC endpoints.
    #[serde(default)]
    pub tiles: Option<String>,
    /// CA certificate (PEM) for `https://` endpoints.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// A bearer token for the log, from a file.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Per-call time limit.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Overrides the global `max_checkpoint_age` for this log.
    #[serde(default, with = "humantime_serde")]
    pub max_checkpoint_age: Option<Duration>,
    /// A witness policy (c2sp.org/tlog-policy): only checkpoints its
    /// quorum cosigned are trusted and audited.
    #[serde(default)]
    pub policy_file: Option<PathBuf>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

/// The artifact rules. Each can be switched off; the list rules are empty
/// (off) unless configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    /// `digest-conflict`: the same name and version with two digests.
    #[serde(default = "yes")]
    pub digest_conflict: bool,
    /// `unregistered`: these actions need an earlier `register` of the same
    /// name, version and digest.
    #[serde(default = "default_require_registered")]
    pub require_registered: Vec<String>,
    /// `unapproved`: deploys or promotes that need an earlier `approve`.
    #[serde(default)]
    pub require_approval: Vec<ApprovalRule>,
    /// `version-regression`: a lower semantic version deployed to an
    /// environment after a higher one, without a `rollback` action.
    #[serde(default = "yes")]
    pub version_regression: bool,
    /// `version-pattern`: versions must match the pattern of their
    /// namespace.
    #[serde(default)]
    pub version_patterns: Vec<VersionPattern>,
    /// `submitter-not-allowed`: who may submit which actions.
    #[serde(default)]
    pub allowed_submitters: Vec<SubmitterRule>,
    /// `missing-attestation`: actions that need attestations by named
    /// signers (verified by the log: the leaf's verified signers).
    #[serde(default)]
    pub required_attestations: Vec<AttestationRule>,
    /// `deploy-retired`: a deploy or promote of a retired version.
    #[serde(default = "yes")]
    pub deploy_retired: bool,
    /// `access-rate`: reads and downloads far above the principal's own
    /// baseline.
    #[serde(default)]
    pub access_rate: Option<AccessRateRule>,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            digest_conflict: true,
            require_registered: default_require_registered(),
            require_approval: Vec::new(),
            version_regression: true,
            version_patterns: Vec::new(),
            allowed_submitters: Vec::new(),
            required_attestations: Vec::new(),
            deploy_retired: true,
            access_rate: None,
        }
    }
}

fn yes() -> bool {
    true
}

fn default_require_registered() -> Vec<String> {
    vec!["deploy".into(), "promote".into()]
}

fn any() -> String {
    "*".into()
}

/// Approval required before these actions in these environments.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRule {
    /// Artifact names, `*` matching any run of characters.
    #[serde(default = "any")]
    pub namespace: String,
    /// Environments (empty: all).
    #[serde(default)]
    pub environments: Vec<String>,
    /// Actions (default: deploy, promote).
    #[serde(default = "default_require_registered")]
    pub actions: Vec<String>,
}

/// A version pattern for a namespace.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionPattern {
    /// Artifact names, `*` matching any run of characters.
    pub namespace: String,
    /// A regular expression the whole version must match.
    pub pattern: String,
}

/// Who may submit an action.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitterRule {
    /// Artifact names, `*` matching any run of characters.
    #[serde(default = "any")]
    pub namespace: String,
    /// The action.
    pub action: String,
    /// Only in this environment (default: any).
    #[serde(default)]
    pub environment: Option<String>,
    /// The authenticated principals allowed (the leaf's submitter).
    pub principals: Vec<String>,
}

/// Attestations an action needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestationRule {
    /// Artifact names, `*` matching any run of characters.
    #[serde(default = "any")]
    pub namespace: String,
    /// The action.
    pub action: String,
    /// Only in this environment (default: any).
    #[serde(default)]
    pub environment: Option<String>,
    /// Signers that must all have attested (names of the log's trusted
    /// signers).
    pub signers: Vec<String>,
}

/// The unusual-access statistic: in each window, a principal's reads and
/// downloads are compared with its own mean per window since it was first
/// seen.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRateRule {
    /// The window length.
    #[serde(default = "default_window", with = "humantime_serde")]
    pub window: Duration,
    /// Alert above this multiple of the mean.
    #[serde(default = "default_factor")]
    pub factor: f64,
    /// ... and only from this many events in the window.
    #[serde(default = "default_min_count")]
    pub min_count: u64,
    /// Windows of history a principal needs before it can alert.
    #[serde(default = "default_warmup")]
    pub warmup_windows: u64,
}

fn default_window() -> Duration {
    Duration::from_secs(60)
}
fn default_factor() -> f64 {
    10.0
}
fn default_min_count() -> u64 {
    50
}
fn default_warmup() -> u64 {
    5
}

/// Where alerts go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// JSON lines on stdout.
    #[serde(default = "yes")]
    pub stdout: bool,
    /// HTTP POST of each alert.
    #[serde(default, rename = "webhook")]
    pub webhooks: Vec<WebhookConfig>,
    /// A command run per alert with the alert in its environment.
    #[serde(default, rename = "hook")]
    pub hooks: Vec<HookConfig>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            stdout: true,
            webhooks: Vec::new(),
            hooks: Vec::new(),
        }
    }
}

/// A webhook.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http://` or `https://` URL.
    pub url: String,
    /// A file holding the shared secret for the `X-Tlog-Signature` HMAC.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// CA certificate (PEM) for an `https://` URL (default: the Mozilla
    /// roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Attempts before giving up.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
}

fn default_attempts() -> u32 {
    5
}

/// A hook command.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookConfig {
    /// The program and its arguments (no shell).
    pub command: Vec<String>,
}

impl Config {
    /// Reads and checks a configuration file. Relative paths in it are
    /// relative to the file's folder.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut c: Config = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let rel = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        rel(&mut c.state_dir);
        if let Some(g) = c.gossip_dir.as_mut() {
            rel(g);
        }
        for l in &mut c.logs {
            for p in [
                &mut l.vkey_file,
                &mut l.ca_file,
                &mut l.token_file,
                &mut l.policy_file,
            ]
            .into_iter()
            .flatten()
            {
                rel(p);
            }
        }
        if let Some(w) = c.witness.as_mut() {
            rel(&mut w.key_file);
            for l in &mut w.logs {
                if let Some(p) = l.vkey_file.as_mut() {
                    rel(p);
                }
            }
        }
        for w in &mut c.alerts.webhooks {
            for p in [&mut w.secret_file, &mut w.ca_file].into_iter().flatten() {
                rel(p);
            }
        }
        c.check()?;
        Ok(c)
    }

    /// Checks values that TOML types cannot.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.logs.is_empty() && self.witness.is_none() {
            return Err(invalid(
                "log",
                "configure at least one [[log]] to watch, or a [witness]",
            ));
        }
        if let Some(w) = &self.witness {
            if w.logs.is_empty() {
                return Err(invalid(
                    "witness.log",
                    "list at least one [[witness.log]] with the vkey of a log to cosign",
                ));
            }
            for (i, l) in w.logs.iter().enumerate() {
                if l.vkey.is_some() == l.vkey_file.is_some() {
                    return Err(invalid(
                        format!("witness.log[{i}].vkey"),
                        "give exactly one of vkey and vkey_file",
                    ));
                }
            }
            if !w.prefix.is_empty() && !w.prefix.starts_with('/') {
                return Err(invalid("witness.prefix", "must start with '/'"));
            }
        }
        if self.poll_interval < Duration::from_millis(10) {
            return Err(invalid("poll_interval", "must be at least 10ms"));
        }
        let mut names = std::collections::HashSet::new();
        for (i, l) in self.logs.iter().enumerate() {
            let key = |k: &str| format!("log[{i}].{k}");
            if l.name.is_empty()
                || !l
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(invalid(key("name"), "use letters, digits, '-', '_' or '.'"));
            }
            if !names.insert(&l.name) {
                return Err(invalid(key("name"), format!("{:?} is used twice", l.name)));
            }
            if l.endpoints.is_empty() && l.tiles.is_none() {
                return Err(invalid(
                    key("endpoints"),
                    "give at least one address (or a tiles URL)",
                ));
            }
            if let Some(t) = &l.tiles
                && !(t.starts_with("http://") || t.starts_with("https://"))
            {
                return Err(invalid(key("tiles"), "must start with http:// or https://"));
            }
            if l.vkey.is_some() == l.vkey_file.is_some() {
                return Err(invalid(
                    key("vkey"),
                    "give exactly one of vkey and vkey_file",
                ));
            }
        }
        for (i, p) in self.rules.version_patterns.iter().enumerate() {
            if let Err(e) = regex::Regex::new(&p.pattern) {
                return Err(invalid(
                    format!("rules.version_patterns[{i}].pattern"),
                    e.to_string(),
                ));
            }
        }
        let actions = |list: &[String], key: String| -> Result<(), ConfigError> {
            for a in list {
                if tlog_core::event::Action::parse(a).is_none() {
                    return Err(invalid(key.clone(), format!("{a:?} is not an action")));
                }
            }
            Ok(())
        };
        actions(
            &self.rules.require_registered,
            "rules.require_registered".into(),
        )?;
        for (i, r) in self.rules.require_approval.iter().enumerate() {
            actions(&r.actions, format!("rules.require_approval[{i}].actions"))?;
        }
        for (i, r) in self.rules.allowed_submitters.iter().enumerate() {
            actions(
                std::slice::from_ref(&r.action),
                format!("rules.allowed_submitters[{i}].action"),
            )?;
        }
        for (i, r) in self.rules.required_attestations.iter().enumerate() {
            actions(
                std::slice::from_ref(&r.action),
                format!("rules.required_attestations[{i}].action"),
            )?;
        }
        if let Some(a) = &self.rules.access_rate
            && (a.factor <= 1.0 || a.window.is_zero())
        {
            return Err(invalid(
                "rules.access_rate",
                "factor must be above 1 and window above 0",
            ));
        }
        for (i, w) in self.alerts.webhooks.iter().enumerate() {
            if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
                return Err(invalid(
                    format!("alerts.webhook[{i}].url"),
                    "must start with http:// or https://",
                ));
            }
        }
        for (i, h) in self.alerts.hooks.iter().enumerate() {
            if h.command.is_empty() {
                return Err(invalid(
                    format!("alerts.hook[{i}].command"),
                    "give the program to run",
                ));
            }
        }
        Ok(())
    }
}

/// Does `name` match `pattern`, where `*` matches any run of characters?
pub fn glob(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::proptest;

    fn load_text(text: &str) {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("monitor.toml");
        std::fs::write(&path, text).expect("write");
        if let Err(e) = Config::load(&path) {
            assert!(!e.to_string().is_empty());
        }
    }

    proptest! {
        /// Hostile configuration text gets an error, never a panic.
        #[test]
        fn config_loader_never_panics(text in "\\PC{0,400}") {
            load_text(&text);
        }

        /// The shipped example with random bytes changed, likewise.
        #[test]
        fn config_loader_never_panics_on_a_mutated_example(
            edits in proptest::collection::vec((proptest::arbitrary::any::<usize>(), proptest::arbitrary::any::<u8>()), 1..8)
        ) {
            let example = include_str!("../../deploy/config/monitor.toml");
            let mut b = example.as_bytes().to_vec();
            for (pos, byte) in edits {
                let n = b.len();
                b[pos % n] = byte;
            }
            load_text(&String::from_utf8_lossy(&b));
        }
    }

    #[test]
    fn glob_matches() {
        assert!(glob("*", "anything"));
        assert!(glob("team-a/*", "team-a/fraud"));
        assert!(!glob("team-a/*", "team-b/fraud"));
        assert!(glob("team-*/llm-*", "team-x/llm-7b"));
        assert!(!glob("a*b", "ab-"));
        assert!(glob("exact", "exact"));
        assert!(!glob("a*a", "a"));
    }

    #[test]
    fn the_example_config_parses() {
        let p = std::path::PathBuf::from(
            std::env::var_os("CARGO_MANIFEST_DIR")
                .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
        )
        .join("../deploy/config/monitor.toml");
        let c = Config::load(&p).expect("example config");
        assert!(!c.logs.is_empty());
        assert!(c.rules.access_rate.is_some());
    }

    #[test]
    fn bad_values_name_the_key() {
        let base = "state_dir = \"/tmp/x\"\n[[log]]\nname = \"l\"\nvkey = \"k\"\nendpoints = [\"http://x\"]\n";
        let bad = [
            (
                format!("{base}[rules]\nrequire_registered = [\"explode\"]\n"),
                "rules.require_registered",
            ),
            (
                format!("{base}[[rules.version_patterns]]\nnamespace = \"*\"\npattern = \"(\"\n"),
                "rules.version_patterns[0].pattern",
            ),
            ("state_dir = \"/x\"\n".to_owned(), "log"),
            (
                base.replace("name = \"l\"", "name = \"a b\""),
                "log[0].name",
            ),
        ];
        for (text, key) in bad {
            let c: Config = toml::from_str(&text).expect("toml");
            let e = c.check().expect_err("refused");
            assert!(e.to_string().starts_with(key), "{e}");
        }
        let e = toml::from_str::<Config>(&format!("{base}colour = 1\n")).expect_err("unknown");
        assert!(e.to_string().contains("colour"));
    }
}
