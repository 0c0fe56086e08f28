//! Owns template mining: a Drain-style miner that masks variables (numbers,
//! hex, IPs, UUIDs, paths' variable segments, URLs, emails, quoted strings,
//! `key=value` values) as `<*>`, groups lines by token count and first token,
//! and merges lines whose tokens mostly agree into one template.
//!
//! A message whose digit key (`digit_key`: each run of digits as one `0`)
//! was seen before takes its template from a text cache without being
//! tokenised; otherwise lines whose masked token sequence was seen before hit
//! a hash cache, so the similarity search runs once per distinct shape. Chunks are mined in
//! parallel by independent miners and merged, in chunk order, into one global
//! miner, so ids are deterministic for the same input.

use ahash::AHashMap;

pub const WILDCARD: &str = "<*>";
/// Drain's similarity threshold: share of equal tokens needed to join a template.
pub const DEFAULT_SIMILARITY: f64 = 0.4;
const MAX_TOKENS: usize = 64;
/// Most digit keys a miner remembers (bounds the memory of a long-running
/// consumer's miner: ~4 MB at 40-byte messages).
const SEEN_CAP: usize = 1 << 16;

/// One template: its tokens and how often / when it was seen.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub id: u32,
    pub tokens: Vec<String>,
    pub count: u64,
    pub first_seen: Option<i64>,
    pub last_seen: Option<i64>,
    /// True when this template was loaded from storage (seen in an earlier run).
    pub stored: bool,
    /// True when this run changed it (new, generalised, or counted).
    pub dirty: bool,
}

impl Template {
    pub fn text(&self) -> String {
        self.tokens.join(" ")
    }

    fn see(&mut self, n: u64, first: Option<i64>, last: Option<i64>) {
        self.count += n;
        self.first_seen = min_opt(self.first_seen, first);
        self.last_seen = max_opt(self.last_seen, last);
        self.dirty = true;
    }
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

fn max_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

#[inline]
fn mix(h: u64, v: u64) -> u64 {
    (h.rotate_left(5) ^ v).wrapping_mul(0x517c_c1b7_2722_0a95)
}

fn hash_bytes(mut h: u64, b: &[u8]) -> u64 {
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        h = mix(
            h,
            u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]),
        );
    }
    let mut last = 0u64;
    for (i, &x) in chunks.remainder().iter().enumerate() {
        last |= (x as u64) << (8 * i);
    }
    mix(mix(h, last), b.len() as u64)
}

const WILD_HASH: u64 = 0x9e37_79b9_7f4a_7c15;

fn is_hex_word(t: &str) -> bool {
    t.len() >= 8 && t.bytes().all(|c| c.is_ascii_hexdigit())
}

/// Whether a token (without surrounding punctuation handling) is a variable.
/// One pass over the bytes finds digits, `:` and `@`; the rarer checks (URL,
/// email, hex word) only run when they can match (this runs for every word of
/// every line).
fn is_variable(t: &str) -> bool {
    let b = t.as_bytes();
    let (mut colon, mut at) = (false, None);
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'0'..=b'9' => return true,
            b':' => colon = true,
            b'@' if at.is_none() => at = Some(i),
            _ => {}
        }
    }
    if colon && t.contains("://") {
        return true;
    }
    if let Some(at) = at {
        if at > 0 && b[at..].contains(&b'.') {
            return true;
        }
    }
    b.len() >= 8 && is_hex_word(t.trim_matches(|c: char| !c.is_ascii_alphanumeric()))
}

/// A masked token, streamed to a callback: either literal text or the wildcard.
enum Piece<'a> {
    Lit(&'a str),
    Wild,
}

