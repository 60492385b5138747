//! The `authcore` command.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use authcore::grant::{
    token_type, ApiKey, ClientCredentials, JwtBearer, PrivateKey, RefreshToken, TokenExchange,
};
use authcore::{
    AssertionSource, AuthMethod, Client, ClientCertificate, Dpop, DpopAlgorithm, DpopKey, Error,
    ErrorKind, FileStore, Options, Proxy, RedisStore, Secret, SignOut,
};
use clap::{Parser, Subcommand, ValueEnum};

use authcore_cli::devserver::{Behaviour, Credentials, DevServer};
use authcore_cli::login::{Logout, Place};

/// Fresh access tokens for shell scripts, a local development provider, and a demo.
#[derive(Parser)]
#[command(name = "authcore", version)]
struct Cli {
    /// Tell more of what authcore does on stderr: -v renewals, tokens adopted from the
    /// store, rotations, rejected tokens, and the failed requests and renewals behind an
    /// error (without -v a failure is one line, the error); -vv every token request and
    /// store use. Never a secret.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the local development provider (every supported dialect) until stopped.
    Devserver {
        /// Loopback address to listen on.
        #[arg(long, default_value = "127.0.0.1")]
        host: IpAddr,
        /// Port; 0 picks a free one.
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Lifetime of issued access tokens, in seconds (at most ten years).
        #[arg(long, default_value_t = 3600,
              value_parser = clap::value_parser!(u64).range(1..=authcore_cli::devserver::MAX_LIFETIME_SECS))]
        lifetime: u64,
        /// Serve HTTPS with a throwaway CA made at start, whose certificate is written to
        /// DIR/ca.pem (printed as AUTHCORE_DEVSERVER_CA) for clients' --ca-bundle.
        #[arg(long, value_name = "DIR")]
        tls_dir: Option<PathBuf>,
    },
    /// Show the token lifecycle against an in-process provider, in a few seconds.
    Demo,
    /// Print a fresh access token, e.g. `curl -H "Authorization: Bearer $(authcore token …)"`.
    ///
    /// Secrets come from environment variables or files, never the command line:
    /// AUTHCORE_API_KEY, AUTHCORE_CLIENT_SECRET, AUTHCORE_REFRESH_TOKEN, AUTHCORE_TOKEN,
    /// or the matching --*-file options.
    ///
    /// Token exchange (RFC 8693): `--provider token-exchange --token-url URL --client-id
    /// ID` with a subject token from --subject-token-file FILE, --subject-token-command
    /// PROGRAM (its stdout), or --subject-client-credentials (a chained client's token),
    /// and --audience, --scope, --resource, --requested-token-type as wanted.
    ///
    /// Exit codes: 0 token printed; 2 bad configuration; 3 credentials rejected (OAuth
    /// error, API problem, reauthentication required); 4 endpoint or token store
    /// unreachable, failing with a server error (5xx), or timed out; 5 unusable response (an HTML page, no access token, no
    /// token endpoint at the URL: HTTP 404) or rate limited; 6 token printed,
    /// but the refresh token rotated and the new one could not be kept (the store or
    /// --refresh-token-file could not be written, or it came from
    /// AUTHCORE_REFRESH_TOKEN without a store): the next call may need a new sign-in.
    Token(Box<TokenArgs>),
    /// Print the headers of one request, for `curl -H @- URL` to read from stdin:
    /// `Authorization: Bearer …`, or for a DPoP-bound token `Authorization: DPoP …` and
    /// a `DPoP:` proof for this method and URL (good for that one request).
    ///
    /// Takes the same options as `authcore token` (and finds the same tokens: a store, a
    /// signed-in session), plus the request's --method and --url. A resource server that
    /// asks for a DPoP nonce answers 401 with a `DPoP-Nonce` header: call again with
    /// --dpop-nonce set to it, for a proof that carries it.
    ///
    /// Exit codes as for `authcore token` (0 headers printed; 6 printed, but a rotated
    /// refresh token could not be kept).
    Headers(Box<HeadersArgs>),
    /// Sign in at an OpenID provider (found by --issuer) through the browser, or with
    /// --device on a machine without one; the refresh token goes into the file store,
    /// where `authcore token --issuer …` finds it (exit 4 if it cannot be saved there).
    ///
    /// The browser comes back to a listener on 127.0.0.1 that serves each connection
    /// on its own for at most 5 s (32 at once: when more arrive, the oldest that has
    /// sent nothing is closed) and ends only with the redirect that carries this
    /// sign-in's state (any other request gets 400 or 404), or after --wait.
    ///
    /// With --dpop the session's tokens are DPoP-bound: the key is kept with the session
    /// in the store (and nowhere else), so `authcore token` and `authcore headers` use it
    /// later; a session whose key is lost needs a new sign-in.
    Login(Box<LoginCommand>),
    /// Remove the signed-in session from the store, and revoke it at the provider.
    ///
    /// The session is removed from the store in every case — also when the provider
    /// cannot be reached: `login` keeps a note of where it filed the session (its token
    /// endpoint, nothing secret) beside it in the store — and stderr says what happened
    /// at the provider: revoked; or not, because it has no revocation endpoint (exit 0:
    /// the refresh token stays valid there until it expires) or because it refused or
    /// could not be reached (exit 3, 4 or 5, as for `authcore token`). When nothing is
    /// signed in, it says so and exits 0 (the session is not there, as asked). Exit 2:
    /// bad configuration; 4 also: the store could not be updated, or the provider could
    /// not be reached and no note names the session (one signed in by an earlier
    /// version): nothing was removed.
    Logout(Box<SessionArgs>),
}

/// `authcore login`: where and how to sign in, and whether the tokens are DPoP-bound.
#[derive(clap::Args)]
struct LoginCommand {
    #[command(flatten)]
    login: LoginArgs,
    #[command(flatten)]
    dpop: DpopArgs,
}

/// Sender-constrained tokens (DPoP, RFC 9449), for every command that obtains tokens.
#[derive(clap::Args)]
#[command(group = clap::ArgGroup::new("dpop_on").multiple(true).args(["dpop", "dpop_alg", "dpop_key"]))]
struct DpopArgs {
    /// Ask for DPoP-bound tokens (RFC 9449): every token request and every use of the
    /// token carries a proof signed by a key made for this run (ES256 unless
    /// --dpop-alg), or the session's key when a store or `authcore login` keeps one.
    /// A Bearer answer is refused (exit 5) unless --dpop-allow-bearer.
    #[arg(long)]
    dpop: bool,
    /// The algorithm of the generated DPoP key: ES256, EdDSA or RS256 (implies --dpop).
    #[arg(long, value_name = "ALG", value_parser = parse_dpop_alg)]
    dpop_alg: Option<DpopAlgorithm>,
    /// A DPoP private key file instead of a generated key (implies --dpop): PEM (PKCS#8
    /// `PRIVATE KEY` of P-256, Ed25519 or RSA; `EC PRIVATE KEY`; `RSA PRIVATE KEY`) or a
    /// private JWK.
    #[arg(long, value_name = "FILE", conflicts_with = "dpop_alg")]
    dpop_key: Option<PathBuf>,
    /// Accept a Bearer token from a server that ignores DPoP, instead of refusing it.
    #[arg(long, requires = "dpop_on")]
    dpop_allow_bearer: bool,
}

impl DpopArgs {
    /// Whether any DPoP option was given.
    fn requested(&self) -> bool {
        self.dpop || self.dpop_alg.is_some() || self.dpop_key.is_some()
    }

    /// The DPoP configuration asked for, if any: the key read from --dpop-key, or one
    /// generated for --dpop-alg (ES256 by default).
    fn configured(&self) -> Result<Option<Dpop>, Error> {
        if !self.requested() {
            return Ok(None);
        }
        let key = match &self.dpop_key {
            Some(path) => read_dpop_key(path)?,
            None => DpopKey::generate(self.dpop_alg.unwrap_or_default())?,
        };
        Ok(Some(
            Dpop::new(key).allow_bearer_downgrade(self.dpop_allow_bearer),
        ))
    }

    /// What `authcore login` remembers of these options beside the session (nothing
    /// secret: the key itself is kept in the session's store record).
    fn remembered(&self, dpop: &Dpop) -> authcore_cli::login::DpopSetting {
        authcore_cli::login::DpopSetting {
            algorithm: dpop.key().algorithm().name().to_owned(),
            allow_bearer: self.dpop_allow_bearer,
        }
    }
}

