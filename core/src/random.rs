//! Randomness from the operating system's source, for `state`, PKCE and jitter.

use base64::Engine;

/// Fills `buf` from the OS random source. The OS source failing is not recoverable
/// in a meaningful way, and continuing with predictable state would be worse.
pub(crate) fn fill(buf: &mut [u8]) {
    getrandom::fill(buf).expect("the operating system's random source failed");
}

/// `bytes` random bytes, base64url-encoded without padding (43 chars for 32 bytes,
/// which is within RFC 7636's 43–128 `[A-Za-z0-9-._~]` for PKCE verifiers).
pub(crate) fn url_safe_string(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    fill(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&buf)
}

/// A uniform value in `[0, 1)`, for retry jitter.
pub(crate) fn unit_f64() -> f64 {
    let mut buf = [0u8; 8];
    fill(&mut buf);
    (u64::from_le_bytes(buf) >> 11) as f64 / (1u64 << 53) as f64
}
