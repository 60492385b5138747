/*
 * Interoperability from C with a real, certified authorization server (oidc-provider,
 * started by tests/c/run.sh; its issuer in AUTHCORE_OIDC_ISSUER): discovery, client
 * credentials with a resource indicator, revocation (checked with the server's own
 * introspection), the device flow up to the user's approval (cancel, timeout), and the
 * argument checks of the new functions. With DPoP (the server demands nonces at the
 * token endpoint and at userinfo): client credentials, code + PKCE + refresh and the
 * device flow each get tokens bound to the client's key (introspection's `cnf.jkt`),
 * and userinfo refuses such a token without a proof and accepts it with one.
 * Workloads without secrets: the `federated` client authenticated with assertions of
 * the server's test issuer read from a file (rewritten, used, expired), and token
 * exchange (the server's registered grant) with a chained subject client whose token
 * the provider revokes. Mutual TLS (a second provider, in TLS mode, whose issuer is in
 * AUTHCORE_OIDC_TLS_ISSUER, its files in AUTHCORE_OIDC_TLS_DIR, its mTLS listener in
 * AUTHCORE_OIDC_MTLS_BASE): tls_client_auth and self_signed_tls_client_auth client
 * credentials through the discovered mtls_endpoint_aliases, the tokens bound to the
 * certificate (the resource server's word, from the provider's record), a certificate
 * the CA did not issue refused.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

static const char *API = "https://api.example.test/";
/* base64("cc-basic:cc-basic-secret-0123456789") */
static const char *CC_BASIC_AUTH = "Y2MtYmFzaWM6Y2MtYmFzaWMtc2VjcmV0LTAxMjM0NTY3ODk=";

/* base64("app:app-secret-0123456789") */
static const char *APP_AUTH = "YXBwOmFwcC1zZWNyZXQtMDEyMzQ1Njc4OQ==";
static const char *REDIRECT = "http://127.0.0.1/callback";
static const char *ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token";

/* POSTs `token` to the introspection endpoint as the client whose Basic credentials are
 * `basic`; the answer parsed (caller frees), or NULL on failure. */
static cJSON *introspect(const char *issuer, const char *basic, const char *token) {
    char url[512], headers[512], body[4096], reply[16384];
    snprintf(url, sizeof url, "%s/token/introspection", issuer);
    snprintf(headers, sizeof headers,
             "Authorization: Basic %s\r\nContent-Type: application/x-www-form-urlencoded\r\n", basic);
    snprintf(body, sizeof body, "token=%s", token); /* opaque tokens are URL-safe */
    if (http_exchange("POST", url, headers, body, reply, sizeof reply) != 200) return NULL;
    return cJSON_Parse(http_body(reply));
}

/* 1 if the server considers `token` active (asked as cc-basic), 0 if not, -1 on failure. */
static int introspect_active(const char *issuer, const char *token) {
    cJSON *answer = introspect(issuer, CC_BASIC_AUTH, token);
    const cJSON *active = cJSON_GetObjectItemCaseSensitive(answer, "active");
    int result = cJSON_IsBool(active) ? cJSON_IsTrue(active) : -1;
    cJSON_Delete(answer);
    return result;
}

/* ---- a browser without a screen: keeps cookies, follows redirects, submits forms ---- */

#define MAX_COOKIES 16

typedef struct {
    char name[MAX_COOKIES][128];
    char value[MAX_COOKIES][1024];
    int n;
} cookie_jar;

static void keep_cookies(cookie_jar *jar, const char *reply) {
    char line[2048];
    for (int i = 0; i < 64 && http_header(reply, "Set-Cookie", i, line, sizeof line); i++) {
        char *semi = strchr(line, ';');
        if (semi) *semi = '\0';
        char *eq = strchr(line, '=');
        if (eq == NULL) continue;
        *eq = '\0';
        const char *name = line, *value = eq + 1;
        int at = -1;
        for (int k = 0; k < jar->n; k++) {
            if (strcmp(jar->name[k], name) == 0) at = k;
        }
        if (value[0] == '\0') { /* expired: forget it */
            if (at >= 0) {
                jar->n--;
                memmove(jar->name[at], jar->name[jar->n], sizeof jar->name[0]);
                memmove(jar->value[at], jar->value[jar->n], sizeof jar->value[0]);
            }
            continue;
        }
        if (at < 0) {
            if (jar->n == MAX_COOKIES) continue;
            at = jar->n++;
        }
        snprintf(jar->name[at], sizeof jar->name[0], "%.127s", name);
        snprintf(jar->value[at], sizeof jar->value[0], "%.1023s", value);
    }
}

static void cookie_header(const cookie_jar *jar, char *out, size_t len) {
    out[0] = '\0';
    if (jar->n == 0) return;
    size_t used = (size_t)snprintf(out, len, "Cookie: ");
    for (int k = 0; k < jar->n && used < len; k++) {
        used += (size_t)snprintf(out + used, len - used, "%s%s=%s", k ? "; " : "", jar->name[k],
                                 jar->value[k]);
    }
    if (used < len) snprintf(out + used, len - used, "\r\n");
}

/* `location` made absolute against `base` (an absolute URL or a path on its origin). */
static void resolve(const char *base, const char *location, char *out, size_t len) {
    if (strncmp(location, "http://", 7) == 0 || strncmp(location, "https://", 8) == 0) {
        snprintf(out, len, "%s", location);
        return;
    }
    const char *origin_end = strchr(base + 8, '/');
    int origin_len = origin_end ? (int)(origin_end - base) : (int)strlen(base);
    snprintf(out, len, "%.*s%s", origin_len, base, location);
}

