//! Endpoints of the providers authcore has presets for.

/// api.video production base URL.
pub const API_VIDEO_PRODUCTION: &str = "https://ws.api.video";
/// api.video sandbox base URL.
pub const API_VIDEO_SANDBOX: &str = "https://sandbox.api.video";
/// The `AV-Origin-Client` header value api.video's own clients send in their form.
pub const API_VIDEO_ORIGIN_CLIENT: &str = concat!("authcore:", env!("CARGO_PKG_VERSION"));
/// viewneo base URL (`/oauth/authorize`, `/oauth/token`, `/api/v1.0/…`).
pub const VIEWNEO_BASE: &str = "https://cloud.viewneo.com";
/// Vibe token endpoint.
pub const VIBE_TOKEN_URL: &str = "https://api.vibe.co/oauth2/token";