/// A `--dpop-alg` value.
fn parse_dpop_alg(name: &str) -> Result<DpopAlgorithm, String> {
    DpopAlgorithm::from_name(name).map_err(|_| "expected ES256, EdDSA or RS256".to_owned())
}

/// Largest DPoP key file read.
const MAX_KEY_FILE: u64 = 64 * 1024;

/// A DPoP key from a file: a private JWK (JSON) or PEM. The file's bytes are wiped once
/// read; errors name the file, never its contents.
fn read_dpop_key(path: &std::path::Path) -> Result<DpopKey, Error> {
    use std::io::Read;
    let mut bytes = zeroize::Zeroizing::new(Vec::new());
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_KEY_FILE + 1).read_to_end(&mut bytes))
        .map_err(|e| Error::Config {
            message: format!("cannot read the DPoP key from {}: {e}", path.display()),
        })?;
    if bytes.len() as u64 > MAX_KEY_FILE {
        return Err(Error::Config {
            message: format!("{} is too large to be a DPoP key", path.display()),
        });
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| Error::Config {
        message: format!("the DPoP key in {} is not text", path.display()),
    })?;
    let text = text.trim_start();
    let key = if text.starts_with('{') {
        DpopKey::from_jwk(text)
    } else {
        DpopKey::from_pem(text)
    };
    key.map_err(|e| Error::Config {
        message: match e {
            Error::Config { message } => format!("{}: {message}", path.display()),
            other => format!("{}: {other}", path.display()),
        },
    })
}

/// Mutual TLS (RFC 8705): a client certificate for every HTTPS connection.
#[derive(clap::Args)]
struct CertArgs {
    /// A client certificate (PEM; intermediate certificates after it) presented on
    /// every HTTPS connection, to the provider and to APIs alike: for
    /// --auth-method tls-client-auth or self-signed-tls-client-auth, and for tokens the
    /// provider binds to it. Discovered mtls_endpoint_aliases are then used.
    #[arg(long, value_name = "FILE")]
    client_cert: Option<PathBuf>,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1, unencrypted) [default: the
    /// --client-cert file, when it holds both].
    #[arg(long, value_name = "FILE", requires = "client_cert")]
    client_key: Option<PathBuf>,
}

impl CertArgs {
    /// `options` with the certificate, if one was given (read and checked now: a file
    /// that cannot be used is a configuration error that never shows the key).
    fn apply(&self, options: Options) -> Result<Options, Error> {
        let Some(cert) = &self.client_cert else {
            return Ok(options);
        };
        let key = self.client_key.as_ref().unwrap_or(cert);
        Ok(options.client_certificate(ClientCertificate::from_pem_files(cert, key)?))
    }
}

/// Where a signed-in session is kept and how its provider is reached: what `login` and
/// `logout` share.
#[derive(clap::Args)]
struct SessionArgs {
    /// The provider's issuer URL (its endpoints are discovered from it).
    #[arg(long, env = "AUTHCORE_ISSUER")]
    issuer: String,
    /// OAuth 2.0 client id.
    #[arg(long, env = "AUTHCORE_CLIENT_ID")]
    client_id: String,
    /// File holding the client secret (else AUTHCORE_CLIENT_SECRET; neither: a public
    /// client).
    #[arg(long)]
    client_secret_file: Option<PathBuf>,
    /// Resource indicators: the APIs the token is for (repeat).
    #[arg(long = "resource")]
    resources: Vec<String>,
    /// Token store directory: private to this user (one that is group- or
    /// world-writable, or owned by another user, is refused) [default:
    /// $XDG_STATE_HOME/authcore or ~/.local/state/authcore; sessions kept by older
    /// versions in $XDG_CACHE_HOME/authcore or ~/.cache/authcore are moved there once].
    #[arg(long, value_name = "DIR")]
    store: Option<PathBuf>,
    /// The profile (one user each; `authcore token --store-key NAME` uses it)
    /// [default: default].
    #[arg(long, value_name = "NAME", env = "AUTHCORE_STORE_KEY")]
    store_key: Option<String>,
    /// Seconds allowed for each request to the provider.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    timeout: u64,
    /// Trust exactly the certificate authorities in this PEM file for HTTPS, instead of
    /// the system's trust store (which honours SSL_CERT_FILE and SSL_CERT_DIR).
    #[arg(long, value_name = "FILE")]
    ca_bundle: Option<PathBuf>,
    #[command(flatten)]
    cert: CertArgs,
}

/// `authcore login`'s own options: what to ask for, and how the user signs in.
#[derive(clap::Args)]
struct LoginArgs {
    #[command(flatten)]
    session: SessionArgs,
    /// Scopes to request (repeat, or space-separated).
    #[arg(long = "scope", default_value = "openid offline_access")]
    scopes: Vec<String>,
    /// Use the device flow: print a code to enter on another device.
    #[arg(long)]
    device: bool,
    /// Print the sign-in URL without opening a browser.
    #[arg(long)]
    no_browser: bool,
    /// Seconds to wait for the sign-in, at most a day.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    wait: u64,
}

#[derive(Clone, Copy, ValueEnum)]
enum Provider {
    /// api.video production (`https://ws.api.video`, or --base-url).
    ApiVideo,
    /// api.video sandbox.
    ApiVideoSandbox,
    /// Vibe client credentials.
    Vibe,
    /// Any OAuth 2.0 token endpoint, client credentials (--token-url).
    ClientCredentials,
    /// Any OAuth 2.0 token endpoint, refresh token grant (--token-url).
    RefreshToken,
    /// A personal access token (printed as given).
    PersonalAccessToken,
    /// Any OAuth 2.0 token endpoint, JWT bearer grant (RFC 7523 §2.1, --token-url): an
    /// assertion from --assertion-file or --assertion-command, or signed for every
    /// request with --signing-key, --jwt-issuer and --jwt-subject. The client
    /// authenticates too when --client-id is given.
    JwtBearer,
    /// Token exchange (RFC 8693) at any token endpoint (--token-url, or --issuer's): a
    /// subject token (--subject-token-file, --subject-token-command, or a chained
    /// client's with --subject-client-credentials) exchanged for an access token.
    TokenExchange,
}

#[derive(Clone, Copy, ValueEnum)]
enum Method {
    /// HTTP Basic, form-encoded (RFC 6749 §2.3.1).
    Basic,
    /// HTTP Basic, raw.
    BasicRaw,
    /// Credentials in the body.
    Post,
    /// Mutual TLS with a CA-issued certificate (RFC 8705 §2.1; needs --client-cert): the
    /// client id in the body, no secret.
    TlsClientAuth,
    /// Mutual TLS with a self-signed certificate registered at the provider (RFC 8705
    /// §2.2; needs --client-cert): the client id in the body, no secret.
    SelfSignedTlsClientAuth,
}