/* Requests `url` (GET, or POST of the urlencoded `form`) and follows redirects: returns 1
 * when a redirect goes to a URL starting with `stop_at` (not fetched; in `url`), 0 on a
 * page (its URL in `url`, the answer in `reply`), -1 on failure. At most 20 hops. */
static int walk(cookie_jar *jar, char *url, size_t url_len, const char *form, const char *stop_at,
                char *reply, size_t reply_len) {
    for (int hop = 0; hop < 20; hop++) {
        if (stop_at != NULL && strncmp(url, stop_at, strlen(stop_at)) == 0) return 1;
        char headers[8192];
        cookie_header(jar, headers, sizeof headers - 64);
        if (form != NULL) strcat(headers, "Content-Type: application/x-www-form-urlencoded\r\n");
        int status = http_exchange(form ? "POST" : "GET", url, headers, form, reply, reply_len);
        form = NULL;
        if (status == 0) return -1;
        keep_cookies(jar, reply);
        if (status >= 300 && status < 400) {
            char location[4096], next[4096];
            if (!http_header(reply, "Location", 0, location, sizeof location)) return -1;
            resolve(url, location, next, sizeof next);
            snprintf(url, url_len, "%s", next);
            continue;
        }
        return 0;
    }
    return -1;
}

static void html_unescape(char *s) {
    static const struct {
        const char *from, to;
    } entities[] = {{"&amp;", '&'}, {"&quot;", '"'}, {"&#x2F;", '/'}, {"&lt;", '<'},
                    {"&gt;", '>'},  {"&#39;", '\''}, {"&#x27;", '\''}};
    char *w = s;
    for (const char *r = s; *r;) {
        size_t k = 0;
        for (; k < sizeof entities / sizeof entities[0]; k++) {
            size_t n = strlen(entities[k].from);
            if (strncmp(r, entities[k].from, n) == 0) {
                *w++ = entities[k].to;
                r += n;
                break;
            }
        }
        if (k == sizeof entities / sizeof entities[0]) *w++ = *r++;
    }
    *w = '\0';
}

/* The value of attribute `name` within [tag, end), unescaped, into `out`; false if absent. */
static bool attribute(const char *tag, const char *end, const char *name, char *out, size_t len) {
    char needle[64];
    snprintf(needle, sizeof needle, " %s=\"", name);
    const char *at = strstr(tag, needle);
    if (at == NULL || at >= end) return false;
    at += strlen(needle);
    const char *close = strchr(at, '"');
    if (close == NULL || close > end) return false;
    snprintf(out, len, "%.*s", (int)(close - at), at);
    html_unescape(out);
    return true;
}

static void form_encode(const char *in, char *out, size_t len) {
    size_t used = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p && used + 4 < len; p++) {
        if (isalnum(*p) || *p == '-' || *p == '_' || *p == '.' || *p == '~') {
            out[used++] = (char)*p;
        } else {
            used += (size_t)snprintf(out + used, len - used, "%%%02X", *p);
        }
    }
    out[used] = '\0';
}

/* Submits the first form of the page in `reply` (at `url`) with its inputs, and walks on
 * as `walk` does. */
static int submit(cookie_jar *jar, char *url, size_t url_len, const char *stop_at, char *reply,
                  size_t reply_len) {
    const char *body = http_body(reply);
    const char *form = strstr(body, "<form");
    if (form == NULL) return -1;
    const char *form_end = strstr(form, "</form>");
    if (form_end == NULL) form_end = form + strlen(form);
    const char *tag_end = strchr(form, '>');
    char action[4096] = "", target[4096];
    if (tag_end == NULL || !attribute(form, tag_end, "action", action, sizeof action)) {
        snprintf(action, sizeof action, "%s", url);
    }
    resolve(url, action, target, sizeof target);
    char fields[8192] = "";
    for (const char *in = strstr(form, "<input"); in && in < form_end; in = strstr(in + 1, "<input")) {
        const char *end = strchr(in, '>');
        char name[256], value[2048] = "", name_enc[768], value_enc[6144];
        if (end == NULL || !attribute(in, end, "name", name, sizeof name)) continue;
        attribute(in, end, "value", value, sizeof value);
        form_encode(name, name_enc, sizeof name_enc);
        form_encode(value, value_enc, sizeof value_enc);
        size_t used = strlen(fields);
        snprintf(fields + used, sizeof fields - used, "%s%s=%s", used ? "&" : "", name_enc, value_enc);
    }
    snprintf(url, url_len, "%s", target);
    return walk(jar, url, url_len, fields, stop_at, reply, reply_len);
}

/* Signs in at `authorization_url`, approving everything; the callback URL as a malloc'd
 * string, or NULL. */
static char *sign_in(const char *authorization_url) {
    cookie_jar jar = {.n = 0};
    char url[4096];
    static char reply[65536];
    snprintf(url, sizeof url, "%s", authorization_url);
    return walk(&jar, url, sizeof url, NULL, REDIRECT, reply, sizeof reply) == 1 ? strdup(url) : NULL;
}

/* Approves a device authorization at `verification_uri_complete`: submits the code form
 * and the confirmation form (at most four forms). Runs on a thread of its own. */
static void *approve_device(void *uri) {
    cookie_jar jar = {.n = 0};
    char url[4096];
    static char reply[65536];
    snprintf(url, sizeof url, "%s", (const char *)uri);
    int step = walk(&jar, url, sizeof url, NULL, NULL, reply, sizeof reply);
    for (int form = 0; step == 0 && form < 4; form++) {
        if (strstr(http_body(reply), "<title>Sign-in Success</title>") != NULL) return (void *)1;
        step = submit(&jar, url, sizeof url, NULL, reply, sizeof reply);
    }
    return step == 0 && strstr(http_body(reply), "<title>Sign-in Success</title>") != NULL ? (void *)1
                                                                                           : NULL;
}

