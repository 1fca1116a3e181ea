//! Streaming masking of secret values and token prefixes, correct across chunk boundaries.
//!
//! Three stages run in gitlab-runner's order: masked variable values (and their percent-encoded forms) →
//! sensitive URL query parameters → token prefixes. Each stage keeps back only the bytes that could still
//! be the start of something it masks, so a [`Masker`] holds about one secret's length at most, whatever
//! the size of the log, and the output never depends on how the input was split into writes.

use aho_corasick::{AhoCorasick, Input, MatchKind};
use std::fmt;
use std::sync::Arc;

/// What replaces every secret.
pub const MASK: &[u8] = b"[MASKED]";

/// Query parameters whose values are masked, compared case-insensitively (gitlab-runner's list).
pub const SENSITIVE_URL_PARAMS: &[&str] = &[
    "private_token",
    "authenticity_token",
    "rss_token",
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
];

/// The masking rules could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MaskError {
    #[error(
        "cannot build the trace masker for {count} masked values and token prefixes: {source}. \
         Likely cause: an unusually large number or size of masked CI/CD variables. \
         Fix: remove masked variables the job does not need (project or group Settings > CI/CD > Variables)"
    )]
    Build {
        count: usize,
        #[source]
        source: aho_corasick::BuildError,
    },
}

/// What to mask for one job; built once and shared by the job's maskers.
pub struct MaskRules {
    values: Option<Phrases>,
    prefixes: Option<Phrases>,
}

impl fmt::Debug for MaskRules {
    // Counts only: the phrases are the secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MaskRules")
            .field(
                "values",
                &self.values.as_ref().map_or(0, |p| p.sorted.len()),
            )
            .field(
                "prefixes",
                &self.prefixes.as_ref().map_or(0, |p| p.sorted.len()),
            )
            .finish()
    }
}

impl MaskRules {
    /// `masked_values`: each non-empty value, plus its percent-encoded forms, becomes `[MASKED]`.
    /// `token_prefixes`: added to `glrunner_protocol::token::MASKED_TOKEN_PREFIXES`; the token body after
    /// any of them becomes `[MASKED]` and the prefix stays.
    pub fn new(masked_values: &[String], token_prefixes: &[String]) -> Result<Self, MaskError> {
        let mut values = Vec::new();
        for value in masked_values.iter().filter(|v| !v.is_empty()) {
            values.extend(value_variants(value));
        }
        let prefixes = glrunner_protocol::token::MASKED_TOKEN_PREFIXES
            .iter()
            .copied()
            .chain(token_prefixes.iter().map(|p| p.trim()))
            .filter(|p| !p.is_empty())
            .map(|p| p.as_bytes().to_vec())
            .collect();
        Ok(Self {
            values: Phrases::new(values)?,
            prefixes: Phrases::new(prefixes)?,
        })
    }

    /// The longest masked value in bytes (what a masker may hold back at most, plus a token prefix).
    pub fn longest_value(&self) -> usize {
        self.values.as_ref().map_or(0, |p| p.max_len)
    }
}

/// The value itself and the forms it takes inside URLs, when they differ.
fn value_variants(value: &str) -> Vec<Vec<u8>> {
    let raw = value.as_bytes().to_vec();
    let encoded = percent_encode(&raw, false);
    let form = percent_encode(&raw, true);
    let mut variants = vec![raw];
    for v in [encoded, form] {
        if !variants.contains(&v) {
            variants.push(v);
        }
    }
    variants
}

/// RFC 3986 percent-encoding of everything but unreserved bytes; `space_plus` writes a space as `+`, as
/// form and query encoders do.
fn percent_encode(value: &[u8], space_plus: bool) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = Vec::with_capacity(value.len());
    for &b in value {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b),
            b' ' if space_plus => out.push(b'+'),
            _ => out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]),
        }
    }
    out
}

/// A set of byte strings searched leftmost-longest, with the "could this still become a match" test that
/// makes streaming exact.
struct Phrases {
    ac: AhoCorasick,
    /// Sorted and deduplicated, for prefix queries.
    sorted: Vec<Vec<u8>>,
    max_len: usize,
}

