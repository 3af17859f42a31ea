//! Settings: flags and `TLOG_*` environment variables (through clap) win
//! over the config file, which wins over the defaults.
//!
//! The config file is TOML; every key is optional:
//!
//! ```toml
//! server = "https://tlog.example.com:7400"
//! vkey_file = "/etc/tlog/log.vkey"      # or vkey = "name+hexid+base64"
//! ca_file = "/etc/tlog/ca.pem"
//! tls_domain = "tlog.example.com"
//! cert_file = "/etc/tlog/client.pem"
//! key_file = "/etc/tlog/client.key"
//! token_file = "~/.config/tlog/token"  # or token = "..."
//! state = "/var/lib/tlog/state"
//! policy = "/etc/tlog/witnesses.policy" # c2sp.org/tlog-policy
//! tiles = "https://mirror.example.com/log" # read from tiles instead
//! timeout = "30s"
//! retries = 4
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::anyhow;
use serde::Deserialize;

use crate::{Failure, Global, Res};

/// The default server address.
const DEFAULT_SERVER: &str = "http://127.0.0.1:7400";

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    server: Option<String>,
    vkey: Option<String>,
    vkey_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    tls_domain: Option<String>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    token: Option<String>,
    token_file: Option<PathBuf>,
    justification: Option<String>,
    state: Option<PathBuf>,
    policy: Option<PathBuf>,
    tiles: Option<String>,
    no_state: Option<bool>,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
    retries: Option<u32>,
}

/// Settings after merging.
pub struct Settings {
    pub server: String,
    pub vkey: Option<String>,
    pub json: bool,
    /// A tiles URL to read from instead of the server.
    pub tiles: Option<String>,
    /// The witness policy every checkpoint must satisfy.
    pub policy: Option<std::sync::Arc<tlog_core::policy::Policy>>,
    ca_file: Option<PathBuf>,
    tls_domain: Option<String>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    token: Option<String>,
    justification: Option<String>,
    state: Option<PathBuf>,
    no_state: bool,
    timeout: Option<Duration>,
    retries: Option<u32>,
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

fn xdg(var: &str, fallback: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(fallback)))
}

fn read(path: &Path, what: &str) -> Res<String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(|e| Failure::usage(anyhow!("cannot read {what} {}: {e}", path.display())))
}

/// Reads a c2sp.org/tlog-policy file.
pub fn load_policy(path: &Path) -> Res<tlog_core::policy::Policy> {
    let bytes = std::fs::read(path)
        .map_err(|e| Failure::usage(anyhow!("cannot read --policy {}: {e}", path.display())))?;
    tlog_core::policy::Policy::parse(&bytes).map_err(|e| {
        Failure::usage(anyhow!(
            "--policy {}: {e} (the format is c2sp.org/tlog-policy)",
            path.display()
        ))
    })
}

/// Merges flags and environment with the config file.
pub fn resolve(g: Global) -> Res<Settings> {
    let (file, explicit) = match &g.config {
        Some(p) => (Some(p.clone()), true),
        None => (
            xdg("XDG_CONFIG_HOME", ".config").map(|d| d.join("tlog/config.toml")),
            false,
        ),
    };
    let f: File = match file {
        Some(p) if explicit || p.is_file() => {
            let text = read(&p, "config file")?;
            toml::from_str(&text).map_err(|e| {
                Failure::usage(anyhow!("config file {}: {}", p.display(), e.message()))
            })?
        }
        _ => File::default(),
    };
    let vkey = match (g.vkey, g.vkey_file, f.vkey, f.vkey_file) {
        (Some(k), ..) => Some(k),
        (None, Some(p), ..) => Some(read(&p, "--vkey-file")?),
        (None, None, Some(k), _) => Some(k),
        (None, None, None, Some(p)) => Some(read(&p, "vkey_file")?),
        _ => None,
    };
    let token = match (g.token, g.token_file, f.token, f.token_file) {
        (Some(t), ..) => Some(t),
        (None, Some(p), ..) => Some(read(&p, "--token-file")?),
        (None, None, Some(t), _) => Some(t),
        (None, None, None, Some(p)) => Some(read(&p, "token_file")?),
        _ => None,
    };
    let policy = g
        .policy
        .or(f.policy)
        .map(|p| load_policy(&p).map(std::sync::Arc::new))
        .transpose()?;
    Ok(Settings {
        policy,
        tiles: g.tiles.or(f.tiles),
        server: g
            .server
            .or(f.server)
            .unwrap_or_else(|| DEFAULT_SERVER.into()),
        vkey,
        json: g.json,
        ca_file: g.ca_file.or(f.ca_file),
        tls_domain: g.tls_domain.or(f.tls_domain),
        cert_file: g.cert_file.or(f.cert_file),
        key_file: g.key_file.or(f.key_file),
        token,
        justification: g.justification.or(f.justification),
        state: g.state.or(f.state),
        no_state: g.no_state || f.no_state.unwrap_or(false),
        timeout: g.timeout.or(f.timeout),
        retries: g.retries.or(f.retries),
    })
}

impl Settings {
    /// The default trusted-state file for a log: one per origin and key,
    /// under `$XDG_STATE_HOME/tlog` (or `~/.local/state/tlog`).
    fn default_state(vkey: &str) -> Option<PathBuf> {
        let v = tlog_core::note::Verifier::from_vkey(vkey.trim()).ok()?;
        let name: String = v
            .name()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        xdg("XDG_STATE_HOME", ".local/state").map(|d| {
            d.join("tlog")
                .join(format!("{name}-{:08x}.checkpoint", v.key_id()))
        })
    }

    /// Connection options for the client.
    pub fn connect_options(&self, vkey: &str) -> Res<tlog_client::ConnectOptions> {
        let read_bytes = |p: &PathBuf, what: &str| {
            std::fs::read(p)
                .map_err(|e| Failure::usage(anyhow!("cannot read {what} {}: {e}", p.display())))
        };
        let identity = match (&self.cert_file, &self.key_file) {
            (Some(c), Some(k)) => {
                Some((read_bytes(c, "--cert-file")?, read_bytes(k, "--key-file")?))
            }
            (None, None) => None,
            _ => {
                return Err(Failure::usage(anyhow!(
                    "mutual TLS needs both --cert-file and --key-file"
                )));
            }
        };
        Ok(tlog_client::ConnectOptions {
            ca_pem: self
                .ca_file
                .as_ref()
                .map(|p| read_bytes(p, "--ca-file"))
                .transpose()?,
            tls_domain: self.tls_domain.clone(),
            identity,
            token: self.token.clone(),
            justification: self.justification.clone(),
            timeout: self.timeout,
            retries: self.retries,
            policy: self.policy.clone(),
            state_file: if self.no_state {
                None
            } else {
                self.state.clone().or_else(|| Self::default_state(vkey))
            },
        })
    }
}
