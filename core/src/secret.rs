//! [`Secret`]: a string that never prints and is wiped from memory when dropped.

use std::fmt;

use serde_json::Value;
use zeroize::{Zeroize, Zeroizing};

/// A credential or token value.
///
/// `Debug` and `Display` print `[redacted]`; the bytes are zeroized on drop. The only
/// way to read the value is [`Secret::expose_secret`], whose name is meant to make a
/// reader pause.
#[derive(Clone, Default)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a value, taking ownership so that no unzeroized copy is left behind.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(Zeroizing::new(value.into()))
    }

    /// The secret value. Do not log it, format it into errors, or keep copies of it.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// True when the value is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret::new(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret::new(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl PartialEq for Secret {
    /// Constant-time comparison, so equality checks do not leak a prefix length.
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for Secret {}

/// Wipes every string in a parsed JSON value (the response may hold tokens).
pub(crate) fn zeroize_value(v: &mut Value) {
    match v {
        Value::String(s) => s.zeroize(),
        Value::Array(a) => a.iter_mut().for_each(zeroize_value),
        Value::Object(m) => m.values_mut().for_each(zeroize_value),
        _ => {}
    }
}

/// A parsed JSON body that is wiped when dropped.
pub(crate) struct WipedJson(pub Value);

impl Drop for WipedJson {
    fn drop(&mut self) {
        zeroize_value(&mut self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_are_redacted() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{s:?}"), "Secret([redacted])");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(s.expose_secret(), "hunter2-very-secret");
    }

    #[test]
    fn equality_compares_values() {
        assert_eq!(Secret::new("a"), Secret::from("a"));
        assert_ne!(Secret::new("a"), Secret::new("ab"));
    }
}