static void test_discovery(const char *issuer) {
    authcore_metadata *m = NULL;
    CHECK_OK(authcore_discover(issuer, NULL, &m));
    CHECK(strcmp(authcore_metadata_get(m, AUTHCORE_METADATA_FIELD_ISSUER), issuer) == 0, "issuer");
    const char *token = authcore_metadata_get(m, AUTHCORE_METADATA_FIELD_TOKEN_ENDPOINT);
    CHECK(token && strstr(token, "/token"), "token endpoint %s", token ? token : "(null)");
    CHECK(authcore_metadata_get(m, AUTHCORE_METADATA_FIELD_DEVICE_AUTHORIZATION_ENDPOINT) != NULL, "device");
    CHECK(authcore_metadata_get(m, AUTHCORE_METADATA_FIELD_REVOCATION_ENDPOINT) != NULL, "revocation");
    CHECK(authcore_metadata_get(m, 99) == NULL, "unknown field");
    CHECK(authcore_metadata_get(NULL, 0) == NULL, "NULL metadata");
    CHECK(authcore_metadata_iss_supported(m), "iss supported");
    authcore_metadata_free(m);

    char other[512];
    snprintf(other, sizeof other, "%s/", issuer);
    authcore_metadata *none = NULL;
    CHECK_STATUS(authcore_discover(other, NULL, &none), AUTHCORE_STATUS_ISSUER_MISMATCH);
    CHECK(none == NULL, "nothing written on failure");
    CHECK(strcmp(authcore_status_name(AUTHCORE_STATUS_ISSUER_MISMATCH), "issuer_mismatch") == 0, "name");
    CHECK_STATUS(authcore_discover(NULL, NULL, &none), AUTHCORE_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(authcore_discover(issuer, NULL, NULL), AUTHCORE_STATUS_NULL_ARGUMENT);
    authcore_metadata_free(NULL);
}

static void test_client_credentials_resource_and_revocation(const char *issuer) {
    authcore_metadata *m = NULL;
    CHECK_OK(authcore_discover(issuer, NULL, &m));

    /* A token for the API: a JWT (three dot-separated parts). */
    authcore_options *o = NULL;
    CHECK_OK(authcore_options_new(&o));
    CHECK_STATUS(authcore_options_add_resource(o, ""), AUTHCORE_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(authcore_options_add_resource(o, NULL), AUTHCORE_STATUS_NULL_ARGUMENT);
    CHECK_OK(authcore_options_add_resource(o, API));
    authcore_client *api = NULL;
    CHECK_OK(authcore_client_new_client_credentials_from_metadata(
        m, "cc-basic", "cc-basic-secret-0123456789", "api:read", AUTHCORE_AUTH_METHOD_CLIENT_SECRET_BASIC, o, &api));
    authcore_options_free(o);
    char *jwt = NULL;
    CHECK_OK(authcore_client_token(api, &jwt));
    int dots = 0;
    for (const char *p = jwt; p && *p; p++) dots += *p == '.';
    CHECK(dots == 2, "a JWT for the resource (%d dots)", dots);
    authcore_string_free(jwt);
    authcore_client_free(api);

    /* An opaque token, revoked: the server's introspection says so. */
    authcore_client *c = NULL;
    CHECK_OK(authcore_client_new_client_credentials_from_metadata(
        m, "cc-basic", "cc-basic-secret-0123456789", NULL, AUTHCORE_AUTH_METHOD_CLIENT_SECRET_BASIC, NULL, &c));
    char *first = NULL;
    CHECK_OK(authcore_client_token(c, &first));
    CHECK(first && introspect_active(issuer, first) == 1, "active before revocation");
    CHECK_OK(authcore_client_revoke(c));
    CHECK(first && introspect_active(issuer, first) == 0, "inactive after revocation");
    char *second = NULL;
    CHECK_OK(authcore_client_token(c, &second));
    CHECK(first && second && strcmp(first, second) != 0, "a new token after revocation");
    authcore_string_free(first);
    authcore_string_free(second);
    authcore_client_free(c);

    /* A wrong secret is an OAuth error; a client without a revocation endpoint cannot revoke. */
    authcore_client *wrong = NULL;
    CHECK_OK(authcore_client_new_client_credentials_from_metadata(
        m, "cc-basic", "not-the-secret", NULL, AUTHCORE_AUTH_METHOD_CLIENT_SECRET_BASIC, NULL, &wrong));
    char *t = NULL;
    CHECK_STATUS(authcore_client_token(wrong, &t), AUTHCORE_STATUS_OAUTH);
    CHECK(strcmp(authcore_last_error_oauth_error(), "invalid_client") == 0, "%s", authcore_last_error_oauth_error());
    authcore_client_free(wrong);
    authcore_client *plain = NULL;
    CHECK_OK(authcore_client_new_client_credentials(authcore_metadata_get(m, AUTHCORE_METADATA_FIELD_TOKEN_ENDPOINT),
                                                    "cc-basic", "cc-basic-secret-0123456789", NULL, 0, NULL, &plain));
    CHECK_STATUS(authcore_client_revoke(plain), AUTHCORE_STATUS_CONFIG);
    CHECK_STATUS(authcore_client_revoke(NULL), AUTHCORE_STATUS_NULL_ARGUMENT);
    authcore_client_free(plain);
    authcore_metadata_free(m);
}

static void *cancel_later(void *auth) {
    sleep_ms(200);
    authcore_device_authorization_cancel((const authcore_device_authorization *)auth);
    return NULL;
}

static void test_device_flow(const char *issuer) {
    authcore_metadata *m = NULL;
    CHECK_OK(authcore_discover(issuer, NULL, &m));
    authcore_device_flow *flow = NULL;
    CHECK_OK(authcore_device_flow_new_from_metadata(m, "cli", NULL, "openid", NULL, &flow));
    authcore_metadata_free(m); /* the flow keeps what it needs */
    authcore_device_authorization *auth = NULL;
    CHECK_OK(authcore_device_flow_start(flow, &auth));
    const char *code = authcore_device_authorization_user_code(auth);
    const char *uri = authcore_device_authorization_verification_uri(auth);
    CHECK(code && strlen(code) > 0, "user code");
    CHECK(uri && strncmp(uri, issuer, strlen(issuer)) == 0, "verification uri %s", uri ? uri : "(null)");
    CHECK(authcore_device_authorization_verification_uri_complete(auth) != NULL, "complete uri");
    CHECK(authcore_device_authorization_expires_in_secs(auth) > 0, "expires");
    CHECK(authcore_device_authorization_interval_secs(auth) > 0, "interval");
    CHECK(authcore_device_authorization_user_code(NULL) == NULL, "NULL handle");

    /* Not approved within the timeout: TIMEOUT, and nothing written. */
    authcore_client *client = NULL;
    double start = now_seconds();
    CHECK_STATUS(authcore_device_authorization_poll(auth, 1000, &client), AUTHCORE_STATUS_TIMEOUT);
    CHECK(client == NULL && now_seconds() - start < 3.0 * slowdown(), "bounded wait");

    /* Cancelled from another thread. */
    pthread_t t;
    pthread_create(&t, NULL, cancel_later, auth);
    CHECK_STATUS(authcore_device_authorization_poll(auth, 0, &client), AUTHCORE_STATUS_CANCELLED);
    pthread_join(t, NULL);
    CHECK_STATUS(authcore_device_authorization_poll(NULL, 0, &client), AUTHCORE_STATUS_NULL_ARGUMENT);
    authcore_device_authorization_free(auth);
    authcore_device_authorization_free(NULL);
    authcore_device_flow_free(flow);
    authcore_device_flow_free(NULL);
}

/* ---- DPoP ---- */

static authcore_options *dpop_options(const char *algorithm) {
    authcore_options *o = NULL;
    CHECK_OK(authcore_options_new(&o));
    CHECK_OK(authcore_options_set_timeout_ms(o, 10000));
    CHECK_OK(authcore_options_set_dpop(o, algorithm));
    return o;
}

static uint64_t nonce_retries(const authcore_client *c) {
    authcore_stats stats;
    memset(&stats, 0, sizeof stats);
    CHECK_OK(authcore_client_stats(c, &stats, sizeof stats));
    return stats.dpop_nonce_retries;
}

/* The client's token is a DPoP token that the server bound to the client's key: its type,
 * and `cnf.jkt` in the server's introspection (asked as the client `basic` names). */
static void check_bound(const char *what, const char *issuer, const char *basic,
                        const authcore_client *c) {
    authcore_token *t = NULL;
    CHECK_OK(authcore_client_token_info(c, &t));
    const char *type = t ? authcore_token_type(t) : NULL;
    CHECK(type && strcmp(type, "DPoP") == 0, "%s: token type %s", what, type ? type : "(null)");
    char *jkt = NULL;
    CHECK_OK(authcore_client_dpop_thumbprint(c, &jkt));
    cJSON *answer = t ? introspect(issuer, basic, authcore_token_access_token(t)) : NULL;
    const cJSON *cnf = cJSON_GetObjectItemCaseSensitive(answer, "cnf");
    const cJSON *bound = cJSON_GetObjectItemCaseSensitive(cnf, "jkt");
    CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(answer, "active")), "%s: active", what);
    CHECK(jkt && cJSON_IsString(bound) && strcmp(bound->valuestring, jkt) == 0,
          "%s: cnf.jkt %s is the client's thumbprint %s", what,
          cJSON_IsString(bound) ? bound->valuestring : "(none)", jkt ? jkt : "(null)");
    cJSON_Delete(answer);
    authcore_string_free(jkt);
    authcore_token_free(t);
}

