//! Owns configuration: built-in defaults, an optional YAML file (`--config`
//! or `LOGSENTRY_CONFIG`), and `LOGSENTRY_<SECTION>_<KEY>` environment
//! overrides. Unknown keys, in the file or the environment, are errors that
//! name the key. Secrets (the broker password) never appear in `Debug`.

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_yaml::Value;
use std::fmt;

#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Path of the DuckDB database file.
    pub db: String,
    pub ingest: IngestConfig,
    pub detect: DetectConfig,
    pub rabbitmq: RabbitConfig,
    pub stream: StreamConfig,
    pub web: WebConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Longer lines are rejected (kept in `rejects`, capped).
    pub max_line_bytes: usize,
    /// Input is read and parsed in blocks of about this many bytes.
    pub block_bytes: usize,
    /// Parser threads; 0 = one per core.
    pub threads: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DetectConfig {
    /// Window length, e.g. `30s`, `1m`, `5m`.
    pub window: String,
    /// Expected share of anomalous windows; sets the score threshold.
    pub contamination: f64,
    /// A fixed score threshold in (0,1); overrides `contamination` when set.
    pub threshold: Option<f64>,
    pub n_trees: usize,
    pub max_samples: usize,
    pub seed: u64,
    /// Windows at the start of a service that do not count templates as new.
    pub warmup_windows: usize,
    /// How many anomalies and rare lines the report lists.
    pub report_top: usize,
}

#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RabbitConfig {
    /// Full AMQP URL; when empty, built from host/port/user/password/vhost.
    pub url: String,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub vhost: String,
    pub queue: String,
    pub exchange: String,
    pub routing_key: String,
    pub prefetch: u16,
    /// Declare the durable queue (and bind it to `exchange`) at start.
    pub declare: bool,
    /// Exchange anomalies are published to (empty = none).
    pub alert_exchange: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StreamConfig {
    /// A micro-batch closes at this many lines...
    pub batch_lines: usize,
    /// ...or this many milliseconds after its first line.
    pub batch_ms: u64,
    /// Message bodies larger than this are parked, not parsed.
    pub max_message_bytes: usize,
    /// Webhook for alerts (JSON POST with a Slack-compatible `text`); empty = none.
    pub webhook_url: String,
    /// Retrain the online model this often (seconds).
    pub retrain_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    pub listen: String,
    /// Bearer token required for every page when set.
    pub token: String,
    /// SQL console limits.
    pub sql_timeout_ms: u64,
    pub sql_max_rows: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            db: "logsentry.duckdb".into(),
            ingest: IngestConfig::default(),
            detect: DetectConfig::default(),
            rabbitmq: RabbitConfig::default(),
            stream: StreamConfig::default(),
            web: WebConfig::default(),
        }
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_line_bytes: 1 << 20,
            block_bytes: 16 << 20,
            threads: 0,
        }
    }
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            window: "1m".into(),
            contamination: 0.005,
            threshold: None,
            n_trees: 100,
            max_samples: 256,
            seed: 42,
            warmup_windows: 30,
            report_top: 20,
        }
    }
}

impl Default for RabbitConfig {
    fn default() -> Self {
        RabbitConfig {
            url: String::new(),
            host: "127.0.0.1".into(),
            port: 5672,
            user: "guest".into(),
            password: "guest".into(),
            vhost: "/".into(),
            queue: "logs".into(),
            exchange: String::new(),
            routing_key: "logs".into(),
            prefetch: 10000,
            declare: true,
            alert_exchange: "logsentry.alerts".into(),
        }
    }
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            batch_lines: 50000,
            batch_ms: 250,
            max_message_bytes: 4 << 20,
            webhook_url: String::new(),
            retrain_secs: 600,
        }
    }
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            listen: "127.0.0.1:8080".into(),
            token: String::new(),
            sql_timeout_ms: 5000,
            sql_max_rows: 1000,
        }
    }
}

