/*
 * libauthcore against the development provider: every grant and preset, the error
 * statuses with their details, ownership rules, and NULL for every pointer argument.
 */
#include "harness.h"

#define SECRET "dev-secret"
#define CLIENT_ID "dev-client"

/* Refresh tokens seen by the rotation callback (copied, as the contract requires). */
typedef struct {
    int calls;
    char last[256];
} rotation_log;

static int on_rotation(void *userdata, const char *refresh_token, size_t len) {
    rotation_log *log = (rotation_log *)userdata;
    log->calls++;
    snprintf(log->last, sizeof log->last, "%.*s", (int)len, refresh_token);
    return 0;
}

/* A callback that cannot keep the token (a full disk): it reports failure. */
static int on_rotation_fails(void *userdata, const char *refresh_token, size_t len) {
    (void)refresh_token;
    (void)len;
    ((rotation_log *)userdata)->calls++;
    return 1;
}

static authcore_options *quick_options(void) {
    authcore_options *o = NULL;
    CHECK_OK(authcore_options_new(&o));
    CHECK_OK(authcore_options_set_max_retries(o, 0));
    CHECK_OK(authcore_options_set_timeout_ms(o, 5000));
    CHECK_OK(authcore_options_set_failure_backoff_ms(o, 10, 50));
    return o;
}

static void test_status_strings(void) {
    CHECK(strcmp(authcore_version(), "0.1.0") == 0, "version %s", authcore_version());
    unsigned codes[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 99, 100, 101, 102, 103};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        const char *s = authcore_status_str(codes[i]);
        CHECK(s != NULL && strlen(s) > 0 && strcmp(s, "unknown status") != 0, "code %u", codes[i]);
    }
    CHECK(strcmp(authcore_status_str(12345), "unknown status") == 0, "unknown code");
    CHECK(strcmp(authcore_status_str(AUTHCORE_STATUS_OAUTH),
                 "OAuth error from the token endpoint") == 0, "oauth text");
}

static void test_personal_access_token(void) {
    authcore_client *c = NULL;
    CHECK_OK(authcore_client_new_personal_access_token("dev-personal-access-token", &c));
    char *token = NULL;
    CHECK_OK(authcore_client_token(c, &token));
    CHECK(token && strcmp(token, "dev-personal-access-token") == 0, "pat token");
    authcore_string_free(token);

    /* Caller buffer: ask the size, too small, exact. */
    size_t needed = 0;
    CHECK_STATUS(authcore_client_token_into(c, NULL, 0, &needed), AUTHCORE_STATUS_BUFFER_TOO_SMALL);
    CHECK(needed == strlen("dev-personal-access-token") + 1, "needed %zu", needed);
    char small[4] = {'x', 'x', 'x', 'x'};
    CHECK_STATUS(authcore_client_token_into(c, small, sizeof small, &needed),
                 AUTHCORE_STATUS_BUFFER_TOO_SMALL);
    CHECK(small[0] == 'x', "a too-small buffer is left untouched");
    char *exact = malloc(needed);
    CHECK_OK(authcore_client_token_into(c, exact, needed, NULL));
    CHECK(strcmp(exact, "dev-personal-access-token") == 0, "token_into %s", exact);
    free(exact);

    char *header = NULL;
    CHECK_OK(authcore_client_authorization_header(c, &header));
    CHECK(header && strcmp(header, "Bearer dev-personal-access-token") == 0, "header");
    authcore_string_free(header);

    CHECK(get_status(c, "/api/resource") == 200, "pat accepted by the provider");
    CHECK(!authcore_client_renewal_helps(c, 401, NULL), "a fixed token cannot be renewed");
    authcore_token *info = NULL;
    CHECK_OK(authcore_client_token_info(c, &info));
    CHECK(authcore_token_expires_in_ms(info) == -1, "a personal access token never expires");
    CHECK(authcore_token_scope(info) == NULL, "no scope");
    CHECK(strcmp(authcore_token_access_token(info), "dev-personal-access-token") == 0, "value");
    authcore_token_free(info);
    authcore_client_free(c);
}

static void test_api_video(void) {
    devserver_reset();
    rotation_log log = {0, ""};
    authcore_options *o = quick_options();
    CHECK_OK(authcore_options_set_refresh_token_callback(o, on_rotation, &log));
    CHECK_OK(authcore_options_add_token_request_header(o, "AV-Origin-App", "authcore-c-test:1.0"));
    authcore_client *c = NULL;
    CHECK_OK(authcore_client_new_api_video_at(devserver_url(), "dev-api-key", o, &c));
    authcore_options_free(o); /* the client keeps its own copy */

    char *first = NULL;
    CHECK_OK(authcore_client_token(c, &first));
    CHECK(get_status(c, "/api/resource") == 200, "api.video token accepted");
    CHECK(counter("token_requests_by_grant", "apivideo/api_key") == 1, "one api-key exchange");
    CHECK(log.calls == 1 && strlen(log.last) > 0, "callback saw the refresh token (%d)", log.calls);
    char first_refresh[256];
    snprintf(first_refresh, sizeof first_refresh, "%s", log.last);

    bool dropped = false;
    CHECK_OK(authcore_client_invalidate(c, first, &dropped));
    CHECK(dropped, "the cached token was dropped");
    CHECK_OK(authcore_client_invalidate(c, first, &dropped));
    CHECK(!dropped, "a second report of the same token drops nothing");
    char *second = NULL;
    CHECK_OK(authcore_client_token(c, &second));
    CHECK(second && first && strcmp(first, second) != 0, "a new token after invalidation");
    CHECK(counter("token_requests_by_grant", "apivideo/refresh") == 1, "renewed by refresh");
    CHECK(log.calls == 2 && strcmp(log.last, first_refresh) != 0, "rotated refresh token seen");
    authcore_string_free(first);
    authcore_string_free(second);
    authcore_client_free(c);

    /* The presets construct without touching the network. */
    authcore_client *prod = NULL, *sandbox = NULL;
    CHECK_OK(authcore_client_new_api_video("key", false, NULL, &prod));
    CHECK_OK(authcore_client_new_api_video("key", true, NULL, &sandbox));
    CHECK(prod != NULL && sandbox != NULL, "presets");
    authcore_client_free(prod);
    authcore_client_free(sandbox);
}