#[derive(clap::Args)]
struct TokenArgs {
    /// Which provider or grant (with --issuer: the session `authcore login` stored, or
    /// `client-credentials` at the discovered token endpoint).
    #[arg(long, value_enum, required_unless_present = "issuer")]
    provider: Option<Provider>,
    /// An OpenID provider's issuer URL: endpoints are discovered from it.
    #[arg(long, env = "AUTHCORE_ISSUER")]
    issuer: Option<String>,
    /// Resource indicators: the APIs the token is for (repeat).
    #[arg(long = "resource")]
    resources: Vec<String>,
    /// api.video base URL (overrides the preset).
    #[arg(long)]
    base_url: Option<String>,
    /// OAuth 2.0 token endpoint (client-credentials, refresh-token, token-exchange;
    /// overrides Vibe's).
    #[arg(long)]
    token_url: Option<String>,
    /// OAuth 2.0 client id.
    #[arg(long, env = "AUTHCORE_CLIENT_ID")]
    client_id: Option<String>,
    /// Scopes to request (repeat, or space-separated).
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// How the client authenticates at the token endpoint.
    #[arg(long, value_enum, default_value = "basic")]
    auth_method: Method,
    /// Send refresh requests as JSON (viewneo).
    #[arg(long)]
    json_body: bool,
    /// File holding the api.video API key (instead of AUTHCORE_API_KEY).
    #[arg(long)]
    api_key_file: Option<PathBuf>,
    /// File holding the client secret (instead of AUTHCORE_CLIENT_SECRET).
    #[arg(long)]
    client_secret_file: Option<PathBuf>,
    /// File holding the refresh token; rewritten when the token rotates.
    #[arg(long)]
    refresh_token_file: Option<PathBuf>,
    /// File holding the personal access token (instead of AUTHCORE_TOKEN).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Seconds allowed for the whole call (every attempt and pause), at most a day.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    timeout: u64,
    /// Least seconds before expiry at which a token is no longer used (for APIs whose
    /// clocks run ahead); default L/20 of a lifetime L, at most 30 s.
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    expiry_margin: Option<u64>,
    /// A token store shared with every other process that uses the same credential: a
    /// directory (this machine; created 0700 if missing; refused if group- or
    /// world-writable, or owned by another user) or a Redis URL (a fleet):
    /// `redis://[user:password@]host:port[/db]` (one server),
    /// `redis+sentinel://[user:password@]host:port,host:port/master_name[/db]` (Redis
    /// Sentinel: the sentinels' addresses, default port 26379; credentials and database are
    /// the master's), `redis+cluster://[user:password@]host:port,host:port` (Redis
    /// Cluster: any of its nodes), each also `rediss…` for TLS. A fresh token is reused
    /// instead of requested again, and a rotating refresh token is shared safely. A store
    /// that cannot be used is a warning on stderr for client credentials and API keys
    /// (renewed without it) and exit 4 for a refresh token.
    #[arg(long, value_name = "DIR|redis://…")]
    store: Option<String>,
    /// A CA certificate file (PEM) to verify a `rediss://` (or `rediss+sentinel://`,
    /// `rediss+cluster://`) store's servers with, instead of the Web PKI roots.
    #[arg(long, value_name = "FILE", requires = "store")]
    store_ca: Option<std::path::PathBuf>,
    /// Whose tokens these are in the store (a user or profile name, never a secret):
    /// required with --store for a refresh token, so that two users never share one.
    /// With --issuer: the profile `authcore login --store-key NAME` signed in [default:
    /// default], in --store or else the directory `authcore login` uses.
    #[arg(long, value_name = "NAME", env = "AUTHCORE_STORE_KEY")]
    store_key: Option<String>,
    /// Proxy for non-loopback hosts (`http://host:port`); "" for none. Default: from the
    /// environment (ALL_PROXY, HTTPS_PROXY, HTTP_PROXY, honouring NO_PROXY).
    #[arg(long)]
    proxy: Option<String>,
    /// Trust exactly the certificate authorities in this PEM file for HTTPS, instead of
    /// the system's trust store (which honours SSL_CERT_FILE and SSL_CERT_DIR).
    #[arg(long, value_name = "FILE")]
    ca_bundle: Option<PathBuf>,
    #[command(flatten)]
    cert: CertArgs,
    #[command(flatten)]
    dpop: DpopArgs,
    #[command(flatten)]
    workload: WorkloadArgs,
    #[command(flatten)]
    exchange: ExchangeArgs,
}

/// Workloads without secrets: a client assertion someone else issues (RFC 7523 §2.2),
/// and the JWT bearer grant's assertion (§2.1). Files and commands are read again for
/// every token request (and once more after a refusal), never cached; what they hold
/// is never printed.
#[derive(clap::Args)]
#[command(group = clap::ArgGroup::new("client_assertion_from").args(["client_assertion_file", "client_assertion_command"]))]
#[command(group = clap::ArgGroup::new("assertion_from").args(["assertion_file", "assertion_command", "signing_key"]))]
struct WorkloadArgs {
    /// The client authenticates with the JWT in FILE as its client assertion (a
    /// Kubernetes projected token, AZURE_FEDERATED_TOKEN_FILE), read for every request;
    /// no client secret.
    #[arg(long, value_name = "FILE")]
    client_assertion_file: Option<PathBuf>,
    /// The client authenticates with what PROGRAM prints as its client assertion (a CI
    /// system's token helper), run without a shell for every request; arguments with
    /// --client-assertion-arg.
    #[arg(long, value_name = "PROGRAM")]
    client_assertion_command: Option<String>,
    /// An argument of --client-assertion-command (repeat).
    #[arg(
        long,
        value_name = "ARG",
        requires = "client_assertion_command",
        allow_hyphen_values = true
    )]
    client_assertion_arg: Vec<String>,
    /// The JWT bearer grant's assertion: the JWT in FILE, read for every request.
    #[arg(long, value_name = "FILE")]
    assertion_file: Option<PathBuf>,
    /// The JWT bearer grant's assertion: what PROGRAM prints, run for every request;
    /// arguments with --assertion-arg.
    #[arg(long, value_name = "PROGRAM")]
    assertion_command: Option<String>,
    /// An argument of --assertion-command (repeat).
    #[arg(
        long,
        value_name = "ARG",
        requires = "assertion_command",
        allow_hyphen_values = true
    )]
    assertion_arg: Vec<String>,
    /// Seconds an assertion command may run, at most 600.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    assertion_timeout: u64,
    /// The JWT bearer grant's assertions are signed for every request by the private
    /// key in FILE (PEM: RSA, P-256 or Ed25519; a service-account key), with
    /// --jwt-issuer, --jwt-subject and --jwt-audience.
    #[arg(long, value_name = "FILE", requires_all = ["jwt_issuer", "jwt_subject"])]
    signing_key: Option<PathBuf>,
    /// The key id (`kid`) of --signing-key, as registered with the server.
    #[arg(long, value_name = "KID", requires = "signing_key")]
    signing_key_id: Option<String>,
    /// `iss` of signed assertions.
    #[arg(long, value_name = "ISS", requires = "signing_key")]
    jwt_issuer: Option<String>,
    /// `sub` of signed assertions: whose token it is.
    #[arg(long, value_name = "SUB", requires = "signing_key")]
    jwt_subject: Option<String>,
    /// `aud` of signed assertions [default: the token endpoint].
    #[arg(long, value_name = "AUD", requires = "signing_key")]
    jwt_audience: Option<String>,
}

impl WorkloadArgs {
    fn timeout(&self) -> Duration {
        Duration::from_secs(self.assertion_timeout)
    }

    /// The client assertion's source, if one is given.
    fn client_assertion(&self) -> Option<AssertionSource> {
        match (&self.client_assertion_file, &self.client_assertion_command) {
            (Some(path), _) => Some(AssertionSource::file(path)),
            (None, Some(program)) => Some(
                AssertionSource::command(program, self.client_assertion_arg.clone())
                    .timeout(self.timeout()),
            ),
            (None, None) => None,
        }
    }

    /// The JWT bearer grant at `token_url`.
    fn jwt_bearer(&self, token_url: String) -> Result<JwtBearer, Error> {
        if let Some(path) = &self.assertion_file {
            return Ok(JwtBearer::new(token_url, AssertionSource::file(path)));
        }
        if let Some(program) = &self.assertion_command {
            let source = AssertionSource::command(program, self.assertion_arg.clone())
                .timeout(self.timeout());
            return Ok(JwtBearer::new(token_url, source));
        }
        let (Some(path), Some(issuer), Some(subject)) =
            (&self.signing_key, &self.jwt_issuer, &self.jwt_subject)
        else {
            return Err(Error::Config {
                message: "the JWT bearer grant needs --assertion-file, --assertion-command, or --signing-key with --jwt-issuer and --jwt-subject"
                    .into(),
            });
        };
        let mut key = read_signing_key(path)?;
        if let Some(kid) = &self.signing_key_id {
            key = key.key_id(kid);
        }
        let grant = JwtBearer::signed(token_url, key, issuer, subject);
        Ok(match &self.jwt_audience {
            Some(aud) => grant.audience(aud),
            None => grant,
        })
    }

    /// Whether a JWT bearer grant's assertion was asked for.
    fn grant_requested(&self) -> bool {
        self.assertion_file.is_some()
            || self.assertion_command.is_some()
            || self.signing_key.is_some()
    }
}

/// A signing key from a PEM file, its bytes wiped once read; errors name the file,
/// never its contents.
fn read_signing_key(path: &std::path::Path) -> Result<PrivateKey, Error> {
    use std::io::Read;
    let mut bytes = zeroize::Zeroizing::new(Vec::new());
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_KEY_FILE + 1).read_to_end(&mut bytes))
        .map_err(|e| Error::Config {
            message: format!("cannot read the signing key from {}: {e}", path.display()),
        })?;
    if bytes.len() as u64 > MAX_KEY_FILE {
        return Err(Error::Config {
            message: format!("{} is too large to be a signing key", path.display()),
        });
    }
    PrivateKey::from_pem(&bytes, None).map_err(|e| Error::Config {
        message: match e {
            Error::Config { message } => format!("{}: {message}", path.display()),
            other => format!("{}: {other}", path.display()),
        },
    })
}