/* Userinfo, a resource server that verifies proofs and demands nonces: the token alone
 * is refused; with request_headers' proof (by hand, following the nonce rule) and through
 * the library's own request it is accepted; a stale nonce costs one resend. */
static void check_userinfo(const char *what, const authcore_metadata *m, const authcore_client *c) {
    const char *userinfo = authcore_metadata_get(m, AUTHCORE_METADATA_FIELD_USERINFO_ENDPOINT);
    CHECK(userinfo != NULL, "%s: a userinfo endpoint", what);
    if (userinfo == NULL) return;
    char url[512], reply[16384], headers[4096];
    snprintf(url, sizeof url, "%s", userinfo);
    char *authorization = NULL;
    CHECK_OK(authcore_client_authorization_header(c, &authorization));
    CHECK(authorization && strncmp(authorization, "DPoP ", 5) == 0, "%s: the DPoP scheme", what);
    snprintf(headers, sizeof headers, "Authorization: %s\r\n", authorization ? authorization : "");
    /* oidc-provider refuses a DPoP token without its proof as a bad request (400
     * invalid_request, "`DPoP` header not provided") with a DPoP challenge. */
    int st = http_exchange("GET", url, headers, NULL, reply, sizeof reply);
    char challenge[1024] = "";
    http_header(reply, "WWW-Authenticate", 0, challenge, sizeof challenge);
    CHECK((st == 400 || st == 401) && strncmp(challenge, "DPoP ", 5) == 0,
          "%s: no proof, refused (HTTP %d, %s)", what, st, challenge);
    if (authorization) {
        /* Nor as a bearer token. */
        snprintf(headers, sizeof headers, "Authorization: Bearer %s\r\n", authorization + 5);
        CHECK(http_exchange("GET", url, headers, NULL, reply, sizeof reply) == 401,
              "%s: as a bearer token, refused", what);
    }
    authcore_string_free(authorization);

    CHECK(call_with_headers(c, "GET", url, reply, sizeof reply, NULL, 0) == 200,
          "%s: accepted with request_headers' proof: %.200s", what, http_body(reply));
    cJSON *claims = cJSON_Parse(http_body(reply));
    const cJSON *sub = cJSON_GetObjectItemCaseSensitive(claims, "sub");
    CHECK(cJSON_IsString(sub) && strcmp(sub->valuestring, "test-user") == 0, "%s: the user's claims", what);
    cJSON_Delete(claims);

    authcore_response *r = NULL;
    CHECK_OK(authcore_client_get(c, url, &r));
    CHECK(authcore_response_status(r) == 200, "%s: accepted through the library (HTTP %u)", what,
          (unsigned)authcore_response_status(r));
    authcore_response_free(r);

    /* A nonce the server no longer accepts: it asks for its own, once. */
    uint64_t before = nonce_retries(c);
    CHECK(!authcore_client_dpop_nonce_retry(c, url, 200, NULL, "stale-nonce"), "a success: nothing to resend");
    CHECK_OK(authcore_client_get(c, url, &r));
    CHECK(authcore_response_status(r) == 200, "%s: accepted after the nonce dance (HTTP %u)", what,
          (unsigned)authcore_response_status(r));
    authcore_response_free(r);
    CHECK(nonce_retries(c) == before + 1, "%s: one resend with the server's nonce (%llu, %llu)", what,
          (unsigned long long)before, (unsigned long long)nonce_retries(c));
}

