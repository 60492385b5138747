/*
 * DPoP (RFC 9449) from C. Without a server: the options setters (arguments checked, a
 * rejected setting changes nothing), generated keys of every algorithm, the RFC 7638
 * thumbprints of supplied keys, the nonce rule and the stats field. Against the
 * development provider's DPoP mode: client credentials with bound tokens end to end,
 * the headers for an HTTP stack of the caller's own (accepted once, refused when
 * replayed or incomplete), both nonce dances counted in the stats, and a Bearer
 * downgrade refused unless allowed.
 */
#include <stddef.h>

#include "harness.h"

/* The Ed25519 key of RFC 8037 Appendix A.1; its thumbprint is given in A.3. */
static const char *ED25519_JWK =
    "{\"kty\":\"OKP\",\"crv\":\"Ed25519\","
    "\"d\":\"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A\","
    "\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\"}";
static const char *ED25519_D = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
static const char *ED25519_JKT = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k";
/* The same key in PKCS#8 PEM. */
static const char *ED25519_PEM =
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n"
    "-----END PRIVATE KEY-----\n";

/* The P-256 key of RFC 7517 Appendix A.2 (with its `use` and `kid`, which are ignored),
 * and the same key in SEC1 PEM. Its RFC 7638 thumbprint, computed outside authcore:
 *   printf '%s' '{"crv":"P-256","kty":"EC","x":"MKBC…qv7D4","y":"4Etl…4IFyM"}' \
 *     | openssl dgst -sha256 -binary | basenc --base64url | tr -d =             */
static const char *EC_JWK =
    "{\"kty\":\"EC\",\"crv\":\"P-256\","
    "\"x\":\"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4\","
    "\"y\":\"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM\","
    "\"d\":\"870MB6gfuTJ4HtUnUvYMyJpr5eUZNP4Bk43bVdj3eAE\",\"use\":\"enc\",\"kid\":\"1\"}";
static const char *EC_PEM =
    "-----BEGIN EC PRIVATE KEY-----\n"
    "MHcCAQEEIPO9DAeoH7kyeB7VJ1L2DMiaa+XlGTT+AZON21XY93gBoAoGCCqGSM49\n"
    "AwEHoUQDQgAEMKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D7gS2XpJFbZ\n"
    "iItSs3m9+9Ue6GnvHw/GW2ZZaVtszggXIw==\n"
    "-----END EC PRIVATE KEY-----\n";
static const char *EC_JKT = "cn-I_WNMClehiVp51i_0VpOENW1upEerA8sEam5hn-s";

/* A token endpoint that is never contacted (constructors do no I/O). */
static const char *NOWHERE = "http://127.0.0.1:9/oauth2/token";

/* A client-credentials client of the development provider (dev-client, in the body). */
static authcore_client *cc_client(const char *token_url, const authcore_options *o) {
    authcore_client *c = NULL;
    CHECK_OK(authcore_client_new_client_credentials(token_url, "dev-client", "dev-secret", NULL,
                                                    AUTHCORE_AUTH_METHOD_CLIENT_SECRET_POST, o, &c));
    return c;
}

/* The thumbprint of `c`'s key as a malloc'd string ("" without DPoP, NULL on failure). */
static char *thumbprint(const authcore_client *c) {
    char *jkt = (char *)"unwritten";
    if (authcore_client_dpop_thumbprint(c, &jkt) != AUTHCORE_STATUS_OK) return NULL;
    char *copy = strdup(jkt ? jkt : "");
    authcore_string_free(jkt);
    return copy;
}

/* The thumbprint of the key options hold, through a client made from them. */
static char *thumbprint_of(const authcore_options *o) {
    authcore_client *c = cc_client(NOWHERE, o);
    char *jkt = c ? thumbprint(c) : NULL;
    authcore_client_free(c);
    return jkt;
}