/// Token exchange (RFC 8693), for `--provider token-exchange`: the client that exchanges
/// is the one --token-url (or --issuer), --client-id and the client secret (else a
/// public client) describe; the subject token comes from exactly one of
/// --subject-token-file, --subject-token-command or --subject-client-credentials, read
/// again for every exchange (and once more if the server refuses the one it was sent).
/// --scope and --resource ask for the exchanged token's scope and resources.
#[derive(clap::Args)]
#[command(group = clap::ArgGroup::new("subject").multiple(false)
    .args(["subject_token_file", "subject_token_command", "subject_client_credentials"]))]
struct ExchangeArgs {
    /// The subject token is this file's contents, read for every exchange (a
    /// Kubernetes projected token, a CI system's OIDC token a runner rewrites).
    #[arg(long, value_name = "FILE")]
    subject_token_file: Option<PathBuf>,
    /// The subject token is what this program prints (run without a shell, for at most
    /// 10 s, for every exchange); its arguments are given with --subject-token-arg.
    #[arg(long, value_name = "PROGRAM")]
    subject_token_command: Option<String>,
    /// An argument of --subject-token-command (repeat, in order).
    #[arg(
        long = "subject-token-arg",
        value_name = "ARG",
        allow_hyphen_values = true,
        requires = "subject_token_command"
    )]
    subject_token_args: Vec<String>,
    /// Chained exchange: the subject token is the access token of another client, by
    /// client credentials at --subject-token-url (default: --token-url) as
    /// --subject-client-id (default: --client-id) with the secret in
    /// --subject-client-secret-file (default: the exchanging client's), for
    /// --subject-scope. That client renews its token as needed; if the exchange refuses
    /// it, it renews once and its next token is sent.
    #[arg(long)]
    subject_client_credentials: bool,
    /// The subject client's token endpoint (with --subject-client-credentials).
    #[arg(long, value_name = "URL", requires = "subject_client_credentials")]
    subject_token_url: Option<String>,
    /// The subject client's id (with --subject-client-credentials).
    #[arg(long, value_name = "ID", requires = "subject_client_credentials")]
    subject_client_id: Option<String>,
    /// File holding the subject client's secret (with --subject-client-credentials).
    #[arg(long, value_name = "FILE", requires = "subject_client_credentials")]
    subject_client_secret_file: Option<PathBuf>,
    /// Scopes of the subject client's token (repeat, or space-separated).
    #[arg(
        long = "subject-scope",
        value_name = "SCOPE",
        requires = "subject_client_credentials"
    )]
    subject_scopes: Vec<String>,
    /// The subject token's type: access_token, refresh_token, id_token, jwt, saml1,
    /// saml2 or a URI [default: access_token].
    #[arg(long, value_name = "TYPE")]
    subject_token_type: Option<String>,
    /// An actor token (delegation) read from this file for every exchange.
    #[arg(long, value_name = "FILE")]
    actor_token_file: Option<PathBuf>,
    /// The actor token's type, as for --subject-token-type [default: access_token].
    #[arg(long, value_name = "TYPE", requires = "actor_token_file")]
    actor_token_type: Option<String>,
    /// The service the exchanged token is for, by the server's name for it (repeat).
    #[arg(long = "audience", value_name = "NAME")]
    audiences: Vec<String>,
    /// The type of token wanted, as for --subject-token-type (default: the server's
    /// choice).
    #[arg(long, value_name = "TYPE")]
    requested_token_type: Option<String>,
}

impl ExchangeArgs {
    /// Whether any token-exchange option was given.
    fn given(&self) -> bool {
        self.subject_token_file.is_some()
            || self.subject_token_command.is_some()
            || self.subject_client_credentials
            || self.subject_token_type.is_some()
            || self.actor_token_file.is_some()
            || !self.audiences.is_empty()
            || self.requested_token_type.is_some()
    }
}

/// `authcore token --provider token-exchange`: the grant at `token_url` (and
/// `revocation_url`), its subject from the options. `options` are the subject client's
/// (no store, no DPoP: its tokens are this process's own).
fn token_exchange_grant(
    a: &TokenArgs,
    token_url: String,
    revocation_url: Option<String>,
    subject_options: Options,
    scopes: Vec<String>,
    method: AuthMethod,
) -> Result<TokenExchange, Error> {
    let x = &a.exchange;
    let client_id = required(&a.client_id, "--client-id")?;
    let secret = optional_client_secret(&a.client_secret_file)?;
    let subject = if let Some(path) = &x.subject_token_file {
        AssertionSource::file(path)
    } else if let Some(program) = &x.subject_token_command {
        AssertionSource::command(program.clone(), x.subject_token_args.clone())
    } else if x.subject_client_credentials {
        let subject_secret = match &x.subject_client_secret_file {
            Some(_) => read_secret(
                &x.subject_client_secret_file,
                "AUTHCORE_CLIENT_SECRET",
                "subject client secret",
            )?,
            None => secret.clone(),
        };
        let grant = ClientCredentials::new(
            x.subject_token_url
                .clone()
                .unwrap_or_else(|| token_url.clone()),
            x.subject_client_id
                .clone()
                .unwrap_or_else(|| client_id.clone()),
            subject_secret,
        )
        .scopes(split_scopes(&x.subject_scopes))
        .auth_method(method);
        AssertionSource::client(Client::new(grant, subject_options)?)
    } else {
        return Err(Error::Config {
            message: "--provider token-exchange needs a subject token: --subject-token-file, --subject-token-command or --subject-client-credentials"
                .into(),
        });
    };
    let type_of = |t: &Option<String>| {
        token_type::from_name(t.as_deref().unwrap_or("access_token")).to_owned()
    };
    let mut grant = TokenExchange::new(
        token_url,
        client_id,
        secret,
        subject,
        type_of(&x.subject_token_type),
    )
    .scopes(scopes)
    .resources(a.resources.clone())
    .audiences(x.audiences.clone())
    .auth_method(method);
    if let Some(path) = &x.actor_token_file {
        grant = grant.actor(AssertionSource::file(path), type_of(&x.actor_token_type));
    }
    if let Some(wanted) = &x.requested_token_type {
        grant = grant.requested_token_type(token_type::from_name(wanted));
    }
    if let Some(url) = revocation_url {
        grant = grant.revocation_url(url);
    }
    Ok(grant)
}

/// `authcore headers`: the request, and where its token comes from.
#[derive(clap::Args)]
struct HeadersArgs {
    /// The request's method.
    #[arg(long, default_value = "GET")]
    method: String,
    /// The request's URL (https, or http on loopback).
    #[arg(long)]
    url: String,
    /// The DPoP nonce the resource server asked for (the `DPoP-Nonce` header of its 401
    /// `use_dpop_nonce` answer), for the proof to carry.
    #[arg(long, value_name = "NONCE")]
    dpop_nonce: Option<String>,
    #[command(flatten)]
    token: TokenArgs,
}

/// Exit codes of `authcore token` (and `login`, `logout`).
mod exit {
    pub const CONFIG: u8 = 2;
    pub const REJECTED: u8 = 3;
    pub const UNREACHABLE: u8 = 4;
    pub const BAD_RESPONSE: u8 = 5;
    /// The token was printed, but a rotated refresh token could not be kept.
    pub const REFRESH_TOKEN_LOST: u8 = 6;
}

/// Prints authcore's warnings and errors (a store that cannot be used, a failed save)
/// to stderr, where an operator running `authcore token` sees them; stdout stays the
/// token alone.
struct StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::max_level() && m.target().starts_with("authcore")
    }

    fn log(&self, r: &log::Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let event = r.key_values().get(log::kv::Key::from("event"));
        // One failure, one line: the command's own error says what failed; the steps
        // that led to it are told only when asked for (-v).
        if log::max_level() < log::LevelFilter::Info
            && event
                .as_ref()
                .is_some_and(|e| TOLD_BY_THE_ERROR.contains(&e.to_string().as_str()))
        {
            return;
        }
        let level = match r.level() {
            log::Level::Error => "error",
            log::Level::Warn => "warning",
            log::Level::Info => "info",
            log::Level::Debug | log::Level::Trace => "debug",
        };
        match event {
            // The event's name first, for grep: `authcore: info [token.renewed]: …`.
            Some(event) if r.level() > log::Level::Warn => {
                eprintln!("authcore: {level} [{event}]: {}", r.args())
            }
            _ => eprintln!("authcore: {level}: {}", r.args()),
        }
    }

    fn flush(&self) {}
}

