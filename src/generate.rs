//! Owns synthetic logs: a web shop of five services with diurnal traffic,
//! log-normal latencies, realistic statuses and messages, and five labelled
//! incidents (error burst, latency surge, silent service, traffic spike from
//! one client, a never-seen error). Deterministic for a seed; the labels are
//! written beside the output as JSON. Used by `generate`, `produce`, tests
//! and benchmarks.

use crate::parse::time::format_micros;
use serde::{Deserialize, Serialize};
use std::io::Write;

/// A small, fast, seedable PRNG (xoshiro256**, seeded by splitmix64).
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut z = seed;
        let mut next = || {
            z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            x ^ (x >> 31)
        };
        Rng {
            s: [next(), next(), next(), next()],
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let r = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        r
    }

    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.f64().max(1e-12);
        let u2 = self.f64();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
}

/// Output formats of the generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum GenFormat {
    Json,
    Combined,
    Logfmt,
    Syslog,
}

/// The kinds of incident the generator injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum IncidentKind {
    ErrorBurst,
    LatencySurge,
    SilentService,
    TrafficSpike,
    NewError,
}

impl IncidentKind {
    pub const ALL: [IncidentKind; 5] = [
        IncidentKind::ErrorBurst,
        IncidentKind::LatencySurge,
        IncidentKind::SilentService,
        IncidentKind::TrafficSpike,
        IncidentKind::NewError,
    ];
}

/// One injected incident, as written to the labels file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub kind: IncidentKind,
    pub service: String,
    /// Start and end (exclusive) as RFC 3339 and as epoch microseconds.
    pub start: String,
    pub end: String,
    pub start_us: i64,
    pub end_us: i64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub detail: Option<String>,
}

/// What the labels file holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Labels {
    pub lines: u64,
    pub format: GenFormat,
    pub seed: u64,
    pub start: String,
    pub end: String,
    pub services: Vec<String>,
    pub incidents: Vec<Incident>,
}

/// Generator settings.
#[derive(Debug, Clone)]
pub struct GenOptions {
    pub lines: u64,
    pub format: GenFormat,
    pub seed: u64,
    /// Epoch microseconds of the first minute.
    pub start_us: i64,
    /// Length of the data in minutes; by default about 100 lines a minute.
    pub minutes: Option<u64>,
    /// Which incidents to inject.
    pub incidents: Vec<IncidentKind>,
}

impl Default for GenOptions {
    fn default() -> Self {
        GenOptions {
            lines: 10_000,
            format: GenFormat::Json,
            seed: 42,
            start_us: crate::parse::time::days_from_civil(2026, 11, 1) * 86_400_000_000,
            minutes: None,
            incidents: IncidentKind::ALL.to_vec(),
        }
    }
}

struct Service {
    name: &'static str,
    weight: f64,
    /// median latency in ms
    latency: f64,
    endpoints: &'static [(&'static str, &'static str)],
    info: &'static [&'static str],
    warn: &'static [&'static str],
    error: &'static [&'static str],
}

const SERVICES: [Service; 5] = [
    Service {
        name: "api-gateway",
        weight: 3.0,
        latency: 25.0,
        endpoints: &[
            ("GET", "/api/products/{id}"),
            ("GET", "/api/search"),
            ("POST", "/api/cart/{id}/items"),
            ("GET", "/health"),
        ],
        info: &[
            "proxied request to upstream {svc} in {ms}ms",
            "rate limiter refilled bucket for client {ip}",
        ],
        warn: &[
            "upstream {svc} slow: {ms}ms",
            "client {ip} close to rate limit",
        ],
        error: &[
            "upstream {svc} returned 502 Bad Gateway",
            "circuit breaker opened for {svc}",
        ],
    },
    Service {
        name: "auth",
        weight: 1.5,
        latency: 15.0,
        endpoints: &[
            ("POST", "/api/login"),
            ("POST", "/api/token/refresh"),
            ("GET", "/api/session/{id}"),
        ],
        info: &[
            "user {id} logged in",
            "issued token for user {id} ttl=3600s",
        ],
        warn: &[
            "failed login for user {id} from {ip}",
            "token for user {id} expired",
        ],
        error: &[
            "LDAP bind failed: connection reset by peer",
            "signing key rotation failed: keystore locked",
        ],
    },
    Service {
        name: "orders",
        weight: 2.0,
        latency: 40.0,
        endpoints: &[
            ("GET", "/api/orders/{id}"),
            ("POST", "/api/orders"),
            ("GET", "/api/orders/{id}/items"),
        ],
        info: &[
            "order {id} created total={amount}",
            "order {id} shipped via carrier {carrier}",
        ],
        warn: &[
            "slow query on orders took {ms}ms",
            "order {id} retry {n} of payment capture",
        ],
        error: &[
            "database connection timeout after {ms}ms",
            "deadlock detected on table order_items",
        ],
    },
    Service {
        name: "payments",
        weight: 1.0,
        latency: 120.0,
        endpoints: &[
            ("POST", "/api/payments"),
            ("GET", "/api/payments/{id}"),
            ("POST", "/api/refunds"),
        ],
        info: &[
            "payment {id} authorized amount={amount}",
            "refund {id} settled",
        ],
        warn: &[
            "card issuer slow: {ms}ms",
            "payment {id} requires 3ds challenge",
        ],
        error: &[
            "payment provider returned 503 Service Unavailable",
            "card declined: insufficient funds for payment {id}",
        ],
    },
    Service {
        name: "inventory",
        weight: 1.2,
        latency: 30.0,
        endpoints: &[
            ("GET", "/api/stock/{id}"),
            ("PUT", "/api/stock/{id}"),
            ("GET", "/api/warehouses"),
        ],
        info: &[
            "stock for sku {id} updated to {n}",
            "reservation {id} released",
        ],
        warn: &[
            "stock for sku {id} below threshold {n}",
            "cache miss for sku {id}",
        ],
        error: &[
            "stock sync failed for warehouse {n}: timeout",
            "negative stock for sku {id}",
        ],
    },
];

