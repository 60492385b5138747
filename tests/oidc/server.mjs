// A certified OpenID Provider (panva/oidc-provider) for authcore's interoperability
// tests, on a free loopback port. Prints `OIDC_ISSUER=http://127.0.0.1:PORT` once it
// listens; stops on SIGTERM/SIGINT or when its stdin closes (so a test that dies takes
// it along).
//
// Users sign in without a page: every interaction (login, then consent to what the
// client asked for) is approved at once for the account `test-user`, so a test's
// "browser" only follows redirects and submits the device-flow forms.
//
// Environment: AUTHCORE_OIDC_CLIENT_KEY — a PEM public key registered for the
// `jwt-client` client (private_key_jwt). AUTHCORE_OIDC_FEDERATED_KEY — the PEM public
// key of a workload identity issuer (what a Kubernetes cluster or a CI system is to a
// cloud provider): served as a JWKS at /test-issuer/jwks and registered as the
// `jwks_uri` of the `federated` client, which authenticates with the assertions that
// issuer signs (RFC 7523 §2.2; oidc-provider wants `iss` = `sub` = the client id).
// Without it the server makes that issuer's ES256 key pair itself and signs such
// assertions on request: `POST /test-issuer/mint` with `{"ttl_s": N}` (negative: already
// expired) answers `{"jwt": "..."}` (`iss` = `sub` = `federated`, `aud` the token
// endpoint, a fresh `jti`), for tests that cannot sign a JWT themselves.
//
// AUTHCORE_OIDC_TLS_DIR — mutual TLS (RFC 8705): the server speaks HTTPS with
// `server.pem`/`server.key` from that directory (issued by `ca.pem` for 127.0.0.1 and
// localhost; tests/oidc/make-certs.sh makes them all), and prints its issuer as
// `https://` (then `OIDC_MTLS_BASE=https://127.0.0.1:PORT`). A second HTTPS listener asks every connection for a client certificate
// (`requestCert`; any or none is accepted at the handshake, `ca.pem` decides whether it
// is authorized) and serves the same provider: discovery names it in
// `mtls_endpoint_aliases`. Clients: `mtls` (`tls_client_auth`, a certificate from
// `ca.pem` with subject `CN=mtls-client`) and `mtls-self` (`self_signed_tls_client_auth`,
// the certificate in `self-signed.pem`), both with certificate-bound access tokens
// (`cnf.x5t#S256`). `GET /test-api` on the mTLS listener is a resource server: it
// answers a live access token of this provider with its client and binding, and refuses
// (401 invalid_token) a token bound to a certificate the connection did not present.

import { createServer } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import { readFileSync } from 'node:fs';
import {
  X509Certificate, createPublicKey, generateKeyPairSync, hash, randomBytes, randomUUID, sign,
} from 'node:crypto';
import { join } from 'node:path';
import Provider, { errors } from 'oidc-provider';

const API = 'https://api.example.test/';
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const REDIRECT = 'http://127.0.0.1/callback';

const clients = [
  {
    client_id: 'cc-basic',
    client_secret: 'cc-basic-secret-0123456789',
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: 'api:read',
  },
  {
    client_id: 'cc-post',
    client_secret: 'cc-post-secret-0123456789',
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_post',
    scope: 'api:read',
  },
  {
    // A service that exchanges another client's access token (RFC 8693) for its own.
    client_id: 'exchanger',
    client_secret: 'exchanger-secret-0123456789',
    grant_types: [TOKEN_EXCHANGE],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: 'api:read',
  },
  {
    // A confidential web app: code + PKCE, refresh tokens.
    client_id: 'app',
    client_secret: 'app-secret-0123456789',
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    redirect_uris: [REDIRECT],
    application_type: 'native',
    token_endpoint_auth_method: 'client_secret_basic',
  },
  {
    // A public native client (a CLI): loopback redirect on any port, device flow.
    client_id: 'cli',
    grant_types: [
      'authorization_code',
      'refresh_token',
      'urn:ietf:params:oauth:grant-type:device_code',
    ],
    response_types: ['code'],
    redirect_uris: [REDIRECT],
    application_type: 'native',
    token_endpoint_auth_method: 'none',
  },
];

if (process.env.AUTHCORE_OIDC_CLIENT_KEY) {
  const jwk = createPublicKey(readFileSync(process.env.AUTHCORE_OIDC_CLIENT_KEY)).export({
    format: 'jwk',
  });
  clients.push({
    client_id: 'jwt-client',
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: jwk.kty === 'RSA' ? 'RS256' : jwk.kty === 'OKP' ? 'EdDSA' : 'ES256',
    jwks: { keys: [jwk] },
    scope: 'api:read',
  });
}

// The workload identity issuer's public key, and its private key when made here. The key
// pair is made when first needed, not at start-up: a start that generated one has been
// seen to stall on a loaded machine, and most runs never use it.
let federatedPublic;
let federatedSigner;
if (process.env.AUTHCORE_OIDC_FEDERATED_KEY) {
  federatedPublic = createPublicKey(readFileSync(process.env.AUTHCORE_OIDC_FEDERATED_KEY));
}
function federatedKeys() {
  if (!federatedPublic) {
    const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    federatedPublic = pair.publicKey;
    federatedSigner = pair.privateKey;
  }
  return { signer: federatedSigner, jwks: JSON.stringify({
    keys: [{ ...federatedPublic.export({ format: 'jwk' }), use: 'sig' }],
  }) };
}