/// Warnings about a failure that the command then reports as its error (with the same
/// words), shown only with -v: at the default verbosity a failure is one line.
const TOLD_BY_THE_ERROR: [&str; 4] = [
    "token.request_failed",
    "token.renewal_failed",
    "backoff.entered",
    "wait.timed_out",
];

static STDERR_LOG: StderrLog = StderrLog;

/// The level of authcore's events shown for `-v` given `verbose` times.
fn verbosity(verbose: u8) -> log::LevelFilter {
    match verbose {
        0 => log::LevelFilter::Warn,
        1 => log::LevelFilter::Info,
        _ => log::LevelFilter::Debug,
    }
}

/// The exit of a command that printed credentials: success, or (when a rotated refresh
/// token could not be kept) the error saying that what was printed (`what`) is still
/// valid but the next call may need a new sign-in.
fn after_printing(refresh_token_lost: bool, what: &str) -> ExitCode {
    if !refresh_token_lost {
        return ExitCode::SUCCESS;
    }
    let _ = std::io::stdout().flush();
    eprintln!(
        "authcore: error: the refresh token rotated and the new one could not be kept \
         (see above); the {what} valid, but the next call may need a new sign-in"
    );
    ExitCode::from(exit::REFRESH_TOKEN_LOST)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if log::set_logger(&STDERR_LOG).is_ok() {
        log::set_max_level(verbosity(cli.verbose));
    }
    match cli.command {
        Command::Devserver {
            host,
            port,
            lifetime,
            tls_dir,
        } => devserver(host, port, lifetime, tls_dir),
        Command::Demo => match authcore_cli::demo::run() {
            Ok(0) => {
                println!("demo: every scenario behaved");
                ExitCode::SUCCESS
            }
            Ok(n) => {
                eprintln!("demo: {n} check(s) misbehaved");
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("demo: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Token(args) => match token(&args) {
            Ok(printed) => {
                println!("{}", printed.token.expose_secret());
                after_printing(printed.refresh_token_lost, "token printed is")
            }
            Err(e) => failed_for(&e, &args),
        },
        Command::Headers(args) => match headers(&args) {
            Ok(printed) => {
                for line in &printed.lines {
                    println!("{line}");
                }
                after_printing(printed.refresh_token_lost, "headers printed are")
            }
            Err(e) => failed_for(&e, &args.token),
        },
        Command::Login(args) => match login(&args) {
            Ok(()) => {
                let session = &args.login.session;
                // With the secret in the environment, the command works while it is there.
                let secret_from_env = session.client_secret_file.is_none()
                    && std::env::var_os("AUTHCORE_CLIENT_SECRET").is_some();
                eprintln!(
                    "Signed in; `{}` prints a fresh token{}.",
                    token_command(session),
                    if secret_from_env {
                        " (with AUTHCORE_CLIENT_SECRET set, as now)"
                    } else {
                        ""
                    }
                );
                ExitCode::SUCCESS
            }
            Err(e) => failed(&e),
        },
        Command::Logout(args) => match logout(&args) {
            Ok(Logout::SignedOut(outcome)) => signed_out(outcome),
            Ok(Logout::Offline { removed: true, why }) => {
                eprintln!(
                    "Signed out here: the session is removed from the store. {}, so nothing \
                     was revoked there: its refresh token stays valid at the provider until it \
                     expires. ({why})",
                    provider_failed(&why)
                );
                ExitCode::from(exit_code(&why))
            }
            Ok(Logout::Offline {
                removed: false,
                why,
            }) => {
                eprintln!(
                    "Not signed in: there is no session to sign out of. ({}, but there was \
                     nothing to revoke: {why})",
                    provider_failed(&why)
                );
                ExitCode::SUCCESS
            }
            Ok(Logout::NotFound { why }) => {
                eprintln!(
                    "authcore: nothing was removed or revoked: {}, and the store keeps no note \
                     of where a session of this issuer, client and profile would be (none was \
                     signed in by `authcore login` here, or it was signed in by an earlier \
                     version: sign out again once the provider can be reached)",
                    provider_failed(&why).to_lowercase()
                );
                failed(&why)
            }
            Ok(Logout::NotRemoved(e)) => {
                eprintln!("authcore: the session could not be removed from the store");
                failed(&e)
            }
            Err(e) => failed(&e),
        },
    }
}

/// What `authcore logout` says once the provider's metadata was had, and its exit code.
fn signed_out(outcome: SignOut) -> ExitCode {
    match outcome {
        SignOut::NotSignedIn => {
            eprintln!("Not signed in: there is no session to sign out of.");
            ExitCode::SUCCESS
        }
        SignOut::Revoked => {
            eprintln!(
                "Signed out: the session is revoked at the provider and removed from the store."
            );
            ExitCode::SUCCESS
        }
        SignOut::NoRevocationEndpoint => {
            eprintln!(
                "Signed out here: the session is removed from the store. The provider has no \
                 revocation endpoint, so it could not be revoked there: its refresh token stays \
                 valid at the provider until it expires."
            );
            ExitCode::SUCCESS
        }
        SignOut::RevocationFailed(e) if authcore_cli::login::unreachable(&e) => {
            eprintln!(
                "Signed out here: the session is removed from the store. The provider could \
                 not be reached to revoke it, so nothing was revoked there: its refresh token \
                 stays valid at the provider until it expires. ({e})"
            );
            ExitCode::from(exit_code(&e))
        }
        SignOut::RevocationFailed(e) => {
            eprintln!(
                "Signed out here: the session is removed from the store. The provider could \
                 not revoke it: {e}"
            );
            ExitCode::from(exit_code(&e))
        }
        _ => ExitCode::SUCCESS,
    }
}

/// Why the provider's metadata could not be had, as a sentence's start.
fn provider_failed(e: &Error) -> &'static str {
    if authcore_cli::login::unreachable(e) {
        "The provider could not be reached"
    } else {
        "The provider's metadata could not be had"
    }
}

fn failed(e: &Error) -> ExitCode {
    eprintln!("authcore: {e}");
    ExitCode::from(exit_code(e))
}

/// [`failed`] for `authcore token` and `headers`: a session `authcore login` made that
/// needs a new sign-in says, on the error's own line, the command that signs in again.
fn failed_for(e: &Error, args: &TokenArgs) -> ExitCode {
    match (&args.issuer, &args.client_id) {
        (Some(issuer), Some(client_id)) if e.kind() == ErrorKind::ReauthenticationRequired => {
            let login = SessionCommand {
                issuer,
                client_id,
                resources: &args.resources,
                store: args.store.clone(),
                store_key: args.store_key.as_ref(),
                client_secret_file: args.client_secret_file.as_ref(),
                ca_bundle: args.ca_bundle.as_ref(),
                cert: &args.cert,
            };
            eprintln!(
                "authcore: {}; sign in again: {}",
                e.to_string().trim_end_matches('.'),
                login.line("login")
            );
            ExitCode::from(exit_code(e))
        }
        _ => failed(e),
    }
}

/// This program as it was invoked (argv[0]; "authcore" when there is none).
fn program_name() -> String {
    std::env::args_os()
        .next()
        .filter(|p| !p.is_empty())
        .map_or_else(
            || "authcore".to_owned(),
            |p| p.to_string_lossy().into_owned(),
        )
}

/// The options `login` and `logout` talk to the provider with.
fn login_options(a: &SessionArgs) -> Result<Options, Error> {
    let options = Options::default().timeout(Duration::from_secs(a.timeout));
    let options = match &a.ca_bundle {
        Some(ca) => options.ca_bundle(ca),
        None => options,
    };
    a.cert.apply(options)
}

/// Where `login` and `logout` keep the session.
fn place(a: &SessionArgs) -> Result<Place, Error> {
    let dir = authcore_cli::login::store_dir(a.store.clone())?;
    Ok(Place::new(dir, a.store_key.as_deref()))
}

fn session(login: &LoginArgs) -> Result<authcore_cli::login::Session, Error> {
    let a = &login.session;
    authcore_cli::login::Session::new(
        &a.issuer,
        a.client_id.clone(),
        optional_client_secret(&a.client_secret_file)?,
        split_scopes(&login.scopes),
        a.resources.clone(),
        place(a)?,
        login_options(a)?,
    )
}

/// The `authcore token` command that prints a fresh token of the session `a` describes,
/// as one line a POSIX shell reads back into the same words: this program as it was
/// invoked, and every option that finds the session (issuer, client id, resources,
/// store, profile) and reaches its provider (client secret file, CA bundle, client
/// certificate). Nothing secret: a secret is named by its file, or left in
/// AUTHCORE_CLIENT_SECRET.
fn token_command(a: &SessionArgs) -> String {
    SessionCommand {
        issuer: &a.issuer,
        client_id: &a.client_id,
        resources: &a.resources,
        store: a.store.as_ref().map(|p| p.to_string_lossy().into_owned()),
        store_key: a.store_key.as_ref(),
        client_secret_file: a.client_secret_file.as_ref(),
        ca_bundle: a.ca_bundle.as_ref(),
        cert: &a.cert,
    }
    .line("token")
}

/// The options that find a session `authcore login` keeps and reach its provider, for
/// a command line that names them.
struct SessionCommand<'a> {
    issuer: &'a str,
    client_id: &'a str,
    resources: &'a [String],
    store: Option<String>,
    store_key: Option<&'a String>,
    client_secret_file: Option<&'a PathBuf>,
    ca_bundle: Option<&'a PathBuf>,
    cert: &'a CertArgs,
}