/// Splits `msg` into masked tokens, calling `emit` once per output token with
/// its pieces (a path like `/api/users/42` is one token of several pieces).
fn for_each_token<'a>(msg: &'a str, mut emit: impl FnMut(&[Piece<'a>])) {
    let b = msg.as_bytes();
    let mut i = 0;
    let mut pieces: Vec<Piece<'a>> = Vec::with_capacity(8);
    let mut n = 0;
    while i < b.len() && n < MAX_TOKENS {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let start = i;
        // quoted span: one variable token up to the matching quote
        if (b[i] == b'"' || b[i] == b'\'') && i + 1 < b.len() {
            let q = b[i];
            if let Some(off) = memchr::memchr(q, &b[i + 1..]) {
                let end = i + 1 + off + 1;
                // include trailing punctuation glued to the quote
                let mut e = end;
                while e < b.len() && !b[e].is_ascii_whitespace() {
                    e += 1;
                }
                pieces.clear();
                pieces.push(Piece::Wild);
                if e > end {
                    pieces.push(Piece::Lit(&msg[end..e]));
                }
                emit(&pieces);
                n += 1;
                i = e;
                continue;
            }
        }
        while i < b.len() && !b[i].is_ascii_whitespace() {
            i += 1;
        }
        let tok = &msg[start..i];
        pieces.clear();
        mask_token(tok, &mut pieces);
        emit(&pieces);
        n += 1;
    }
}

fn mask_token<'a>(tok: &'a str, out: &mut Vec<Piece<'a>>) {
    // key=value → key=<*>
    if let Some(eq) = tok.find('=') {
        if eq > 0 && eq + 1 < tok.len() && !tok[..eq].bytes().any(|c| c.is_ascii_digit()) {
            out.push(Piece::Lit(&tok[..=eq]));
            out.push(Piece::Wild);
            return;
        }
    }
    // a path: mask the variable segments and any query string
    if tok.len() > 1 && tok.starts_with('/') && !tok.contains("://") {
        let (path, query) = match tok.find('?') {
            Some(q) => (&tok[..q], true),
            None => (tok, false),
        };
        let mut seg_start = 0;
        let pb = path.as_bytes();
        for j in 0..=pb.len() {
            if j == pb.len() || pb[j] == b'/' {
                if j > seg_start {
                    let seg = &path[seg_start..j];
                    if is_variable(seg) || seg.len() > 24 {
                        out.push(Piece::Wild);
                    } else {
                        out.push(Piece::Lit(seg));
                    }
                }
                if j < pb.len() {
                    out.push(Piece::Lit("/"));
                }
                seg_start = j + 1;
            }
        }
        if query {
            out.push(Piece::Lit("?"));
            out.push(Piece::Wild);
        }
        return;
    }
    if is_variable(tok) {
        // keep punctuation that ends a sentence or a key: "id 42," → "<*>,"
        let trail = tok.len() - tok.trim_end_matches([',', ';', ':', '.', ')', ']']).len();
        let lead = tok.len() - tok.trim_start_matches(['(', '[']).len();
        if lead > 0 {
            out.push(Piece::Lit(&tok[..lead]));
        }
        out.push(Piece::Wild);
        if trail > 0 && trail + lead < tok.len() {
            out.push(Piece::Lit(&tok[tok.len() - trail..]));
        }
        return;
    }
    out.push(Piece::Lit(tok));
}

