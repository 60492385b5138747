/*
 * Workloads without secrets from C: assertion sources (a literal, a file rewritten
 * between renewals, a missing file, a command, a callback, another client) used as a
 * federated client assertion (RFC 7523 §2.2), and the JWT bearer grant (§2.1) from a
 * source or signed by a key, against the development provider's test issuer; arguments
 * checked, nothing leaked (ASan, valgrind).
 */
#include <unistd.h>

#include "harness.h"

/* A throwaway P-256 key made for this test only, and its public half, which the
 * provider is told to trust for the JWT bearer grant of issuer "svc@c-test". */
static const char *KEY_PEM =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgMEmGMPLs9KmXwXHH\n"
    "31p2cud0ji4ICZB3OerljP8LlxihRANCAAQbb+4KoxvoAF1nKm4WlyP3Di2XfSkh\n"
    "lk0NDhCR8Wz+YMfmNavrdlAXzbLWeiQglD8wAHDmQpDOEXYhUfS1K5xW\n"
    "-----END PRIVATE KEY-----\n";
static const char *PUBLIC_PEM_JSON =
    "-----BEGIN PUBLIC KEY-----\\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEG2/uCqMb6ABdZypuFpcj9w4tl30p\\n"
    "IZZNDQ4QkfFs/mDH5jWr63ZQF82y1nokIJQ/MABw5kKQzhF2IVH0tSucVg==\\n"
    "-----END PUBLIC KEY-----\\n";

/* A JWT the provider's test issuer mints about `sub` for the provider, valid for
 * `ttl_s` seconds (negative: already expired). Caller frees. */
static char *mint(const char *sub, long ttl_s) {
    char body[512];
    snprintf(body, sizeof body, "{\"sub\":\"%s\",\"aud\":\"%s\",\"ttl_s\":%ld}", sub,
             devserver_url(), ttl_s);
    cJSON *answer = control("POST", "/_control/test_issuer/mint", body);
    const cJSON *jwt = cJSON_GetObjectItemCaseSensitive(answer, "jwt");
    char *copy = cJSON_IsString(jwt) ? strdup(jwt->valuestring) : NULL;
    cJSON_Delete(answer);
    if (copy == NULL) {
        fprintf(stderr, "mint: no jwt\n");
        exit(2);
    }
    return copy;
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(2);
    }
}

/* Writes a fresh client assertion of dev-client to `path`. */
static void write_client_assertion(const char *path, long ttl_s) {
    char *jwt = mint("dev-client", ttl_s);
    write_file(path, jwt);
    free(jwt);
}

static char dir[256];
static char assertion_path[320];

/* A client credentials client of dev-client authenticated by `source`. */
static authcore_client *assertion_client(const authcore_assertion_source *source) {
    authcore_options *o = NULL;
    authcore_client *c = NULL;
    CHECK_OK(authcore_options_new(&o));
    CHECK_OK(authcore_options_set_max_retries(o, 0));
    CHECK_OK(authcore_options_set_failure_backoff_ms(o, 10, 20));
    CHECK_OK(authcore_options_set_client_assertion(o, source));
    CHECK_OK(authcore_client_new_client_credentials(url_of("/oauth2/token"), "dev-client", "",
                                                    NULL, AUTHCORE_AUTH_METHOD_CLIENT_SECRET_BASIC,
                                                    o, &c));
    authcore_options_free(o);
    return c;
}