impl SessionCommand<'_> {
    /// `authcore SUBCOMMAND` with these options, as one line a POSIX shell reads back
    /// into the same words (this program named as it was invoked).
    fn line(&self, subcommand: &str) -> String {
        let mut words = vec![
            program_name(),
            subcommand.to_owned(),
            "--issuer".to_owned(),
            self.issuer.to_owned(),
            "--client-id".to_owned(),
            self.client_id.to_owned(),
        ];
        for resource in self.resources {
            words.extend(["--resource".to_owned(), resource.clone()]);
        }
        let path = |p: &PathBuf| p.to_string_lossy().into_owned();
        let options = [
            ("--store", self.store.clone()),
            ("--store-key", self.store_key.cloned()),
            ("--client-secret-file", self.client_secret_file.map(path)),
            ("--ca-bundle", self.ca_bundle.map(path)),
            ("--client-cert", self.cert.client_cert.as_ref().map(path)),
            ("--client-key", self.cert.client_key.as_ref().map(path)),
        ];
        for (flag, value) in options {
            if let Some(value) = value {
                words.extend([flag.to_owned(), value]);
            }
        }
        words
            .iter()
            .map(|w| shlex::try_quote(w).map_or_else(|_| w.clone(), |q| q.into_owned()))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn login(command: &LoginCommand) -> Result<(), Error> {
    let a = &command.login;
    let dpop = command.dpop.configured()?;
    let remembered = dpop.as_ref().map(|d| command.dpop.remembered(d));
    let mut session = session(a)?;
    if let Some(dpop) = dpop {
        session.options = session.options.dpop(dpop);
    }
    let wait = Duration::from_secs(a.wait);
    let client = if a.device {
        session.device_login(wait)?
    } else {
        session.browser_login(!a.no_browser, wait)?
    };
    client.token()?;
    if client.has_unsaved_refresh_token() {
        // Said above (`store.save_failed`): the session would end with this process.
        return Err(Error::Store {
            message: "the sign-in could not be saved to the token store; sign in again once it \
                      can be written"
                .into(),
        });
    }
    if let Err(e) = session.note_where_kept(remembered) {
        eprintln!(
            "authcore: warning: {e}: `authcore logout` will find this session only while the \
             provider can be reached"
        );
    }
    Ok(())
}

fn logout(a: &SessionArgs) -> Result<Logout, Error> {
    authcore_cli::login::logout(
        &a.issuer,
        a.client_id.clone(),
        optional_client_secret(&a.client_secret_file)?,
        a.resources.clone(),
        place(a)?,
        login_options(a)?,
    )
}

/// What `authcore token` printed, and whether a rotated refresh token was lost.
struct Printed {
    token: Secret,
    refresh_token_lost: bool,
}

/// The client `authcore token` and `authcore headers` take tokens from, and where a
/// rotated refresh token of it goes.
struct Built {
    client: Client,
    keeping: Keeping,
}

/// Where a rotated refresh token is kept (for exit 6).
enum Keeping {
    /// Nowhere needed: the grant renews with a credential of its own (or cannot renew).
    Own,
    /// In the store.
    Store,
    /// By the refresh-token hook: in --refresh-token-file, else in the store (`stored`).
    Hook { kept: Arc<Kept>, stored: bool },
}

impl Built {
    fn own(client: Client) -> Built {
        Built {
            client,
            keeping: Keeping::Own,
        }
    }

    /// Whether a refresh token rotated and the new one could not be kept.
    fn refresh_token_lost(&self) -> bool {
        match &self.keeping {
            Keeping::Own => false,
            Keeping::Store => self.client.has_unsaved_refresh_token(),
            // Kept if the file took it, or (with a store) the store did.
            Keeping::Hook { kept, stored } => match (kept.rotated(), kept.in_file(), *stored) {
                (_, true, _) => false,
                (_, false, true) => self.client.has_unsaved_refresh_token(),
                (rotated, false, false) => rotated,
            },
        }
    }
}

/// `authcore token --issuer`: client credentials at the discovered token endpoint, or
/// the session `authcore login` keeps in the file store (DPoP-bound as it was signed in,
/// unless DPoP options say otherwise).
fn issuer_client(
    a: &TokenArgs,
    issuer: &str,
    mut options: Options,
    scopes: Vec<String>,
    method: AuthMethod,
) -> Result<Built, Error> {
    let client_id = required(&a.client_id, "--client-id")?;
    match a.provider {
        Some(Provider::TokenExchange) => {
            let metadata = authcore::Metadata::discover(issuer, &options)?;
            let grant = token_exchange_grant(
                a,
                metadata.require_token_endpoint()?.to_owned(),
                metadata.revocation_endpoint.clone(),
                subject_options(a),
                scopes,
                method,
            )?;
            Ok(Built::own(Client::new(grant, options)?))
        }
        Some(Provider::ClientCredentials) => {
            let assertion = a.workload.client_assertion();
            let secret = match assertion {
                Some(_) => Secret::new(""),
                None => client_secret(a, method)?,
            };
            let metadata = authcore::Metadata::discover(issuer, &options)?;
            let mut grant = ClientCredentials::from_metadata(&metadata, client_id, secret)?
                .scopes(scopes)
                .resources(a.resources.clone())
                .auth_method(method);
            if let Some(source) = assertion {
                grant = grant.client_assertion(source);
            }
            Ok(Built::own(Client::new(grant, options)?))
        }
        Some(Provider::JwtBearer) => {
            let metadata = authcore::Metadata::discover(issuer, &options)?;
            let grant = a
                .workload
                .jwt_bearer(metadata.require_token_endpoint()?.to_owned())?;
            let grant = authenticated_bearer(a, grant, Some(client_id), method)?
                .scopes(scopes)
                .resources(a.resources.clone());
            Ok(Built::own(Client::new(grant, options)?))
        }
        None | Some(Provider::RefreshToken) => {
            let secret = optional_client_secret(&a.client_secret_file)?;
            let dir = match &a.store {
                Some(s) if RedisStore::is_url(s) => {
                    return Err(Error::Config {
                        message: "a signed-in session lives in a directory store (--store DIR)"
                            .into(),
                    })
                }
                Some(s) => PathBuf::from(s),
                None => authcore_cli::login::store_dir(None)?,
            };
            let place = Place::new(dir, a.store_key.as_deref());
            if options.dpop_config().is_none() {
                let remembered =
                    authcore_cli::login::remembered_dpop(&place, issuer, &client_id, &a.resources);
                if let Some(setting) = remembered {
                    options = options.dpop(setting.dpop()?);
                }
            }
            let session = authcore_cli::login::Session::new(
                issuer,
                client_id,
                secret,
                scopes,
                a.resources.clone(),
                place,
                options,
            )?;
            Ok(Built {
                client: session.client()?,
                keeping: Keeping::Store,
            })
        }
        Some(_) => Err(Error::Config {
            message: "--issuer works with --provider client-credentials, refresh-token, \
                      jwt-bearer or token-exchange"
                .into(),
        }),
    }
}

fn split_scopes(scopes: &[String]) -> Vec<String> {
    scopes
        .iter()
        .flat_map(|s| s.split_whitespace().map(str::to_owned))
        .collect()
}

fn devserver(host: IpAddr, port: u16, lifetime: u64, tls_dir: Option<PathBuf>) -> ExitCode {
    let creds = Credentials::default();
    let addr = SocketAddr::new(host, port);
    let started = match &tls_dir {
        Some(dir) => DevServer::start_tls(addr, creds.clone(), dir),
        None => DevServer::start(addr, creds.clone()),
    };
    let server = match started {
        Ok(s) => s,
        Err(e) => {
            eprintln!("authcore devserver: {e}");
            return ExitCode::from(exit::CONFIG);
        }
    };
    if let Err(e) = server.set_behaviour(Behaviour {
        lifetime_secs: lifetime,
        ..Behaviour::default()
    }) {
        eprintln!("authcore devserver: {e}");
        return ExitCode::from(exit::CONFIG);
    }
    println!("authcore development provider (test credentials, loopback only)");
    println!(
        "  api.video  POST {0}/auth/api-key  api key: {1}",
        server.url(),
        creds.api_key
    );
    println!(
        "  viewneo    {0}/oauth/authorize, POST {0}/oauth/token (JSON)",
        server.url()
    );
    println!(
        "  OAuth 2.0  {0}/oauth2/authorize, POST {0}/oauth2/token (form)",
        server.url()
    );
    println!(
        "             client id: {}  client secret: {}",
        creds.client_id, creds.client_secret
    );
    println!(
        "             public client id: {} (no secret: code with PKCE, device, refresh)",
        creds.public_client_id
    );
    println!("             scopes: {}", creds.scopes.join(" "));
    println!("  personal access token: {}", creds.personal_access_token);
    println!(
        "  resource   {0}/api/...   control {0}/_control/...",
        server.url()
    );
    if let Some(dir) = &tls_dir {
        println!("AUTHCORE_DEVSERVER_CA={}", dir.join("ca.pem").display());
    }
    println!("AUTHCORE_DEVSERVER_URL={}", server.url());
    let _ = std::io::stdout().flush();
    server.wait();
    ExitCode::SUCCESS
}

fn read_secret(file: &Option<PathBuf>, var: &str, what: &str) -> Result<Secret, Error> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
            message: format!("cannot read {what} from {}: {e}", path.display()),
        })?;
        return Ok(Secret::new(text.trim().to_owned()));
    }
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Ok(Secret::new(v.trim().to_owned())),
        _ => Err(Error::Config {
            message: format!("no {what}: set {var} or pass the matching --*-file option"),
        }),
    }
}