static void test_client_credentials(void) {
    devserver_reset();
    const uint32_t methods[] = {AUTHCORE_AUTH_METHOD_CLIENT_SECRET_BASIC,
                                AUTHCORE_AUTH_METHOD_CLIENT_SECRET_BASIC_RAW,
                                AUTHCORE_AUTH_METHOD_CLIENT_SECRET_POST};
    for (size_t i = 0; i < 3; i++) {
        authcore_client *c = NULL;
        CHECK_OK(authcore_client_new_client_credentials(url_of("/oauth2/token"), CLIENT_ID, SECRET,
                                                        "campaigns:read reporting:read",
                                                        methods[i], NULL, &c));
        CHECK(get_status(c, "/api/resource") == 200, "method %u accepted", methods[i]);
        CHECK(authcore_client_renewal_helps(c, 401, "Bearer error=\"invalid_token\""),
              "a 401 is worth a renewal");
        CHECK(!authcore_client_renewal_helps(c, 401, "Bearer error=\"insufficient_scope\""),
              "a scope challenge is not");
        CHECK(!authcore_client_renewal_helps(c, 403, NULL), "nor a 403");
        CHECK(!authcore_client_renewal_helps(c, 401, "Basic realm=\"x\", bearer ERROR=insufficient_scope"),
              "the header is parsed: any case, any place in the list");
        CHECK(authcore_client_renewal_helps(
                  c, 401, "Bearer error=\"invalid_token\", error_description=\"not insufficient_scope\""),
              "an insufficient_scope in a description is not the error");
        CHECK(get_status(c, "/api/admin") == 403, "method %u: admin needs the admin scope",
              methods[i]);
        authcore_token *info = NULL;
        CHECK_OK(authcore_client_token_info(c, &info));
        const char *scope = authcore_token_scope(info);
        int64_t left = authcore_token_expires_in_ms(info);
        CHECK(scope && strstr(scope, "campaigns:read") && strstr(scope, "reporting:read"),
              "granted scope %s", scope ? scope : "(null)");
        CHECK(strcmp(authcore_token_type(info), "Bearer") == 0, "type");
        CHECK(left > 3500 * 1000 && left <= 3600 * 1000, "expires in %lld ms", (long long)left);
        CHECK(strlen(authcore_token_access_token(info)) > 0, "access token");
        CHECK(authcore_token_id_token(info) == NULL, "no ID token from client credentials");
        const char *fields = authcore_token_fields_json(info);
        CHECK(fields != NULL && strstr(fields, "\"token_type\"") != NULL &&
                  strstr(fields, "access_token") == NULL,
              "other fields, no token: %s", fields ? fields : "(null)");
        int64_t at = authcore_token_expires_at_unix_ms(info);
        int64_t now_ms = (int64_t)time(NULL) * 1000;
        CHECK(at > now_ms + 3500 * 1000 && at < now_ms + 3700 * 1000, "expires at %lld",
              (long long)at);
        authcore_token_free(info);
        authcore_client_free(c);
    }
    CHECK(counter("token_requests_by_grant", "oauth2/client_credentials") == 3,
          "one token per client (a 403 for scope is not a reason to renew)");
    /* An expiry margin for an API whose clock runs ahead: the token is not used as late. */
    {
        authcore_options *o = NULL;
        CHECK_OK(authcore_options_new(&o));
        CHECK_STATUS(authcore_options_set_expiry_margin_ms(o, 86400001), AUTHCORE_STATUS_INVALID_ARGUMENT);
        CHECK_OK(authcore_options_set_expiry_margin_ms(o, 600000));
        authcore_client *c = NULL;
        CHECK_OK(authcore_client_new_client_credentials(url_of("/oauth2/token"), "dev-client", "dev-secret",
                                                        NULL, 0, o, &c));
        authcore_options_free(o);
        authcore_token *info = NULL;
        CHECK_OK(authcore_client_token_info(c, &info));
        int64_t left = authcore_token_expires_in_ms(info);
        CHECK(left > 2900 * 1000 && left <= 3000 * 1000, "with a 600 s margin: %lld ms", (long long)left);
        authcore_token_free(info);
        authcore_client_free(c);
        devserver_reset();
    }

    authcore_client *vibe = NULL;
    CHECK_OK(authcore_client_new_vibe("id", "secret", "campaigns:read", NULL, &vibe));
    CHECK(vibe != NULL, "vibe preset");
    authcore_client_free(vibe);
}

/* Runs a code flow to a client; fills `log` through the rotation callback. */
static authcore_client *code_flow_client(bool viewneo, rotation_log *log) {
    authcore_options *o = quick_options();
    CHECK_OK(authcore_options_set_refresh_token_callback(o, on_rotation, log));
    authcore_code_flow *flow = NULL;
    if (viewneo) {
        CHECK_OK(authcore_code_flow_new_viewneo(devserver_url(), CLIENT_ID, SECRET,
                                                "http://127.0.0.1/callback", NULL, o, &flow));
    } else {
        char authorize[512];
        snprintf(authorize, sizeof authorize, "%s/oauth2/authorize", devserver_url());
        CHECK_OK(authcore_code_flow_new(authorize, url_of("/oauth2/token"), CLIENT_ID, SECRET,
                                        "http://127.0.0.1/callback", "campaigns:read", false,
                                        AUTHCORE_AUTH_METHOD_CLIENT_SECRET_BASIC, true, o, &flow));
    }
    authcore_options_free(o);
    char *url = NULL, *state = NULL;
    CHECK_OK(authcore_code_flow_authorization_url(flow, &url, &state));
    CHECK(url && state && strstr(url, state) != NULL, "the URL carries the state");
    CHECK(viewneo || strstr(url, "code_challenge_method=S256") != NULL, "PKCE S256");
    char *callback = url ? follow_authorize(url) : NULL;
    CHECK(callback != NULL, "the provider redirected back");
    authcore_client *client = NULL;
    if (callback != NULL) {
        CHECK_OK(authcore_code_flow_finish_with_state(flow, callback, state, &client));
        /* The state is accepted once. */
        authcore_client *again = NULL;
        CHECK_STATUS(authcore_code_flow_finish_with_state(flow, callback, state, &again),
                     AUTHCORE_STATUS_STATE_MISMATCH);
        CHECK(again == NULL, "no client on failure");
    }
    free(callback);
    authcore_string_free(url);
    authcore_string_free(state);
    authcore_code_flow_free(flow);
    return client;
}

static void test_authorization_code_and_refresh(void) {
    for (int viewneo = 0; viewneo <= 1; viewneo++) {
        devserver_reset();
        rotation_log log = {0, ""};
        authcore_client *c = code_flow_client(viewneo != 0, &log);
        CHECK(c != NULL, "code flow gave a client (viewneo=%d)", viewneo);
        if (c == NULL) {
            continue;
        }
        CHECK(get_status(c, "/api/resource") == 200, "code token accepted");
        CHECK(log.calls == 1, "refresh token announced (%d)", log.calls);
        authcore_client_free(c);

        /* A new client from the saved refresh token (what a restarted program does). */
        authcore_client *r = NULL;
        const char *token_path = viewneo ? "/oauth/token" : "/oauth2/token";
        CHECK_OK(authcore_client_new_refresh_token(url_of(token_path), CLIENT_ID, SECRET, log.last,
                                                   viewneo != 0,
                                                   AUTHCORE_AUTH_METHOD_CLIENT_SECRET_BASIC, NULL,
                                                   &r));
        CHECK(get_status(r, "/api/resource") == 200, "refreshed token accepted");
        const char *grant = viewneo ? "viewneo/refresh_token" : "oauth2/refresh_token";
        CHECK(counter("token_requests_by_grant", grant) == 1, "%s once", grant);
        authcore_client_free(r);
    }

    /* A callback with the wrong state, and one carrying an OAuth error. */
    authcore_code_flow *flow = NULL;
    CHECK_OK(authcore_code_flow_new_viewneo(devserver_url(), CLIENT_ID, SECRET,
                                            "http://127.0.0.1/callback", NULL, NULL, &flow));
    char *url = NULL, *state = NULL;
    CHECK_OK(authcore_code_flow_authorization_url(flow, &url, &state));
    authcore_client *c = NULL;
    CHECK_STATUS(authcore_code_flow_finish_with_state(
                     flow, "http://127.0.0.1/callback?code=x&state=forged", state, &c),
                 AUTHCORE_STATUS_STATE_MISMATCH);
    authcore_string_free(url);
    authcore_string_free(state);
    CHECK_OK(authcore_code_flow_authorization_url(flow, &url, &state));
    char denied[512];
    snprintf(denied, sizeof denied,
             "http://127.0.0.1/callback?error=access_denied&error_description=no&state=%s", state);
    CHECK_STATUS(authcore_code_flow_finish_with_state(flow, denied, state, &c), AUTHCORE_STATUS_OAUTH);
    authcore_string_free(state);
    CHECK(authcore_last_error_oauth_error() &&
              strcmp(authcore_last_error_oauth_error(), "access_denied") == 0,
          "access_denied reachable");
    CHECK(c == NULL, "no client");
    authcore_string_free(url);
    authcore_code_flow_free(flow);
}