static void test_dpop_client_credentials(const char *issuer) {
    authcore_metadata *m = NULL;
    CHECK_OK(authcore_discover(issuer, NULL, &m));
    authcore_options *o = dpop_options("ES256");
    authcore_client *c = NULL;
    CHECK_OK(authcore_client_new_client_credentials_from_metadata(
        m, "cc-basic", "cc-basic-secret-0123456789", NULL, AUTHCORE_AUTH_METHOD_CLIENT_SECRET_BASIC, o, &c));
    authcore_options_free(o);
    check_bound("client credentials", issuer, CC_BASIC_AUTH, c);
    CHECK(nonce_retries(c) == 1, "the token endpoint's nonce dance, once (%llu)",
          (unsigned long long)nonce_retries(c));
    /* A forced renewal already knows the nonce. */
    CHECK_OK(authcore_client_refresh(c, NULL));
    check_bound("client credentials, renewed", issuer, CC_BASIC_AUTH, c);
    CHECK(nonce_retries(c) == 1, "no second dance (%llu)", (unsigned long long)nonce_retries(c));
    authcore_client_free(c);
    authcore_metadata_free(m);
}

static void test_dpop_code_pkce_refresh(const char *issuer) {
    authcore_metadata *m = NULL;
    CHECK_OK(authcore_discover(issuer, NULL, &m));
    authcore_options *o = dpop_options("EdDSA");
    authcore_code_flow *flow = NULL;
    CHECK_OK(authcore_code_flow_new_from_metadata(m, "app", "app-secret-0123456789", REDIRECT, "openid",
                                                  AUTHCORE_AUTH_METHOD_CLIENT_SECRET_BASIC, o, &flow));
    authcore_options_free(o);
    char *url = NULL, *state = NULL;
    CHECK_OK(authcore_code_flow_authorization_url(flow, &url, &state));
    char *callback = url ? sign_in(url) : NULL;
    CHECK(callback != NULL, "signed in");
    authcore_client *c = NULL;
    if (callback) CHECK_OK(authcore_code_flow_finish_with_state(flow, callback, state, &c));
    free(callback);
    authcore_string_free(url);
    authcore_string_free(state);
    authcore_code_flow_free(flow);
    if (c == NULL) {
        authcore_metadata_free(m);
        return;
    }
    check_bound("code + PKCE", issuer, APP_AUTH, c);
    char *first = NULL, *second = NULL;
    CHECK_OK(authcore_client_token(c, &first));
    CHECK_OK(authcore_client_refresh(c, &second));
    CHECK(first && second && strcmp(first, second) != 0, "a new token by the (rotated) refresh token");
    check_bound("code + PKCE, refreshed", issuer, APP_AUTH, c);
    authcore_string_free(first);
    authcore_string_free(second);
    check_userinfo("code + PKCE", m, c);
    authcore_client_free(c);
    authcore_metadata_free(m);
}

static void test_dpop_device_flow(const char *issuer) {
    authcore_metadata *m = NULL;
    CHECK_OK(authcore_discover(issuer, NULL, &m));
    authcore_options *o = dpop_options(NULL);
    authcore_device_flow *flow = NULL;
    CHECK_OK(authcore_device_flow_new_from_metadata(m, "cli", NULL, "openid", o, &flow));
    authcore_options_free(o);
    authcore_device_authorization *auth = NULL;
    CHECK_OK(authcore_device_flow_start(flow, &auth));
    const char *complete = auth ? authcore_device_authorization_verification_uri_complete(auth) : NULL;
    CHECK(complete != NULL, "a complete verification URI");
    authcore_client *c = NULL;
    if (complete) {
        pthread_t t;
        void *approved = NULL;
        pthread_create(&t, NULL, approve_device, (void *)complete);
        CHECK_OK(authcore_device_authorization_poll(auth, (uint64_t)(60000 * slowdown()), &c));
        pthread_join(t, &approved);
        CHECK(approved != NULL, "the user approved the device");
    }
    authcore_device_authorization_free(auth);
    authcore_device_flow_free(flow);
    if (c != NULL) {
        check_bound("device flow", issuer, CC_BASIC_AUTH, c);
        /* The public client's refresh token is bound to the key: the renewal signs with it. */
        CHECK_OK(authcore_client_refresh(c, NULL));
        check_bound("device flow, refreshed", issuer, CC_BASIC_AUTH, c);
        check_userinfo("device flow", m, c);
        authcore_client_free(c);
    }
    authcore_metadata_free(m);
}

