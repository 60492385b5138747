//! `WWW-Authenticate` challenges as RFC 9110 §11.6.1 writes them:
//!
//! ```text
//! WWW-Authenticate = #challenge
//! challenge        = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
//! auth-param       = token BWS "=" BWS ( token / quoted-string )
//! token68          = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
//! ```
//!
//! Challenges and their parameters share the comma, so an element is a parameter of the
//! challenge before it when it reads `name=value`, and a new challenge otherwise. The
//! parser is tolerant, as a client reading an answer must be: an element it cannot read
//! (a stray byte, a quote left open) is skipped up to the next comma outside a quoted
//! string, and the challenges around it are kept. It is linear in the input and never
//! fails.

/// One authentication challenge: a scheme with either a `token68` or parameters.
///
/// Scheme and parameter names compare without regard to case (RFC 9110 §11.1, §11.2);
/// parameter names are kept lowercase and values unquoted (`\x` read as `x`). Of two
/// parameters with the same name (which RFC 9110 forbids) the first counts.
///
/// ```
/// use authcore::Challenge;
///
/// let header = r#"Basic realm="api", Bearer error="insufficient_scope", scope="admin""#;
/// let challenges = Challenge::parse_all([header]);
/// assert!(challenges[1].is_scheme("bearer"));
/// assert_eq!(challenges[1].oauth_error(), Some("insufficient_scope"));
/// assert_eq!(challenges[1].param("SCOPE"), Some("admin"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    scheme: String,
    token68: Option<String>,
    params: Vec<(String, String)>,
}

impl Challenge {
    /// Every challenge in one or more `WWW-Authenticate` (or `Proxy-Authenticate`) field
    /// values, in order. Pass each field line separately when a response has several
    /// (or one line with them joined by commas, which RFC 9110 §5.3 makes the same).
    pub fn parse_all<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<Challenge> {
        let mut out = Vec::new();
        for value in values {
            Parser::new(value).run(&mut out);
        }
        out
    }

    /// The scheme as the server wrote it (`Bearer`, `DPoP`, `Basic`, …).
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// Whether this challenge's scheme is `scheme`, compared without regard to case.
    pub fn is_scheme(&self, scheme: &str) -> bool {
        self.scheme.eq_ignore_ascii_case(scheme)
    }

    /// The `token68` the scheme was followed by, if any (e.g. `Negotiate abc==`).
    pub fn token68(&self) -> Option<&str> {
        self.token68.as_deref()
    }

    /// The value of parameter `name` (compared without regard to case), unquoted.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every parameter in order: name (lowercase) and value (unquoted).
    pub fn params(&self) -> impl Iterator<Item = (&str, &str)> {
        self.params.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The OAuth `error` of a `Bearer` (RFC 6750 §3) or `DPoP` (RFC 9449 §7.1) challenge
    /// (`invalid_token`, `insufficient_scope`, `use_dpop_nonce`, …); `None` for another
    /// scheme or a challenge without one.
    pub fn oauth_error(&self) -> Option<&str> {
        (self.is_scheme("Bearer") || self.is_scheme("DPoP"))
            .then(|| self.param("error"))
            .flatten()
    }
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// RFC 9110 `token68` characters before its trailing `=`s.
fn is_token68_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)
}