/* The pending key every worker of one application shares. */
static const uint8_t PENDING_KEY[32] = "workers-share-this-32-byte-key!";

static authcore_code_flow *keyed_flow(const uint8_t *key) {
    authcore_code_flow *flow = NULL;
    CHECK_OK(authcore_code_flow_new_viewneo(devserver_url(), CLIENT_ID, SECRET,
                                            "http://127.0.0.1/callback", NULL, NULL, &flow));
    if (flow != NULL && key != NULL) CHECK_OK(authcore_code_flow_set_pending_key(flow, key, 32));
    return flow;
}

/* Two sign-ins in flight, a forged callback between them, and a sign-in finished by
 * another flow (another worker process sharing the pending key) from its sealed form. */
static void test_sign_ins_in_flight(void) {
    devserver_reset();
    authcore_code_flow *flow = keyed_flow(PENDING_KEY), *worker = keyed_flow(PENDING_KEY);
    char *url_a = NULL, *state_a = NULL, *url_b = NULL, *pending_b = NULL;
    CHECK_OK(authcore_code_flow_authorization_url(flow, &url_a, &state_a));
    CHECK_OK(authcore_code_flow_authorization_url_pending(flow, &url_b, NULL, &pending_b));
    CHECK(pending_b != NULL && strlen(pending_b) > 20, "an exported sign-in");
    authcore_client *c = NULL;
    CHECK_STATUS(authcore_code_flow_finish_with_state(flow, "/callback?code=x&state=forged", state_a, &c),
                 AUTHCORE_STATUS_STATE_MISMATCH);
    char *callback_a = follow_authorize(url_a);
    char *callback_b = follow_authorize(url_b);
    CHECK(callback_a != NULL && callback_b != NULL, "the provider redirected back");
    if (callback_a != NULL && callback_b != NULL) {
        /* b lands on the other worker, which never saw it start. */
        CHECK_OK(authcore_code_flow_finish_pending(worker, callback_b, pending_b, &c));
        CHECK(c != NULL && get_status(c, "/api/resource") == 200, "b signed in on the worker");
        authcore_client_free(c);
        c = NULL;
        CHECK_STATUS(authcore_code_flow_finish_pending(worker, callback_b, pending_b, &c),
                     AUTHCORE_STATUS_STATE_MISMATCH);
        /* The pending string of b does not finish a's callback. */
        CHECK_STATUS(authcore_code_flow_finish_pending(flow, callback_a, pending_b, &c),
                     AUTHCORE_STATUS_STATE_MISMATCH);
        CHECK_OK(authcore_code_flow_finish_with_state(flow, callback_a, state_a, &c));
        CHECK(c != NULL && get_status(c, "/api/resource") == 200, "a signed in");
        authcore_client_free(c);
        c = NULL;
        CHECK_STATUS(authcore_code_flow_finish_with_state(flow, callback_a, state_a, &c),
                     AUTHCORE_STATUS_STATE_MISMATCH);
        CHECK_STATUS(authcore_code_flow_finish_pending(flow, callback_a, "garbage", &c),
                     AUTHCORE_STATUS_CONFIG);
        CHECK_STATUS(authcore_code_flow_finish_pending(flow, callback_a, NULL, &c),
                     AUTHCORE_STATUS_NULL_ARGUMENT);
        CHECK(c == NULL, "no client from a failed finish");
    }
    CHECK(counter("token_requests_by_grant", "viewneo/authorization_code") == 2,
          "two code exchanges, none for the refused callbacks");
    authcore_stats fs;
    memset(&fs, 0xff, sizeof fs);
    CHECK_OK(authcore_code_flow_stats(worker, &fs, sizeof fs));
    CHECK(fs.token_requests_succeeded == 1 && fs.signins_evicted == 0,
          "the worker counted its exchange (%llu) and no eviction",
          (unsigned long long)fs.token_requests_succeeded);
    free(callback_a);
    free(callback_b);
    authcore_string_free(url_a);
    authcore_string_free(state_a);
    authcore_string_free(url_b);
    authcore_string_free(pending_b);
    authcore_code_flow_free(worker);
    authcore_code_flow_free(flow);
}

/* Login CSRF (RFC 6749 §10.12): an attacker starts a sign-in on the same application,
 * signs in, and sends the victim the callback link; the victim's session holds its own
 * state (and sealed pending). Finished with the victim's binding: refused, no token
 * request. With no binding at all: refused. */
static void test_login_csrf(void) {
    devserver_reset();
    authcore_code_flow *flow = keyed_flow(PENDING_KEY);
    char *victim_url = NULL, *victim_state = NULL, *victim_pending = NULL;
    char *attacker_url = NULL;
    CHECK_OK(authcore_code_flow_authorization_url_pending(flow, &victim_url, &victim_state,
                                                          &victim_pending));
    CHECK_OK(authcore_code_flow_authorization_url(flow, &attacker_url, NULL));
    char *attackers_link = attacker_url ? follow_authorize(attacker_url) : NULL;
    CHECK(attackers_link != NULL, "the attacker got a callback link");
    authcore_client *c = NULL;
    if (attackers_link != NULL) {
        CHECK_STATUS(authcore_code_flow_finish_with_state(flow, attackers_link, victim_state, &c),
                     AUTHCORE_STATUS_STATE_MISMATCH);
        CHECK_STATUS(authcore_code_flow_finish_pending(flow, attackers_link, victim_pending, &c),
                     AUTHCORE_STATUS_STATE_MISMATCH);
        CHECK_STATUS(authcore_code_flow_finish_with_state(flow, attackers_link, NULL, &c),
                     AUTHCORE_STATUS_CONFIG);
        CHECK(strstr(authcore_last_error_message(), "state") != NULL &&
                  strstr(authcore_last_error_message(), "finish_pending") != NULL,
              "says what finish needs: %s", authcore_last_error_message());
        CHECK_STATUS(authcore_code_flow_finish_with_state(flow, attackers_link, "", &c),
                     AUTHCORE_STATUS_CONFIG);
        CHECK(c == NULL, "no client");
        CHECK(token_requests() == 0, "no token request (%ld)", token_requests());
    }
    /* The victim's own sign-in is untouched. */
    char *victims_link = victim_url ? follow_authorize(victim_url) : NULL;
    if (victims_link != NULL) {
        CHECK_OK(authcore_code_flow_finish_with_state(flow, victims_link, victim_state, &c));
        CHECK(c != NULL && get_status(c, "/api/resource") == 200, "the victim signed in");
        authcore_client_free(c);
    }
    free(attackers_link);
    free(victims_link);
    authcore_string_free(victim_url);
    authcore_string_free(victim_state);
    authcore_string_free(victim_pending);
    authcore_string_free(attacker_url);
    authcore_code_flow_free(flow);
}

/* A sealed sign-in altered at every character, truncated, under another key or none
 * shared, garbage, huge, or expired: refused before any token request. */
