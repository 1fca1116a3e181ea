//! Token and cursor generation in GitLab's formats, and GitLab's length-preserving server-side masking.

use rand::Rng;

const FRIENDLY: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// `n` URL-safe random characters, like `Devise.friendly_token`. The first is alphanumeric so a token
/// never looks like a flag.
pub(crate) fn friendly(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|i| {
            let range = if i == 0 { 62 } else { FRIENDLY.len() };
            char::from(FRIENDLY[rng.random_range(0..range)])
        })
        .collect()
}

/// A runner registration token (`GR1348941…`).
pub(crate) fn registration_token() -> String {
    format!("GR1348941{}", friendly(20))
}

/// A job token: `glcbt-<partition hex>_<random>` (partition 100).
pub(crate) fn job_token() -> String {
    format!("glcbt-64_{}", friendly(20))
}

/// The runner queue cursor: 32 lowercase hex digits (`SecureRandom.hex`).
pub(crate) fn queue_value() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    hex::encode(bytes)
}

/// Replace every occurrence of each secret in `data` with `x` of the same length, as GitLab's
/// `MaskSecret` does for the job token and the project's registration token. Offsets are unchanged.
pub(crate) fn mask_in_place(data: &mut [u8], secrets: &[&str]) {
    for secret in secrets
        .iter()
        .map(|s| s.as_bytes())
        .filter(|s| !s.is_empty())
    {
        let mut i = 0;
        while i + secret.len() <= data.len() {
            if &data[i..i + secret.len()] == secret {
                data[i..i + secret.len()].fill(b'x');
                i += secret.len();
            } else {
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use glrunner_protocol::TokenKind;

    #[test]
    fn generated_tokens_have_gitlab_shapes() {
        assert_eq!(
            TokenKind::classify(&registration_token()),
            TokenKind::Registration
        );
        assert_eq!(TokenKind::classify(&job_token()), TokenKind::Job);
        let q = queue_value();
        assert_eq!(q.len(), 32);
        assert!(
            q.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_ne!(queue_value(), q);
    }

    #[test]
    fn masking_preserves_length() {
        let mut data = b"a glcbt-abc b glcbt-abc".to_vec();
        mask_in_place(&mut data, &["glcbt-abc", ""]);
        assert_eq!(&data, b"a xxxxxxxxx b xxxxxxxxx");
    }
}