impl Phrases {
    fn new(mut patterns: Vec<Vec<u8>>) -> Result<Option<Self>, MaskError> {
        patterns.retain(|p| !p.is_empty());
        patterns.sort();
        patterns.dedup();
        if patterns.is_empty() {
            return Ok(None);
        }
        let ac = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&patterns)
            .map_err(|source| MaskError::Build {
                count: patterns.len(),
                source,
            })?;
        let max_len = patterns.iter().map(Vec::len).max().unwrap_or(0);
        Ok(Some(Self {
            ac,
            sorted: patterns,
            max_len,
        }))
    }

    /// Positions `p` (ascending) where `buf[p..]` is a strict prefix of some phrase: a match starting
    /// there depends on bytes not yet seen. Only the last `max_len - 1` bytes can qualify.
    fn live_positions(&self, buf: &[u8]) -> Vec<usize> {
        let from = buf.len().saturating_sub(self.max_len.saturating_sub(1));
        (from..buf.len())
            .filter(|&p| self.is_strict_prefix(&buf[p..]))
            .collect()
    }

    fn is_strict_prefix(&self, tail: &[u8]) -> bool {
        // Phrases extending `tail` sort right after `tail` itself (if present).
        let i = self.sorted.partition_point(|p| p.as_slice() < tail);
        self.sorted[i..]
            .iter()
            .take(2)
            .any(|p| p.len() > tail.len() && p.starts_with(tail))
    }

    /// The next decision at or after `pos`: a final match, or "emit up to here and wait".
    fn next(&self, buf: &[u8], pos: usize, live: &[usize]) -> Step {
        let hold = live
            .iter()
            .copied()
            .find(|&p| p >= pos)
            .unwrap_or(buf.len());
        match self.ac.find(Input::new(buf).span(pos..buf.len())) {
            // Every position before `hold` has all the bytes its longest match could need, so a match
            // starting there is leftmost and longest for good.
            Some(m) if m.start() < hold => Step::Match(m.start(), m.end()),
            _ => Step::Hold(hold),
        }
    }
}

enum Step {
    Match(usize, usize),
    Hold(usize),
}

/// Buffers grow to the largest write; above this they are shrunk again so an idle job keeps kilobytes.
const SCRATCH_KEEP: usize = 16 * 1024;

/// Drop what was emitted and give back memory a large write left behind.
fn consume(buf: &mut Vec<u8>, emitted: usize) {
    buf.drain(..emitted);
    if buf.capacity() > SCRATCH_KEEP {
        buf.shrink_to(buf.len().max(1024));
    }
}

/// Stage 1: masked values become `[MASKED]`.
#[derive(Default)]
struct ValueStage {
    buf: Vec<u8>,
}

impl ValueStage {
    fn push(&mut self, phrases: &Phrases, input: &[u8], eof: bool, out: &mut Vec<u8>) {
        self.buf.extend_from_slice(input);
        let buf = &self.buf;
        let live = if eof {
            Vec::new()
        } else {
            phrases.live_positions(buf)
        };
        let mut pos = 0;
        loop {
            match phrases.next(buf, pos, &live) {
                Step::Match(start, end) => {
                    out.extend_from_slice(&buf[pos..start]);
                    out.extend_from_slice(MASK);
                    pos = end;
                }
                Step::Hold(hold) => {
                    out.extend_from_slice(&buf[pos..hold]);
                    pos = hold;
                    break;
                }
            }
        }
        consume(&mut self.buf, pos);
    }
}

/// Stage 2: the values of sensitive query parameters (`?private_token=…`, `&X-Amz-Signature=…`).
#[derive(Default)]
struct UrlStage {
    state: UrlState,
    /// The parameter name read so far (after `?` or `&`), only while it may still be a sensitive one.
    key: Vec<u8>,
    /// A sensitive value has at least one byte (dropped) that `[MASKED]` will stand for.
    value_seen: bool,
}

#[derive(Default, Clone, Copy, PartialEq)]
enum UrlState {
    #[default]
    Scan,
    Key,
    Value,
}

fn is_param_end(b: u8) -> bool {
    // Values cannot contain these unencoded; anything else (including non-ASCII) is taken as value.
    matches!(b, b'?' | b'&') || b.is_ascii_whitespace() || b.is_ascii_control()
}

fn is_sensitive_prefix(key: &[u8]) -> bool {
    SENSITIVE_URL_PARAMS.iter().any(|name| {
        name.len() >= key.len() && name.as_bytes()[..key.len()].eq_ignore_ascii_case(key)
    })
}

fn is_sensitive(key: &[u8]) -> bool {
    SENSITIVE_URL_PARAMS
        .iter()
        .any(|name| name.as_bytes().eq_ignore_ascii_case(key))
}