impl fmt::Debug for RabbitConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitConfig")
            .field("url", &redact_url(&self.url))
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &"***")
            .field("vhost", &self.vhost)
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("db", &self.db)
            .field("ingest", &self.ingest)
            .field("detect", &self.detect)
            .field("rabbitmq", &self.rabbitmq)
            .field("stream", &self.stream)
            .field("web", &self.web)
            .finish()
    }
}

/// Hides the password in an AMQP URL (`amqp://user:***@host`).
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

impl RabbitConfig {
    /// The AMQP URL to connect with (contains the password: never print it).
    pub fn amqp_url(&self) -> String {
        if !self.url.is_empty() {
            return self.url.clone();
        }
        let vhost = if self.vhost == "/" {
            "%2f".to_string()
        } else {
            self.vhost.clone()
        };
        format!(
            "amqp://{}:{}@{}:{}/{}",
            self.user, self.password, self.host, self.port, vhost
        )
    }
}

/// Parses a window length like `30s`, `1m`, `5m`, `1h` into microseconds.
pub fn parse_window(s: &str) -> Result<i64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| anyhow!("window {s:?} needs a unit: s, m or h (e.g. 30s, 1m, 5m)"))?;
    let (n, unit) = s.split_at(split);
    let n: i64 = n
        .parse()
        .map_err(|_| anyhow!("window {s:?}: expected a number followed by s, m or h"))?;
    let mul = match unit {
        "s" => 1_000_000,
        "m" | "min" => 60_000_000,
        "h" => 3_600_000_000,
        _ => bail!("window {s:?}: unknown unit {unit:?} (use s, m or h)"),
    };
    if n <= 0 {
        bail!("window {s:?} must be positive");
    }
    Ok(n * mul)
}

fn env_paths(v: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    if let Value::Mapping(m) = v {
        for (k, child) in m {
            if let Some(k) = k.as_str() {
                prefix.push(k.to_string());
                if matches!(child, Value::Mapping(_)) {
                    env_paths(child, prefix, out);
                } else {
                    out.push(prefix.clone());
                }
                prefix.pop();
            }
        }
    }
}

fn set_path(v: &mut Value, path: &[String], new: Value) {
    let mut cur = v;
    for (i, k) in path.iter().enumerate() {
        let map = match cur {
            Value::Mapping(m) => m,
            _ => return,
        };
        let key = Value::String(k.clone());
        if i + 1 == path.len() {
            map.insert(key, new);
            return;
        }
        cur = map
            .entry(key)
            .or_insert_with(|| Value::Mapping(Default::default()));
    }
}