static void test_sealed_pending_refused(void) {
    devserver_reset();
    authcore_code_flow *flow = keyed_flow(PENDING_KEY);
    uint8_t other_key[32];
    memcpy(other_key, PENDING_KEY, sizeof other_key);
    other_key[5] ^= 1;
    authcore_code_flow *other = keyed_flow(other_key), *unkeyed = keyed_flow(NULL);
    CHECK_STATUS(authcore_code_flow_set_pending_key(flow, PENDING_KEY, 31), AUTHCORE_STATUS_CONFIG);
    CHECK_STATUS(authcore_code_flow_set_pending_key(flow, PENDING_KEY, 33), AUTHCORE_STATUS_CONFIG);
    CHECK(strstr(authcore_last_error_message(), "32") != NULL, "names the length: %s",
          authcore_last_error_message());
    char *url = NULL, *pending = NULL;
    CHECK_OK(authcore_code_flow_authorization_url_pending(flow, &url, NULL, &pending));
    char *callback = url ? follow_authorize(url) : NULL;
    CHECK(callback != NULL && pending != NULL, "a sign-in and its callback");
    authcore_client *c = NULL;
    if (callback != NULL && pending != NULL) {
        size_t n = strlen(pending);
        char *altered = malloc(n + 3);
        int refused = 0;
        for (size_t i = 0; i < n; i++) {
            memcpy(altered, pending, n + 1);
            altered[i] = altered[i] == 'A' ? 'B' : 'A';
            refused += authcore_code_flow_finish_pending(flow, callback, altered, &c) ==
                       AUTHCORE_STATUS_CONFIG;
        }
        CHECK(refused == (int)n, "every altered character refused (%d of %zu)", refused, n);
        for (size_t len = 0; len < n; len += 5) {
            memcpy(altered, pending, len);
            altered[len] = '\0';
            CHECK_STATUS(authcore_code_flow_finish_pending(flow, callback, altered, &c),
                         AUTHCORE_STATUS_CONFIG);
        }
        snprintf(altered, n + 3, "%sAA", pending);
        CHECK_STATUS(authcore_code_flow_finish_pending(flow, callback, altered, &c), AUTHCORE_STATUS_CONFIG);
        free(altered);
        CHECK_STATUS(authcore_code_flow_finish_pending(other, callback, pending, &c), AUTHCORE_STATUS_CONFIG);
        CHECK_STATUS(authcore_code_flow_finish_pending(unkeyed, callback, pending, &c),
                     AUTHCORE_STATUS_CONFIG);
        CHECK(strstr(authcore_last_error_message(), "pending key") != NULL ||
                  strstr(authcore_last_error_message(), "pending_key") != NULL,
              "says why: %s", authcore_last_error_message());
        size_t huge_len = (size_t)1 << 20;
        char *huge = malloc(huge_len + 1);
        memset(huge, 'A', huge_len);
        huge[huge_len] = '\0';
        CHECK_STATUS(authcore_code_flow_finish_pending(flow, callback, huge, &c), AUTHCORE_STATUS_CONFIG);
        free(huge);
        CHECK_STATUS(authcore_code_flow_finish_pending(flow, callback, "\x01\x7f\xc3\xa9", &c),
                     AUTHCORE_STATUS_CONFIG);
        CHECK_STATUS(authcore_code_flow_finish_pending(flow, callback, "\xff\xfe", &c),
                     AUTHCORE_STATUS_INVALID_ARGUMENT);
        CHECK(c == NULL, "no client");
        CHECK(token_requests() == 0, "no token request (%ld)", token_requests());
        /* Untouched, it finishes. */
        CHECK_OK(authcore_code_flow_finish_pending(flow, callback, pending, &c));
        authcore_client_free(c);
        c = NULL;
    }
    free(callback);
    authcore_string_free(url);
    authcore_string_free(pending);

    /* Expired, in memory and sealed (finished by another worker). */
    devserver_reset();
    authcore_code_flow *brief = keyed_flow(PENDING_KEY), *worker = keyed_flow(PENDING_KEY);
    /* A lifetime of zero lets no sign-in finish: refused, the flow left as it was. */
    CHECK_STATUS(authcore_code_flow_set_pending_lifetime(brief, 0), AUTHCORE_STATUS_CONFIG);
    CHECK(strstr(authcore_last_error_message(), "zero") != NULL, "says why: %s",
          authcore_last_error_message());
    CHECK_OK(authcore_code_flow_set_pending_lifetime(brief, 100));
    CHECK_OK(authcore_code_flow_set_pending_lifetime(worker, 100));
    char *state = NULL;
    CHECK_OK(authcore_code_flow_authorization_url_pending(brief, &url, &state, &pending));
    callback = url ? follow_authorize(url) : NULL;
    struct timespec wait = {0, 500 * 1000 * 1000}; /* expiry only becomes more true */
    nanosleep(&wait, NULL);
    if (callback != NULL) {
        CHECK_STATUS(authcore_code_flow_finish_with_state(brief, callback, state, &c),
                     AUTHCORE_STATUS_STATE_MISMATCH);
        CHECK_STATUS(authcore_code_flow_finish_pending(worker, callback, pending, &c),
                     AUTHCORE_STATUS_STATE_MISMATCH);
    }
    CHECK(token_requests() == 0, "no token request for an expired sign-in");
    free(callback);
    authcore_string_free(url);
    authcore_string_free(state);
    authcore_string_free(pending);
    authcore_code_flow_free(brief);
    authcore_code_flow_free(worker);
    authcore_code_flow_free(other);
    authcore_code_flow_free(unkeyed);
    authcore_code_flow_free(flow);
}

/* TLS trust against the provider serving HTTPS with a throwaway CA (run.sh starts it). */
static void test_tls_trust(void) {
    const char *base = getenv("AUTHCORE_DEVSERVER_TLS_URL");
    const char *ca = getenv("AUTHCORE_DEVSERVER_TLS_CA");
    CHECK(base != NULL && ca != NULL, "the TLS provider is running");
    if (base == NULL || ca == NULL) {
        return;
    }
    char token_url[512];
    snprintf(token_url, sizeof token_url, "%s/oauth2/token", base);
    char token[512];

    /* The platform's trust store does not know the throwaway CA. */
    authcore_client *c = NULL;
    CHECK_OK(authcore_client_new_client_credentials(token_url, CLIENT_ID, SECRET, NULL, 0, NULL, &c));
    CHECK_STATUS(authcore_client_token_into(c, token, sizeof token, NULL), AUTHCORE_STATUS_TRANSPORT);
    CHECK(strstr(authcore_last_error_message(), "not trusted") != NULL &&
              strstr(authcore_last_error_message(), "127.0.0.1") != NULL,
          "says why and where");
    authcore_client_free(c);

    /* Its CA as the bundle: a token. */
    authcore_options *o = NULL;
    CHECK_OK(authcore_options_new(&o));
    CHECK_OK(authcore_options_set_ca_bundle(o, ca));
    c = NULL;
    CHECK_OK(authcore_client_new_client_credentials(token_url, CLIENT_ID, SECRET, NULL, 0, o, &c));
    CHECK_OK(authcore_client_token_into(c, token, sizeof token, NULL));
    authcore_client_free(c);

    /* A bundle that cannot be used fails the constructor; "" is refused by the setter;
     * NULL goes back to the platform's store. */
    CHECK_STATUS(authcore_options_set_ca_bundle(o, ""), AUTHCORE_STATUS_INVALID_ARGUMENT);
    CHECK_OK(authcore_options_set_ca_bundle(o, "/nonexistent/ca.pem"));
    c = NULL;
    CHECK_STATUS(authcore_client_new_client_credentials(token_url, CLIENT_ID, SECRET, NULL, 0, o, &c),
                 AUTHCORE_STATUS_CONFIG);
    CHECK(c == NULL && strstr(authcore_last_error_message(), "/nonexistent/ca.pem") != NULL,
          "names the file");
    CHECK_OK(authcore_options_set_ca_bundle(o, NULL));
    CHECK_OK(authcore_client_new_client_credentials(token_url, CLIENT_ID, SECRET, NULL, 0, o, &c));
    CHECK_STATUS(authcore_client_token_into(c, token, sizeof token, NULL), AUTHCORE_STATUS_TRANSPORT);
    authcore_client_free(c);
    CHECK_STATUS(authcore_options_set_ca_bundle(NULL, ca), AUTHCORE_STATUS_NULL_ARGUMENT);
    authcore_options_free(o);
}