const NEW_ERROR_MESSAGE: &str =
    "java.lang.OutOfMemoryError: Java heap space in worker pool-3 while rendering report";
const NEW_ERROR_PATH: &str = "/api/internal/heapdump";
const SPIKE_CLIENT: &str = "203.0.113.77";
const CARRIERS: [&str; 3] = ["dhl", "ups", "fedex"];

/// Where and how long each incident happens: (kind, service index, start
/// fraction of the span, minutes).
fn incident_plan(kind: IncidentKind) -> (usize, f64, u64) {
    match kind {
        IncidentKind::ErrorBurst => (3, 0.20, 6),
        IncidentKind::LatencySurge => (4, 0.35, 6),
        IncidentKind::SilentService => (1, 0.50, 8),
        IncidentKind::TrafficSpike => (2, 0.65, 5),
        IncidentKind::NewError => (0, 0.80, 4),
    }
}

/// The live state of incidents for one (minute, service).
#[derive(Default, Clone, Copy)]
struct Effects {
    error_burst: bool,
    latency_surge: bool,
    silent: bool,
    spike: bool,
    new_error: bool,
}

/// Plans the incidents for a span of `minutes` starting at `start_us`.
pub fn plan_incidents(opts: &GenOptions, minutes: u64) -> Vec<Incident> {
    opts.incidents
        .iter()
        .map(|&kind| {
            let (svc, frac, len) = incident_plan(kind);
            let len = len.min((minutes / 10).max(1));
            let m0 = ((minutes as f64 * frac) as u64).min(minutes.saturating_sub(len));
            let start_us = opts.start_us + m0 as i64 * 60_000_000;
            let end_us = start_us + len as i64 * 60_000_000;
            Incident {
                kind,
                service: SERVICES[svc].name.to_string(),
                start: format_micros(start_us),
                end: format_micros(end_us),
                start_us,
                end_us,
                detail: match kind {
                    IncidentKind::TrafficSpike => Some(format!("client {SPIKE_CLIENT}")),
                    IncidentKind::NewError => Some(NEW_ERROR_MESSAGE.to_string()),
                    _ => None,
                },
            }
        })
        .collect()
}

fn effects_at(incidents: &[Incident], svc: usize, t_us: i64) -> Effects {
    let mut e = Effects::default();
    for i in incidents {
        if i.service == SERVICES[svc].name && t_us >= i.start_us && t_us < i.end_us {
            match i.kind {
                IncidentKind::ErrorBurst => e.error_burst = true,
                IncidentKind::LatencySurge => e.latency_surge = true,
                IncidentKind::SilentService => e.silent = true,
                IncidentKind::TrafficSpike => e.spike = true,
                IncidentKind::NewError => e.new_error = true,
            }
        }
    }
    e
}

/// One event before formatting.
struct Event {
    ts: i64,
    svc: usize,
    host: u32,
    level: &'static str,
    msg: String,
    method: &'static str,
    path: String,
    status: u16,
    latency_ms: f64,
    bytes: u32,
    client: String,
    request: bool,
}