fn pieces_to_string(p: &[Piece<'_>]) -> String {
    let mut s = String::new();
    for x in p {
        match x {
            Piece::Lit(l) => s.push_str(l),
            Piece::Wild => s.push_str(WILDCARD),
        }
    }
    s
}

/// Masks a message into its template tokens (used by tests and the miner's slow path).
pub fn mask(msg: &str) -> Vec<String> {
    let mut toks = Vec::new();
    for_each_token(msg, |p| toks.push(pieces_to_string(p)));
    toks
}

/// Writes into `out` the text cache's key for `msg`: the message with each
/// run of ASCII digits replaced by one `0`, or the message as it is when it
/// holds a quote. Two messages with one key have one signature: a token with
/// a digit is masked whatever its digits (only whether it has one matters,
/// which the `0` keeps), so every literal piece is digit-free and unchanged.
/// Quotes are the exception (the text glued after a closing quote stays
/// literal, digits included), hence kept whole.
fn digit_key(msg: &str, out: &mut String) {
    out.clear();
    let b = msg.as_bytes();
    if memchr::memchr2(b'"', b'\'', b).is_some() {
        out.push_str(msg);
        return;
    }
    let mut run = 0;
    let mut from = 0;
    while let Some(i) = next_digit(b, from) {
        out.push_str(&msg[run..i]);
        out.push('0');
        let mut end = i + 1;
        while b.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
        run = end;
        from = end;
    }
    out.push_str(&msg[run..]);
}

/// Where the first ASCII digit at or after `from` is: 16 bytes at a time
/// with SSE2 (part of every x86_64 CPU), then byte by byte.
fn next_digit(b: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    #[cfg(target_arch = "x86_64")]
    while let Some(bytes) = b.get(i..i + 16) {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is always available on x86_64; the unaligned load
        // reads exactly the 16 bytes borrowed above.
        let digits = unsafe {
            let v = _mm_loadu_si128(bytes.as_ptr() as *const __m128i);
            // a byte minus '0' is at most 9 (unsigned) exactly for digits
            let d = _mm_sub_epi8(v, _mm_set1_epi8(b'0' as i8));
            let small = _mm_cmpeq_epi8(_mm_min_epu8(d, _mm_set1_epi8(9)), d);
            _mm_movemask_epi8(small) as u32
        };
        if digits != 0 {
            return Some(i + digits.trailing_zeros() as usize);
        }
        i += 16;
    }
    b.get(i..)?
        .iter()
        .position(u8::is_ascii_digit)
        .map(|p| i + p)
}

/// Hash of the masked token sequence: the cache key of the fast path.
fn signature(msg: &str) -> u64 {
    let mut h = 0x243f_6a88_85a3_08d3u64;
    let mut n = 0u64;
    for_each_token(msg, |pieces| {
        for p in pieces {
            h = match p {
                Piece::Lit(l) => hash_bytes(h, l.as_bytes()),
                Piece::Wild => mix(h, WILD_HASH),
            };
        }
        h = mix(h, 0xff);
        n += 1;
    });
    mix(h, n)
}

/// A Drain-style template miner.
#[derive(Debug, Clone)]
pub struct Miner {
    templates: Vec<Template>,
    /// (token count, hash of first token or wildcard) → template indices.
    groups: AHashMap<(usize, u64), Vec<u32>>,
    cache: AHashMap<u64, u32>,
    /// Digit key (`digit_key`) → template index, for keys seen before (at
    /// most `SEEN_CAP` of them). Same answer as the signature path: messages
    /// with one digit key have one signature, and a signature's entry in
    /// `cache` never changes once made.
    seen: AHashMap<Box<str>, u32>,
    /// Reused buffer for the digit key of the message being added.
    key_buf: String,
    similarity: f64,
    /// Id of the first template this miner creates (ids are index + base).
    base_id: u32,
}

impl Default for Miner {
    fn default() -> Self {
        Miner::new(DEFAULT_SIMILARITY)
    }
}

fn group_key(tokens: &[String]) -> (usize, u64) {
    let first = match tokens.first() {
        None => 0,
        Some(t) if t.contains(WILDCARD) => WILD_HASH,
        Some(t) => hash_bytes(1, t.as_bytes()),
    };
    (tokens.len(), first)
}

impl Miner {
    pub fn new(similarity: f64) -> Self {
        Miner {
            templates: Vec::new(),
            groups: AHashMap::new(),
            cache: AHashMap::new(),
            seen: AHashMap::new(),
            key_buf: String::new(),
            similarity,
            base_id: 1,
        }
    }

    /// Restores templates stored by an earlier run, ids as stored.
    pub fn with_stored(similarity: f64, stored: Vec<Template>) -> Self {
        let mut m = Miner::new(similarity);
        let mut stored = stored;
        stored.sort_by_key(|t| t.id);
        // ids are dense in storage; keep them as indices
        for mut t in stored {
            let expected = m.base_id + m.templates.len() as u32;
            while t.id > m.base_id + m.templates.len() as u32 {
                // a gap (should not happen): keep ids aligned with a placeholder
                let gap_id = m.base_id + m.templates.len() as u32;
                m.templates.push(Template {
                    id: gap_id,
                    tokens: vec![format!("<gap {gap_id}>")],
                    count: 0,
                    first_seen: None,
                    last_seen: None,
                    stored: true,
                    dirty: false,
                });
            }
            if t.id < expected {
                continue;
            }
            t.stored = true;
            t.dirty = false;
            let idx = m.templates.len() as u32;
            m.groups.entry(group_key(&t.tokens)).or_default().push(idx);
            m.templates.push(t);
        }
        m
    }

    pub fn templates(&self) -> &[Template] {
        &self.templates
    }

    pub fn len(&self) -> usize {
        self.templates.len()
    }

    pub fn is_empty(&self) -> bool {
        self.templates.is_empty()
    }

    pub fn get(&self, id: u32) -> Option<&Template> {
        id.checked_sub(self.base_id)
            .and_then(|i| self.templates.get(i as usize))
    }

    /// Assigns a template id to one message seen at `ts`.
    pub fn add(&mut self, msg: &str, ts: Option<i64>) -> u32 {
        let mut key = std::mem::take(&mut self.key_buf);
        digit_key(msg, &mut key);
        let idx = match self.seen.get(key.as_str()) {
            Some(&i) => i,
            None => {
                let i = self.index_of_shape(msg);
                if self.seen.len() < SEEN_CAP {
                    self.seen.insert(key.as_str().into(), i);
                }
                i
            }
        };
        self.key_buf = key;
        self.templates[idx as usize].see(1, ts, ts);
        idx + self.base_id
    }

    /// The template index of `msg` by its masked shape: from the signature
    /// cache, or by the similarity search (then cached).
    fn index_of_shape(&mut self, msg: &str) -> u32 {
        let sig = signature(msg);
        match self.cache.get(&sig) {
            Some(&i) => i,
            None => {
                let i = self.match_or_create(mask(msg));
                self.cache.insert(sig, i);
                i
            }
        }
    }

    /// Marks every template as stored and unchanged (after saving them).
    pub fn mark_saved(&mut self) {
        for t in &mut self.templates {
            t.stored = true;
            t.dirty = false;
        }
    }

    /// Takes `n` lines out of a template's count (their run was deleted).
    pub fn forget(&mut self, id: u32, n: u64) {
        if let Some(t) = id
            .checked_sub(self.base_id)
            .and_then(|i| self.templates.get_mut(i as usize))
        {
            t.count = t.count.saturating_sub(n);
            t.dirty = true;
        }
    }

    /// Adds a whole template (from another miner) with its counts; returns the id here.
    pub fn absorb(&mut self, t: &Template) -> u32 {
        let idx = self.match_or_create(t.tokens.clone());
        self.templates[idx as usize].see(t.count, t.first_seen, t.last_seen);
        idx + self.base_id
    }

    fn match_or_create(&mut self, toks: Vec<String>) -> u32 {
        let key = group_key(&toks);
        let mut best: Option<(u32, f64, usize)> = None;
        if let Some(cands) = self.groups.get(&key) {
            for &c in cands {
                let t = &self.templates[c as usize];
                let (sim, params) = similarity(&t.tokens, &toks);
                let better = match best {
                    None => true,
                    Some((_, bs, bp)) => sim > bs || (sim == bs && params > bp),
                };
                if better {
                    best = Some((c, sim, params));
                }
            }
        }
        match best {
            Some((c, sim, _)) if sim >= self.similarity => {
                let t = &mut self.templates[c as usize];
                for (a, b) in t.tokens.iter_mut().zip(&toks) {
                    if a != b && a != WILDCARD {
                        *a = WILDCARD.to_string();
                        t.dirty = true;
                    }
                }
                c
            }
            _ => {
                let idx = self.templates.len() as u32;
                self.templates.push(Template {
                    id: idx + self.base_id,
                    tokens: toks,
                    count: 0,
                    first_seen: None,
                    last_seen: None,
                    stored: false,
                    dirty: true,
                });
                self.groups.entry(key).or_default().push(idx);
                idx
            }
        }
    }

    /// Merges a chunk miner into this one; returns local id → id here.
    pub fn merge(&mut self, local: &Miner) -> Vec<u32> {
        let mut map = vec![0u32; local.templates.len() + local.base_id as usize];
        for t in &local.templates {
            map[t.id as usize] = self.absorb(t);
        }
        map
    }
}

/// Drain's sequence similarity: share of positions with equal literal tokens,
/// and how many wildcard positions the template has (tie-break).
fn similarity(template: &[String], toks: &[String]) -> (f64, usize) {
    if template.is_empty() {
        return (1.0, 0);
    }
    let mut same = 0;
    let mut params = 0;
    for (a, b) in template.iter().zip(toks) {
        if a == WILDCARD {
            params += 1;
        } else if a == b {
            same += 1;
        }
    }
    (same as f64 / template.len() as f64, params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_variables() {
        assert_eq!(
            mask("user 42 logged in from 10.0.0.1 at 0xdeadbeef"),
            ["user", "<*>", "logged", "in", "from", "<*>", "at", "<*>"]
        );
        assert_eq!(
            mask("GET /api/orders/8812/items?page=2 HTTP/1.1"),
            ["GET", "/api/orders/<*>/items?<*>", "<*>"]
        );
        assert_eq!(
            mask("request 3fa85f64-5717-4562-b3fc-2c963f66afa6 by bob@example.com took 35ms"),
            ["request", "<*>", "by", "<*>", "took", "<*>"]
        );
        assert_eq!(
            mask(r#"cannot open "my file.txt": user=alice retry=3,"#),
            ["cannot", "open", "<*>:", "user=<*>", "retry=<*>"]
        );
        assert_eq!(
            mask("fetch https://x.io/a failed"),
            ["fetch", "<*>", "failed"]
        );
        assert_eq!(mask("deadbeefcafe seen"), ["<*>", "seen"]);
    }

    #[test]
    fn same_shape_same_id_and_merge_generalises() {
        let mut m = Miner::default();
        let a = m.add("connection to db-1 closed after 30s", Some(1));
        let b = m.add("connection to db-2 closed after 12s", Some(2));
        assert_eq!(a, b);
        // differs in one literal word: joins and generalises
        let c = m.add("connection to cache closed after 1s", Some(3));
        assert_eq!(a, c);
        assert_eq!(
            m.get(a).unwrap().text(),
            "connection to <*> closed after <*>"
        );
        assert_eq!(m.get(a).unwrap().count, 3);
        assert_eq!(m.get(a).unwrap().first_seen, Some(1));
        assert_eq!(m.get(a).unwrap().last_seen, Some(3));
        // a different message gets a different id
        let d = m.add("java.lang.OutOfMemoryError: Java heap space", None);
        assert_ne!(a, d);
    }

    #[test]
    fn a_repeated_message_counts_and_keeps_its_template() {
        let mut m = Miner::default();
        let first = m.add("connection to db-1 closed after 30s", Some(1));
        m.add("connection to cache closed after 1s", Some(2));
        // seen before: answered from the text cache, still counted
        let again = m.add("connection to db-1 closed after 30s", Some(5));
        assert_eq!(again, first);
        let t = m.get(first).unwrap();
        assert_eq!((t.count, t.first_seen, t.last_seen), (3, Some(1), Some(5)));
        assert_eq!(t.text(), "connection to <*> closed after <*>");
        // a fresh miner given the same lines assigns the same ids
        let mut fresh = Miner::default();
        fresh.add("connection to db-1 closed after 30s", Some(1));
        assert_eq!(
            fresh.add("connection to db-1 closed after 30s", None),
            first
        );
    }

    #[test]
    fn messages_with_one_digit_key_have_one_signature() {
        let mut key = String::new();
        digit_key(
            "GET /api/orders/8094/items completed with 200 in 12.5ms",
            &mut key,
        );
        assert_eq!(key, "GET /api/orders/0/items completed with 0 in 0.0ms");
        digit_key("say \"v1\"2 now 7", &mut key);
        assert_eq!(
            key, "say \"v1\"2 now 7",
            "a message with quotes is its own key"
        );
        let long = format!("/files/{}/x?page=3", "9".repeat(30));
        let messages = [
            "order 92502 created total=164.59",
            "a1=5 b=6 c=x7 =8 9=",
            "/api/v2/users/123?x=1 and /1 and /",
            "(12) [3], 4; 5: 6. 7) x1.",
            "db-1 closed after 30s at 10.1.2.3:8080",
            "mail bob1@example2.com or http://h1.io:80/a9 or ftp://x",
            "deadbeef12 a1b2c3d4e5 cafebabe 0xff 2024-01-01T00:00:00Z",
            long.as_str(),
            "é1 ü22 ok",
            "",
        ];
        for m in messages {
            digit_key(m, &mut key);
            assert_eq!(signature(m), signature(&key), "{m:?} vs its key {key:?}");
            assert_eq!(mask(m), mask(&key), "{m:?}");
        }
        // the key keeps whether a token has a digit
        assert_ne!(signature("job 1 done"), signature("job x done"));
    }

    #[test]
    fn digit_keys_collapse_every_digit_run_wherever_it_is() {
        // the byte-by-byte definition, against the 16-bytes-at-a-time scan
        let reference = |m: &str| {
            let mut out = String::new();
            let mut in_digits = false;
            for c in m.chars() {
                if c.is_ascii_digit() {
                    if !in_digits {
                        out.push('0');
                    }
                    in_digits = true;
                } else {
                    out.push(c);
                    in_digits = false;
                }
            }
            out
        };
        let mut key = String::new();
        for len in 0..40 {
            for at in 0..len {
                for run in 1..=3 {
                    // non-digit bytes on either side of '0' and '9' ('/' and ':')
                    let mut m: String = "a/:é".chars().cycle().take(len).collect();
                    let digits: String = "09".chars().cycle().take(run).collect();
                    let cut = m.char_indices().nth(at).map_or(m.len(), |(p, _)| p);
                    m.insert_str(cut, &digits);
                    m.push_str("7x");
                    digit_key(&m, &mut key);
                    assert_eq!(key, reference(&m), "{m:?}");
                }
            }
        }
    }

    #[test]
    fn the_text_cache_is_bounded() {
        let mut m = Miner::default();
        // digit-free words make distinct keys: "job bcd done", ...
        let word = |i: usize| -> String {
            (0..4u32)
                .map(|k| (b'a' + (i / 26usize.pow(k) % 26) as u8) as char)
                .collect()
        };
        for i in 0..SEEN_CAP + 10 {
            m.add(&format!("job {} done", word(i)), None);
        }
        assert_eq!(m.seen.len(), SEEN_CAP);
        // beyond the cap a message still gets its template by shape
        let id = m.add(&format!("job {} done", word(SEEN_CAP + 5)), None);
        assert_eq!(m.get(id).unwrap().count, SEEN_CAP as u64 + 11);
    }

    #[test]
    fn chunk_merge_is_consistent() {
        let lines = [
            "payment 1 accepted",
            "payment 2 accepted",
            "disk full on /var/log",
            "payment 3 declined by bank",
            "disk full on /tmp",
        ];
        let mut whole = Miner::default();
        let ids: Vec<u32> = lines.iter().map(|l| whole.add(l, None)).collect();
        let mut global = Miner::default();
        let mut merged = Vec::new();
        for chunk in lines.chunks(2) {
            let mut local = Miner::default();
            let local_ids: Vec<u32> = chunk.iter().map(|l| local.add(l, None)).collect();
            let map = global.merge(&local);
            merged.extend(local_ids.iter().map(|&i| map[i as usize]));
        }
        // same partition of lines into templates
        for i in 0..lines.len() {
            for j in 0..lines.len() {
                assert_eq!(ids[i] == ids[j], merged[i] == merged[j], "{i} {j}");
            }
        }
        assert_eq!(global.len(), whole.len());
    }

    #[test]
    fn stored_templates_keep_ids() {
        let mut m = Miner::default();
        let a = m.add("user 1 login", Some(5));
        let b = m.add("cache miss for key abc", Some(6));
        let stored: Vec<Template> = m.templates().to_vec();
        let mut again = Miner::with_stored(DEFAULT_SIMILARITY, stored);
        assert_eq!(again.add("user 77 login", Some(9)), a);
        assert_eq!(again.add("cache miss for key xyz", Some(9)), b);
        assert!(again.get(a).unwrap().stored);
    }
}