/// The client secret `method` needs: none for the mutual-TLS methods (the certificate
/// authenticates), else from the file or AUTHCORE_CLIENT_SECRET.
fn client_secret(a: &TokenArgs, method: AuthMethod) -> Result<Secret, Error> {
    if method.is_mutual_tls() {
        return Ok(Secret::new(""));
    }
    read_secret(
        &a.client_secret_file,
        "AUTHCORE_CLIENT_SECRET",
        "client secret",
    )
}

/// The client secret if one is given (file or AUTHCORE_CLIENT_SECRET), else none: a
/// public client.
fn optional_client_secret(file: &Option<PathBuf>) -> Result<Secret, Error> {
    if file.is_some() || std::env::var_os("AUTHCORE_CLIENT_SECRET").is_some() {
        read_secret(file, "AUTHCORE_CLIENT_SECRET", "client secret")
    } else {
        Ok(Secret::new(""))
    }
}

fn required(value: &Option<String>, flag: &str) -> Result<String, Error> {
    value.clone().ok_or_else(|| Error::Config {
        message: format!("{flag} is required for this provider"),
    })
}

/// A JWT bearer grant with the client's own authentication when `client_id` is given:
/// a client assertion, a client secret (file or AUTHCORE_CLIENT_SECRET), or none (a
/// public client, its id in the body).
fn authenticated_bearer(
    a: &TokenArgs,
    grant: JwtBearer,
    client_id: Option<String>,
    method: AuthMethod,
) -> Result<JwtBearer, Error> {
    let assertion = a.workload.client_assertion();
    let Some(client_id) = client_id else {
        if assertion.is_some() || a.client_secret_file.is_some() {
            return Err(Error::Config {
                message: "client authentication needs --client-id".into(),
            });
        }
        return Ok(grant);
    };
    Ok(match assertion {
        Some(source) => grant.client(client_id, "").client_assertion(source),
        None => grant
            .client(client_id, optional_client_secret(&a.client_secret_file)?)
            .auth_method(method),
    })
}

/// `authcore token`: the token, and whether a rotated refresh token was lost.
fn token(a: &TokenArgs) -> Result<Printed, Error> {
    let built = client(a)?;
    let token = built.client.token()?;
    // A bound token is worth something only with proofs by its key: say so when that
    // key ends with this process (generated here, kept in no store).
    if token.dpop_key().is_some() && a.dpop.dpop_key.is_none() && built.client.store_key().is_none()
    {
        eprintln!(
            "authcore: warning: this token is DPoP-bound to a key generated for this run and \
             kept nowhere; every request with it needs a proof by that key. Use `authcore \
             headers`, keep the key with --store, or give one with --dpop-key"
        );
    }
    let token = token.access_token().clone();
    Ok(Printed {
        token,
        refresh_token_lost: built.refresh_token_lost(),
    })
}

/// What `authcore headers` printed, and whether a rotated refresh token was lost.
struct Headers {
    lines: Vec<String>,
    refresh_token_lost: bool,
}

/// `authcore headers`: the `Authorization` header (and the `DPoP` proof of a
/// DPoP-bound token) for one request, one `Name: value` per line.
fn headers(h: &HeadersArgs) -> Result<Headers, Error> {
    let built = client(&h.token)?;
    if let Some(nonce) = &h.dpop_nonce {
        if !authcore::is_valid_dpop_nonce(nonce) {
            return Err(Error::Config {
                message: "--dpop-nonce is not a nonce a server could send (RFC 9449: visible \
                          ASCII except '\"' and '\\', at most 4096 bytes)"
                    .into(),
            });
        }
        // Remembered for the URL's origin, as if its server had just sent it.
        built
            .client
            .dpop_nonce_retry(&h.url, 200, None, Some(nonce));
    }
    let headers = built.client.request_headers(&h.method, &h.url)?;
    let mut lines = vec![format!(
        "Authorization: {}",
        headers.authorization.expose_secret()
    )];
    if let Some(proof) = &headers.dpop {
        lines.push(format!("DPoP: {}", proof.expose_secret()));
    }
    Ok(Headers {
        lines,
        refresh_token_lost: built.refresh_token_lost(),
    })
}

/// The options every client of `authcore token` shares: timeout, retries, proxy,
/// expiry margin, trusted CAs (no store, no DPoP).
fn base_options(a: &TokenArgs) -> Options {
    let proxy = match a.proxy.as_deref() {
        None => Proxy::Environment,
        Some("") => Proxy::None,
        Some(url) => Proxy::Url(url.to_owned()),
    };
    let options = Options::default()
        .timeout(Duration::from_secs(a.timeout))
        .max_retries(2)
        .proxy(proxy)
        .expiry_margin(Duration::from_secs(a.expiry_margin.unwrap_or(0)));
    match &a.ca_bundle {
        Some(ca) => options.ca_bundle(ca),
        None => options,
    }
}

/// The options of a token exchange's chained subject client: its tokens are this
/// process's own (not in the store, not DPoP-bound).
fn subject_options(a: &TokenArgs) -> Options {
    base_options(a)
}