static bool is_jkt(const char *s) {
    if (s == NULL || strlen(s) != 43) return false; /* base64url of 32 bytes, unpadded */
    for (const char *p = s; *p; p++) {
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_') return false;
    }
    return true;
}

/* Decodes base64url (no padding) into `out`; returns the length, or -1. */
static long b64url_decode(const char *in, size_t len, char *out, size_t cap) {
    unsigned long acc = 0;
    int bits = 0;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = in[i];
        int v = ch >= 'A' && ch <= 'Z'   ? ch - 'A'
                : ch >= 'a' && ch <= 'z' ? ch - 'a' + 26
                : ch >= '0' && ch <= '9' ? ch - '0' + 52
                : ch == '-'              ? 62
                : ch == '_'              ? 63
                                         : -1;
        if (v < 0) return -1;
        acc = (acc << 6) | (unsigned long)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n + 1 >= cap) return -1;
            out[n++] = (char)((acc >> bits) & 0xff);
        }
    }
    out[n] = '\0';
    return (long)n;
}

/* Part `index` (0: header, 1: claims) of a compact JWS, parsed; NULL if it is not JSON. */
static cJSON *jws_part(const char *jws, int index) {
    const char *start = jws;
    for (int i = 0; i < index && start; i++) {
        start = strchr(start, '.');
        if (start) start++;
    }
    if (start == NULL) return NULL;
    const char *end = strchr(start, '.');
    size_t len = end ? (size_t)(end - start) : strlen(start);
    char decoded[4096];
    if (b64url_decode(start, len, decoded, sizeof decoded) < 0) return NULL;
    return cJSON_Parse(decoded);
}

static const char *json_str(const cJSON *obj, const char *name) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static uint64_t nonce_retries(const authcore_client *c) {
    authcore_stats stats;
    memset(&stats, 0xff, sizeof stats);
    if (authcore_client_stats(c, &stats, sizeof stats) != AUTHCORE_STATUS_OK) return UINT64_MAX;
    return stats.dpop_nonce_retries;
}

/* ---- without a server ---- */