const tlsDir = process.env.AUTHCORE_OIDC_TLS_DIR;
const tls = tlsDir && {
  ca: readFileSync(join(tlsDir, 'ca.pem')),
  cert: readFileSync(join(tlsDir, 'server.pem')),
  key: readFileSync(join(tlsDir, 'server.key')),
};
const server = tls ? createTlsServer(tls) : createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `${tls ? 'https' : 'http'}://127.0.0.1:${server.address().port}`;
const mtlsServer = tls && createTlsServer({ ...tls, requestCert: true, rejectUnauthorized: false });
if (mtlsServer) await new Promise((resolve) => mtlsServer.listen(0, '127.0.0.1', resolve));
const mtlsBase = mtlsServer && `https://127.0.0.1:${mtlsServer.address().port}`;

// The certificate a connection presented (an X509Certificate), or undefined.
const peerCertificate = (socket) => socket.getPeerX509Certificate?.() || undefined;
const thumbprint = (cert) => hash('sha256', cert.raw, 'base64url');

if (tls) {
  const selfSigned = readFileSync(join(tlsDir, 'self-signed.pem'), 'utf8');
  const x5c = new X509Certificate(selfSigned).raw.toString('base64');
  const mtlsClient = {
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    scope: 'api:read',
    tls_client_certificate_bound_access_tokens: true,
  };
  clients.push(
    {
      ...mtlsClient,
      client_id: 'mtls',
      token_endpoint_auth_method: 'tls_client_auth',
      tls_client_auth_subject_dn: 'CN=mtls-client',
    },
    {
      ...mtlsClient,
      client_id: 'mtls-self',
      token_endpoint_auth_method: 'self_signed_tls_client_auth',
      jwks: { keys: [{ ...createPublicKey(selfSigned).export({ format: 'jwk' }), x5c: [x5c] }] },
    },
  );
}

{
  clients.push({
    client_id: 'federated',
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: 'ES256',
    jwks_uri: `${issuer}/test-issuer/jwks`,
    scope: 'api:read',
  });
}

const provider = new Provider(issuer, {
  clients,
  // The test issuer's JWKS is on this loopback server: oidc-provider's guard against
  // requests to special-use addresses is lifted for that one URL only.
  fetch: (url, options) => {
    if (String(url) === `${issuer}/test-issuer/jwks`) delete options.dispatcher;
    return globalThis.fetch(url, options);
  },
  scopes: ['openid', 'offline_access', 'api:read'],
  findAccount: async (_ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
  features: {
    mTLS: {
      enabled: Boolean(tls),
      certificateBoundAccessTokens: true,
      tlsClientAuth: true,
      selfSignedTlsClientAuth: true,
      getCertificate: (ctx) => peerCertificate(ctx.socket),
      certificateAuthorized: (ctx) => ctx.socket.authorized === true,
      certificateSubjectMatches: (ctx, property, expected) =>
        property === 'tls_client_auth_subject_dn' &&
        peerCertificate(ctx.socket)?.subject.split('\n').join(', ') === expected,
    },
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    deviceFlow: { enabled: true },
    revocation: { enabled: true },
    introspection: { enabled: true },
    // DPoP (RFC 9449) for any client that sends a proof, with server nonces demanded
    // at the token endpoint and at userinfo (which verifies proofs as a resource
    // server would).
    dPoP: { enabled: true, nonceSecret: randomBytes(32), requireNonce: () => true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => undefined,
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, resource) => {
        if (resource !== API) throw new Error('unknown resource');
        return { scope: 'api:read', audience: API, accessTokenFormat: 'jwt', accessTokenTTL: 300 };
      },
    },
  },
  // Refresh tokens for every client allowed to use them, rotated on each use.
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: true,
  clientAuthMethods: [
    'client_secret_basic',
    'client_secret_jwt',
    'client_secret_post',
    'private_key_jwt',
    'none',
    ...(tls ? ['tls_client_auth', 'self_signed_tls_client_auth'] : []),
  ],
  enabledJWA: { dPoPSigningAlgValues: ['ES256', 'EdDSA', 'RS256'] },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  ttl: { AccessToken: 120, ClientCredentials: 120, DeviceCode: 120, RefreshToken: 3600 },
  discovery: mtlsBase
    ? {
        mtls_endpoint_aliases: {
          token_endpoint: `${mtlsBase}/token`,
          revocation_endpoint: `${mtlsBase}/token/revocation`,
          introspection_endpoint: `${mtlsBase}/token/introspection`,
          device_authorization_endpoint: `${mtlsBase}/device/auth`,
          userinfo_endpoint: `${mtlsBase}/me`,
        },
      }
    : {},
});
provider.proxy = false;