/* ---- workloads without secrets ---- */

static uint64_t token_requests_of(const authcore_client *c) {
    authcore_stats stats;
    memset(&stats, 0, sizeof stats);
    CHECK_OK(authcore_client_stats(c, &stats, sizeof stats));
    return stats.token_requests_succeeded + stats.token_requests_refused + stats.token_requests_failed;
}

/* An assertion of the server's test issuer about the `federated` client, valid for
 * `ttl_s` seconds (negative: already expired), written to `path`; the JWT returned
 * (malloc'd), or NULL. */
static char *mint_to(const char *issuer, long ttl_s, const char *path) {
    char url[512], body[64], reply[8192];
    snprintf(url, sizeof url, "%s/test-issuer/mint", issuer);
    snprintf(body, sizeof body, "{\"ttl_s\":%ld}", ttl_s);
    if (http_exchange("POST", url, "Content-Type: application/json\r\n", body, reply, sizeof reply) != 200) {
        return NULL;
    }
    cJSON *answer = cJSON_Parse(http_body(reply));
    const cJSON *jwt = cJSON_GetObjectItemCaseSensitive(answer, "jwt");
    char *copy = cJSON_IsString(jwt) ? strdup(jwt->valuestring) : NULL;
    cJSON_Delete(answer);
    FILE *f = copy ? fopen(path, "w") : NULL;
    if (f == NULL || fputs(copy, f) < 0 || fclose(f) != 0) {
        free(copy);
        return NULL;
    }
    return copy;
}

/* Federated client assertions (RFC 7523 §2.2): the file is read for every token request
 * (a rewritten one is used); a used one is refused by the server and not sent twice,
 * the error naming no assertion; an expired one is never sent. */
static void test_federated_client_assertion(const char *issuer) {
    authcore_metadata *m = NULL;
    CHECK_OK(authcore_discover(issuer, NULL, &m));
    char path[] = "/tmp/authcore-projected-token-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "a temporary file");
    if (fd < 0) {
        authcore_metadata_free(m);
        return;
    }
    close(fd);
    char *jwt = mint_to(issuer, 300, path);
    CHECK(jwt != NULL, "minted");
    authcore_assertion_source *source = NULL;
    CHECK_OK(authcore_assertion_source_file(path, &source));
    authcore_options *o = NULL;
    CHECK_OK(authcore_options_new(&o));
    CHECK_OK(authcore_options_set_timeout_ms(o, 10000));
    CHECK_OK(authcore_options_set_failure_backoff_ms(o, 10, 50));
    CHECK_OK(authcore_options_set_client_assertion(o, source));
    authcore_assertion_source_free(source); /* the options keep a copy */
    authcore_client *c = NULL;
    CHECK_OK(authcore_client_new_client_credentials_from_metadata(
        m, "federated", NULL, "api:read", AUTHCORE_AUTH_METHOD_CLIENT_ASSERTION, o, &c));
    authcore_options_free(o);
    char *first = NULL, *second = NULL, *third = NULL;
    CHECK_OK(authcore_client_token(c, &first));
    CHECK(first && introspect_active(issuer, first) == 1, "the provider accepted the assertion");

    /* Rewritten (as the kubelet does): the next token request uses the new one. */
    free(jwt);
    jwt = mint_to(issuer, 300, path);
    CHECK(jwt != NULL, "minted again");
    CHECK_OK(authcore_client_refresh(c, &second));
    CHECK(first && second && strcmp(first, second) != 0, "a new token");

    /* Not rewritten: the provider refuses the used assertion (its jti); sent once. */
    sleep_ms(60);
    uint64_t before = token_requests_of(c);
    CHECK_STATUS(authcore_client_refresh(c, &third), AUTHCORE_STATUS_OAUTH);
    CHECK(strcmp(authcore_last_error_oauth_error(), "invalid_client") == 0, "%s",
          authcore_last_error_oauth_error());
    CHECK(jwt && strstr(authcore_last_error_message(), jwt) == NULL, "no assertion in the message");
    CHECK(token_requests_of(c) - before == 1, "sent once (%llu)",
          (unsigned long long)(token_requests_of(c) - before));

    /* Expired: refused here, never sent. */
    free(jwt);
    jwt = mint_to(issuer, -30, path);
    CHECK(jwt != NULL, "minted expired");
    sleep_ms(60);
    before = token_requests_of(c);
    CHECK_STATUS(authcore_client_refresh(c, &third), AUTHCORE_STATUS_CONFIG);
    CHECK(strstr(authcore_last_error_message(), "expired") != NULL, "%s", authcore_last_error_message());
    CHECK(token_requests_of(c) == before, "nothing sent");
    CHECK(third == NULL, "nothing written on failure");

    free(jwt);
    authcore_string_free(first);
    authcore_string_free(second);
    authcore_client_free(c);
    authcore_metadata_free(m);
    unlink(path);
}

/* Revokes `token` at the provider as the client `basic` names. */
static void revoke_as(const char *issuer, const char *basic, const char *token) {
    char url[512], headers[512], body[4096], reply[4096];
    snprintf(url, sizeof url, "%s/token/revocation", issuer);
    snprintf(headers, sizeof headers,
             "Authorization: Basic %s\r\nContent-Type: application/x-www-form-urlencoded\r\n", basic);
    snprintf(body, sizeof body, "token=%s", token);
    CHECK(http_exchange("POST", url, headers, body, reply, sizeof reply) == 200, "revoked: %.200s", reply);
}

