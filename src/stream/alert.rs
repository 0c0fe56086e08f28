//! Owns alert delivery for anomalies found online: the JSON body (a
//! Slack-compatible `text` plus the whole anomaly), published to the AMQP
//! alert exchange by the consumer and POSTed here to the optional webhook
//! (`stream.webhook_url`). The POST runs in the background with a timeout and
//! a few retries, so a slow or absent receiver never stalls consumption; a
//! failure is logged (the anomaly is in the `anomalies` table either way).

use crate::detect::Anomaly;
use anyhow::{bail, Context, Result};
use std::time::Duration;
use tracing::{info, warn};

/// Attempts per alert, with 1 s, 2 s, ... between them.
const ATTEMPTS: u32 = 3;
/// One attempt may take this long.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The alert as JSON: `{"text": "LogSentry: ...", "anomaly": {...}}`.
pub fn body(a: &Anomaly) -> serde_json::Value {
    serde_json::json!({
        "text": format!(
            "LogSentry: {} {} anomalous (score {:.3}): {}",
            a.service, a.window_start, a.score, a.summary
        ),
        "anomaly": a,
    })
}

/// A configured webhook.
#[derive(Clone)]
pub struct Webhook {
    client: reqwest::Client,
    url: String,
    /// The URL as logged: scheme and host only (a Slack webhook's path is
    /// its secret).
    shown: String,
}

impl Webhook {
    /// `None` when `url` is empty; an error naming the key when it is not an
    /// http(s) URL.
    pub fn from_config(url: &str) -> Result<Option<Webhook>> {
        if url.is_empty() {
            return Ok(None);
        }
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            bail!("stream.webhook_url must be an http:// or https:// URL, got {url:?}");
        }
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .context("building the webhook client")?;
        let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        let host = host.rsplit('@').next().unwrap_or(host);
        Ok(Some(Webhook {
            client,
            url: url.to_string(),
            shown: format!("{scheme}://{host}/…"),
        }))
    }

    /// POSTs `body` in the background (retried; failures logged).
    pub fn send(&self, body: &serde_json::Value) {
        let hook = self.clone();
        let body = serde_json::to_vec(body).unwrap_or_default();
        tokio::spawn(async move { hook.post(body).await });
    }

    /// POSTs `body` until the receiver answers 2xx or the attempts run out.
    pub async fn post(&self, body: Vec<u8>) -> bool {
        let target = &self.shown;
        for attempt in 1..=ATTEMPTS {
            let sent = self
                .client
                .post(&self.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => {
                    info!(webhook = %target, "alert delivered");
                    return true;
                }
                Ok(r) => {
                    warn!(webhook = %target, status = %r.status(), attempt, "webhook refused the alert")
                }
                Err(e) => warn!(webhook = %target, error = %e, attempt, "webhook unreachable"),
            }
            if attempt < ATTEMPTS {
                tokio::time::sleep(Duration::from_secs(attempt as u64)).await;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn anomaly() -> Anomaly {
        Anomaly {
            service: "payments".into(),
            window_start: "2026-11-25T10:00:00.000Z".into(),
            window_end: "2026-11-25T10:01:00.000Z".into(),
            start_us: 0,
            score: 0.71234,
            summary: "error_ratio 0.45, typical 0.00".into(),
            reasons: vec![],
            templates: vec![],
            example_lines: vec![],
        }
    }

    #[test]
    fn body_has_slack_text_and_the_anomaly() {
        let b = body(&anomaly());
        assert_eq!(
            b["text"],
            "LogSentry: payments 2026-11-25T10:00:00.000Z anomalous (score 0.712): error_ratio 0.45, typical 0.00"
        );
        assert_eq!(b["anomaly"]["service"], "payments");
    }

    #[test]
    fn only_http_urls_are_accepted() {
        assert!(Webhook::from_config("").unwrap().is_none());
        let err = Webhook::from_config("ftp://x").err().unwrap().to_string();
        assert!(err.contains("stream.webhook_url"), "{err}");
        let hook = Webhook::from_config("https://user:pw@hooks.example/services/T1/SECRET")
            .unwrap()
            .unwrap();
        assert_eq!(
            hook.shown, "https://hooks.example/…",
            "logs never show the secret path"
        );
    }

    /// A one-connection HTTP server on loopback answering `status`; returns
    /// the request it read.
    async fn receiver(status: &'static str) -> (String, tokio::task::JoinHandle<String>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", l.local_addr().unwrap());
        let h = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            // read headers, then Content-Length bytes of body
            loop {
                let n = s.read(&mut buf).await.unwrap();
                req.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&req).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len: usize = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if req.len() >= end + 4 + len {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            let resp =
                format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            s.write_all(resp.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&req).to_string()
        });
        (url, h)
    }

    #[tokio::test]
    async fn posts_json_to_the_receiver() {
        let (url, server) = receiver("200 OK").await;
        let hook = Webhook::from_config(&url).unwrap().unwrap();
        let payload = serde_json::to_vec(&body(&anomaly())).unwrap();
        assert!(hook.post(payload).await);
        let req = server.await.unwrap();
        assert!(req.starts_with("POST /hook HTTP/1.1"), "{req}");
        assert!(req
            .to_ascii_lowercase()
            .contains("content-type: application/json"));
        let json = &req[req.find("\r\n\r\n").unwrap() + 4..];
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(v["anomaly"]["summary"], "error_ratio 0.45, typical 0.00");
    }

    #[tokio::test]
    async fn a_dead_receiver_is_reported_not_fatal() {
        // bind then drop: nothing listens on that port any more
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let hook = Webhook::from_config(&format!("http://127.0.0.1:{port}/x"))
            .unwrap()
            .unwrap();
        assert!(!hook.post(b"{}".to_vec()).await);
    }
}