// Token exchange (RFC 8693), which oidc-provider leaves to the deployment: a live opaque
// access token of this provider (client credentials or a user's) is exchanged for one
// issued to the calling client, for the audience asked; anything else is invalid_grant.
provider.registerGrantType(
  TOKEN_EXCHANGE,
  async (ctx) => {
    const { client, params } = ctx.oidc;
    if (params.subject_token_type !== ACCESS_TOKEN_TYPE) {
      throw new errors.InvalidRequest('subject_token_type must be an access token type');
    }
    if (params.requested_token_type && params.requested_token_type !== ACCESS_TOKEN_TYPE) {
      throw new errors.InvalidRequest('only access tokens are issued');
    }
    const subject =
      (await provider.ClientCredentials.find(params.subject_token)) ||
      (await provider.AccessToken.find(params.subject_token));
    if (!subject || subject.isExpired) {
      throw new errors.InvalidGrant('the subject token is not active');
    }
    const scope = params.scope || 'api:read';
    if (!scope.split(' ').every((s) => client.scope.split(' ').includes(s))) {
      throw new errors.InvalidScope('scope not allowed', scope);
    }
    const token = new provider.ClientCredentials({
      client,
      scope,
      extra: { act: { sub: subject.accountId || subject.clientId } },
    });
    if (params.audience) token.aud = params.audience;
    ctx.body = {
      access_token: await token.save(),
      issued_token_type: ACCESS_TOKEN_TYPE,
      token_type: 'Bearer',
      expires_in: token.expiration,
      scope,
    };
  },
  ['subject_token', 'subject_token_type', 'actor_token', 'actor_token_type', 'audience',
    'requested_token_type', 'scope'],
);

// Every interaction is approved at once: login as test-user, then consent to all asked.
async function approve(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params, session } = details;
  let result;
  if (prompt.name === 'login') {
    result = { login: { accountId: 'test-user' } };
  } else {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const missing = prompt.details;
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes || {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    result = { consent: { grantId: await grant.save() } };
  }
  await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: true });
}

// An assertion of the test issuer about the `federated` client, valid for `ttlS` seconds.
function mint(ttlS) {
  const now = Math.floor(Date.now() / 1000);
  const part = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const input = `${part({ alg: 'ES256', typ: 'JWT' })}.${part({
    iss: 'federated',
    sub: 'federated',
    aud: `${issuer}/token`,
    iat: now - 1,
    exp: now + ttlS,
    jti: randomUUID(),
  })}`;
  const signature = sign('sha256', Buffer.from(input), {
    key: federatedKeys().signer,
    dsaEncoding: 'ieee-p1363',
  });
  return `${input}.${signature.toString('base64url')}`;
}

async function mintRequest(req, res) {
  let body = '';
  for await (const chunk of req) {
    body += chunk;
    if (body.length > 4096) throw new Error('too large');
  }
  const ttlS = JSON.parse(body || '{}').ttl_s ?? 300;
  if (!Number.isInteger(ttlS)) throw new Error('ttl_s must be an integer');
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ jwt: mint(ttlS) }));
}

// A resource server on the mTLS listener (RFC 8705 §3): a live access token of this
// provider is taken only on a connection that presents the certificate it is bound to.
async function testApi(req, res) {
  const [scheme, value] = (req.headers.authorization || '').split(' ');
  const token =
    scheme === 'Bearer' && value &&
    ((await provider.ClientCredentials.find(value)) || (await provider.AccessToken.find(value)));
  const cert = peerCertificate(req.socket);
  const bound = token && token['x5t#S256'];
  const refuse = !token || token.isExpired || (bound && (!cert || thumbprint(cert) !== bound));
  res.setHeader('content-type', 'application/json');
  if (refuse) {
    res.statusCode = 401;
    res.setHeader('www-authenticate', 'Bearer error="invalid_token"');
    res.end('{"error":"invalid_token"}');
    return;
  }
  res.end(JSON.stringify({ client_id: token.clientId, cnf: bound ? { 'x5t#S256': bound } : undefined }));
}

const callback = provider.callback();
mtlsServer?.on('request', (req, res) => {
  if (req.url === '/test-api' && req.method === 'GET') {
    testApi(req, res).catch((e) => {
      res.statusCode = 500;
      res.end(String(e));
    });
    return;
  }
  callback(req, res);
});
server.on('request', (req, res) => {
  if (req.url === '/test-issuer/mint' && req.method === 'POST' && !process.env.AUTHCORE_OIDC_FEDERATED_KEY) {
    mintRequest(req, res).catch((e) => {
      res.statusCode = 400;
      res.end(String(e));
    });
    return;
  }
  if (req.url === '/test-issuer/jwks') {
    res.setHeader('content-type', 'application/json');
    res.end(federatedKeys().jwks);
    return;
  }
  if (req.url.startsWith('/interaction/')) {
    approve(req, res).catch((e) => {
      res.statusCode = 500;
      res.end(String(e));
    });
    return;
  }
  callback(req, res);
});

const stop = () => {
  mtlsServer?.close();
  server.close(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.on('end', stop);
process.stdin.resume();
console.log(`OIDC_ISSUER=${issuer}`);
if (mtlsBase) console.log(`OIDC_MTLS_BASE=${mtlsBase}`);