/* Token exchange (RFC 8693) through the grant the server registers: `exchanger`
 * exchanges `cc-basic`'s token (a chained subject client); when the provider revokes that token, the exchange is refused once, the subject
 * renewed, and the exchange sent again within the same call. */
static void test_token_exchange_with_a_chained_subject(const char *issuer) {
    authcore_metadata *m = NULL;
    CHECK_OK(authcore_discover(issuer, NULL, &m));
    authcore_options *o = NULL;
    CHECK_OK(authcore_options_new(&o));
    CHECK_OK(authcore_options_set_timeout_ms(o, 10000));
    CHECK_OK(authcore_options_set_failure_backoff_ms(o, 10, 50));
    authcore_client *subject = NULL;
    CHECK_OK(authcore_client_new_client_credentials_from_metadata(
        m, "cc-basic", "cc-basic-secret-0123456789", "api:read", AUTHCORE_AUTH_METHOD_CLIENT_SECRET_BASIC, o,
        &subject));
    authcore_token_exchange *x = NULL;
    CHECK_OK(authcore_token_exchange_new(authcore_metadata_get(m, AUTHCORE_METADATA_FIELD_TOKEN_ENDPOINT),
                                         "exchanger", "exchanger-secret-0123456789",
                                         AUTHCORE_AUTH_METHOD_CLIENT_SECRET_BASIC, &x));
    CHECK_OK(authcore_token_exchange_set_subject_client(x, subject, NULL));
    CHECK_OK(authcore_token_exchange_add_audience(x, API));
    CHECK_OK(authcore_token_exchange_set_scopes(x, "api:read"));
    authcore_client *c = NULL;
    CHECK_OK(authcore_client_new_token_exchange(x, o, &c));
    authcore_token_exchange_free(x);
    authcore_options_free(o);

    authcore_token *t = NULL;
    CHECK_OK(authcore_client_token_info(c, &t));
    const char *issued = t ? authcore_token_issued_token_type(t) : NULL;
    CHECK(issued && strcmp(issued, ACCESS_TOKEN_TYPE) == 0, "issued type %s", issued ? issued : "(null)");
    char *first = t ? strdup(authcore_token_access_token(t)) : NULL;
    authcore_token_free(t);
    char *subject_token = NULL;
    CHECK_OK(authcore_client_token(subject, &subject_token));
    CHECK(first && subject_token && strcmp(first, subject_token) != 0, "a token of the exchanger's own");
    CHECK(first && introspect_active(issuer, first) == 1, "the exchanged token is active");

    /* The subject token revoked at the provider by its client. */
    if (subject_token) revoke_as(issuer, CC_BASIC_AUTH, subject_token);
    CHECK(subject_token && introspect_active(issuer, subject_token) == 0, "the subject token is revoked");
    sleep_ms(60);
    uint64_t before = token_requests_of(c);
    char *second = NULL;
    CHECK_OK(authcore_client_refresh(c, &second));
    CHECK(first && second && strcmp(first, second) != 0, "a new exchanged token");
    CHECK(token_requests_of(c) - before == 2, "refused once, then sent with the renewed subject (%llu)",
          (unsigned long long)(token_requests_of(c) - before));
    char *renewed = NULL;
    CHECK_OK(authcore_client_token(subject, &renewed));
    CHECK(renewed && subject_token && strcmp(renewed, subject_token) != 0, "the subject renewed");

    free(first);
    authcore_string_free(second);
    authcore_string_free(subject_token);
    authcore_string_free(renewed);
    authcore_client_free(subject);
    authcore_client_free(c);
    authcore_metadata_free(m);
}

/* ---- mutual TLS (RFC 8705) ---- */

/* `dir`/`name` into `out`. */
static void tls_file(const char *dir, const char *name, char *out, size_t len) {
    snprintf(out, len, "%s/%s", dir, name);
}

/* The first line of the file `dir`/`name` (a thumbprint), into `out`. */
static bool read_line(const char *dir, const char *name, char *out, size_t len) {
    char path[512];
    tls_file(dir, name, path, sizeof path);
    FILE *f = fopen(path, "r");
    bool ok = f != NULL && fgets(out, (int)len, f) != NULL;
    if (f) fclose(f);
    out[strcspn(out, "\r\n")] = '\0';
    return ok;
}

/* A client of `client_id` by `method` presenting the certificate `cert` (a file stem in
 * `dir`, or NULL for none), trusting the provider's CA. */
static authcore_client *mtls_client(const authcore_metadata *m, const char *dir, const char *client_id,
                                    uint32_t method, const char *cert) {
    authcore_options *o = NULL;
    CHECK_OK(authcore_options_new(&o));
    CHECK_OK(authcore_options_set_timeout_ms(o, 10000));
    CHECK_OK(authcore_options_set_max_retries(o, 0));
    char ca[512], pem[512], key[512];
    tls_file(dir, "ca.pem", ca, sizeof ca);
    CHECK_OK(authcore_options_set_ca_bundle(o, ca));
    if (cert != NULL) {
        snprintf(pem, sizeof pem, "%s/%s.pem", dir, cert);
        snprintf(key, sizeof key, "%s/%s.key", dir, cert);
        CHECK_OK(authcore_options_set_client_certificate_files(o, pem, key));
    }
    authcore_client *c = NULL;
    CHECK_OK(authcore_client_new_client_credentials_from_metadata(m, client_id, NULL, "api:read", method, o, &c));
    authcore_options_free(o);
    return c;
}