fn fill(template: &str, rng: &mut Rng, latency: f64) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(p) = rest.find('{') {
        out.push_str(&rest[..p]);
        let end = rest[p..].find('}').map(|e| p + e).unwrap_or(rest.len() - 1);
        match &rest[p + 1..end] {
            "id" => out.push_str(&(10_000 + rng.below(90_000)).to_string()),
            "ms" => out.push_str(&format!("{}", latency.round() as u64)),
            "ip" => out.push_str(&client_ip(rng)),
            "svc" => out.push_str(rng.pick(&SERVICES[..]).name),
            "amount" => out.push_str(&format!("{}.{:02}", 5 + rng.below(500), rng.below(100))),
            "carrier" => out.push_str(rng.pick::<&str>(&CARRIERS)),
            "n" => out.push_str(&(1 + rng.below(20)).to_string()),
            other => out.push_str(other),
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

fn client_ip(rng: &mut Rng) -> String {
    // skewed: a few clients are much busier than the rest
    let r = rng.f64();
    let id = (r * r * r * 400.0) as u32;
    format!("10.{}.{}.{}", 1 + id / 200, (id / 10) % 20, 2 + id % 250)
}

fn make_event(rng: &mut Rng, svc: usize, ts: i64, e: Effects, spike_line: bool) -> Event {
    let s = &SERVICES[svc];
    let (method, path_t) = *rng.pick(s.endpoints);
    let path = path_t.replace("{id}", &(1000 + rng.below(9000)).to_string());
    let mut latency = s.latency * (0.6 * rng.normal()).exp();
    if e.latency_surge {
        latency *= 12.0;
    }
    let err_p = if e.error_burst { 0.45 } else { 0.004 };
    let warn_p = 0.03;
    let client = if spike_line {
        SPIKE_CLIENT.to_string()
    } else {
        client_ip(rng)
    };
    let host = rng.below(3) as u32 + 1;
    let roll = rng.f64();
    let request = rng.chance(0.8) || spike_line;
    // a handful of never-seen fatal lines, as a real OOM gives before a restart
    let (level, status, msg) = if e.new_error && rng.chance(0.08) {
        ("fatal", 500, NEW_ERROR_MESSAGE.to_string())
    } else if roll < err_p {
        let status = *rng.pick(&[500u16, 502, 503, 504]);
        (
            "error",
            status,
            fill(rng.pick::<&str>(s.error), rng, latency),
        )
    } else if roll < err_p + warn_p {
        let status = *rng.pick(&[400u16, 404, 409, 429]);
        ("warn", status, fill(rng.pick::<&str>(s.warn), rng, latency))
    } else {
        ("info", 200, fill(rng.pick::<&str>(s.info), rng, latency))
    };
    let new_error = msg == NEW_ERROR_MESSAGE;
    let (method, path) = if new_error {
        ("POST", NEW_ERROR_PATH.to_string())
    } else {
        (method, path)
    };
    let request = request && !new_error || spike_line;
    let msg = if request {
        format!("{method} {path} completed with {status}")
    } else {
        msg
    };
    Event {
        ts,
        svc,
        host,
        level,
        msg,
        method,
        path,
        status,
        latency_ms: (latency * 10.0).round() / 10.0,
        bytes: 200 + rng.below(5000) as u32,
        client,
        request: request || new_error,
    }
}

fn write_event(out: &mut impl Write, fmt: GenFormat, ev: &Event) -> std::io::Result<()> {
    let svc = SERVICES[ev.svc].name;
    let ts = format_micros(ev.ts);
    match fmt {
        GenFormat::Json => {
            let mut msg = String::with_capacity(ev.msg.len() + 2);
            crate::record::push_json_string(&mut msg, &ev.msg);
            if ev.request {
                writeln!(
                    out,
                    r#"{{"ts":"{ts}","level":"{}","service":"{svc}","host":"{svc}-{}","msg":{msg},"method":"{}","path":"{}","status":{},"latency_ms":{},"bytes":{},"client_ip":"{}","request_id":"{:016x}"}}"#,
                    ev.level,
                    ev.host,
                    ev.method,
                    ev.path,
                    ev.status,
                    ev.latency_ms,
                    ev.bytes,
                    ev.client,
                    (ev.ts as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ ev.bytes as u64
                )
            } else {
                writeln!(
                    out,
                    r#"{{"ts":"{ts}","level":"{}","service":"{svc}","host":"{svc}-{}","msg":{msg}}}"#,
                    ev.level, ev.host
                )
            }
        }
        GenFormat::Logfmt => {
            let mut msg = String::with_capacity(ev.msg.len() + 2);
            crate::record::push_json_string(&mut msg, &ev.msg);
            if ev.request {
                writeln!(
                    out,
                    "ts={ts} level={} service={svc} host={svc}-{} msg={msg} method={} path={} status={} latency_ms={} bytes={} client_ip={}",
                    ev.level, ev.host, ev.method, ev.path, ev.status, ev.latency_ms, ev.bytes, ev.client
                )
            } else {
                writeln!(
                    out,
                    "ts={ts} level={} service={svc} host={svc}-{} msg={msg}",
                    ev.level, ev.host
                )
            }
        }
        GenFormat::Combined => {
            let secs = ev.ts.div_euclid(1_000_000);
            let (y, m, d) = crate::parse::time::civil_from_days(secs.div_euclid(86400));
            let sod = secs.rem_euclid(86400);
            const MON: [&str; 12] = [
                "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
            ];
            writeln!(
                out,
                "{svc}:443 {} - - [{d:02}/{}/{y}:{:02}:{:02}:{:02} +0000] \"{} {} HTTP/1.1\" {} {} \"-\" \"Mozilla/5.0 (X11; Linux x86_64)\" {:.3}",
                ev.client,
                MON[(m - 1) as usize],
                sod / 3600,
                (sod / 60) % 60,
                sod % 60,
                ev.method,
                ev.path,
                ev.status,
                ev.bytes,
                ev.latency_ms / 1000.0
            )
        }
        GenFormat::Syslog => {
            let sev = match ev.level {
                "fatal" => 2,
                "error" => 3,
                "warn" => 4,
                _ => 6,
            };
            writeln!(
                out,
                "<{}>1 {ts} {svc}-{} {svc} {} - - {}",
                16 * 8 + sev,
                ev.host,
                1000 + ev.host,
                ev.msg
            )
        }
    }
}

/// Generates `opts.lines` lines into `out`; returns the labels.
pub fn generate(opts: &GenOptions, out: &mut impl Write) -> std::io::Result<Labels> {
    let mut rng = Rng::new(opts.seed);
    let minutes = opts.minutes.unwrap_or((opts.lines / 100).max(30)).max(1);
    let incidents = plan_incidents(opts, minutes);
    // weights per (minute, service)
    let nsvc = SERVICES.len();
    let mut weights = vec![0f64; minutes as usize * nsvc];
    let mut spikes = vec![0f64; minutes as usize * nsvc];
    for m in 0..minutes as usize {
        let t = opts.start_us + m as i64 * 60_000_000;
        let hour = ((t / 1_000_000).rem_euclid(86400)) as f64 / 3600.0;
        let diurnal = 1.0 + 0.6 * ((hour - 9.0) / 24.0 * 2.0 * std::f64::consts::PI).sin();
        for (s, svc) in SERVICES.iter().enumerate() {
            let e = effects_at(&incidents, s, t);
            let noise = 0.85 + 0.3 * rng.f64();
            let w = if e.silent {
                0.0
            } else {
                svc.weight * diurnal * noise
            };
            weights[m * nsvc + s] = w;
            if e.spike {
                spikes[m * nsvc + s] = w * 4.0;
            }
        }
    }
    let total: f64 = weights.iter().sum::<f64>() + spikes.iter().sum::<f64>();
    let scale = opts.lines as f64 / total.max(1e-9);
    let mut carry = 0.0;
    let mut written = 0u64;
    let mut events: Vec<Event> = Vec::with_capacity(512);
    for m in 0..minutes as usize {
        let t0 = opts.start_us + m as i64 * 60_000_000;
        events.clear();
        for s in 0..nsvc {
            for (w, spike) in [(weights[m * nsvc + s], false), (spikes[m * nsvc + s], true)] {
                if w == 0.0 {
                    continue;
                }
                carry += w * scale;
                let mut n = carry.floor() as u64;
                carry -= n as f64;
                let last = m + 1 == minutes as usize && s + 1 == nsvc && spike;
                if written + n > opts.lines || last {
                    n = opts.lines.saturating_sub(written);
                }
                for _ in 0..n {
                    let ts = t0 + rng.below(60_000_000) as i64;
                    let e = effects_at(&incidents, s, ts);
                    events.push(make_event(&mut rng, s, ts, e, spike));
                }
                written += n;
            }
        }
        events.sort_by_key(|e| e.ts);
        for ev in &events {
            write_event(out, opts.format, ev)?;
        }
    }
    // rounding can leave a few lines: add them in the last minute of the first service
    let t_last = opts.start_us + (minutes as i64 - 1) * 60_000_000;
    while written < opts.lines {
        let ts = t_last + rng.below(60_000_000) as i64;
        let ev = make_event(&mut rng, 0, ts, Effects::default(), false);
        write_event(out, opts.format, &ev)?;
        written += 1;
    }
    out.flush()?;
    Ok(Labels {
        lines: written,
        format: opts.format,
        seed: opts.seed,
        start: format_micros(opts.start_us),
        end: format_micros(opts.start_us + minutes as i64 * 60_000_000),
        services: SERVICES.iter().map(|s| s.name.to_string()).collect(),
        incidents,
    })
}

/// Generates one batch of `n` live lines at time `ts_us` (used by `produce`).
pub fn live_lines(
    rng: &mut Rng,
    format: GenFormat,
    ts_us: i64,
    n: usize,
    incident: Option<IncidentKind>,
) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let mut svc = rng.below(SERVICES.len() as u64) as usize;
        let mut e = Effects::default();
        let mut spike = false;
        if let Some(kind) = incident {
            let (isvc, _, _) = incident_plan(kind);
            match kind {
                IncidentKind::SilentService if svc == isvc => svc = (svc + 1) % SERVICES.len(),
                IncidentKind::TrafficSpike if rng.chance(0.5) => {
                    svc = isvc;
                    spike = true;
                }
                _ if svc == isvc => {
                    e = effects_at(
                        &[Incident {
                            kind,
                            service: SERVICES[isvc].name.to_string(),
                            start: String::new(),
                            end: String::new(),
                            start_us: i64::MIN,
                            end_us: i64::MAX,
                            detail: None,
                        }],
                        svc,
                        ts_us,
                    )
                }
                _ => {}
            }
        }
        let ev = make_event(rng, svc, ts_us, e, spike);
        let mut buf = Vec::with_capacity(256);
        let _ = write_event(&mut buf, format, &ev);
        buf.pop();
        out.push(String::from_utf8(buf).unwrap_or_default());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{detect, Format, LineParser};
    use crate::record::Fields;

    fn gen(lines: u64, format: GenFormat, seed: u64) -> (String, Labels) {
        let opts = GenOptions {
            lines,
            format,
            seed,
            ..Default::default()
        };
        let mut buf = Vec::new();
        let labels = generate(&opts, &mut buf).unwrap();
        (String::from_utf8(buf).unwrap(), labels)
    }

    #[test]
    fn exact_count_deterministic_and_parseable_in_every_format() {
        for (fmt, expect) in [
            (GenFormat::Json, Format::Json),
            (GenFormat::Combined, Format::Combined),
            (GenFormat::Logfmt, Format::Logfmt),
            (GenFormat::Syslog, Format::Syslog),
        ] {
            let (text, labels) = gen(5000, fmt, 7);
            assert_eq!(text.lines().count(), 5000, "{fmt:?}");
            assert_eq!(labels.lines, 5000);
            assert_eq!(labels.incidents.len(), 5);
            let (again, _) = gen(5000, fmt, 7);
            assert_eq!(text, again, "deterministic for a seed");
            let sample: Vec<&str> = text.lines().take(50).collect();
            let detected = detect(&sample, 2026);
            assert_eq!(detected, expect);
            let mut p = LineParser::new(detected, 2026, 1 << 20);
            let mut f = Fields::default();
            for line in text.lines() {
                assert_eq!(p.parse(line.as_bytes(), &mut f), Ok(true), "{line}");
                assert!(
                    f.ts.is_some() && f.level.is_some() && f.service.is_set(),
                    "{line}"
                );
            }
        }
        let (a, _) = gen(2000, GenFormat::Json, 1);
        let (b, _) = gen(2000, GenFormat::Json, 2);
        assert_ne!(a, b);
    }

    #[test]
    fn incidents_show_in_the_data() {
        let (text, labels) = gen(60_000, GenFormat::Json, 3);
        let silent = labels
            .incidents
            .iter()
            .find(|i| i.kind == IncidentKind::SilentService)
            .unwrap();
        let mut p = LineParser::new(Format::Json, 2026, 1 << 20);
        let mut f = Fields::default();
        let mut in_silence = 0;
        let mut new_errors = 0;
        for line in text.lines() {
            p.parse(line.as_bytes(), &mut f).unwrap();
            let ts = f.ts.unwrap();
            if f.service.get() == Some(silent.service.as_str())
                && ts >= silent.start_us
                && ts < silent.end_us
            {
                in_silence += 1;
            }
            if f.message.get() == Some(NEW_ERROR_MESSAGE) {
                new_errors += 1;
            }
        }
        assert_eq!(in_silence, 0);
        assert!((2..=30).contains(&new_errors), "{new_errors}");
    }
}