static void test_constructors_check_their_arguments(void) {
    authcore_assertion_source *s = (authcore_assertion_source *)0x1;
    CHECK_STATUS(authcore_assertion_source_file(NULL, &s), AUTHCORE_STATUS_NULL_ARGUMENT);
    CHECK(s == (authcore_assertion_source *)0x1, "out untouched on failure");
    CHECK_STATUS(authcore_assertion_source_file("", &s), AUTHCORE_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(authcore_assertion_source_literal("x", NULL), AUTHCORE_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(authcore_assertion_source_command("cat", NULL, 1, 0, &s),
                 AUTHCORE_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(authcore_assertion_source_callback(NULL, NULL, &s), AUTHCORE_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(authcore_assertion_source_client(NULL, &s), AUTHCORE_STATUS_NULL_ARGUMENT);
    authcore_client *c = NULL;
    CHECK_STATUS(authcore_client_new_jwt_bearer(url_of("/oauth2/token"), NULL, NULL, NULL, NULL, 0,
                                                NULL, &c),
                 AUTHCORE_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(authcore_client_new_jwt_bearer_signed(url_of("/oauth2/token"), "not a key", NULL,
                                                       "iss", "sub", NULL, NULL, NULL, NULL, 0, NULL,
                                                       &c),
                 AUTHCORE_STATUS_CONFIG);
    CHECK(c == NULL, "no client on failure");
    CHECK_STATUS(authcore_options_set_client_assertion(NULL, NULL), AUTHCORE_STATUS_NULL_ARGUMENT);
    authcore_assertion_source_free(NULL);
}

static void test_a_rewritten_file_is_read_for_each_renewal(void) {
    devserver_reset();
    write_client_assertion(assertion_path, 300);
    authcore_assertion_source *s = NULL;
    CHECK_OK(authcore_assertion_source_file(assertion_path, &s));
    authcore_client *c = assertion_client(s);
    /* The client keeps its own copy. */
    authcore_assertion_source_free(s);
    CHECK(get_status(c, "/api/check") == 200, "token from the file's assertion");
    write_client_assertion(assertion_path, 300);
    char *t = NULL;
    CHECK_OK(authcore_client_refresh(c, &t));
    authcore_string_free(t);
    t = NULL;
    /* An expired one is never sent: a configuration error naming the file. */
    write_client_assertion(assertion_path, -30);
    CHECK_STATUS(authcore_client_refresh(c, &t), AUTHCORE_STATUS_CONFIG);
    CHECK(strstr(authcore_last_error_message(), "expired") != NULL, "says expired: %s",
          authcore_last_error_message());
    CHECK(token_requests() == 2, "the expired one was not sent (%ld)", token_requests());
    CHECK(counter("assertions_resent", NULL) == 0, "no assertion sent twice");
    CHECK(counter("assertions_expired", NULL) == 0, "no expired assertion sent");
    authcore_string_free(t);
    authcore_client_free(c);
}

static void test_a_missing_file_is_a_clear_error(void) {
    devserver_reset();
    char missing[400];
    snprintf(missing, sizeof missing, "%s/not-there", dir);
    authcore_assertion_source *s = NULL;
    CHECK_OK(authcore_assertion_source_file(missing, &s));
    authcore_client *c = assertion_client(s);
    authcore_assertion_source_free(s);
    char *t = NULL;
    CHECK_STATUS(authcore_client_token(c, &t), AUTHCORE_STATUS_CONFIG);
    CHECK(strstr(authcore_last_error_message(), "not-there") != NULL, "names the file: %s",
          authcore_last_error_message());
    CHECK(t == NULL, "no token");
    CHECK(token_requests() == 0, "nothing sent");
    authcore_client_free(c);
}

static void test_a_command_source(void) {
    devserver_reset();
    write_client_assertion(assertion_path, 300);
    const char *args[] = {assertion_path};
    authcore_assertion_source *s = NULL;
    CHECK_OK(authcore_assertion_source_command("cat", args, 1, 5000, &s));
    authcore_client *c = assertion_client(s);
    authcore_assertion_source_free(s);
    CHECK(get_status(c, "/api/check") == 200, "token from the command's assertion");
    authcore_client_free(c);
    /* A program that fails: a configuration error naming it. */
    const char *no_args[] = {"/nonexistent/file"};
    CHECK_OK(authcore_assertion_source_command("cat", no_args, 1, 0, &s));
    c = assertion_client(s);
    authcore_assertion_source_free(s);
    char *t = NULL;
    CHECK(authcore_client_token(c, &t) != AUTHCORE_STATUS_OK, "a failing command fails");
    CHECK(strstr(authcore_last_error_message(), "cat") != NULL, "names the program: %s",
          authcore_last_error_message());
    authcore_client_free(c);
}

/* Writes the JWT in `userdata` (NULL: fails). */
static int32_t from_userdata(void *userdata, char *buffer, size_t capacity, size_t *len) {
    const char *jwt = (const char *)userdata;
    if (jwt == NULL) return 7;
    size_t n = strlen(jwt);
    if (n > capacity) return 1;
    memcpy(buffer, jwt, n);
    *len = n;
    return 0;
}

static void test_a_callback_source(void) {
    devserver_reset();
    char *jwt = mint("dev-client", 300);
    authcore_assertion_source *s = NULL;
    CHECK_OK(authcore_assertion_source_callback(from_userdata, jwt, &s));
    authcore_client *c = assertion_client(s);
    authcore_assertion_source_free(s);
    CHECK(get_status(c, "/api/check") == 200, "token from the callback's assertion");
    authcore_client_free(c);
    free(jwt);
    CHECK_OK(authcore_assertion_source_callback(from_userdata, NULL, &s));
    c = assertion_client(s);
    authcore_assertion_source_free(s);
    char *t = NULL;
    CHECK_STATUS(authcore_client_token(c, &t), AUTHCORE_STATUS_CONFIG);
    CHECK(strstr(authcore_last_error_message(), "returned 7") != NULL, "says why: %s",
          authcore_last_error_message());
    authcore_client_free(c);
}

static void test_another_clients_token_refused_is_renewed_there_once(void) {
    devserver_reset();
    authcore_client *inner = NULL;
    CHECK_OK(authcore_client_new_client_credentials(url_of("/oauth2/token"), "dev-client",
                                                    "dev-secret", NULL,
                                                    AUTHCORE_AUTH_METHOD_CLIENT_SECRET_POST, NULL,
                                                    &inner));
    authcore_assertion_source *s = NULL;
    CHECK_OK(authcore_assertion_source_client(inner, &s));
    /* The source holds its own reference. */
    authcore_client_free(inner);
    authcore_client *c = assertion_client(s);
    authcore_assertion_source_free(s);
    char *t = NULL;
    /* An access token is no client assertion: refused, the next one tried once. */
    CHECK_STATUS(authcore_client_token(c, &t), AUTHCORE_STATUS_OAUTH);
    CHECK(strcmp(authcore_last_error_oauth_error(), "invalid_client") == 0, "invalid_client");
    CHECK(counter("token_requests_by_grant", "oauth2/client_credentials") == 4,
          "two tokens of the other client, each sent once (%ld)",
          counter("token_requests_by_grant", "oauth2/client_credentials"));
    authcore_client_free(c);
}

static void test_jwt_bearer_from_a_source_and_signed(void) {
    devserver_reset();
    char *jwt = mint("workload-c", 300);
    authcore_assertion_source *s = NULL;
    CHECK_OK(authcore_assertion_source_literal(jwt, &s));
    authcore_client *c = NULL;
    CHECK_OK(authcore_client_new_jwt_bearer(url_of("/oauth2/token"), s, NULL, NULL,
                                            "campaigns:read", 0, NULL, &c));
    authcore_assertion_source_free(s);
    CHECK(get_status(c, "/api/check") == 200, "the grant's token works");
    CHECK(counter("token_requests_by_grant",
                  "oauth2/urn:ietf:params:oauth:grant-type:jwt-bearer") == 1,
          "one JWT bearer request");
    authcore_client_free(c);
    free(jwt);
    /* With the client's own federated assertion too. */
    write_client_assertion(assertion_path, 300);
    jwt = mint("workload-c", 300);
    authcore_options *o = NULL;
    CHECK_OK(authcore_options_new(&o));
    CHECK_OK(authcore_assertion_source_file(assertion_path, &s));
    CHECK_OK(authcore_options_set_client_assertion(o, s));
    authcore_assertion_source_free(s);
    CHECK_OK(authcore_assertion_source_literal(jwt, &s));
    CHECK_OK(authcore_client_new_jwt_bearer(url_of("/oauth2/token"), s, "dev-client", NULL, NULL,
                                            0, o, &c));
    authcore_assertion_source_free(s);
    authcore_options_free(o);
    CHECK(get_status(c, "/api/check") == 200, "with a client assertion");
    authcore_client_free(c);
    free(jwt);
    /* Signed by a key the provider trusts, afresh for every renewal. */
    char config[1024];
    snprintf(config, sizeof config, "{\"jwt_bearer_keys\":{\"svc@c-test\":\"%s\"}}",
             PUBLIC_PEM_JSON);
    control_post("/_control/config", config);
    CHECK_OK(authcore_client_new_jwt_bearer_signed(url_of("/oauth2/token"), KEY_PEM, "k1",
                                                   "svc@c-test", "carol", NULL, NULL, NULL, NULL, 0,
                                                   NULL, &c));
    CHECK(get_status(c, "/api/check") == 200, "the signed grant's token works");
    char *t = NULL;
    CHECK_OK(authcore_client_refresh(c, &t));
    authcore_string_free(t);
    CHECK(counter("assertions_resent", NULL) == 0, "each renewal signed its own");
    authcore_client_free(c);
    /* Client authentication without a client id is refused when built. */
    CHECK_OK(authcore_options_new(&o));
    CHECK_OK(authcore_assertion_source_literal("x", &s));
    CHECK_OK(authcore_options_set_client_assertion(o, s));
    CHECK_STATUS(authcore_client_new_jwt_bearer(url_of("/oauth2/token"), s, NULL, NULL, NULL, 0, o,
                                                &c),
                 AUTHCORE_STATUS_CONFIG);
    authcore_assertion_source_free(s);
    authcore_options_free(o);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/authcore-workload-XXXXXX");
    if (mkdtemp(dir) == NULL) {
        fprintf(stderr, "mkdtemp failed\n");
        return 2;
    }
    snprintf(assertion_path, sizeof assertion_path, "%s/token", dir);
    test_constructors_check_their_arguments();
    test_a_rewritten_file_is_read_for_each_renewal();
    test_a_missing_file_is_a_clear_error();
    test_a_command_source();
    test_a_callback_source();
    test_another_clients_token_refused_is_renewed_there_once();
    test_jwt_bearer_from_a_source_and_signed();
    unlink(assertion_path);
    rmdir(dir);
    return harness_finish("test_workload");
}