static void test_mtls(const char *issuer, const char *dir, const char *mtls_base) {
    authcore_options *o = NULL;
    CHECK_OK(authcore_options_new(&o));
    char ca[512];
    tls_file(dir, "ca.pem", ca, sizeof ca);
    CHECK_OK(authcore_options_set_ca_bundle(o, ca));
    authcore_metadata *m = NULL;
    CHECK_OK(authcore_discover(issuer, o, &m));
    authcore_options_free(o);
    if (m == NULL) return;
    const char *token_endpoint = authcore_metadata_get(m, AUTHCORE_METADATA_FIELD_TOKEN_ENDPOINT);
    CHECK(token_endpoint && strncmp(token_endpoint, mtls_base, strlen(mtls_base)) != 0,
          "the token endpoint is not the mTLS listener");
    char resource[512];
    snprintf(resource, sizeof resource, "%s/test-api", mtls_base);
    static const struct {
        const char *client_id, *cert, *x5t;
        uint32_t method;
    } cases[] = {
        {"mtls", "client", "client.x5t", AUTHCORE_AUTH_METHOD_TLS_CLIENT_AUTH},
        {"mtls-self", "self-signed", "self-signed.x5t", AUTHCORE_AUTH_METHOD_SELF_SIGNED_TLS_CLIENT_AUTH},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char x5t[128] = "";
        CHECK(read_line(dir, cases[i].x5t, x5t, sizeof x5t), "%s", cases[i].x5t);
        authcore_client *c = mtls_client(m, dir, cases[i].client_id, cases[i].method, cases[i].cert);
        if (c == NULL) continue;
        char *token = NULL;
        CHECK_OK(authcore_client_token(c, &token));
        authcore_string_free(token);
        /* The resource server (on the mTLS listener) takes it over this client's
         * connections, and says what the provider bound it to. */
        authcore_response *r = NULL;
        CHECK_OK(authcore_client_get(c, resource, &r));
        CHECK(r && authcore_response_status(r) == 200, "%s: accepted at the resource (HTTP %u)",
              cases[i].client_id, r ? (unsigned)authcore_response_status(r) : 0u);
        const uint8_t *data = NULL;
        size_t len = 0;
        if (r) CHECK_OK(authcore_response_body(r, &data, &len));
        cJSON *answer = data ? cJSON_ParseWithLength((const char *)data, len) : NULL;
        const cJSON *client_id = cJSON_GetObjectItemCaseSensitive(answer, "client_id");
        const cJSON *bound =
            cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(answer, "cnf"), "x5t#S256");
        CHECK(cJSON_IsString(client_id) && strcmp(client_id->valuestring, cases[i].client_id) == 0,
              "%s: the token is the client's", cases[i].client_id);
        CHECK(cJSON_IsString(bound) && strcmp(bound->valuestring, x5t) == 0,
              "%s: bound to the certificate (cnf.x5t#S256 %s, want %s)", cases[i].client_id,
              cJSON_IsString(bound) ? bound->valuestring : "(none)", x5t);
        cJSON_Delete(answer);
        authcore_response_free(r);
        authcore_client_free(c);
    }
    /* A certificate the CA did not issue does not authenticate `mtls`. */
    authcore_client *stranger = mtls_client(m, dir, "mtls", AUTHCORE_AUTH_METHOD_TLS_CLIENT_AUTH, "self-signed");
    char *token = NULL;
    CHECK_STATUS(authcore_client_token(stranger, &token), AUTHCORE_STATUS_OAUTH);
    CHECK(strcmp(authcore_last_error_oauth_error(), "invalid_client") == 0, "%s",
          authcore_last_error_oauth_error());
    CHECK(token == NULL, "nothing written on failure");
    authcore_client_free(stranger);
    authcore_metadata_free(m);
}

static void test_private_key_arguments(void) {
    authcore_options *o = NULL;
    CHECK_OK(authcore_options_new(&o));
    CHECK_STATUS(authcore_options_set_private_key(o, "not a key", NULL, NULL), AUTHCORE_STATUS_CONFIG);
    CHECK_STATUS(authcore_options_set_private_key(o, NULL, NULL, NULL), AUTHCORE_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(authcore_options_set_private_key(o, "x", "HS256", NULL), AUTHCORE_STATUS_CONFIG);
    CHECK_OK(authcore_options_set_revocation_url(o, "https://id.example.com/revoke"));
    /* private_key_jwt without a key: a configuration error when the client is made. */
    authcore_client *c = NULL;
    CHECK_STATUS(authcore_client_new_client_credentials("https://id.example.com/token", "id", "", NULL,
                                                        AUTHCORE_AUTH_METHOD_PRIVATE_KEY_JWT, o, &c),
                 AUTHCORE_STATUS_CONFIG);
    CHECK(c == NULL, "nothing written on failure");
    authcore_options_free(o);
}

int main(void) {
    const char *issuer = getenv("AUTHCORE_OIDC_ISSUER");
    CHECK(issuer != NULL, "AUTHCORE_OIDC_ISSUER is set by tests/c/run.sh");
    if (issuer) {
        test_discovery(issuer);
        test_client_credentials_resource_and_revocation(issuer);
        test_device_flow(issuer);
        test_dpop_client_credentials(issuer);
        test_dpop_code_pkce_refresh(issuer);
        test_dpop_device_flow(issuer);
        test_federated_client_assertion(issuer);
        test_token_exchange_with_a_chained_subject(issuer);
    }
    const char *tls_issuer = getenv("AUTHCORE_OIDC_TLS_ISSUER");
    const char *tls_dir = getenv("AUTHCORE_OIDC_TLS_DIR");
    const char *mtls_base = getenv("AUTHCORE_OIDC_MTLS_BASE");
    CHECK(tls_issuer && tls_dir && mtls_base, "the TLS provider is started by tests/c/run.sh");
    if (tls_issuer && tls_dir && mtls_base) test_mtls(tls_issuer, tls_dir, mtls_base);
    test_private_key_arguments();
    return harness_finish("test_oidc");
}