static void test_setters_check_arguments_and_a_rejected_setting_changes_nothing(void) {
    CHECK_STATUS(authcore_options_set_dpop(NULL, "ES256"), AUTHCORE_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(authcore_options_set_dpop_key_pem(NULL, EC_PEM), AUTHCORE_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(authcore_options_set_dpop_key_jwk(NULL, EC_JWK), AUTHCORE_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(authcore_options_set_dpop_allow_bearer(NULL, true), AUTHCORE_STATUS_NULL_ARGUMENT);

    authcore_options *o = NULL;
    CHECK_OK(authcore_options_new(&o));
    CHECK_OK(authcore_options_set_dpop_key_jwk(o, ED25519_JWK));
    CHECK_STATUS(authcore_options_set_dpop(o, "HS256"), AUTHCORE_STATUS_CONFIG);
    CHECK(strstr(authcore_last_error_message(), "ES256") != NULL, "the message names the choices");
    CHECK_STATUS(authcore_options_set_dpop(o, "\xff\xfe"), AUTHCORE_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(authcore_options_set_dpop_key_pem(o, NULL), AUTHCORE_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(authcore_options_set_dpop_key_pem(o, "not a key"), AUTHCORE_STATUS_CONFIG);
    CHECK_STATUS(authcore_options_set_dpop_key_pem(o, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
                 AUTHCORE_STATUS_CONFIG);
    CHECK_STATUS(authcore_options_set_dpop_key_jwk(o, NULL), AUTHCORE_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(authcore_options_set_dpop_key_jwk(o, "{}"), AUTHCORE_STATUS_CONFIG);
    CHECK_STATUS(authcore_options_set_dpop_key_jwk(o, "not json"), AUTHCORE_STATUS_CONFIG);
    /* A public key alone cannot sign. */
    CHECK_STATUS(authcore_options_set_dpop_key_jwk(
                     o, "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\"}"),
                 AUTHCORE_STATUS_CONFIG);
    /* A private part that does not match the public one: refused, and never quoted. */
    char mismatched[512];
    snprintf(mismatched, sizeof mismatched,
             "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"d\":\"%s\","
             "\"x\":\"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4\"}",
             ED25519_D);
    CHECK_STATUS(authcore_options_set_dpop_key_jwk(o, mismatched), AUTHCORE_STATUS_CONFIG);
    CHECK(strstr(authcore_last_error_message(), ED25519_D) == NULL, "no key material in the message");
    CHECK(strlen(authcore_last_error_message()) > 0, "a message");

    /* Every rejection left the key set first. */
    char *jkt = thumbprint_of(o);
    CHECK(jkt && strcmp(jkt, ED25519_JKT) == 0, "the key set first is kept (%s)", jkt ? jkt : "(null)");
    free(jkt);
    authcore_options_free(o);
}

static void test_supplied_keys_have_their_rfc7638_thumbprints(void) {
    struct {
        const char *what, *text, *jkt;
        bool pem;
    } keys[] = {{"Ed25519 JWK (RFC 8037)", ED25519_JWK, ED25519_JKT, false},
                {"Ed25519 PKCS#8 PEM", ED25519_PEM, ED25519_JKT, true},
                {"P-256 JWK (RFC 7517)", EC_JWK, EC_JKT, false},
                {"P-256 SEC1 PEM", EC_PEM, EC_JKT, true}};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        authcore_options *o = NULL;
        CHECK_OK(authcore_options_new(&o));
        CHECK_OK(keys[i].pem ? authcore_options_set_dpop_key_pem(o, keys[i].text)
                             : authcore_options_set_dpop_key_jwk(o, keys[i].text));
        char *jkt = thumbprint_of(o);
        CHECK(jkt && strcmp(jkt, keys[i].jkt) == 0, "%s: thumbprint %s, wanted %s", keys[i].what,
              jkt ? jkt : "(null)", keys[i].jkt);
        free(jkt);
        authcore_options_free(o);
    }
}

static void test_generated_keys_of_every_algorithm(void) {
    const char *algorithms[] = {NULL, "ES256", "EdDSA", "RS256", "es256", "eddsa"};
    char *seen[6] = {0};
    for (size_t i = 0; i < 6; i++) {
        const char *alg = algorithms[i] ? algorithms[i] : "(NULL)";
        authcore_options *o = NULL;
        CHECK_OK(authcore_options_new(&o));
        CHECK_OK(authcore_options_set_dpop(o, algorithms[i]));
        /* Two clients from one options handle share its key. */
        authcore_client *a = cc_client(NOWHERE, o);
        authcore_client *b = cc_client(NOWHERE, o);
        char *ja = a ? thumbprint(a) : NULL;
        char *jb = b ? thumbprint(b) : NULL;
        CHECK(is_jkt(ja), "%s: a thumbprint (%s)", alg, ja ? ja : "(null)");
        CHECK(ja && jb && strcmp(ja, jb) == 0, "%s: one key per options", alg);
        for (size_t j = 0; j < i; j++) {
            CHECK(ja && seen[j] && strcmp(ja, seen[j]) != 0, "%s: a new key each time", alg);
        }
        seen[i] = ja;
        free(jb);
        authcore_client_free(a);
        authcore_client_free(b);
        authcore_options_free(o);
    }
    for (size_t i = 0; i < 6; i++) free(seen[i]);
}

static void test_a_client_without_dpop(void) {
    authcore_client *c = cc_client(NOWHERE, NULL);
    char *jkt = (char *)"unwritten";
    CHECK_OK(authcore_client_dpop_thumbprint(c, &jkt));
    CHECK(jkt == NULL, "no key, no thumbprint");
    authcore_client_free(c);

    /* A bearer token's headers: no proof (no server needed for a fixed token). */
    authcore_client *pat = NULL;
    CHECK_OK(authcore_client_new_personal_access_token("pat-123", &pat));
    char *authorization = NULL, *proof = (char *)"unwritten";
    CHECK_OK(authcore_client_request_headers(pat, "GET", "https://api.example.com/v1?x=1",
                                             &authorization, &proof));
    CHECK(authorization && strcmp(authorization, "Bearer pat-123") == 0, "%s",
          authorization ? authorization : "(null)");
    CHECK(proof == NULL, "no proof for a bearer token");
    authcore_string_free(authorization);
    char *alone = (char *)"unwritten";
    CHECK_OK(authcore_client_dpop_proof(pat, "POST", "https://api.example.com/v1", &alone));
    CHECK(alone == NULL, "no proof for a bearer token");
    CHECK(nonce_retries(pat) == 0, "nothing resent");
    authcore_client_free(pat);
}

static void test_calls_check_their_arguments(void) {
    authcore_client *pat = NULL;
    CHECK_OK(authcore_client_new_personal_access_token("pat-123", &pat));
    char *a = (char *)"unwritten", *p = (char *)"unwritten";
    const char *url = "https://api.example.com/v1";
    CHECK_STATUS(authcore_client_request_headers(NULL, "GET", url, &a, &p), AUTHCORE_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(authcore_client_request_headers(pat, NULL, url, &a, &p), AUTHCORE_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(authcore_client_request_headers(pat, "GET", NULL, &a, &p), AUTHCORE_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(authcore_client_request_headers(pat, "GET", url, NULL, &p), AUTHCORE_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(authcore_client_request_headers(pat, "GET", url, &a, NULL), AUTHCORE_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(authcore_client_request_headers(pat, "GET", "not a url", &a, &p), AUTHCORE_STATUS_CONFIG);
    CHECK_STATUS(authcore_client_request_headers(pat, "GET", "http://api.example.com/v1", &a, &p),
                 AUTHCORE_STATUS_CONFIG);
    CHECK_STATUS(authcore_client_request_headers(pat, "GET", "\xff", &a, &p), AUTHCORE_STATUS_INVALID_ARGUMENT);
    CHECK(strcmp(a, "unwritten") == 0 && strcmp(p, "unwritten") == 0, "nothing written on failure");
    CHECK_STATUS(authcore_client_dpop_proof(NULL, "GET", url, &p), AUTHCORE_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(authcore_client_dpop_proof(pat, NULL, url, &p), AUTHCORE_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(authcore_client_dpop_proof(pat, "GET", NULL, &p), AUTHCORE_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(authcore_client_dpop_proof(pat, "GET", url, NULL), AUTHCORE_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(authcore_client_dpop_thumbprint(NULL, &p), AUTHCORE_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(authcore_client_dpop_thumbprint(pat, NULL), AUTHCORE_STATUS_NULL_ARGUMENT);
    CHECK(strcmp(p, "unwritten") == 0, "nothing written on failure");
    CHECK(!authcore_client_dpop_nonce_retry(NULL, url, 401, "DPoP error=\"use_dpop_nonce\"", "n"),
          "NULL client: no resend");
    CHECK(!authcore_client_dpop_nonce_retry(pat, NULL, 401, "DPoP error=\"use_dpop_nonce\"", "n"),
          "NULL url: no resend");
    authcore_client_free(pat);
}

static void test_the_nonce_rule(void) {
    authcore_options *o = NULL;
    CHECK_OK(authcore_options_new(&o));
    CHECK_OK(authcore_options_set_dpop(o, NULL));
    authcore_client *c = cc_client(NOWHERE, o);
    authcore_options_free(o); /* the client keeps what it needs */
    const char *url = "https://api.example.com/v1/things?page=2";
    const char *asks = "DPoP error=\"use_dpop_nonce\", error_description=\"Resource server requires nonce\"";
    CHECK(authcore_client_dpop_nonce_retry(c, url, 401, asks, "nonce-1"), "asked with a nonce: resend");
    CHECK(!authcore_client_dpop_nonce_retry(c, url, 401, asks, NULL), "no nonce given: nothing to resend with");
    CHECK(!authcore_client_dpop_nonce_retry(c, url, 400, asks, "nonce-2"), "not a 401");
    CHECK(!authcore_client_dpop_nonce_retry(c, url, 401, "Bearer error=\"use_dpop_nonce\"", "n-3"),
          "not a DPoP challenge");
    CHECK(!authcore_client_dpop_nonce_retry(c, url, 401, "DPoP error=\"invalid_token\"", "n-4"),
          "another error");
    CHECK(!authcore_client_dpop_nonce_retry(c, url, 200, NULL, "n-5"), "a success remembers, resends nothing");
    CHECK(!authcore_client_dpop_nonce_retry(c, url, 401, NULL, NULL), "no challenge");
    CHECK(nonce_retries(c) == 1, "one resend counted (%llu)", (unsigned long long)nonce_retries(c));
    /* renewal_helps says no to a nonce request: a new token would not help. */
    CHECK(!authcore_client_renewal_helps(c, 401, asks), "a nonce request is no reason to renew");
    authcore_client_free(c);
}

static void test_stats_are_size_versioned(void) {
    authcore_client *pat = NULL;
    CHECK_OK(authcore_client_new_personal_access_token("pat-123", &pat));
    /* A program built before dpop_nonce_retries passes the older, smaller size. */
    authcore_stats stats;
    memset(&stats, 0xab, sizeof stats);
    CHECK_OK(authcore_client_stats(pat, &stats, offsetof(authcore_stats, dpop_nonce_retries)));
    CHECK(stats.signins_evicted == 0, "the older fields are written");
    CHECK(stats.dpop_nonce_retries == 0xababababababababULL, "nothing past the older size");
    CHECK_OK(authcore_client_stats(pat, &stats, sizeof stats));
    CHECK(stats.dpop_nonce_retries == 0, "the new field");
    CHECK(offsetof(authcore_stats, dpop_nonce_retries) == 16 * sizeof(uint64_t), "appended at the end");
    authcore_client_free(pat);
}

/* ---- against the development provider ---- */

static void configure(const char *config) {
    devserver_reset();
    control_post("/_control/config", config);
}

/* The `cnf.jkt` the provider's API reports for the client's token ("" if none). */
static void api_jkt(const authcore_client *c, char *out, size_t out_len) {
    authcore_response *r = NULL;
    out[0] = '\0';
    CHECK_OK(authcore_client_get(c, url_of("/api/resource"), &r));
    CHECK(authcore_response_status(r) == 200, "HTTP %u", (unsigned)authcore_response_status(r));
    const uint8_t *data = NULL;
    size_t n = 0;
    if (r && authcore_response_body(r, &data, &n) == AUTHCORE_STATUS_OK) {
        cJSON *body = cJSON_ParseWithLength((const char *)data, n);
        snprintf(out, out_len, "%s", json_str(cJSON_GetObjectItemCaseSensitive(body, "cnf"), "jkt"));
        cJSON_Delete(body);
    }
    authcore_response_free(r);
}

static void test_client_credentials_end_to_end(void) {
    configure("{\"dpop\": true, \"dpop_required\": true}");
    const char *token_url = url_of("/oauth2/token");
    char token_url_copy[512];
    snprintf(token_url_copy, sizeof token_url_copy, "%s", token_url);
    const char *algorithms[] = {"ES256", "EdDSA", "RS256"};
    for (size_t i = 0; i < 3; i++) {
        const char *alg = algorithms[i];
        authcore_options *o = NULL;
        CHECK_OK(authcore_options_new(&o));
        CHECK_OK(authcore_options_set_dpop(o, alg));
        authcore_client *c = cc_client(token_url_copy, o);
        authcore_options_free(o);
        authcore_token *t = NULL;
        CHECK_OK(authcore_client_token_info(c, &t));
        CHECK(strcmp(authcore_token_type(t) ? authcore_token_type(t) : "", "DPoP") == 0, "%s: type %s", alg,
              authcore_token_type(t) ? authcore_token_type(t) : "(null)");
        char *jkt = thumbprint(c);
        char bound[128];
        api_jkt(c, bound, sizeof bound);
        CHECK(jkt && strcmp(bound, jkt) == 0, "%s: the token is bound to the client's key (%s, %s)", alg,
              bound, jkt ? jkt : "(null)");

        /* The headers for an HTTP stack of one's own. */
        char url[512];
        snprintf(url, sizeof url, "%s/api/resource?page=2#top", devserver_url());
        char *authorization = NULL, *proof = NULL;
        CHECK_OK(authcore_client_request_headers(c, "get", url, &authorization, &proof));
        char want[4096];
        snprintf(want, sizeof want, "DPoP %s", t ? authcore_token_access_token(t) : "");
        CHECK(authorization && strcmp(authorization, want) == 0, "%s: Authorization: DPoP <token>", alg);
        CHECK(proof != NULL, "%s: a proof", alg);
        cJSON *header = proof ? jws_part(proof, 0) : NULL;
        cJSON *claims = proof ? jws_part(proof, 1) : NULL;
        const cJSON *jwk = cJSON_GetObjectItemCaseSensitive(header, "jwk");
        CHECK(strcmp(json_str(header, "typ"), "dpop+jwt") == 0, "%s: typ", alg);
        CHECK(strcmp(json_str(header, "alg"), alg) == 0, "%s: alg %s", alg, json_str(header, "alg"));
        CHECK(cJSON_IsObject(jwk) && cJSON_GetObjectItemCaseSensitive(jwk, "d") == NULL,
              "%s: the public key only", alg);
        CHECK(strcmp(json_str(claims, "htm"), "GET") == 0, "%s: htm", alg);
        char htu[512];
        snprintf(htu, sizeof htu, "%s/api/resource", devserver_url());
        CHECK(strcmp(json_str(claims, "htu"), htu) == 0, "%s: htu without query and fragment (%s)", alg,
              json_str(claims, "htu"));
        CHECK(strlen(json_str(claims, "ath")) == 43 && strlen(json_str(claims, "jti")) > 0, "%s: ath, jti", alg);
        CHECK(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(claims, "iat")), "%s: iat", alg);
        char *second = NULL;
        CHECK_OK(authcore_client_dpop_proof(c, "GET", url, &second));
        cJSON *second_claims = second ? jws_part(second, 1) : NULL;
        CHECK(strcmp(json_str(claims, "jti"), json_str(second_claims, "jti")) != 0, "%s: a new jti per proof", alg);
        cJSON_Delete(header);
        cJSON_Delete(claims);
        cJSON_Delete(second_claims);
        authcore_string_free(second);

        /* Sent by hand: accepted once; the same proof again, the token without its proof,
         * or as a bearer token: refused. */
        char reply[16384], headers[8192];
        snprintf(headers, sizeof headers, "Authorization: %s\r\nDPoP: %s\r\n", authorization ? authorization : "",
                 proof ? proof : "");
        CHECK(http_exchange("GET", url, headers, NULL, reply, sizeof reply) == 200, "%s: accepted", alg);
        CHECK(http_exchange("GET", url, headers, NULL, reply, sizeof reply) == 401, "%s: a replay is refused", alg);
        char challenge[1024] = "";
        http_header(reply, "WWW-Authenticate", 0, challenge, sizeof challenge);
        CHECK(strstr(challenge, "DPoP") && strstr(challenge, "invalid_dpop_proof"), "%s: %s", alg, challenge);
        snprintf(headers, sizeof headers, "Authorization: %s\r\n", authorization ? authorization : "");
        CHECK(http_exchange("GET", url, headers, NULL, reply, sizeof reply) == 401, "%s: no proof, refused", alg);
        authcore_string_free(authorization);
        authcore_string_free(proof);
        CHECK(call_with_headers(c, "GET", url, reply, sizeof reply, NULL, 0) == 200, "%s: fresh headers", alg);
        CHECK(nonce_retries(c) == 0, "%s: no nonce asked for", alg);
        authcore_token_free(t);
        free(jkt);
        authcore_client_free(c);
    }
    CHECK(counter("dpop_tokens_issued", NULL) == 3, "three bound tokens (%ld)", counter("dpop_tokens_issued", NULL));
    CHECK(counter("dpop_replays_rejected", NULL) == 3, "three replays refused");

    /* A supplied key does the same: the provider binds to its RFC 8037 thumbprint. */
    authcore_options *o = NULL;
    CHECK_OK(authcore_options_new(&o));
    CHECK_OK(authcore_options_set_dpop_key_pem(o, ED25519_PEM));
    authcore_client *c = cc_client(token_url_copy, o);
    authcore_options_free(o);
    char bound[128];
    api_jkt(c, bound, sizeof bound);
    CHECK(strcmp(bound, ED25519_JKT) == 0, "bound to the supplied key (%s)", bound);
    authcore_client_free(c);
}

static void test_both_nonce_dances_are_counted(void) {
    configure("{\"dpop\": true, \"dpop_as_nonce\": true, \"dpop_rs_nonce\": true}");
    authcore_options *o = NULL;
    CHECK_OK(authcore_options_new(&o));
    CHECK_OK(authcore_options_set_dpop(o, "ES256"));
    authcore_client *c = cc_client(url_of("/oauth2/token"), o);
    authcore_options_free(o);

    /* The library's own request: the token endpoint's nonce, then the API's. */
    authcore_response *r = NULL;
    CHECK_OK(authcore_client_get(c, url_of("/api/resource"), &r));
    CHECK(authcore_response_status(r) == 200, "HTTP %u", (unsigned)authcore_response_status(r));
    CHECK(authcore_response_header(r, "DPoP-Nonce") != NULL, "the API's nonce is readable");
    authcore_response_free(r);
    CHECK(nonce_retries(c) == 2, "one resend per origin kind (%llu)", (unsigned long long)nonce_retries(c));
    CHECK(counter("dpop_as_nonce_challenges", NULL) == 1, "one AS nonce challenge");
    CHECK(counter("dpop_rs_nonce_challenges", NULL) == 1, "one RS nonce challenge");
    CHECK(token_requests() == 2, "the token request and its resend (%ld)", token_requests());
    CHECK(get_status(c, "/api/resource") == 200, "the nonce is kept");
    CHECK(nonce_retries(c) == 2, "no more resends");

    /* New nonces: the caller's own HTTP stack follows the rule with the client's help. */
    control_post("/_control/dpop_rotate", "{}");
    char reply[16384];
    char url[512];
    snprintf(url, sizeof url, "%s/api/resource", devserver_url());
    CHECK(call_with_headers(c, "GET", url, reply, sizeof reply, NULL, 0) == 200, "accepted after one resend");
    CHECK(nonce_retries(c) == 3, "the resend is counted (%llu)", (unsigned long long)nonce_retries(c));
    CHECK(counter("dpop_rs_nonce_challenges", NULL) == 2, "a second RS nonce challenge");
    /* A renewal pays for the token endpoint's new nonce once. */
    CHECK_OK(authcore_client_refresh(c, NULL));
    CHECK(nonce_retries(c) == 4, "the token endpoint's new nonce (%llu)", (unsigned long long)nonce_retries(c));
    CHECK(counter("dpop_as_nonce_challenges", NULL) == 2, "a second AS nonce challenge");
    /* The token endpoint and the API share an origin here, yet each keeps its own nonce:
     * the token endpoint's new one did not replace the API's. */
    CHECK(get_status(c, "/api/resource") == 200, "the renewed token accepted");
    CHECK(nonce_retries(c) == 4, "the API's nonce kept apart (%llu)", (unsigned long long)nonce_retries(c));
    CHECK(get_status(c, "/api/resource") == 200, "and kept");
    CHECK(nonce_retries(c) == 4, "nothing more to resend");
    authcore_stats stats;
    CHECK_OK(authcore_client_stats(c, &stats, sizeof stats));
    CHECK(stats.renewals_rejected == 0, "a nonce request never renews the token");
    CHECK((long)(stats.token_requests_succeeded + stats.token_requests_refused + stats.token_requests_failed) ==
              token_requests(),
          "the client counted what the provider counted");
    authcore_client_free(c);
}

static void test_a_bearer_downgrade_is_refused_unless_allowed(void) {
    configure("{\"dpop\": true, \"dpop_bearer_only\": true}");
    const char *token_url = url_of("/oauth2/token");
    char token_url_copy[512];
    snprintf(token_url_copy, sizeof token_url_copy, "%s", token_url);
    authcore_options *o = NULL;
    CHECK_OK(authcore_options_new(&o));
    CHECK_OK(authcore_options_set_dpop(o, NULL));
    authcore_client *strict = cc_client(token_url_copy, o);
    char *t = (char *)"unwritten";
    CHECK_STATUS(authcore_client_token(strict, &t), AUTHCORE_STATUS_INVALID_RESPONSE);
    CHECK(strcmp(t, "unwritten") == 0, "nothing written");
    CHECK(strstr(authcore_last_error_message(), "Bearer") != NULL, "the message says why: %s",
          authcore_last_error_message());
    CHECK(token_requests() == 1, "not retried (%ld)", token_requests());
    char *a = (char *)"unwritten", *p = (char *)"unwritten";
    CHECK_STATUS(authcore_client_request_headers(strict, "GET", url_of("/api/resource"), &a, &p),
                 AUTHCORE_STATUS_INVALID_RESPONSE);
    authcore_client_free(strict);

    /* Allowed (the choice holds for a key set before or after it). */
    authcore_options *lenient_options = NULL;
    CHECK_OK(authcore_options_new(&lenient_options));
    CHECK_OK(authcore_options_set_dpop_allow_bearer(lenient_options, true));
    CHECK_OK(authcore_options_set_dpop(lenient_options, "EdDSA"));
    authcore_client *lenient = cc_client(token_url_copy, lenient_options);
    authcore_token *info = NULL;
    CHECK_OK(authcore_client_token_info(lenient, &info));
    CHECK(info && strcmp(authcore_token_type(info), "Bearer") == 0, "a bearer token");
    CHECK_OK(authcore_client_request_headers(lenient, "GET", url_of("/api/resource"), &a, &p));
    CHECK(a && strncmp(a, "Bearer ", 7) == 0 && p == NULL, "sent as a bearer token, without a proof");
    authcore_string_free(a);
    CHECK(get_status(lenient, "/api/resource") == 200, "accepted");
    authcore_token_free(info);
    authcore_client_free(lenient);
    authcore_options_free(lenient_options);
    CHECK_OK(authcore_options_set_dpop_allow_bearer(o, false));
    authcore_options_free(o);
}

int main(void) {
    test_setters_check_arguments_and_a_rejected_setting_changes_nothing();
    test_supplied_keys_have_their_rfc7638_thumbprints();
    test_generated_keys_of_every_algorithm();
    test_a_client_without_dpop();
    test_calls_check_their_arguments();
    test_the_nonce_rule();
    test_stats_are_size_versioned();
    test_client_credentials_end_to_end();
    test_both_nonce_dances_are_counted();
    test_a_bearer_downgrade_is_refused_unless_allowed();
    return harness_finish("test_dpop");
}