impl UrlStage {
    fn push(&mut self, input: &[u8], eof: bool, out: &mut Vec<u8>) {
        for &b in input {
            self.byte(b, out);
        }
        if eof {
            match self.state {
                UrlState::Key => out.append(&mut self.key),
                UrlState::Value if self.value_seen => out.extend_from_slice(MASK),
                _ => {}
            }
            self.state = UrlState::Scan;
            self.value_seen = false;
        }
    }

    fn byte(&mut self, b: u8, out: &mut Vec<u8>) {
        match self.state {
            UrlState::Scan => self.scan(b, out),
            UrlState::Key => {
                if b == b'=' {
                    let sensitive = is_sensitive(&self.key);
                    out.append(&mut self.key);
                    out.push(b);
                    self.state = if sensitive {
                        self.value_seen = false;
                        UrlState::Value
                    } else {
                        UrlState::Scan
                    };
                } else if matches!(b, b'?' | b'&') {
                    out.append(&mut self.key);
                    out.push(b);
                } else {
                    self.key.push(b);
                    if !is_sensitive_prefix(&self.key) {
                        out.append(&mut self.key);
                        self.state = UrlState::Scan;
                    }
                }
            }
            UrlState::Value => {
                if is_param_end(b) {
                    if self.value_seen {
                        out.extend_from_slice(MASK);
                    }
                    self.state = UrlState::Scan;
                    self.scan(b, out);
                } else {
                    self.value_seen = true;
                }
            }
        }
    }

    fn scan(&mut self, b: u8, out: &mut Vec<u8>) {
        out.push(b);
        if matches!(b, b'?' | b'&') {
            self.key.clear();
            self.state = UrlState::Key;
        }
    }
}

/// Token body bytes after a prefix (`glpat-<body>`).
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')
}

/// Stage 3: `glpat-abc123` becomes `glpat-[MASKED]`.
#[derive(Default)]
struct PrefixStage {
    buf: Vec<u8>,
    /// Inside a token body (the prefix was written).
    in_body: bool,
    /// The current body has at least one byte.
    body_seen: bool,
}

impl PrefixStage {
    fn push(&mut self, phrases: &Phrases, input: &[u8], eof: bool, out: &mut Vec<u8>) {
        self.buf.extend_from_slice(input);
        let buf = &self.buf;
        let live = if eof {
            Vec::new()
        } else {
            phrases.live_positions(buf)
        };
        let mut pos = 0;
        loop {
            if self.in_body {
                let n = buf[pos..].iter().take_while(|b| is_token_byte(**b)).count();
                self.body_seen |= n > 0;
                pos += n;
                if pos == buf.len() && !eof {
                    break; // the body may go on in the next write
                }
                if self.body_seen {
                    out.extend_from_slice(MASK);
                }
                self.in_body = false;
                self.body_seen = false;
                if pos == buf.len() {
                    break;
                }
            }
            match phrases.next(buf, pos, &live) {
                Step::Match(_, end) => {
                    out.extend_from_slice(&buf[pos..end]);
                    pos = end;
                    self.in_body = true;
                }
                Step::Hold(hold) => {
                    out.extend_from_slice(&buf[pos..hold]);
                    pos = hold;
                    break;
                }
            }
        }
        consume(&mut self.buf, pos);
    }
}

/// A streaming masker: feed it writes in any split, get the same output as masking the whole at once.
pub struct Masker {
    rules: Arc<MaskRules>,
    values: ValueStage,
    url: UrlStage,
    prefixes: PrefixStage,
    between: [Vec<u8>; 2],
}

impl fmt::Debug for Masker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Masker")
            .field("held", &self.held())
            .finish()
    }
}

impl Masker {
    pub fn new(rules: Arc<MaskRules>) -> Self {
        Self {
            rules,
            values: ValueStage::default(),
            url: UrlStage::default(),
            prefixes: PrefixStage::default(),
            between: [Vec::new(), Vec::new()],
        }
    }

    /// Mask `input`, appending what is certain to `out`; bytes that may start a secret are kept back.
    pub fn write(&mut self, input: &[u8], out: &mut Vec<u8>) {
        self.push(input, false, out);
    }