/// The client `authcore token`'s options describe.
fn client(a: &TokenArgs) -> Result<Built, Error> {
    if a.exchange.given() && !matches!(a.provider, Some(Provider::TokenExchange)) {
        return Err(Error::Config {
            message: "the --subject-*, --actor-*, --audience and --requested-token-type options \
                      are for --provider token-exchange"
                .into(),
        });
    }
    let mut options = base_options(a);
    options = a.cert.apply(options)?;
    if let (Some(name), Some(_), None) = (&a.store_key, &a.store, &a.issuer) {
        options = options.store_key(name);
    }
    if let Some(store) = &a.store {
        options = if let Some(ca) = &a.store_ca {
            options.store(std::sync::Arc::new(RedisStore::with_ca_file(store, ca)?))
        } else if RedisStore::is_url(store) {
            options.store(std::sync::Arc::new(RedisStore::new(store)?))
        } else {
            options.store(std::sync::Arc::new(FileStore::new(store)?))
        };
    }
    if matches!(a.provider, Some(Provider::PersonalAccessToken)) && a.dpop.requested() {
        return Err(Error::Config {
            message: "a personal access token is a bearer token: it cannot be DPoP-bound".into(),
        });
    }
    if let Some(dpop) = a.dpop.configured()? {
        options = options.dpop(dpop);
    }
    let scopes = split_scopes(&a.scopes);
    let method = match a.auth_method {
        Method::Basic => AuthMethod::ClientSecretBasic,
        Method::BasicRaw => AuthMethod::ClientSecretBasicRaw,
        Method::Post => AuthMethod::ClientSecretPost,
        Method::TlsClientAuth => AuthMethod::TlsClientAuth,
        Method::SelfSignedTlsClientAuth => AuthMethod::SelfSignedTlsClientAuth,
    };
    if a.workload.grant_requested() && !matches!(a.provider, Some(Provider::JwtBearer)) {
        return Err(Error::Config {
            message: "--assertion-file, --assertion-command and --signing-key are for \
                      --provider jwt-bearer"
                .into(),
        });
    }
    if let Some(issuer) = &a.issuer {
        return issuer_client(a, issuer, options, scopes, method);
    }
    let Some(provider) = a.provider else {
        return Err(Error::Config {
            message: "--provider or --issuer is required".into(),
        });
    };
    if a.workload.client_assertion().is_some()
        && matches!(
            provider,
            Provider::PersonalAccessToken | Provider::ApiVideo | Provider::ApiVideoSandbox
        )
    {
        return Err(Error::Config {
            message: "a client assertion is for OAuth 2.0 clients (client-credentials, \
                      refresh-token, jwt-bearer, vibe)"
                .into(),
        });
    }
    let client = match provider {
        Provider::TokenExchange => {
            let grant = token_exchange_grant(
                a,
                required(&a.token_url, "--token-url")?,
                None,
                subject_options(a),
                scopes,
                method,
            )?;
            Client::new(grant, options)?
        }
        Provider::PersonalAccessToken => Client::personal_access_token(read_secret(
            &a.token_file,
            "AUTHCORE_TOKEN",
            "personal access token",
        )?),
        Provider::ApiVideo | Provider::ApiVideoSandbox => {
            let key = read_secret(&a.api_key_file, "AUTHCORE_API_KEY", "api.video API key")?;
            let grant = match (&a.base_url, provider) {
                (Some(url), _) => ApiKey::with_base_url(url.clone(), key),
                (None, Provider::ApiVideoSandbox) => ApiKey::sandbox(key),
                (None, _) => ApiKey::production(key),
            };
            Client::new(grant, options)?
        }
        Provider::Vibe | Provider::ClientCredentials => {
            let url = match (provider, &a.token_url) {
                (_, Some(u)) => u.clone(),
                (Provider::Vibe, None) => authcore::provider::VIBE_TOKEN_URL.to_owned(),
                _ => required(&a.token_url, "--token-url")?,
            };
            let assertion = a.workload.client_assertion();
            let secret = match assertion {
                Some(_) => Secret::new(""),
                None => client_secret(a, method)?,
            };
            let mut grant =
                ClientCredentials::new(url, required(&a.client_id, "--client-id")?, secret)
                    .scopes(scopes)
                    .resources(a.resources.clone())
                    .auth_method(method);
            if let Some(source) = assertion {
                grant = grant.client_assertion(source);
            }
            Client::new(grant, options)?
        }
        Provider::JwtBearer => {
            let grant = a
                .workload
                .jwt_bearer(required(&a.token_url, "--token-url")?)?;
            let grant = authenticated_bearer(a, grant, a.client_id.clone(), method)?
                .scopes(scopes)
                .resources(a.resources.clone());
            Client::new(grant, options)?
        }
        Provider::RefreshToken => {
            let assertion = a.workload.client_assertion();
            let secret = match assertion {
                Some(_) => Secret::new(""),
                None => client_secret(a, method)?,
            };
            let rt = read_secret(
                &a.refresh_token_file,
                "AUTHCORE_REFRESH_TOKEN",
                "refresh token",
            )?;
            let mut grant = RefreshToken::new(
                required(&a.token_url, "--token-url")?,
                required(&a.client_id, "--client-id")?,
                secret,
                rt,
            )
            .auth_method(method);
            if let Some(source) = assertion {
                grant = grant.client_assertion(source);
            }
            if a.json_body {
                grant = grant.json_body();
            }
            let file = a.refresh_token_file.clone();
            let stored = a.store.is_some();
            let kept = Arc::new(Kept::default());
            let hook = Arc::clone(&kept);
            let options =
                options.on_refresh_token(move |new| hook.persist(file.as_ref(), stored, new));
            return Ok(Built {
                client: Client::new(grant, options)?,
                keeping: Keeping::Hook { kept, stored },
            });
        }
    };
    Ok(Built::own(client))
}

/// Where the latest rotated refresh token of `authcore token --provider refresh-token`
/// went.
#[derive(Default)]
struct Kept {
    /// The refresh token rotated.
    rotated: AtomicBool,
    /// The latest one was written to --refresh-token-file.
    in_file: AtomicBool,
}

impl Kept {
    fn rotated(&self) -> bool {
        self.rotated.load(Ordering::SeqCst)
    }

    fn in_file(&self) -> bool {
        self.in_file.load(Ordering::SeqCst)
    }

    /// Keeps a rotated refresh token: rewrites the file it came from (atomically), or,
    /// when it came from the environment and there is no store (`stored`) to keep it,
    /// warns that it cannot be kept.
    fn persist(&self, file: Option<&PathBuf>, stored: bool, token: &Secret) -> std::io::Result<()> {
        self.rotated.store(true, Ordering::SeqCst);
        self.in_file.store(false, Ordering::SeqCst);
        let Some(path) = file else {
            if !stored {
                eprintln!("authcore: warning: the refresh token rotated; pass --refresh-token-file (or --store) to keep the new one");
            }
            return Ok(());
        };
        replace_file(path, token.expose_secret().as_bytes())
            .inspect(|()| self.in_file.store(true, Ordering::SeqCst))
            .inspect_err(|e| {
                eprintln!(
                    "authcore: warning: could not save the rotated refresh token to {}: {e}",
                    path.display()
                );
            })
    }
}

/// Replaces `path` with `contents` so that a crash leaves either the old file or the
/// new one: a temporary file created exclusively in the same directory, with mode 0600
/// (never wider than the original's), written and fsynced, renamed over `path`, and
/// the directory fsynced.
fn replace_file(path: &std::path::Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".authcore-")
        .suffix(".tmp")
        .tempfile_in(&dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let original = std::fs::metadata(path).map_or(0o600, |m| m.permissions().mode());
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(original & 0o600))?;
    }
    tmp.write_all(contents)?;
    tmp.write_all(b"\n")?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    #[cfg(unix)]
    std::fs::File::open(&dir)?.sync_all()?;
    Ok(())
}

fn exit_code(e: &Error) -> u8 {
    match e.kind() {
        ErrorKind::Config => exit::CONFIG,
        // A server error (5xx), whatever its body (an OAuth error, a problem, a load
        // balancer's HTML page), says the endpoint is unwell, not that the credentials
        // were refused or that it answers nonsense.
        ErrorKind::OAuth | ErrorKind::ApiProblem | ErrorKind::InvalidResponse
            if e.http_status().is_some_and(|s| s >= 500) =>
        {
            exit::UNREACHABLE
        }
        ErrorKind::OAuth
        | ErrorKind::ApiProblem
        | ErrorKind::ReauthenticationRequired
        | ErrorKind::StateMismatch
        | ErrorKind::IssuerMismatch => exit::REJECTED,
        ErrorKind::Transport | ErrorKind::Timeout | ErrorKind::Store => exit::UNREACHABLE,
        _ => exit::BAD_RESPONSE,
    }
}