/* A control request to the TLS provider through `c` (which trusts its CA); the parsed
 * JSON answer (caller frees), NULL on failure. */
static cJSON *tls_control(const authcore_client *c, const char *base, const char *method,
                          const char *path, const char *body) {
    char url[512];
    snprintf(url, sizeof url, "%s%s", base, path);
    authcore_header ct = {"Content-Type", "application/json"};
    authcore_response *resp = NULL;
    if (authcore_client_request(c, method, url, &ct, 1, (const uint8_t *)body,
                                body ? strlen(body) : 0, &resp) != AUTHCORE_STATUS_OK) {
        return NULL;
    }
    const uint8_t *data = NULL;
    size_t n = 0;
    cJSON *parsed = NULL;
    if (authcore_response_status(resp) == 200 &&
        authcore_response_body(resp, &data, &n) == AUTHCORE_STATUS_OK) {
        parsed = cJSON_ParseWithLength((const char *)data, n);
    }
    authcore_response_free(resp);
    return parsed;
}

/* Mutual TLS (RFC 8705) at the TLS provider: a certificate it issues, registered for
 * tls_client_auth; the key checked against the certificate when set; the token bound
 * to the certificate, which the API sees. */
static void test_mtls(void) {
    const char *base = getenv("AUTHCORE_DEVSERVER_TLS_URL");
    const char *ca = getenv("AUTHCORE_DEVSERVER_TLS_CA");
    CHECK(base != NULL && ca != NULL, "the TLS provider is running");
    if (base == NULL || ca == NULL) {
        return;
    }
    char token_url[512], api_url[512];
    snprintf(token_url, sizeof token_url, "%s/oauth2/token", base);
    snprintf(api_url, sizeof api_url, "%s/api/mtls", base);
    authcore_options *trust = NULL;
    CHECK_OK(authcore_options_new(&trust));
    CHECK_OK(authcore_options_set_ca_bundle(trust, ca));
    authcore_client *ctl = NULL;
    CHECK_OK(authcore_client_new_client_credentials(token_url, CLIENT_ID, SECRET, NULL, 0, trust, &ctl));
    cJSON *made = tls_control(ctl, base, "POST", "/_control/client_certificate", "{\"cn\":\"c-mtls\"}");
    cJSON *other = tls_control(ctl, base, "POST", "/_control/client_certificate", "{\"cn\":\"c-other\"}");
    CHECK(made != NULL && other != NULL, "the provider made client certificates");
    if (made == NULL || other == NULL) {
        cJSON_Delete(made);
        cJSON_Delete(other);
        authcore_client_free(ctl);
        authcore_options_free(trust);
        return;
    }
    const char *cert = cJSON_GetObjectItem(made, "certificate")->valuestring;
    const char *key = cJSON_GetObjectItem(made, "key")->valuestring;
    const char *x5t = cJSON_GetObjectItem(made, "x5t#S256")->valuestring;
    const char *other_key = cJSON_GetObjectItem(other, "key")->valuestring;
    cJSON *config = cJSON_CreateObject();
    cJSON *clients = cJSON_AddArrayToObject(config, "mtls_clients");
    cJSON *client = cJSON_CreateObject();
    cJSON_AddStringToObject(client, "client_id", "c-mtls");
    cJSON_AddStringToObject(client, "tls_client_auth_subject_dn",
                            cJSON_GetObjectItem(made, "subject")->valuestring);
    cJSON_AddItemToArray(clients, client);
    char *config_text = cJSON_PrintUnformatted(config);
    cJSON_Delete(tls_control(ctl, base, "POST", "/_control/config", config_text));
    free(config_text);
    cJSON_Delete(config);

    /* Another certificate's key, or no key at all: refused by the setter, the key never
     * quoted, the options as they were. */
    authcore_options *o = NULL;
    CHECK_OK(authcore_options_new(&o));
    CHECK_OK(authcore_options_set_ca_bundle(o, ca));
    CHECK_STATUS(authcore_options_set_client_certificate_pem(o, cert, other_key), AUTHCORE_STATUS_CONFIG);
    CHECK(strstr(authcore_last_error_message(), "not the key of the client certificate") != NULL,
          "says why: %s", authcore_last_error_message());
    char chunk[17];
    snprintf(chunk, sizeof chunk, "%.16s", other_key + strlen("-----BEGIN PRIVATE KEY-----\n") + 16);
    CHECK(strstr(authcore_last_error_message(), chunk) == NULL, "the key is not quoted");
    CHECK_STATUS(authcore_options_set_client_certificate_pem(o, cert, NULL), AUTHCORE_STATUS_CONFIG);
    CHECK_STATUS(authcore_options_set_client_certificate_pem(o, NULL, key), AUTHCORE_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(authcore_options_set_client_certificate_files(o, "/nonexistent/c.pem", NULL),
                 AUTHCORE_STATUS_CONFIG);
    CHECK(strstr(authcore_last_error_message(), "/nonexistent/c.pem") != NULL, "names the file");
    /* tls_client_auth without a certificate: the constructor refuses. */
    authcore_client *c = NULL;
    CHECK_STATUS(authcore_client_new_client_credentials(token_url, "c-mtls", "", NULL,
                                                        AUTHCORE_AUTH_METHOD_TLS_CLIENT_AUTH, o, &c),
                 AUTHCORE_STATUS_CONFIG);
    CHECK(c == NULL, "no client");

    /* The certificate: a token for c-mtls, bound to it, accepted by the API. */
    CHECK_OK(authcore_options_set_client_certificate_pem(o, cert, key));
    CHECK_OK(authcore_client_new_client_credentials(token_url, "c-mtls", "", NULL,
                                                    AUTHCORE_AUTH_METHOD_TLS_CLIENT_AUTH, o, &c));
    authcore_response *resp = NULL;
    CHECK_OK(authcore_client_get(c, api_url, &resp));
    if (resp != NULL) {
        CHECK(authcore_response_status(resp) == 200, "accepted (%u)", (unsigned)authcore_response_status(resp));
        const uint8_t *data = NULL;
        size_t n = 0;
        CHECK_OK(authcore_response_body(resp, &data, &n));
        cJSON *answer = cJSON_ParseWithLength((const char *)data, n);
        cJSON *cnf = answer ? cJSON_GetObjectItem(answer, "cnf") : NULL;
        cJSON *bound = cnf ? cJSON_GetObjectItem(cnf, "x5t#S256") : NULL;
        CHECK(bound != NULL && cJSON_IsString(bound) && strcmp(bound->valuestring, x5t) == 0,
              "the token is bound to the certificate");
        cJSON *sub = answer ? cJSON_GetObjectItem(answer, "sub") : NULL;
        CHECK(sub != NULL && cJSON_IsString(sub) && strcmp(sub->valuestring, "c-mtls") == 0, "its client");
        cJSON_Delete(answer);
        authcore_response_free(resp);
    }
    authcore_client_free(c);
    /* NULL path: no certificate again. */
    CHECK_OK(authcore_options_set_client_certificate_files(o, NULL, NULL));
    c = NULL;
    CHECK_STATUS(authcore_client_new_client_credentials(token_url, "c-mtls", "", NULL,
                                                        AUTHCORE_AUTH_METHOD_TLS_CLIENT_AUTH, o, &c),
                 AUTHCORE_STATUS_CONFIG);
    CHECK_STATUS(authcore_options_set_client_certificate_pem(NULL, cert, key), AUTHCORE_STATUS_NULL_ARGUMENT);
    authcore_options_free(o);
    cJSON_Delete(made);
    cJSON_Delete(other);
    authcore_client_free(ctl);
    authcore_options_free(trust);
}

static void test_errors(void) {
    devserver_reset();
    authcore_options *o = quick_options();
    authcore_client *c = NULL;

    /* Wrong secret: the provider's OAuth error, not retried, secret not echoed. */
    CHECK_OK(authcore_client_new_client_credentials(url_of("/oauth2/token"), CLIENT_ID,
                                                    "wrong-secret-4242", NULL,
                                                    AUTHCORE_AUTH_METHOD_CLIENT_SECRET_BASIC, o, &c));
    char *token = NULL;
    CHECK_STATUS(authcore_client_token(c, &token), AUTHCORE_STATUS_OAUTH);
    CHECK(token == NULL, "out-parameter untouched on failure");
    CHECK(authcore_last_error_status() == AUTHCORE_STATUS_OAUTH, "last status");
    const char *err = authcore_last_error_oauth_error();
    const char *desc = authcore_last_error_oauth_description();
    CHECK(err && strcmp(err, "invalid_client") == 0, "error code %s", err ? err : "(null)");
    CHECK(desc && strlen(desc) > 0, "description present");
    CHECK(authcore_last_error_http_status() == 401, "http status %u",
          (unsigned)authcore_last_error_http_status());
    CHECK(strstr(authcore_last_error_message(), "invalid_client") != NULL, "message names it");
    CHECK(strstr(authcore_last_error_message(), "wrong-secret-4242") == NULL, "no secret");
    CHECK(token_requests() == 1, "an OAuth refusal is not retried");
    /* Success clears the thread's last error. */
    CHECK_OK(authcore_options_set_max_retries(o, 0));
    CHECK(strlen(authcore_last_error_message()) == 0 && authcore_last_error_oauth_error() == NULL,
          "cleared");
    authcore_client_free(c);

    /* Connection refused. */
    CHECK_OK(authcore_client_new_client_credentials("http://127.0.0.1:1/token", CLIENT_ID, SECRET,
                                                    NULL, AUTHCORE_AUTH_METHOD_CLIENT_SECRET_BASIC,
                                                    o, &c));
    CHECK_STATUS(authcore_client_token(c, &token), AUTHCORE_STATUS_TRANSPORT);
    authcore_client_free(c);

    /* Malformed token response. */
    CHECK_OK(authcore_client_new_client_credentials(url_of("/oauth2/token"), CLIENT_ID, SECRET,
                                                    NULL, AUTHCORE_AUTH_METHOD_CLIENT_SECRET_BASIC,
                                                    o, &c));
    control_post("/_control/malformed", "{\"count\": 1}");
    CHECK_STATUS(authcore_client_token(c, &token), AUTHCORE_STATUS_INVALID_RESPONSE);
    authcore_client_free(c);

    /* A provider slower than the timeout. */
    control_post("/_control/config", "{\"latency_ms\": 1500}");
    CHECK_OK(authcore_options_set_timeout_ms(o, 300));
    CHECK_OK(authcore_client_new_client_credentials(url_of("/oauth2/token"), CLIENT_ID, SECRET,
                                                    NULL, AUTHCORE_AUTH_METHOD_CLIENT_SECRET_BASIC,
                                                    o, &c));
    CHECK_STATUS(authcore_client_token(c, &token), AUTHCORE_STATUS_TIMEOUT);
    authcore_client_free(c);
    devserver_reset();

    /* A 429 with Retry-After, retries off: the server's delay is reported. */
    control_post("/_control/fail", "{\"count\": 1, \"status\": 429, \"retry_after\": 7}");
    CHECK_OK(authcore_options_set_timeout_ms(o, 5000));
    CHECK_OK(authcore_client_new_client_credentials(url_of("/oauth2/token"), CLIENT_ID, SECRET,
                                                    NULL, AUTHCORE_AUTH_METHOD_CLIENT_SECRET_BASIC,
                                                    o, &c));
    CHECK_STATUS(authcore_client_token(c, &token), AUTHCORE_STATUS_RATE_LIMITED);
    CHECK(authcore_last_error_http_status() == 429, "429 reported");
    CHECK(authcore_last_error_retry_after_ms() == 7000, "retry after %llu",
          (unsigned long long)authcore_last_error_retry_after_ms());
    authcore_client_free(c);

    /* Revoked token: request() renews once and retries. */
    CHECK_OK(authcore_client_new_client_credentials(url_of("/oauth2/token"), CLIENT_ID, SECRET,
                                                    NULL, AUTHCORE_AUTH_METHOD_CLIENT_SECRET_BASIC,
                                                    o, &c));
    CHECK(get_status(c, "/api/resource") == 200, "before revocation");
    control_post("/_control/revoke", "{\"refresh\": false}");
    long before = token_requests();
    CHECK(get_status(c, "/api/resource") == 200, "recovered after revocation");
    CHECK(token_requests() == before + 1, "exactly one renewal");
    CHECK(counter("resource_rejected_invalid", NULL) == 1, "one refused request");
    authcore_client_free(c);

    /* Configuration errors. */
    c = NULL;
    CHECK_STATUS(authcore_client_new_client_credentials("http://auth.example.com/token", CLIENT_ID,
                                                        SECRET, NULL, 0, o, &c),
                 AUTHCORE_STATUS_CONFIG);
    CHECK(c == NULL, "no client");
    CHECK(strstr(authcore_last_error_message(), "https") != NULL, "says why: %s",
          authcore_last_error_message());
    CHECK_STATUS(authcore_client_new_client_credentials(url_of("/oauth2/token"), CLIENT_ID, SECRET,
                                                        NULL, 9, o, &c),
                 AUTHCORE_STATUS_INVALID_ARGUMENT);
    const char bad_utf8[] = {'a', (char)0xff, 'b', 0};
    CHECK_STATUS(authcore_client_new_personal_access_token(bad_utf8, &c),
                 AUTHCORE_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(authcore_options_set_timeout_ms(o, 0), AUTHCORE_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(authcore_options_set_failure_backoff_ms(o, 100, 10),
                 AUTHCORE_STATUS_INVALID_ARGUMENT);
    authcore_options_free(o);
}

static void test_response_handle(void) {
    devserver_reset();
    authcore_client *c = NULL;
    CHECK_OK(authcore_client_new_client_credentials(url_of("/oauth2/token"), CLIENT_ID, SECRET,
                                                    NULL, 0, NULL, &c));
    authcore_header headers[] = {{"Accept", "application/json"},
                                 {"Authorization", "Bearer replaced"}};
    const char *body = "{\"hello\": 1}";
    authcore_response *r = NULL;
    CHECK_OK(authcore_client_request(c, "POST", url_of("/api/resource"), headers, 2,
                                     (const uint8_t *)body, strlen(body), &r));
    CHECK(authcore_response_status(r) == 200, "status %u", (unsigned)authcore_response_status(r));
    const uint8_t *data = NULL;
    size_t len = 0;
    CHECK_OK(authcore_response_body(r, &data, &len));
    CHECK(len > 0 && data != NULL, "body");
    /* The first header read makes the handle's header table: pointers read before and
     * after stay the same while the response lives. */
    const char *content_type = authcore_response_header(r, "content-type");
    CHECK(content_type != NULL, "content-type read first");
    size_t n = authcore_response_header_count(r);
    CHECK(n > 0, "headers");
    bool saw_content_type = false;
    for (size_t i = 0; i < n; i++) {
        const char *name = NULL, *value = NULL;
        CHECK_OK(authcore_response_header_at(r, i, &name, &value));
        if (name && strcmp(name, "content-type") == 0) {
            saw_content_type = true;
            CHECK(value && strstr(value, "json"), "content type");
        }
    }
    CHECK(saw_content_type, "content-type listed");
    CHECK(authcore_response_header(r, "Content-Type") == content_type,
          "case-insensitive lookup, the same pointer as before");
    CHECK(authcore_response_header(r, "x-missing") == NULL, "missing header");
    const char *name = NULL, *value = NULL;
    CHECK_STATUS(authcore_response_header_at(r, n, &name, &value), AUTHCORE_STATUS_INVALID_ARGUMENT);
    authcore_response_free(r);
    authcore_client_free(c);
}

static void test_null_arguments(void) {
    authcore_client *c = NULL;
    authcore_options *o = NULL;
    authcore_code_flow *f = NULL;
    authcore_response *r = NULL;
    char *s = NULL;
    const char *cs = NULL;
    const uint8_t *data = NULL;
    size_t len = 0;
    const unsigned NUL = AUTHCORE_STATUS_NULL_ARGUMENT;

    CHECK_OK(authcore_client_new_personal_access_token("t", &c));
    CHECK_OK(authcore_options_new(&o));
    CHECK_OK(authcore_code_flow_new_viewneo(NULL, "id", "s", "http://127.0.0.1/cb", NULL, NULL, &f));

    CHECK_STATUS(authcore_options_new(NULL), NUL);
    CHECK_STATUS(authcore_options_set_connect_timeout_ms(NULL, 1), NUL);
    CHECK_STATUS(authcore_options_set_timeout_ms(NULL, 1), NUL);
    CHECK_STATUS(authcore_options_set_wait_timeout_ms(NULL, 1), NUL);
    CHECK_STATUS(authcore_options_set_max_retries(NULL, 1), NUL);
    CHECK_STATUS(authcore_options_set_max_body_bytes(NULL, 1), NUL);
    CHECK_STATUS(authcore_options_set_default_lifetime_secs(NULL, 1), NUL);
    CHECK_STATUS(authcore_options_set_failure_backoff_ms(NULL, 1, 2), NUL);
    CHECK_STATUS(authcore_options_set_danger_allow_insecure_http(NULL, true), NUL);
    CHECK_STATUS(authcore_options_add_token_request_header(NULL, "a", "b"), NUL);
    CHECK_STATUS(authcore_options_add_token_request_header(o, NULL, "b"), NUL);
    CHECK_STATUS(authcore_options_add_token_request_header(o, "a", NULL), NUL);
    CHECK_STATUS(authcore_options_set_refresh_token_callback(NULL, on_rotation, NULL), NUL);
    CHECK_OK(authcore_options_set_refresh_token_callback(o, NULL, NULL)); /* removes it */

    CHECK_STATUS(authcore_client_new_personal_access_token(NULL, &c), NUL);
    CHECK_STATUS(authcore_client_new_personal_access_token("t", NULL), NUL);
    CHECK_STATUS(authcore_client_new_api_video(NULL, false, NULL, &c), NUL);
    CHECK_STATUS(authcore_client_new_api_video("k", false, NULL, NULL), NUL);
    CHECK_STATUS(authcore_client_new_api_video_at(NULL, "k", NULL, &c), NUL);
    CHECK_STATUS(authcore_client_new_api_video_at("https://a.example", NULL, NULL, &c), NUL);
    CHECK_STATUS(authcore_client_new_api_video_at("https://a.example", "k", NULL, NULL), NUL);
    const char *u = "https://a.example/token";
    CHECK_STATUS(authcore_client_new_client_credentials(NULL, "i", "s", NULL, 0, NULL, &c), NUL);
    CHECK_STATUS(authcore_client_new_client_credentials(u, NULL, "s", NULL, 0, NULL, &c), NUL);
    CHECK_STATUS(authcore_client_new_client_credentials(u, "i", NULL, NULL, 0, NULL, &c), NUL);
    CHECK_STATUS(authcore_client_new_client_credentials(u, "i", "s", NULL, 0, NULL, NULL), NUL);
    CHECK_STATUS(authcore_client_new_vibe(NULL, "s", NULL, NULL, &c), NUL);
    CHECK_STATUS(authcore_client_new_vibe("i", NULL, NULL, NULL, &c), NUL);
    CHECK_STATUS(authcore_client_new_vibe("i", "s", NULL, NULL, NULL), NUL);
    CHECK_STATUS(authcore_client_new_refresh_token(NULL, "i", "s", "r", false, 0, NULL, &c), NUL);
    CHECK_STATUS(authcore_client_new_refresh_token(u, NULL, "s", "r", false, 0, NULL, &c), NUL);
    CHECK_STATUS(authcore_client_new_refresh_token(u, "i", NULL, "r", false, 0, NULL, &c), NUL);
    CHECK_STATUS(authcore_client_new_refresh_token(u, "i", "s", NULL, false, 0, NULL, &c), NUL);
    CHECK_STATUS(authcore_client_new_refresh_token(u, "i", "s", "r", false, 0, NULL, NULL), NUL);

    CHECK_STATUS(authcore_client_token(NULL, &s), NUL);
    CHECK_STATUS(authcore_client_token(c, NULL), NUL);
    CHECK_STATUS(authcore_client_token_into(NULL, NULL, 0, &len), NUL);
    CHECK_STATUS(authcore_client_token_into(c, NULL, 8, &len), NUL);
    CHECK_STATUS(authcore_client_authorization_header(NULL, &s), NUL);
    CHECK_STATUS(authcore_client_authorization_header(c, NULL), NUL);
    CHECK_STATUS(authcore_client_invalidate(NULL, "t", NULL), NUL);
    CHECK_STATUS(authcore_client_invalidate(c, NULL, NULL), NUL);
    CHECK_STATUS(authcore_client_request(NULL, "GET", u, NULL, 0, NULL, 0, &r), NUL);
    CHECK_STATUS(authcore_client_request(c, NULL, u, NULL, 0, NULL, 0, &r), NUL);
    CHECK_STATUS(authcore_client_request(c, "GET", NULL, NULL, 0, NULL, 0, &r), NUL);
    CHECK_STATUS(authcore_client_request(c, "GET", u, NULL, 1, NULL, 0, &r), NUL);
    CHECK_STATUS(authcore_client_request(c, "GET", u, NULL, 0, NULL, 1, &r), NUL);
    CHECK_STATUS(authcore_client_request(c, "GET", u, NULL, 0, NULL, 0, NULL), NUL);
    CHECK_STATUS(authcore_client_get(c, NULL, &r), NUL);
    CHECK_STATUS(authcore_client_get(NULL, u, &r), NUL);
    CHECK_STATUS(authcore_client_get(c, u, NULL), NUL);
    authcore_header bad_header = {NULL, "v"};
    CHECK_STATUS(authcore_client_request(c, "GET", u, &bad_header, 1, NULL, 0, &r), NUL);

    authcore_token *t = NULL;
    CHECK_STATUS(authcore_client_token_info(NULL, &t), NUL);
    CHECK_STATUS(authcore_client_token_info(c, NULL), NUL);
    CHECK(authcore_token_access_token(NULL) == NULL && authcore_token_type(NULL) == NULL &&
              authcore_token_scope(NULL) == NULL && authcore_token_expires_in_ms(NULL) == -1,
          "token accessors of NULL");
    authcore_token_free(NULL);
    CHECK(t == NULL, "no token handle written");

    CHECK(!authcore_client_renewal_helps(NULL, 401, NULL), "renewal_helps of NULL");
    CHECK(authcore_response_status(NULL) == 0, "status of NULL");
    CHECK_STATUS(authcore_response_body(NULL, &data, &len), NUL);
    CHECK(authcore_response_header(NULL, "a") == NULL, "header of NULL");
    CHECK(authcore_response_header_count(NULL) == 0, "count of NULL");
    CHECK_STATUS(authcore_response_header_at(NULL, 0, &cs, &cs), NUL);

    const char *cb = "http://127.0.0.1/cb";
    CHECK_STATUS(authcore_code_flow_new(NULL, u, "i", "s", cb, NULL, false, 0, true, NULL, &f), NUL);
    CHECK_STATUS(authcore_code_flow_new(u, NULL, "i", "s", cb, NULL, false, 0, true, NULL, &f), NUL);
    CHECK_STATUS(authcore_code_flow_new(u, u, NULL, "s", cb, NULL, false, 0, true, NULL, &f), NUL);
    CHECK_STATUS(authcore_code_flow_new(u, u, "i", NULL, cb, NULL, false, 0, true, NULL, &f), NUL);
    CHECK_STATUS(authcore_code_flow_new(u, u, "i", "s", NULL, NULL, false, 0, true, NULL, &f), NUL);
    CHECK_STATUS(authcore_code_flow_new(u, u, "i", "s", cb, NULL, false, 0, true, NULL, NULL), NUL);
    CHECK_STATUS(authcore_code_flow_new_viewneo(NULL, NULL, "s", cb, NULL, NULL, &f), NUL);
    CHECK_STATUS(authcore_code_flow_new_viewneo(NULL, "i", NULL, cb, NULL, NULL, &f), NUL);
    CHECK_STATUS(authcore_code_flow_new_viewneo(NULL, "i", "s", NULL, NULL, NULL, &f), NUL);
    CHECK_STATUS(authcore_code_flow_new_viewneo(NULL, "i", "s", cb, NULL, NULL, NULL), NUL);
    CHECK_STATUS(authcore_code_flow_authorization_url(NULL, &s, NULL), NUL);
    CHECK_STATUS(authcore_code_flow_authorization_url(f, NULL, NULL), NUL);
    CHECK_STATUS(authcore_code_flow_finish_with_state(NULL, cb, "st", &c), NUL);
    CHECK_STATUS(authcore_code_flow_finish_with_state(f, NULL, "st", &c), NUL);
    CHECK_STATUS(authcore_code_flow_set_pending_key(NULL, (const uint8_t *)"k", 1), NUL);
    CHECK_STATUS(authcore_code_flow_set_pending_key(f, NULL, 32), NUL);
    CHECK_STATUS(authcore_code_flow_set_pending_lifetime(NULL, 1000), NUL);
    authcore_stats fs;
    CHECK_STATUS(authcore_code_flow_stats(NULL, &fs, sizeof fs), NUL);
    CHECK_STATUS(authcore_code_flow_stats(f, NULL, sizeof fs), NUL);
    CHECK_STATUS(authcore_code_flow_finish_with_state(f, cb, "st", NULL), NUL);
    CHECK(strstr(authcore_last_error_message(), "out") != NULL, "names the argument: %s",
          authcore_last_error_message());

    /* Freeing NULL does nothing. */
    authcore_client_free(NULL);
    authcore_options_free(NULL);
    authcore_code_flow_free(NULL);
    authcore_response_free(NULL);
    authcore_string_free(NULL);

    CHECK(s == NULL && r == NULL, "no out-parameter written on failure");
    authcore_code_flow_free(f);
    authcore_options_free(o);
    authcore_client_free(c);
}

/* A failing rotation callback loses nothing, and rejected setters leave it in place. */
static void test_failing_callback_and_rejected_setters(void) {
    devserver_reset();
    rotation_log log = {0, ""};
    authcore_options *o = quick_options();
    CHECK_OK(authcore_options_set_refresh_token_callback(o, on_rotation_fails, &log));
    /* Every one of these is rejected, and none may reset the callback or the rest. */
    CHECK_STATUS(authcore_options_set_timeout_ms(o, 0), AUTHCORE_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(authcore_options_set_connect_timeout_ms(o, 0), AUTHCORE_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(authcore_options_set_wait_timeout_ms(o, 0), AUTHCORE_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(authcore_options_set_max_body_bytes(o, 0), AUTHCORE_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(authcore_options_set_failure_backoff_ms(o, 100, 10), AUTHCORE_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(authcore_options_set_default_lifetime_secs(o, UINT64_MAX), AUTHCORE_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(authcore_options_add_token_request_header(o, "bad name", "v"), AUTHCORE_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(authcore_options_add_token_request_header(o, "\xff", "v"), AUTHCORE_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(authcore_options_set_proxy(o, "::not a url::"), AUTHCORE_STATUS_INVALID_ARGUMENT);
    authcore_client *c = NULL;
    CHECK_OK(authcore_client_new_api_video_at(devserver_url(), "dev-api-key", o, &c));
    authcore_options_free(o);
    char *first = NULL;
    CHECK_OK(authcore_client_token(c, &first));
    CHECK(log.calls == 1, "the callback survived the rejected setters (%d calls)", log.calls);
    /* The callback failed, yet the refresh token it was given is the one used next. */
    bool dropped = false;
    CHECK_OK(authcore_client_invalidate(c, first, &dropped));
    CHECK(dropped, "dropped");
    char *second = NULL;
    CHECK_OK(authcore_client_token(c, &second));
    CHECK(counter("token_requests_by_grant", "apivideo/refresh") == 1, "renewed by refresh token");
    CHECK(counter("token_requests_by_grant", "apivideo/api_key") == 1, "not back to the API key");
    CHECK(log.calls == 2, "each rotation offered (%d)", log.calls);
    authcore_string_free(first);
    authcore_string_free(second);
    authcore_client_free(c);
}

int main(void) {
    test_status_strings();
    test_personal_access_token();
    test_api_video();
    test_client_credentials();
    test_authorization_code_and_refresh();
    test_sign_ins_in_flight();
    test_login_csrf();
    test_sealed_pending_refused();
    test_tls_trust();
    test_mtls();
    test_errors();
    test_response_handle();
    test_null_arguments();
    test_failing_callback_and_rejected_setters();
    return harness_finish("test_api");
}