impl Config {
    /// Loads defaults, then the file (if any), then environment overrides.
    pub fn load(path: Option<&str>, env: &[(String, String)]) -> Result<Config> {
        let defaults = serde_yaml::to_value(Config::default())?;
        let mut merged = defaults.clone();
        let file = path.map(str::to_string).or_else(|| {
            env.iter()
                .find(|(k, _)| k == "LOGSENTRY_CONFIG")
                .map(|(_, v)| v.clone())
        });
        if let Some(p) = &file {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("cannot read config {p}"))?;
            let user: Value = serde_yaml::from_str(&text)
                .with_context(|| format!("config {p} is not valid YAML"))?;
            if !matches!(user, Value::Null) {
                // validate the file alone so an unknown key is named with its file
                serde_yaml::from_value::<Config>(user.clone())
                    .map_err(|e| anyhow!("config {p}: {e}"))?;
                let mut paths = Vec::new();
                env_paths(&user, &mut Vec::new(), &mut paths);
                for path in paths {
                    let mut cur = &user;
                    for k in &path {
                        cur = &cur[k.as_str()];
                    }
                    set_path(&mut merged, &path, cur.clone());
                }
            }
        }
        let mut known = Vec::new();
        env_paths(&defaults, &mut Vec::new(), &mut known);
        // keys whose default is null (optional) are leaves too
        for (k, v) in env {
            let Some(rest) = k.strip_prefix("LOGSENTRY_") else {
                continue;
            };
            if matches!(rest, "CONFIG" | "LOG") {
                continue;
            }
            let path = known
                .iter()
                .find(|p| p.join("_").to_ascii_uppercase() == rest)
                .ok_or_else(|| {
                    anyhow!("environment variable {k} names no config key (see config/config.yaml)")
                })?;
            let parsed: Value =
                serde_yaml::from_str(v).unwrap_or_else(|_| Value::String(v.clone()));
            // strings stay strings even when they look like numbers
            let default_leaf = path.iter().fold(&defaults, |cur, k| &cur[k.as_str()]);
            let value = if default_leaf.is_string() {
                Value::String(v.clone())
            } else {
                parsed
            };
            set_path(&mut merged, path, value);
        }
        let cfg: Config =
            serde_yaml::from_value(merged).map_err(|e| anyhow!("configuration: {e}"))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks values that types alone do not.
    pub fn validate(&self) -> Result<()> {
        parse_window(&self.detect.window).context("detect.window")?;
        if !(0.0..0.5).contains(&self.detect.contamination) || self.detect.contamination == 0.0 {
            bail!(
                "detect.contamination must be in (0, 0.5), got {}",
                self.detect.contamination
            );
        }
        if let Some(t) = self.detect.threshold {
            if !(0.0..1.0).contains(&t) {
                bail!("detect.threshold must be in (0, 1), got {t}");
            }
        }
        if self.detect.n_trees == 0 {
            bail!("detect.n_trees must be > 0");
        }
        if !(2..=4096).contains(&self.detect.max_samples) {
            bail!(
                "detect.max_samples must be in 2..=4096, got {}",
                self.detect.max_samples
            );
        }
        if self.ingest.block_bytes < 1 << 16 {
            bail!("ingest.block_bytes must be at least 65536");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn defaults_file_and_env_layer() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.yaml");
        std::fs::write(&p, "db: x.duckdb\ndetect:\n  window: 5m\n").unwrap();
        let c = Config::load(
            Some(p.to_str().unwrap()),
            &env(&[
                ("LOGSENTRY_DETECT_CONTAMINATION", "0.02"),
                ("LOGSENTRY_RABBITMQ_PASSWORD", "12345"),
                ("LOGSENTRY_INGEST_MAX_LINE_BYTES", "4096"),
                ("PATH", "/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(c.db, "x.duckdb");
        assert_eq!(c.detect.window, "5m");
        assert_eq!(c.detect.contamination, 0.02);
        assert_eq!(c.detect.n_trees, 100);
        assert_eq!(c.rabbitmq.password, "12345");
        assert_eq!(c.ingest.max_line_bytes, 4096);
        assert!(!format!("{c:?}").contains("12345"));
    }

    #[test]
    fn unknown_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.yaml");
        std::fs::write(&p, "detect:\n  windw: 5m\n").unwrap();
        let e = Config::load(Some(p.to_str().unwrap()), &[]).unwrap_err();
        assert!(format!("{e:#}").contains("windw"), "{e:#}");
        let e = Config::load(None, &env(&[("LOGSENTRY_DETECT_WINDW", "5m")])).unwrap_err();
        assert!(format!("{e:#}").contains("LOGSENTRY_DETECT_WINDW"));
        let e = Config::load(None, &env(&[("LOGSENTRY_DETECT_WINDOW", "5 parsecs")])).unwrap_err();
        assert!(format!("{e:#}").contains("window"));
    }

    #[test]
    fn shipped_config_file_documents_the_defaults() {
        let c = Config::load(Some("config/config.yaml"), &[]).unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn windows_and_urls() {
        assert_eq!(parse_window("30s").unwrap(), 30_000_000);
        assert_eq!(parse_window("5m").unwrap(), 300_000_000);
        assert!(parse_window("5").is_err());
        assert!(parse_window("0m").is_err());
        assert_eq!(
            redact_url("amqp://bob:s3cret@rabbit:5672/%2f"),
            "amqp://bob:***@rabbit:5672/%2f"
        );
        assert_eq!(
            RabbitConfig::default().amqp_url(),
            "amqp://guest:guest@127.0.0.1:5672/%2f"
        );
    }
}