/// RFC 9110 `qdtext` and the second byte of a `quoted-pair` (with `obs-text`, which is
/// how UTF-8 arrives): tab, space and every visible or non-ASCII byte.
fn is_quoted_text(b: u8) -> bool {
    b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80
}

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        Parser {
            s: text.as_bytes(),
            text,
            pos: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn token(&mut self) -> Option<&'a str> {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        (self.pos > start).then(|| &self.text[start..self.pos])
    }

    /// A quoted string from its opening quote, unescaped; `None` (and the position left
    /// where it failed) when it is not closed or holds a byte it may not.
    fn quoted(&mut self) -> Option<String> {
        debug_assert_eq!(self.peek(), Some(b'"'));
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            match self.peek()? {
                b'"' => {
                    self.pos += 1;
                    // Only whole UTF-8 sequences were copied: the input is a `str`.
                    return String::from_utf8(out).ok();
                }
                b'\\' => {
                    let escaped = *self.s.get(self.pos + 1)?;
                    if !is_quoted_text(escaped) {
                        return None;
                    }
                    out.push(escaped);
                    self.pos += 2;
                }
                b if is_quoted_text(b) => {
                    out.push(b);
                    self.pos += 1;
                }
                _ => return None,
            }
        }
    }

    /// Whether the element ends here: optional whitespace, then a comma or the end.
    fn at_element_end(&mut self) -> bool {
        self.skip_ows();
        matches!(self.peek(), None | Some(b','))
    }

    /// Skips what cannot be read, up to the next comma outside a quoted string.
    fn recover(&mut self) {
        let mut quoted = false;
        while let Some(b) = self.peek() {
            match b {
                b'"' => quoted = !quoted,
                b'\\' if quoted => self.pos += 1,
                b',' if !quoted => return,
                _ => {}
            }
            self.pos += 1;
        }
    }

    /// `name BWS "=" BWS value` from the current position, or `None` with the position
    /// unchanged when it is not a parameter.
    fn param(&mut self) -> Option<(String, String)> {
        let start = self.pos;
        let parsed = (|| {
            let name = self.token()?;
            self.skip_ows();
            if self.peek() != Some(b'=') {
                return None;
            }
            self.pos += 1;
            self.skip_ows();
            let value = match self.peek()? {
                b'"' => self.quoted()?,
                _ => self.token()?.to_owned(),
            };
            self.at_element_end()
                .then(|| (name.to_ascii_lowercase(), value))
        })();
        if parsed.is_none() {
            self.pos = start;
        }
        parsed
    }

    /// A `token68` that makes up the rest of the element, or `None` with the position
    /// unchanged.
    fn token68(&mut self) -> Option<String> {
        let start = self.pos;
        while self.peek().is_some_and(is_token68_char) {
            self.pos += 1;
        }
        let body_end = self.pos;
        while self.peek() == Some(b'=') {
            self.pos += 1;
        }
        let end = self.pos;
        if body_end > start && self.at_element_end() {
            Some(self.text[start..end].to_owned())
        } else {
            self.pos = start;
            None
        }
    }

    fn run(mut self, out: &mut Vec<Challenge>) {
        // Whether the last challenge pushed may still take parameters (it came from
        // this value and has no token68).
        let mut open = false;
        loop {
            // Empty list elements are allowed (RFC 9110 §5.6.1).
            while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
                self.pos += 1;
            }
            if self.peek().is_none() {
                return;
            }
            if open {
                if let Some(param) = self.param() {
                    if let Some(current) = out.last_mut() {
                        current.params.push(param);
                    }
                    continue;
                }
            }
            let Some(scheme) = self.token() else {
                self.recover();
                continue;
            };
            let scheme_end = self.pos;
            let mut challenge = Challenge {
                scheme: scheme.to_owned(),
                token68: None,
                params: Vec::new(),
            };
            if self.at_element_end() {
                out.push(challenge);
                open = true;
                continue;
            }
            if self.pos == scheme_end || self.peek() == Some(b'=') {
                // Not a challenge (a scheme is followed by whitespace): a parameter that
                // could not be read, or a token glued to something else.
                self.recover();
                continue;
            }
            // The scheme, one or more spaces, and its first parameter or a token68.
            open = true;
            if let Some(param) = self.param() {
                challenge.params.push(param);
            } else if let Some(token68) = self.token68() {
                challenge.token68 = Some(token68);
                open = false;
            } else {
                self.recover();
            }
            out.push(challenge);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &str) -> Vec<Challenge> {
        Challenge::parse_all([value])
    }

    fn summary(challenges: &[Challenge]) -> Vec<String> {
        challenges
            .iter()
            .map(|c| {
                let mut s = c.scheme().to_owned();
                if let Some(t) = c.token68() {
                    s.push_str(&format!(" <{t}>"));
                }
                for (k, v) in c.params() {
                    s.push_str(&format!(" {k}=[{v}]"));
                }
                s
            })
            .collect()
    }

    #[test]
    fn the_rfc_9110_example_is_two_challenges() {
        let c = parse(
            r#"Basic realm="simple", Newauth realm="apps", type=1, title="Login to \"apps\"""#,
        );
        assert_eq!(
            summary(&c),
            [
                "Basic realm=[simple]",
                r#"Newauth realm=[apps] type=[1] title=[Login to "apps"]"#
            ]
        );
    }

    #[test]
    fn bearer_and_dpop_errors_are_read_with_any_case() {
        let c = parse(
            r#"bEaReR realm="api", ERROR="insufficient_scope", Error_Description="needs admin", DPoP algs="ES256 PS256", error=invalid_token"#,
        );
        assert_eq!(c.len(), 2);
        assert!(c[0].is_scheme("Bearer"));
        assert_eq!(c[0].oauth_error(), Some("insufficient_scope"));
        assert_eq!(c[0].param("error_description"), Some("needs admin"));
        assert!(c[1].is_scheme("dpop"));
        assert_eq!(c[1].param("ALGS"), Some("ES256 PS256"));
        assert_eq!(c[1].oauth_error(), Some("invalid_token"));
    }

    #[test]
    fn an_error_of_another_scheme_is_not_an_oauth_error() {
        let c = parse(r#"Newauth error="insufficient_scope""#);
        assert_eq!(c[0].param("error"), Some("insufficient_scope"));
        assert_eq!(c[0].oauth_error(), None);
    }

    #[test]
    fn token68_challenges_stand_alone() {
        let c = parse("Negotiate a87421bff012e83c==, Basic realm=x, Other abc/+.~-_==  ");
        assert_eq!(
            summary(&c),
            [
                "Negotiate <a87421bff012e83c==>",
                "Basic realm=[x]",
                "Other <abc/+.~-_==>"
            ]
        );
    }

    #[test]
    fn a_token68_is_not_taken_for_a_parameter_and_back() {
        // `abc=def` is a parameter; `abc==` and `abc=` are token68s.
        assert_eq!(summary(&parse("X abc=def")), ["X abc=[def]"]);
        assert_eq!(summary(&parse("X abc==")), ["X <abc==>"]);
        assert_eq!(summary(&parse("X abc=, Y")), ["X <abc=>", "Y"]);
    }

    #[test]
    fn bad_whitespace_around_equals_and_empty_elements_are_allowed() {
        let c = parse(r#" ,, Bearer  realm = "a b" ,, ,scope= "x y",error ="e",  "#);
        assert_eq!(summary(&c), ["Bearer realm=[a b] scope=[x y] error=[e]"]);
    }

    #[test]
    fn schemes_alone_and_several_field_lines() {
        let c = Challenge::parse_all(["Basic", r#"Bearer error="invalid_token""#, "", "DPoP"]);
        assert_eq!(
            summary(&c),
            ["Basic", "Bearer error=[invalid_token]", "DPoP"]
        );
    }

    #[test]
    fn a_parameter_never_joins_a_challenge_of_another_line() {
        // A line that starts with a parameter has no challenge to give it to.
        let c = Challenge::parse_all(["Bearer realm=a", r#"error="insufficient_scope""#]);
        assert_eq!(summary(&c), ["Bearer realm=[a]"]);
    }

    #[test]
    fn escapes_and_utf8_in_quoted_strings() {
        let c = parse(r#"Bearer error_description="a \"b\" \\ c \é ü", error="x""#);
        assert_eq!(c[0].param("error_description"), Some(r#"a "b" \ c é ü"#));
        assert_eq!(c[0].param("error"), Some("x"));
    }

    #[test]
    fn a_comma_inside_quotes_does_not_split() {
        let c = parse(
            r#"Bearer error_description="x, error=insufficient_scope", error="invalid_token""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].oauth_error(), Some("invalid_token"));
    }

    #[test]
    fn unreadable_elements_are_skipped_and_the_rest_kept() {
        let c = parse(
            "Bearer realm=\"a\", @@@, error=\"bad\u{1}byte\", scope=ok, Basic realm=\"b\", Digest realm=\"never closed",
        );
        assert_eq!(
            summary(&c),
            ["Bearer realm=[a] scope=[ok]", "Basic realm=[b]", "Digest"]
        );
        // A scheme glued to a quote is not a challenge; the next one still is.
        let c = parse(r#"Bearer"x", Basic realm=y"#);
        assert_eq!(summary(&c), ["Basic realm=[y]"]);
        // A value followed by junk inside the element is dropped, not truncated.
        let c = parse(r#"Bearer error="a"b, scope=s"#);
        assert_eq!(summary(&c), ["Bearer scope=[s]"]);
    }

    #[test]
    fn the_first_of_two_parameters_with_one_name_counts() {
        let c = parse(r#"Bearer error="invalid_token", ERROR="insufficient_scope""#);
        assert_eq!(c[0].oauth_error(), Some("invalid_token"));
    }

    #[test]
    fn nothing_to_parse_is_no_challenge() {
        for value in ["", "   ", ",", " , ,", "=", "\"", "\\"] {
            assert!(parse(value).is_empty(), "{value:?}");
        }
    }
}