    /// The input has ended: flush everything kept back. The masker can be used again afterwards.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.push(&[], true, out);
    }

    /// Mask one complete piece of text (a runner line): `write` then `finish`.
    pub fn mask_all(&mut self, input: &[u8], out: &mut Vec<u8>) {
        self.push(input, true, out);
    }

    /// Bytes currently kept back.
    pub fn held(&self) -> usize {
        self.values.buf.len() + self.url.key.len() + self.prefixes.buf.len()
    }

    fn push(&mut self, input: &[u8], eof: bool, out: &mut Vec<u8>) {
        let [mut a, mut b] = std::mem::take(&mut self.between);
        a.clear();
        b.clear();
        match &self.rules.values {
            Some(phrases) => self.values.push(phrases, input, eof, &mut a),
            None => a.extend_from_slice(input),
        }
        self.url.push(&a, eof, &mut b);
        match &self.rules.prefixes {
            Some(phrases) => self.prefixes.push(phrases, &b, eof, out),
            None => out.extend_from_slice(&b),
        }
        for v in [&mut a, &mut b] {
            v.clear();
            if v.capacity() > SCRATCH_KEEP {
                *v = Vec::new();
            }
        }
        self.between = [a, b];
    }
}

/// Mask a complete text in one go (for error messages and other one-off strings).
pub fn mask_once(rules: &Arc<MaskRules>, text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    Masker::new(rules.clone()).mask_all(text, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn rules(values: &[&str], prefixes: &[&str]) -> Arc<MaskRules> {
        let values: Vec<String> = values.iter().map(|s| s.to_string()).collect();
        let prefixes: Vec<String> = prefixes.iter().map(|s| s.to_string()).collect();
        Arc::new(MaskRules::new(&values, &prefixes).expect("rules build"))
    }

    fn whole(rules: &Arc<MaskRules>, input: &[u8]) -> Vec<u8> {
        mask_once(rules, input)
    }

    fn chunked(rules: &Arc<MaskRules>, pieces: &[&[u8]]) -> Vec<u8> {
        let mut m = Masker::new(rules.clone());
        let mut out = Vec::new();
        for p in pieces {
            m.write(p, &mut out);
        }
        m.finish(&mut out);
        out
    }

    fn s(v: &[u8]) -> String {
        String::from_utf8_lossy(v).into_owned()
    }

    /// Every split into two and three pieces gives the same result as the whole.
    fn assert_split_invariant(rules: &Arc<MaskRules>, input: &[u8], expected: &str) {
        assert_eq!(s(&whole(rules, input)), expected, "whole input");
        for i in 0..=input.len() {
            let two = chunked(rules, &[&input[..i], &input[i..]]);
            assert_eq!(s(&two), expected, "split at {i}");
            for j in i..=input.len() {
                let three = chunked(rules, &[&input[..i], &input[i..j], &input[j..]]);
                assert_eq!(s(&three), expected, "split at {i} and {j}");
            }
        }
        let bytewise: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(s(&chunked(rules, &bytewise)), expected, "byte by byte");
    }

    #[test]
    fn values_are_masked_at_every_split_point() {
        let r = rules(&["hunter2", "s3cr3t-value"], &[]);
        assert_split_invariant(
            &r,
            b"login hunter2 then s3cr3t-value, hunter hunter2hunter2 s3cr3t-valu",
            "login [MASKED] then [MASKED], hunter [MASKED][MASKED] s3cr3t-valu",
        );
    }

    #[test]
    fn longest_overlapping_value_wins() {
        let r = rules(&["abc", "abcdef", "cdefgh", "bcd"], &[]);
        // Leftmost first, then longest at that position.
        assert_split_invariant(&r, b"xabcdefghy", "x[MASKED]ghy");
        assert_split_invariant(&r, b"xabcdex", "x[MASKED]dex");
        assert_split_invariant(&r, b"xbcdefgh", "x[MASKED]efgh");
    }

    #[test]
    fn percent_encoded_values_are_masked() {
        let r = rules(&["p@ss w/rd"], &[]);
        assert_split_invariant(
            &r,
            b"a p@ss w/rd b p%40ss%20w%2Frd c p%40ss+w%2Frd d",
            "a [MASKED] b [MASKED] c [MASKED] d",
        );
        assert_eq!(percent_encode(b"a~b c", false), b"a~b%20c");
        assert_eq!(percent_encode(b"a~b c", true), b"a~b+c");
    }

    #[test]
    fn empty_values_are_skipped() {
        let r = rules(&["", "x"], &[]);
        assert_eq!(s(&whole(&r, b"axb")), "a[MASKED]b");
        let none = rules(&[""], &[]);
        assert_eq!(s(&whole(&none, b"plain text")), "plain text");
    }

    #[test]
    fn token_prefixes_keep_the_prefix_and_mask_the_body() {
        let r = rules(&[], &["acme_"]);
        assert_split_invariant(
            &r,
            b"token glpat-AbC_12.3-x! and glrtr-zz, acme_q1 glpat- end glrt-glpat-x",
            "token glpat-[MASKED]! and glrtr-[MASKED], acme_[MASKED] glpat- end glrt-[MASKED]",
        );
        // A body running to the end of the input is masked on finish.
        assert_split_invariant(&r, b"x glcbt-abcdef", "x glcbt-[MASKED]");
    }

    #[test]
    fn prefix_token_split_across_many_writes() {
        let r = rules(&[], &[]);
        let pieces: Vec<&[u8]> = vec![b"echo gl", b"p", b"at", b"-12", b"34", b"56 done\n"];
        assert_eq!(s(&chunked(&r, &pieces)), "echo glpat-[MASKED] done\n");
    }

    #[test]
    fn url_parameters_are_masked() {
        let r = rules(&[], &[]);
        assert_split_invariant(
            &r,
            b"GET /x?private_token=abc123&page=2 https://s3/o?X-Amz-Signature=f00d&X-Amz-Credential=AK%2F1 ok",
            "GET /x?private_token=[MASKED]&page=2 https://s3/o?X-Amz-Signature=[MASKED]&X-Amz-Credential=[MASKED] ok",
        );
        assert_split_invariant(&r, b"u?RSS_TOKEN=zz", "u?RSS_TOKEN=[MASKED]");
        assert_split_invariant(
            &r,
            b"a?authenticity_token=q\tz",
            "a?authenticity_token=[MASKED]\tz",
        );
        // Other parameters and lookalikes stay.
        assert_split_invariant(
            &r,
            b"a?token=1&my_private_token=2 x=private_token=3",
            "a?token=1&my_private_token=2 x=private_token=3",
        );
        assert_split_invariant(&r, b"?x-amz-security-token=", "?x-amz-security-token=");
    }

    #[test]
    fn everything_together() {
        let r = rules(&["topsecret"], &[]);
        assert_split_invariant(
            &r,
            b"clone https://u:topsecret@h/r?private_token=glpat-abc glpat-topsecretX\n",
            "clone https://u:[MASKED]@h/r?private_token=[MASKED] glpat-[MASKED]X\n",
        );
    }

    #[test]
    fn holds_back_only_possible_secret_starts() {
        let r = rules(&["0123456789abcdef"], &[]);
        let mut m = Masker::new(r);
        let mut out = Vec::new();
        let line = b"a line of ordinary output that goes on and on\n".repeat(1000);
        m.write(&line, &mut out);
        assert_eq!(m.held(), 0, "nothing can start a secret");
        assert_eq!(out.len(), line.len());
        m.write(b"value 012345", &mut out);
        assert_eq!(m.held(), 6, "'012345' may start the secret");
        m.write(b"6789abcdeX", &mut out);
        assert_eq!(m.held(), 0);
        m.finish(&mut out);
        assert!(s(&out).ends_with("value 0123456789abcdeX"));
        // Big input with a secret: the kept-back part never exceeds the secret's length.
        let mut m = Masker::new(rules(&["0123456789abcdef"], &[]));
        let mut out = Vec::new();
        for _ in 0..1000 {
            m.write(b"xx 0123456789abcde", &mut out);
            assert!(m.held() < 16, "held {}", m.held());
        }
    }

    #[test]
    fn a_large_write_leaves_no_large_buffers_behind() {
        let mut m = Masker::new(rules(&["0123456789"], &[]));
        let mut out = Vec::new();
        m.write(
            &b"0123456789 glpat-x ?private_token=y ".repeat(40_000),
            &mut out,
        );
        m.write(b"tail 01234", &mut out);
        let caps = [
            m.values.buf.capacity(),
            m.prefixes.buf.capacity(),
            m.between[0].capacity(),
            m.between[1].capacity(),
        ];
        assert!(caps.iter().all(|c| *c <= SCRATCH_KEEP), "{caps:?}");
        assert_eq!(m.held(), 5);
    }

    /// Leftmost-longest replacement by brute force: the reference for the value stage.
    fn naive_mask(secrets: &[Vec<u8>], input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < input.len() {
            let best = secrets
                .iter()
                .filter(|sec| !sec.is_empty() && input[i..].starts_with(sec))
                .map(Vec::len)
                .max();
            match best {
                Some(n) => {
                    out.extend_from_slice(MASK);
                    i += n;
                }
                None => {
                    out.push(input[i]);
                    i += 1;
                }
            }
        }
        out
    }

    fn random_split<'a>(rng: &mut StdRng, input: &'a [u8]) -> Vec<&'a [u8]> {
        let mut pieces = Vec::new();
        let mut rest = input;
        while !rest.is_empty() {
            let n = rng.random_range(0..=rest.len().min(12));
            let (a, b) = rest.split_at(n);
            pieces.push(a);
            rest = b;
        }
        pieces
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn property_random_secrets_and_splits() {
        // Alphabets avoid the letters of "[MASKED]" so a mask can never form a secret with its neighbours.
        const SECRET_ALPHABET: &[u8] = b"abcxyz019-_/ %";
        const NOISE: &[u8] = b"abcxyz019-_/ %?&=\n.gltp";
        let mut rng = StdRng::seed_from_u64(0x9e37_79b9);
        for round in 0..1500 {
            let n_secrets = rng.random_range(1..=4);
            let secrets: Vec<String> = (0..n_secrets)
                .map(|_| {
                    let len = rng.random_range(1..=7);
                    (0..len)
                        .map(|_| {
                            SECRET_ALPHABET[rng.random_range(0..SECRET_ALPHABET.len())] as char
                        })
                        .collect()
                })
                .collect();
            let r = Arc::new(MaskRules::new(&secrets, &["zz-".to_string()]).expect("rules"));
            let mut input = Vec::new();
            for _ in 0..rng.random_range(0..25) {
                match rng.random_range(0..6) {
                    0 => input
                        .extend_from_slice(secrets[rng.random_range(0..secrets.len())].as_bytes()),
                    1 => {
                        let sec = secrets[rng.random_range(0..secrets.len())].as_bytes();
                        input.extend_from_slice(&sec[..rng.random_range(0..=sec.len())]);
                    }
                    2 => input.extend_from_slice(b"?private_token="),
                    3 => input.extend_from_slice(if rng.random_bool(0.5) {
                        b"glpat-"
                    } else {
                        b"zz-"
                    }),
                    _ => {
                        for _ in 0..rng.random_range(1..6) {
                            input.push(NOISE[rng.random_range(0..NOISE.len())]);
                        }
                    }
                }
            }
            let expected = whole(&r, &input);
            for _ in 0..8 {
                let pieces = random_split(&mut rng, &input);
                let got = chunked(&r, &pieces);
                assert_eq!(
                    s(&got),
                    s(&expected),
                    "round {round}: secrets {secrets:?}, input {:?}, pieces {pieces:?}",
                    s(&input)
                );
            }
            for sec in &secrets {
                assert!(
                    !contains(&expected, sec.as_bytes()),
                    "round {round}: {sec:?} survived in {:?}",
                    s(&expected)
                );
            }
        }
    }

    #[test]
    fn property_value_stage_matches_brute_force() {
        const ALPHABET: &[u8] = b"abc";
        let mut rng = StdRng::seed_from_u64(7);
        for round in 0..2000 {
            let secrets: Vec<Vec<u8>> = (0..rng.random_range(1..=4))
                .map(|_| {
                    (0..rng.random_range(1..=5))
                        .map(|_| ALPHABET[rng.random_range(0..3)])
                        .collect()
                })
                .collect();
            let phrases = Phrases::new(secrets.clone())
                .expect("build")
                .expect("non-empty");
            let input: Vec<u8> = (0..rng.random_range(0..40))
                .map(|_| ALPHABET[rng.random_range(0..3)])
                .collect();
            let mut stage = ValueStage::default();
            let mut out = Vec::new();
            for piece in random_split(&mut rng, &input) {
                stage.push(&phrases, piece, false, &mut out);
                assert!(
                    stage.buf.len() < phrases.max_len,
                    "held {} >= longest secret",
                    stage.buf.len()
                );
            }
            stage.push(&phrases, &[], true, &mut out);
            assert_eq!(
                s(&out),
                s(&naive_mask(&secrets, &input)),
                "round {round}: {secrets:?} in {:?}",
                s(&input)
            );
        }
    }

    #[test]
    fn debug_shows_no_secret() {
        let r = rules(&["supersecret"], &[]);
        let shown = format!("{r:?} {:?}", Masker::new(r.clone()));
        assert!(!shown.contains("supersecret"), "{shown}");
    }
}
