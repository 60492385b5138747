/*
 * Token stores from C: processes sharing one rotating refresh token through the file
 * store, a store made of the program's own callbacks, and the Redis stores.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

/* Child: its own client on the shared store, token calls for `seconds`. */
static int child_loop(const char *dir, double seconds) {
    alarm((unsigned)seconds + 20);
    authcore_options *o = NULL;
    if (authcore_options_new(&o) != AUTHCORE_STATUS_OK) return 10;
    if (authcore_options_set_file_store(o, dir) != AUTHCORE_STATUS_OK) return 11;
    authcore_client *c = NULL;
    if (authcore_client_new_api_video_at(devserver_url(), "dev-api-key", o, &c) != AUTHCORE_STATUS_OK)
        return 12;
    authcore_options_free(o);
    double end = now_seconds() + seconds;
    int failures = 0;
    char buf[512];
    size_t needed = 0;
    for (long i = 0; i < 1000000 && now_seconds() < end; i++) {
        if (authcore_client_token_into(c, buf, sizeof buf, &needed) != AUTHCORE_STATUS_OK) {
            fprintf(stderr, "child: %s\n", authcore_last_error_message());
            failures++;
        }
        sleep_ms(5);
    }
    authcore_client_free(c);
    return failures == 0 ? 0 : 1;
}

static void test_processes_share_a_rotating_refresh_token(const char *dir) {
    devserver_reset();
    control_post("/_control/config", "{\"lifetime_secs\": 2}");
    enum { N = 8 };
    pid_t pids[N];
    for (int i = 0; i < N; i++) {
        pids[i] = fork();
        if (pids[i] == 0) _exit(child_loop(dir, 6.0));
    }
    int failed = 0;
    for (int i = 0; i < N; i++) {
        int st = 0;
        waitpid(pids[i], &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) failed++;
    }
    CHECK(failed == 0, "%d of %d processes saw errors", failed, N);
    long key = counter("token_requests_by_grant", "apivideo/api_key");
    long refresh = counter("token_requests_by_grant", "apivideo/refresh");
    printf("test_store: %d processes, 6 s, 2 s tokens: %ld key exchange(s), %ld refreshes\n", N,
           key, refresh);
    CHECK(key == 1, "one key exchange in all (a reused refresh token would force more): %ld", key);
    CHECK(refresh >= 2 && refresh <= 6, "about one refresh per 1.6 s: %ld", refresh);
    control_post("/_control/config", "{\"lifetime_secs\": 3600}");
}

static void test_unusable_directory_leaves_options_unchanged(const char *dir) {
    char file[512], sub[600];
    snprintf(file, sizeof file, "%s/not-a-dir", dir);
    FILE *f = fopen(file, "w");
    CHECK(f != NULL, "made a file");
    if (f) fclose(f);
    snprintf(sub, sizeof sub, "%s/sub", file);
    authcore_options *o = NULL;
    CHECK_OK(authcore_options_new(&o));
    CHECK_OK(authcore_options_set_timeout_ms(o, 4321));
    CHECK_STATUS(authcore_options_set_file_store(o, sub), AUTHCORE_STATUS_CONFIG);
    CHECK(strstr(authcore_last_error_message(), "cannot be used") != NULL, "says why: %s",
          authcore_last_error_message());
    CHECK_STATUS(authcore_options_set_file_store(o, NULL), AUTHCORE_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(authcore_options_set_file_store(NULL, dir), AUTHCORE_STATUS_NULL_ARGUMENT);
    authcore_options_free(o);
    remove(file);
}

/* A store of the program's own: one value, one mutex. */
typedef struct {
    pthread_mutex_t mu;
    pthread_mutex_t lock;
    char value[4096];
    size_t len;
    int loads, saves, locks, unlocks, removes;
    int saves_to_fail; /* the next saves fail, as a full disk would */
    int unreachable;   /* every lock fails, as a store that is down would */
    int failed_saves;
} my_store;

static int my_load(void *ud, const char *key, char *buf, size_t cap, size_t *len) {
    (void)key;
    my_store *s = ud;
    pthread_mutex_lock(&s->mu);
    s->loads++;
    int rc = 0;
    if (s->len == 0) {
        rc = 1;
    } else if (s->len > cap) {
        *len = s->len;
        rc = 2;
    } else {
        memcpy(buf, s->value, s->len);
        *len = s->len;
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static int my_save(void *ud, const char *key, const char *value, size_t len) {
    (void)key;
    my_store *s = ud;
    if (len > sizeof s->value) return 1;
    pthread_mutex_lock(&s->mu);
    if (s->saves_to_fail > 0) {
        s->saves_to_fail--;
        s->failed_saves++;
        pthread_mutex_unlock(&s->mu);
        return 5;
    }
    memcpy(s->value, value, len);
    s->len = len;
    s->saves++;
    pthread_mutex_unlock(&s->mu);
    return 0;
}

static int my_lock(void *ud, const char *key, uint64_t timeout_ms) {
    (void)key;
    (void)timeout_ms;
    my_store *s = ud;
    if (s->unreachable) return 7;
    pthread_mutex_lock(&s->lock);
    s->locks++;
    return 0;
}

static void my_unlock(void *ud, const char *key) {
    (void)key;
    my_store *s = ud;
    s->unlocks++;
    pthread_mutex_unlock(&s->lock);
}

static int my_remove(void *ud, const char *key) {
    (void)key;
    my_store *s = ud;
    pthread_mutex_lock(&s->mu);
    s->len = 0;
    s->removes++;
    pthread_mutex_unlock(&s->mu);
    return 0;
}

/* Whether the record in the store is a tombstone: 1 revoked, 0 a live token, -1 none
 * or not a record. */
static int stored_revoked(my_store *s) {
    pthread_mutex_lock(&s->mu);
    cJSON *record = s->len > 0 ? cJSON_ParseWithLength(s->value, s->len) : NULL;
    pthread_mutex_unlock(&s->mu);
    if (record == NULL) return -1;
    const cJSON *revoked = cJSON_GetObjectItemCaseSensitive(record, "revoked");
    int out = cJSON_IsBool(revoked) ? cJSON_IsTrue(revoked) : -1;
    cJSON_Delete(record);
    return out;
}

static void my_store_init(my_store *s) {
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->lock, NULL);
}

static void my_store_destroy(my_store *s) {
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->lock);
}

static void test_callback_store(void) {
    devserver_reset();
    my_store s;
    my_store_init(&s);
    authcore_store_callbacks cb = {&s, my_load, my_save, my_lock, my_unlock, my_remove};
    authcore_options *o = NULL;
    CHECK_OK(authcore_options_new(&o));
    authcore_store_callbacks half = {&s, my_load, my_save, my_lock, NULL, NULL};
    CHECK_STATUS(authcore_options_set_store_callbacks_v2(o, &half, sizeof half),
                 AUTHCORE_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(authcore_options_set_store_callbacks_v2(o, NULL, sizeof cb),
                 AUTHCORE_STATUS_NULL_ARGUMENT);
    CHECK_OK(authcore_options_set_store_callbacks_v2(o, &cb, sizeof cb));
    authcore_client *a = NULL, *b = NULL;
    CHECK_OK(authcore_client_new_api_video_at(devserver_url(), "dev-api-key", o, &a));
    CHECK_OK(authcore_client_new_api_video_at(devserver_url(), "dev-api-key", o, &b));
    authcore_options_free(o);
    char *ta = NULL, *tb = NULL;
    CHECK_OK(authcore_client_token(a, &ta));
    CHECK_OK(authcore_client_token(b, &tb));
    CHECK(ta && tb && strcmp(ta, tb) == 0, "the second client adopted the stored token");
    CHECK(token_requests() == 1, "one token request for two clients: %ld", token_requests());
    CHECK(s.saves == 1 && s.locks == 2 && s.unlocks == 2, "saves %d locks %d unlocks %d", s.saves,
          s.locks, s.unlocks);
    CHECK(s.len > 0 && memchr(s.value, '{', s.len) == s.value, "a JSON value was stored");
    authcore_string_free(ta);
    authcore_string_free(tb);
    authcore_client_free(a);
    authcore_client_free(b);

    /* Revocation leaves a revoked record (a tombstone) through `save`; `remove` is not
     * called. */
    char token_url[512], revoke_url[512];
    snprintf(token_url, sizeof token_url, "%s", url_of("/oauth2/token"));
    snprintf(revoke_url, sizeof revoke_url, "%s", url_of("/oauth2/revoke"));
    CHECK_OK(authcore_options_new(&o));
    CHECK_OK(authcore_options_set_store_callbacks_v2(o, &cb, sizeof cb));
    CHECK_OK(authcore_options_set_revocation_url(o, revoke_url));
    authcore_client *c = NULL;
    CHECK_OK(authcore_client_new_client_credentials(token_url, "dev-client", "dev-secret", NULL, 0, o, &c));
    authcore_options_free(o);
    CHECK_OK(authcore_client_token(c, &ta));
    CHECK(s.len > 0 && stored_revoked(&s) == 0, "stored");
    CHECK_OK(authcore_client_revoke(c));
    CHECK(s.removes == 0 && stored_revoked(&s) == 1, "a tombstone in the store (removes %d)",
          s.removes);
    CHECK(counter("revocations", NULL) == 1, "one revocation: %ld", counter("revocations", NULL));
    authcore_string_free(ta);
    authcore_client_free(c);
    my_store_destroy(&s);
}

/* ---- The callbacks struct grows: what older and newer programs hand over ---- */

/* The struct as the first header declared it, before `remove`. */
typedef struct {
    void *userdata;
    int32_t (*load)(void *userdata, const char *key, char *buf, size_t cap, size_t *len);
    int32_t (*save)(void *userdata, const char *key, const char *value, size_t len);
    int32_t (*lock)(void *userdata, const char *key, uint64_t timeout_ms);
    void (*unlock)(void *userdata, const char *key);
} first_layout_callbacks;

static int poison_calls;
static int poison(void *ud, const char *key) {
    (void)ud;
    (void)key;
    poison_calls++;
    return 0;
}

/* A client on `o` signs in, renews and revokes with its record in `s`. */
static void use_store_through_revocation(authcore_options *o, my_store *s, const char *what) {
    char token_url[512], revoke_url[512];
    snprintf(token_url, sizeof token_url, "%s", url_of("/oauth2/token"));
    snprintf(revoke_url, sizeof revoke_url, "%s", url_of("/oauth2/revoke"));
    CHECK_OK(authcore_options_set_revocation_url(o, revoke_url));
    authcore_client *c = NULL;
    CHECK_OK(authcore_client_new_client_credentials(token_url, "dev-client", "dev-secret", NULL, 0, o,
                                                    &c));
    char *t = NULL;
    CHECK_OK(authcore_client_token(c, &t));
    authcore_string_free(t);
    t = NULL;
    CHECK_OK(authcore_client_refresh(c, &t));
    authcore_string_free(t);
    CHECK_OK(authcore_client_revoke(c));
    CHECK(stored_revoked(s) == 1, "%s: a tombstone saved through the store", what);
    CHECK(s->saves >= 2 && s->locks == s->unlocks, "%s: saves %d locks %d unlocks %d", what, s->saves,
          s->locks, s->unlocks);
    authcore_client_free(c);
}

/* A program built against the first header passes a struct without `remove`: whatever
 * lies past it is never read, never called. The old struct sits in a heap block of
 * exactly its size, so a read past it is an invalid read under valgrind; the stack copy
 * has a function pointer right after it, which must never be called. */
static void test_an_old_layout_never_has_remove_read(void) {
    devserver_reset();
    my_store s;
    my_store_init(&s);
    first_layout_callbacks old = {&s, my_load, my_save, my_lock, my_unlock};
    first_layout_callbacks *exact = malloc(sizeof *exact);
    CHECK(exact != NULL, "allocated");
    if (exact == NULL) return;
    memcpy(exact, &old, sizeof old);

    authcore_options *o = NULL;
    CHECK_OK(authcore_options_new(&o));
    CHECK_OK(authcore_options_set_store_callbacks_v2(o, (const authcore_store_callbacks *)exact,
                                                     sizeof *exact));
    free(exact);
    use_store_through_revocation(o, &s, "v2 with the old size");
    authcore_options_free(o);

    /* The deprecated setter (no size) reads only the first layout. */
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif
    struct {
        first_layout_callbacks old;
        int (*after)(void *, const char *);
    } followed = {old, poison};
    exact = malloc(sizeof *exact);
    CHECK(exact != NULL, "allocated");
    if (exact == NULL) return;
    memcpy(exact, &old, sizeof old);
    CHECK_OK(authcore_options_new(&o));
    CHECK_OK(authcore_options_set_store_callbacks(o, (const authcore_store_callbacks *)exact));
    free(exact);
    authcore_options_free(o);
    CHECK_OK(authcore_options_new(&o));
    CHECK_OK(authcore_options_set_store_callbacks(o, (const authcore_store_callbacks *)&followed));
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
    memset(s.value, 0, sizeof s.value);
    s.len = 0;
    use_store_through_revocation(o, &s, "the deprecated setter");
    authcore_options_free(o);
    CHECK(poison_calls == 0 && s.removes == 0, "nothing past the old struct was called (%d)",
          poison_calls);
    my_store_destroy(&s);
}

/* A size smaller than the first layout is refused; a newer, larger struct is accepted and
 * its fields this library does not know are ignored. */
static void test_callbacks_sizes(void) {
    devserver_reset();
    my_store s;
    my_store_init(&s);
    authcore_store_callbacks cb = {&s, my_load, my_save, my_lock, my_unlock, my_remove};
    authcore_options *o = NULL;
    CHECK_OK(authcore_options_new(&o));
    CHECK_STATUS(authcore_options_set_store_callbacks_v2(o, &cb, 0), AUTHCORE_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(authcore_options_set_store_callbacks_v2(o, &cb, sizeof(first_layout_callbacks) - 1),
                 AUTHCORE_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(authcore_last_error_message(), "sizeof(authcore_store_callbacks)") != NULL,
          "says what to pass: %s", authcore_last_error_message());
    struct {
        authcore_store_callbacks known;
        void *future_field;
        int (*future_callback)(void *, const char *);
    } newer = {cb, &s, poison};
    CHECK_OK(authcore_options_set_store_callbacks_v2(o, &newer.known, sizeof newer));
    use_store_through_revocation(o, &s, "a newer, larger struct");
    authcore_options_free(o);
    CHECK(poison_calls == 0, "an unknown field was never called (%d)", poison_calls);
    my_store_destroy(&s);
}

/* ---- Refresh-token clients sharing a store: one session per user ---- */

#define CLIENT_ID "dev-client"
#define SECRET "dev-secret"

/* The refresh token a sign-in handed to the rotation callback (copied, as required). */
typedef struct {
    int calls;
    char last[256];
} rotation_log;

static int keep_rotation(void *userdata, const char *refresh_token, size_t len) {
    rotation_log *log = userdata;
    log->calls++;
    snprintf(log->last, sizeof log->last, "%.*s", (int)len, refresh_token);
    return 0;
}

/* One user's sign-in at the provider (authorization code + PKCE, the browser played by
 * follow_authorize): its refresh token is copied into `out`. Returns 1 on success. */
static int sign_in(char *out, size_t cap) {
    rotation_log log = {0, ""};
    authcore_options *o = NULL;
    authcore_code_flow *flow = NULL;
    authcore_client *client = NULL;
    char authorize[512], token_url[512], *url = NULL, *state = NULL;
    snprintf(authorize, sizeof authorize, "%s/oauth2/authorize", devserver_url());
    snprintf(token_url, sizeof token_url, "%s/oauth2/token", devserver_url());
    CHECK_OK(authcore_options_new(&o));
    CHECK_OK(authcore_options_set_refresh_token_callback(o, keep_rotation, &log));
    CHECK_OK(authcore_code_flow_new(authorize, token_url, CLIENT_ID, SECRET,
                                    "http://127.0.0.1/callback", "campaigns:read", false,
                                    AUTHCORE_AUTH_METHOD_CLIENT_SECRET_BASIC, true, o, &flow));
    authcore_options_free(o);
    CHECK_OK(authcore_code_flow_authorization_url(flow, &url, &state));
    char *callback = url ? follow_authorize(url) : NULL;
    CHECK(callback != NULL, "the provider redirected back");
    if (callback != NULL) CHECK_OK(authcore_code_flow_finish_with_state(flow, callback, state, &client));
    free(callback);
    authcore_string_free(url);
    authcore_string_free(state);
    authcore_client_free(client);
    authcore_code_flow_free(flow);
    snprintf(out, cap, "%s", log.last);
    return log.calls == 1 && out[0] != '\0';
}

/* Options for a refresh-token client at the provider: revocation endpoint, no retries. */
static authcore_options *rt_options(void) {
    authcore_options *o = NULL;
    char revoke_url[512];
    snprintf(revoke_url, sizeof revoke_url, "%s/oauth2/revoke", devserver_url());
    CHECK_OK(authcore_options_new(&o));
    CHECK_OK(authcore_options_set_timeout_ms(o, 5000));
    CHECK_OK(authcore_options_set_max_retries(o, 0));
    CHECK_OK(authcore_options_set_revocation_url(o, revoke_url));
    return o;
}

static authcore_status rt_client(const char *refresh_token, const authcore_options *o,
                                 authcore_client **out) {
    char token_url[512];
    snprintf(token_url, sizeof token_url, "%s/oauth2/token", devserver_url());
    return authcore_client_new_refresh_token(token_url, CLIENT_ID, SECRET, refresh_token, false,
                                             AUTHCORE_AUTH_METHOD_CLIENT_SECRET_BASIC, o, out);
}

/* Two users sharing one file store never see each other's tokens: each session is filed
 * under its store key. A refresh-token client with a store and no store key is refused. */
static void test_two_users_share_a_file_store_apart(const char *dir) {
    devserver_reset();
    char users[600];
    snprintf(users, sizeof users, "%s/users", dir);
    char rt_alice[256], rt_bob[256];
    CHECK(sign_in(rt_alice, sizeof rt_alice), "alice signed in");
    CHECK(sign_in(rt_bob, sizeof rt_bob), "bob signed in");
    CHECK(strcmp(rt_alice, rt_bob) != 0, "two sign-ins, two refresh tokens");

    authcore_options *o = rt_options();
    CHECK_OK(authcore_options_set_file_store(o, users));
    authcore_client *nobody = NULL;
    CHECK_STATUS(rt_client(rt_alice, o, &nobody), AUTHCORE_STATUS_CONFIG);
    CHECK(strstr(authcore_last_error_message(), "store key") != NULL, "says why: %s",
          authcore_last_error_message());
    CHECK(nobody == NULL, "no client on failure");
    CHECK_STATUS(authcore_options_set_store_key(o, NULL), AUTHCORE_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(authcore_options_set_store_key(NULL, "alice"), AUTHCORE_STATUS_NULL_ARGUMENT);
    CHECK_OK(authcore_options_set_store_key(o, "")); /* checked when a client is made */
    CHECK_STATUS(rt_client(rt_alice, o, &nobody), AUTHCORE_STATUS_CONFIG);
    CHECK_OK(authcore_options_set_store_key(o, "line\nbreak"));
    CHECK_STATUS(rt_client(rt_alice, o, &nobody), AUTHCORE_STATUS_CONFIG);
    CHECK(nobody == NULL, "no client on failure");

    authcore_client *alice = NULL, *bob = NULL, *alice2 = NULL, *bob2 = NULL;
    CHECK_OK(authcore_options_set_store_key(o, "alice"));
    CHECK_OK(rt_client(rt_alice, o, &alice));
    CHECK_OK(authcore_options_set_store_key(o, "bob"));
    CHECK_OK(rt_client(rt_bob, o, &bob));
    char *ta = NULL, *tb = NULL, *ta2 = NULL, *tb2 = NULL;
    CHECK_OK(authcore_client_token(alice, &ta));
    CHECK_OK(authcore_client_token(bob, &tb));
    CHECK(ta && tb && strcmp(ta, tb) != 0, "alice and bob have tokens of their own");
    CHECK(get_status(alice, "/api/resource") == 200, "alice's token works");
    CHECK(get_status(bob, "/api/resource") == 200, "bob's token works");
    /* Another process of each user (its refresh token has rotated since) finds that
     * user's session in the store, and only that one. */
    CHECK_OK(authcore_options_set_store_key(o, "alice"));
    CHECK_OK(rt_client(rt_alice, o, &alice2));
    CHECK_OK(authcore_options_set_store_key(o, "bob"));
    CHECK_OK(rt_client(rt_bob, o, &bob2));
    authcore_options_free(o);
    CHECK_OK(authcore_client_token(alice2, &ta2));
    CHECK_OK(authcore_client_token(bob2, &tb2));
    CHECK(ta && ta2 && strcmp(ta, ta2) == 0, "alice's second client adopted alice's token");
    CHECK(tb && tb2 && strcmp(tb, tb2) == 0, "bob's second client adopted bob's token");
    long refreshes = counter("token_requests_by_grant", "oauth2/refresh_token");
    CHECK(refreshes == 2, "one refresh per user: %ld", refreshes);
    authcore_string_free(ta);
    authcore_string_free(tb);
    authcore_string_free(ta2);
    authcore_string_free(tb2);
    authcore_client_free(alice);
    authcore_client_free(bob);
    authcore_client_free(alice2);
    authcore_client_free(bob2);
}

/* A save that fails right after a rotation does not bring the stale refresh token back:
 * the provider revokes a whole token family when a used refresh token comes again, so
 * sending it would end in AUTHCORE_STATUS_REAUTHENTICATION_REQUIRED. */
static void test_a_failed_save_keeps_the_newest_refresh_token(void) {
    devserver_reset();
    char rt[256];
    CHECK(sign_in(rt, sizeof rt), "signed in");
    my_store s;
    my_store_init(&s);
    authcore_store_callbacks cb = {&s, my_load, my_save, my_lock, my_unlock, my_remove};
    authcore_options *o = rt_options();
    CHECK_OK(authcore_options_set_store_callbacks_v2(o, &cb, sizeof cb));
    CHECK_OK(authcore_options_set_store_key(o, "carol"));
    authcore_client *c = NULL, *other = NULL;
    CHECK_OK(rt_client(rt, o, &c));
    char *t1 = NULL, *t2 = NULL, *t3 = NULL, *t4 = NULL;
    CHECK_OK(authcore_client_token(c, &t1));
    CHECK(s.saves == 1, "the first rotation was saved (%d)", s.saves);
    s.saves_to_fail = 1;
    CHECK_OK(authcore_client_refresh(c, &t2)); /* rotates; its save fails */
    CHECK(s.failed_saves == 1, "the save after the rotation failed (%d)", s.failed_saves);
    CHECK(get_status(c, "/api/resource") == 200, "the new token is used all the same");
    CHECK_OK(authcore_client_refresh(c, &t3)); /* the newest refresh token, not the stored one */
    CHECK(t1 && t2 && t3 && strcmp(t2, t1) != 0 && strcmp(t3, t2) != 0 && strcmp(t3, t1) != 0,
          "two new tokens, not an old one adopted back");
    CHECK(get_status(c, "/api/resource") == 200, "still signed in");
    /* Another process on the same store and user adopts the newest token, and renews on
     * from it. */
    CHECK_OK(rt_client(rt, o, &other));
    authcore_options_free(o);
    CHECK_OK(authcore_client_token(other, &t4));
    CHECK(t3 && t4 && strcmp(t3, t4) == 0, "the other client adopted the newest token");
    char *t5 = NULL;
    CHECK_OK(authcore_client_refresh(other, &t5));
    CHECK(get_status(other, "/api/resource") == 200, "the other client is signed in");
    CHECK(get_status(c, "/api/resource") == 200, "the first client is signed in");
    long refreshes = counter("token_requests_by_grant", "oauth2/refresh_token");
    CHECK(refreshes == 4, "four refreshes, none refused: %ld", refreshes);
    authcore_string_free(t1);
    authcore_string_free(t2);
    authcore_string_free(t3);
    authcore_string_free(t4);
    authcore_string_free(t5);
    authcore_client_free(c);
    authcore_client_free(other);
    my_store_destroy(&s);
}

/* revoke() with the store unreachable still revokes at the provider and reports the
 * store's error; called again once the store works, it ends the session in the store. */
static void test_revoke_with_the_store_unreachable(void) {
    devserver_reset();
    char rt[256];
    CHECK(sign_in(rt, sizeof rt), "signed in");
    my_store s;
    my_store_init(&s);
    authcore_store_callbacks cb = {&s, my_load, my_save, my_lock, my_unlock, my_remove};
    authcore_options *o = rt_options();
    CHECK_OK(authcore_options_set_store_callbacks_v2(o, &cb, sizeof cb));
    CHECK_OK(authcore_options_set_store_key(o, "dave"));
    authcore_client *c = NULL;
    CHECK_OK(rt_client(rt, o, &c));
    char *at = NULL;
    CHECK_OK(authcore_client_token(c, &at));
    long before = counter("revocations", NULL);
    s.unreachable = 1;
    CHECK_STATUS(authcore_client_revoke(c), AUTHCORE_STATUS_STORE);
    long revoked = counter("revocations", NULL);
    CHECK(revoked > before, "revoked at the provider: %ld revocations, %ld before", revoked,
          before);
    authcore_client *fixed = NULL;
    CHECK_OK(authcore_client_new_personal_access_token(at ? at : "none", &fixed));
    CHECK(get_status(fixed, "/api/resource") == 401, "the revoked access token is refused");
    authcore_client_free(fixed);
    CHECK(stored_revoked(&s) == 0, "the store was not reached");
    s.unreachable = 0;
    CHECK_OK(authcore_client_revoke(c));
    CHECK(stored_revoked(&s) == 1, "the second call left a tombstone");
    CHECK(s.removes == 0, "no remove: %d", s.removes);
    /* Nobody sharing the store renews the session: not this client, not another one
     * holding the first refresh token, and no token request is sent for it. */
    long requests = token_requests();
    char *t = NULL;
    CHECK_STATUS(authcore_client_token(c, &t), AUTHCORE_STATUS_REAUTHENTICATION_REQUIRED);
    authcore_client *other = NULL;
    CHECK_OK(rt_client(rt, o, &other));
    authcore_options_free(o);
    CHECK_STATUS(authcore_client_token(other, &t), AUTHCORE_STATUS_REAUTHENTICATION_REQUIRED);
    CHECK(t == NULL, "no token on failure");
    CHECK(token_requests() == requests, "no token request after the revocation: %ld, then %ld",
          requests, token_requests());
    authcore_string_free(at);
    authcore_client_free(c);
    authcore_client_free(other);
    my_store_destroy(&s);
}

/* ---- Signing out: the session ends here and in the store, whatever the provider can do ---- */

/* Whether `access_token` is still accepted by the provider's API. */
static int still_accepted(const char *access_token) {
    authcore_client *fixed = NULL;
    CHECK_OK(authcore_client_new_personal_access_token(access_token ? access_token : "none", &fixed));
    int status = get_status(fixed, "/api/resource");
    authcore_client_free(fixed);
    return status == 200;
}

/* Sign-out with a revocation endpoint: revoked at the provider, a tombstone in the store,
 * and nobody sharing the store renews the session. Then there is nothing to sign out. */
static void test_sign_out_revokes_and_ends_the_session_in_the_store(void) {
    devserver_reset();
    char rt[256];
    CHECK(sign_in(rt, sizeof rt), "signed in");
    my_store s;
    my_store_init(&s);
    authcore_store_callbacks cb = {&s, my_load, my_save, my_lock, my_unlock, my_remove};
    authcore_options *o = rt_options();
    CHECK_OK(authcore_options_set_store_callbacks_v2(o, &cb, sizeof cb));
    CHECK_OK(authcore_options_set_store_key(o, "grace"));
    authcore_client *c = NULL;
    CHECK_OK(rt_client(rt, o, &c));
    char *at = NULL;
    CHECK_OK(authcore_client_token(c, &at));
    CHECK(stored_revoked(&s) == 0, "a live record");
    authcore_sign_out outcome = (authcore_sign_out)99;
    CHECK_STATUS(authcore_client_sign_out(NULL, &outcome), AUTHCORE_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(authcore_client_sign_out(c, NULL), AUTHCORE_STATUS_NULL_ARGUMENT);
    CHECK(outcome == 99, "nothing written on failure");
    long revocations = counter("revocations", NULL);
    CHECK_OK(authcore_client_sign_out(c, &outcome));
    CHECK(outcome == AUTHCORE_SIGN_OUT_REVOKED, "revoked: %s", authcore_sign_out_name(outcome));
    CHECK(authcore_last_error_status() == AUTHCORE_STATUS_OK &&
              authcore_last_error_message()[0] == '\0',
          "no failure noted");
    CHECK(counter("revocations", NULL) > revocations, "revoked at the provider");
    CHECK(!still_accepted(at), "the access token is refused");
    CHECK(stored_revoked(&s) == 1 && s.removes == 0, "a tombstone in the store (removes %d)",
          s.removes);
    long requests = token_requests();
    char *t = NULL;
    CHECK_STATUS(authcore_client_token(c, &t), AUTHCORE_STATUS_REAUTHENTICATION_REQUIRED);
    authcore_client *other = NULL;
    CHECK_OK(rt_client(rt, o, &other));
    authcore_options_free(o);
    CHECK_STATUS(authcore_client_token(other, &t), AUTHCORE_STATUS_REAUTHENTICATION_REQUIRED);
    CHECK(t == NULL, "no token on failure");
    /* Nothing left to sign out, here or in another client of the store: nothing is sent. */
    revocations = counter("revocations", NULL);
    CHECK_OK(authcore_client_sign_out(c, &outcome));
    CHECK(outcome == AUTHCORE_SIGN_OUT_NOT_SIGNED_IN, "%s", authcore_sign_out_name(outcome));
    CHECK_OK(authcore_client_sign_out(other, &outcome));
    CHECK(outcome == AUTHCORE_SIGN_OUT_NOT_SIGNED_IN, "%s", authcore_sign_out_name(outcome));
    CHECK(counter("revocations", NULL) == revocations, "no revocation request");
    CHECK(token_requests() == requests, "no token request after the sign-out");
    authcore_string_free(at);
    authcore_client_free(c);
    authcore_client_free(other);
    my_store_destroy(&s);
}

/* A sign-in by a code flow built from the provider's metadata, which names a revocation
 * endpoint or not (the devserver's `revocation_endpoint` switch): the signed-in client
 * signs out with the outcome that says so, and is signed out either way. */
static authcore_sign_out sign_in_from_metadata_and_out(bool revocation_endpoint) {
    devserver_reset();
    control_post("/_control/config",
                 revocation_endpoint ? "{\"revocation_endpoint\": true}"
                                     : "{\"revocation_endpoint\": false}");
    authcore_metadata *m = NULL;
    authcore_code_flow *flow = NULL;
    authcore_client *client = NULL;
    char *url = NULL, *state = NULL, *at = NULL, *t = NULL;
    authcore_sign_out outcome = (authcore_sign_out)99;
    CHECK_OK(authcore_discover(devserver_url(), NULL, &m));
    CHECK((authcore_metadata_get(m, AUTHCORE_METADATA_FIELD_REVOCATION_ENDPOINT) != NULL) ==
              revocation_endpoint,
          "the metadata names a revocation endpoint: %d", (int)revocation_endpoint);
    CHECK_OK(authcore_code_flow_new_from_metadata(m, CLIENT_ID, SECRET, "http://127.0.0.1/callback",
                                                  "campaigns:read",
                                                  AUTHCORE_AUTH_METHOD_CLIENT_SECRET_BASIC, NULL,
                                                  &flow));
    CHECK_OK(authcore_code_flow_authorization_url(flow, &url, &state));
    char *callback = url ? follow_authorize(url) : NULL;
    CHECK(callback != NULL, "the provider redirected back");
    if (callback != NULL) CHECK_OK(authcore_code_flow_finish_with_state(flow, callback, state, &client));
    if (client != NULL) {
        CHECK_OK(authcore_client_token(client, &at));
        long revocations = counter("revocations", NULL);
        CHECK_OK(authcore_client_sign_out(client, &outcome));
        CHECK(authcore_last_error_status() == AUTHCORE_STATUS_OK, "no failure noted");
        CHECK((counter("revocations", NULL) > revocations) == revocation_endpoint,
              "asked the provider only with an endpoint");
        CHECK(still_accepted(at) == !revocation_endpoint,
              "the access token is still valid at the provider only without revocation");
        long requests = token_requests();
        CHECK_STATUS(authcore_client_token(client, &t), AUTHCORE_STATUS_REAUTHENTICATION_REQUIRED);
        CHECK(token_requests() == requests, "signed out here: no token request");
        if (!revocation_endpoint) {
            CHECK_STATUS(authcore_client_revoke(client), AUTHCORE_STATUS_CONFIG);
        }
    }
    free(callback);
    authcore_string_free(url);
    authcore_string_free(state);
    authcore_string_free(at);
    authcore_client_free(client);
    authcore_code_flow_free(flow);
    authcore_metadata_free(m);
    control_post("/_control/config", "{\"revocation_endpoint\": true}");
    return outcome;
}

static void test_sign_out_with_and_without_a_revocation_endpoint(void) {
    authcore_sign_out with = sign_in_from_metadata_and_out(true);
    CHECK(with == AUTHCORE_SIGN_OUT_REVOKED, "with: %s", authcore_sign_out_name(with));
    authcore_sign_out without = sign_in_from_metadata_and_out(false);
    CHECK(without == AUTHCORE_SIGN_OUT_NO_REVOCATION_ENDPOINT, "without: %s",
          authcore_sign_out_name(without));
    CHECK(strcmp(authcore_sign_out_name(AUTHCORE_SIGN_OUT_NOT_SIGNED_IN), "not_signed_in") == 0 &&
              strcmp(authcore_sign_out_name(AUTHCORE_SIGN_OUT_REVOCATION_FAILED),
                     "revocation_failed") == 0 &&
              strcmp(authcore_sign_out_name(4), "unknown") == 0,
          "outcome names");
}

/* A provider that refuses the revocation: the call succeeds (the session is over here
 * and in the store), the outcome says so, and the provider's failure is the thread's last
 * error until the next call. */
static void test_sign_out_when_the_provider_refuses(void) {
    devserver_reset();
    char rt[256];
    CHECK(sign_in(rt, sizeof rt), "signed in");
    my_store s;
    my_store_init(&s);
    authcore_store_callbacks cb = {&s, my_load, my_save, my_lock, my_unlock, my_remove};
    authcore_options *o = rt_options();
    /* Not a revocation endpoint: the token endpoint answers an RFC 7009 request with an
     * OAuth error. */
    char refusing[512];
    snprintf(refusing, sizeof refusing, "%s/oauth2/token", devserver_url());
    CHECK_OK(authcore_options_set_revocation_url(o, refusing));
    CHECK_OK(authcore_options_set_store_callbacks_v2(o, &cb, sizeof cb));
    CHECK_OK(authcore_options_set_store_key(o, "heidi"));
    authcore_client *c = NULL;
    CHECK_OK(rt_client(rt, o, &c));
    authcore_options_free(o);
    char *at = NULL, *t = NULL;
    CHECK_OK(authcore_client_token(c, &at));
    authcore_sign_out outcome = (authcore_sign_out)99;
    CHECK_OK(authcore_client_sign_out(c, &outcome));
    CHECK(outcome == AUTHCORE_SIGN_OUT_REVOCATION_FAILED, "%s", authcore_sign_out_name(outcome));
    unsigned why = authcore_last_error_status();
    CHECK(why != AUTHCORE_STATUS_OK && why < AUTHCORE_STATUS_NULL_ARGUMENT,
          "the provider's failure is noted: %u (%s)", why, authcore_status_name(why));
    CHECK(authcore_last_error_message()[0] != '\0', "with a message");
    CHECK(at == NULL || strstr(authcore_last_error_message(), at) == NULL, "and no token in it");
    CHECK(stored_revoked(&s) == 1, "a tombstone in the store all the same");
    CHECK(still_accepted(at), "not revoked at the provider");
    CHECK_STATUS(authcore_client_token(c, &t), AUTHCORE_STATUS_REAUTHENTICATION_REQUIRED);
    CHECK(authcore_last_error_status() == AUTHCORE_STATUS_REAUTHENTICATION_REQUIRED,
          "the next call replaced the note");
    authcore_string_free(at);
    authcore_client_free(c);
    my_store_destroy(&s);
}

/* The rotation callback runs inside the client's renewal: signing out the same client
 * from there fails at once with AUTHCORE_STATUS_CONFIG (waiting would end in a timeout:
 * it would wait for that renewal) and the renewal succeeds. */
typedef struct {
    authcore_client *client;
    int calls;
    authcore_status sign_out_status;
} reentry;

static int sign_out_from_the_callback(void *userdata, const char *refresh_token, size_t len) {
    (void)refresh_token;
    (void)len;
    reentry *r = userdata;
    r->calls++;
    if (r->client != NULL) {
        authcore_sign_out outcome;
        r->sign_out_status = authcore_client_sign_out(r->client, &outcome);
    }
    return 0;
}

static void test_sign_out_from_inside_a_renewal_fails_at_once(void) {
    devserver_reset();
    char rt[256];
    CHECK(sign_in(rt, sizeof rt), "signed in");
    reentry r = {NULL, 0, AUTHCORE_STATUS_OK};
    authcore_options *o = rt_options();
    CHECK_OK(authcore_options_set_refresh_token_callback(o, sign_out_from_the_callback, &r));
    authcore_client *c = NULL;
    CHECK_OK(rt_client(rt, o, &c));
    authcore_options_free(o);
    r.client = c;
    char *t = NULL;
    CHECK_OK(authcore_client_token(c, &t));
    CHECK(r.calls == 1, "the callback ran once: %d", r.calls);
    CHECK(r.sign_out_status == AUTHCORE_STATUS_CONFIG, "refused: %s",
          authcore_status_name(r.sign_out_status));
    CHECK(t != NULL && still_accepted(t), "the renewal went on and its token works");
    r.client = NULL;
    authcore_sign_out outcome;
    CHECK_OK(authcore_client_sign_out(c, &outcome));
    CHECK(outcome == AUTHCORE_SIGN_OUT_REVOKED, "%s", authcore_sign_out_name(outcome));
    authcore_string_free(t);
    authcore_client_free(c);
}

/* A rotated refresh token the store could not save is reported until a renewal writes
 * it; a client without a store or with its own credential never has one. */
static void test_an_unsaved_refresh_token_is_reported(void) {
    devserver_reset();
    char rt[256];
    CHECK(sign_in(rt, sizeof rt), "signed in");
    my_store s;
    my_store_init(&s);
    authcore_store_callbacks cb = {&s, my_load, my_save, my_lock, my_unlock, my_remove};
    authcore_options *o = rt_options();
    CHECK_OK(authcore_options_set_store_callbacks_v2(o, &cb, sizeof cb));
    CHECK_OK(authcore_options_set_store_key(o, "ivan"));
    authcore_client *c = NULL;
    CHECK_OK(rt_client(rt, o, &c));
    authcore_options_free(o);
    bool unsaved = true;
    CHECK_STATUS(authcore_client_has_unsaved_refresh_token(NULL, &unsaved),
                 AUTHCORE_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(authcore_client_has_unsaved_refresh_token(c, NULL), AUTHCORE_STATUS_NULL_ARGUMENT);
    char *t = NULL;
    CHECK_OK(authcore_client_token(c, &t));
    authcore_string_free(t);
    CHECK_OK(authcore_client_has_unsaved_refresh_token(c, &unsaved));
    CHECK(!unsaved, "the first rotation was saved");
    s.saves_to_fail = 1;
    CHECK_OK(authcore_client_refresh(c, NULL)); /* rotates; its save fails */
    CHECK(s.failed_saves == 1, "the save failed (%d)", s.failed_saves);
    CHECK_OK(authcore_client_has_unsaved_refresh_token(c, &unsaved));
    CHECK(unsaved, "the rotated refresh token is only in this client");
    CHECK_OK(authcore_client_refresh(c, NULL)); /* written first, then rotated and saved */
    CHECK_OK(authcore_client_has_unsaved_refresh_token(c, &unsaved));
    CHECK(!unsaved, "saved by the next renewal");
    authcore_client_free(c);
    my_store_destroy(&s);

    authcore_client *cc = NULL;
    char token_url[512];
    snprintf(token_url, sizeof token_url, "%s", url_of("/oauth2/token"));
    CHECK_OK(authcore_client_new_client_credentials(token_url, CLIENT_ID, SECRET, NULL, 0, NULL, &cc));
    CHECK_OK(authcore_client_token(cc, &t));
    authcore_string_free(t);
    unsaved = true;
    CHECK_OK(authcore_client_has_unsaved_refresh_token(cc, &unsaved));
    CHECK(!unsaved, "no store, no unsaved refresh token");
    authcore_client_free(cc);
}

/* Empties the suite's Redis (an earlier run of this program stored a token there). */
static void redis_flush(const char *url) {
    unsigned port = 0;
    if (sscanf(url, "redis://127.0.0.1:%u", &port) != 1) return;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    char reply[64];
    if (fd >= 0 && connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0 &&
        write(fd, "FLUSHALL\r\n", 10) == 10) {
        CHECK(read(fd, reply, sizeof reply) > 0, "Redis answered FLUSHALL");
    }
    if (fd >= 0) close(fd);
}

/* Two clients through the suite's Redis share one token; a bad URL is a config error. */
static void test_redis_store(void) {
    const char *url = getenv("AUTHCORE_REDIS_URL");
    CHECK(url != NULL, "AUTHCORE_REDIS_URL is set by tests/c/run.sh");
    if (!url) return;
    devserver_reset();
    redis_flush(url);
    authcore_options *o = NULL;
    CHECK_OK(authcore_options_new(&o));
    CHECK_STATUS(authcore_options_set_redis_store(o, "not a url"), AUTHCORE_STATUS_CONFIG);
    CHECK_STATUS(authcore_options_set_redis_store(o, NULL), AUTHCORE_STATUS_NULL_ARGUMENT);
    CHECK_OK(authcore_options_set_redis_store(o, url));
    char token_url[512];
    snprintf(token_url, sizeof token_url, "%s", url_of("/oauth2/token"));
    authcore_client *a = NULL, *b = NULL;
    CHECK_OK(authcore_client_new_client_credentials(token_url, "dev-client", "dev-secret",
                                                    "reporting:read", 0, o, &a));
    CHECK_OK(authcore_client_new_client_credentials(token_url, "dev-client", "dev-secret",
                                                    "reporting:read", 0, o, &b));
    authcore_options_free(o);
    char *ta = NULL, *tb = NULL;
    CHECK_OK(authcore_client_token(a, &ta));
    CHECK_OK(authcore_client_token(b, &tb));
    CHECK(ta && tb && strcmp(ta, tb) == 0, "the second client adopted the token from Redis");
    CHECK(token_requests() == 1, "one token request: %ld", token_requests());
    authcore_string_free(ta);
    authcore_string_free(tb);
    authcore_client_free(a);
    authcore_client_free(b);
}

/* A Redis that cannot be reached: client credentials are still served (renewed without
 * the store), a refresh token that may rotate fails with AUTHCORE_STATUS_STORE and is
 * never sent. */
static void test_unreachable_redis(void) {
    devserver_reset();
    authcore_options *o = NULL;
    CHECK_OK(authcore_options_new(&o));
    CHECK_STATUS(authcore_options_set_redis_store_with_ca(o, "redis://127.0.0.1:1", "/nonexistent/ca.pem"),
                 AUTHCORE_STATUS_CONFIG);
    CHECK_STATUS(authcore_options_set_redis_store_with_ca(o, "rediss://127.0.0.1:1", NULL),
                 AUTHCORE_STATUS_NULL_ARGUMENT);
    CHECK_OK(authcore_options_set_redis_store(o, "redis://127.0.0.1:1"));
    char token_url[512];
    snprintf(token_url, sizeof token_url, "%s", url_of("/oauth2/token"));
    authcore_client *cc = NULL, *rt = NULL;
    CHECK_OK(authcore_client_new_client_credentials(token_url, "dev-client", "dev-secret",
                                                    "reporting:read", 0, o, &cc));
    CHECK_OK(authcore_options_set_store_key(o, "erin")); /* whose refresh token it is */
    CHECK_OK(authcore_client_new_refresh_token(token_url, "dev-client", "dev-secret",
                                               "rt-never-sent-0123456789", 0, 0, o, &rt));
    authcore_options_free(o);
    char *t = NULL;
    CHECK_OK(authcore_client_token(cc, &t));
    authcore_string_free(t);
    t = NULL;
    CHECK_STATUS(authcore_client_token(rt, &t), AUTHCORE_STATUS_STORE);
    CHECK(t == NULL, "no token on failure");
    CHECK(strstr(authcore_last_error_message(), "Redis at 127.0.0.1:1") != NULL, "%s",
          authcore_last_error_message());
    CHECK(strcmp(authcore_status_name(AUTHCORE_STATUS_STORE), "store") == 0, "status name");
    CHECK(token_requests() == 1, "only the client-credentials request: %ld", token_requests());
    authcore_client_free(cc);
    authcore_client_free(rt);
}

/* Redis Sentinel and Redis Cluster from C: the setters check their arguments (a NULL
 * list or entry, an empty list), and sentinels that cannot be reached behave like a Redis
 * that cannot be reached (client credentials renew without the store). */
static void test_redis_sentinel_and_cluster(void) {
    devserver_reset();
    authcore_options *o = NULL;
    CHECK_OK(authcore_options_new(&o));
    const char *nodes[] = {"127.0.0.1:1", "redis://127.0.0.1:2"};
    const char *with_null[] = {"127.0.0.1:1", NULL};
    CHECK_STATUS(authcore_options_set_redis_sentinel_store(o, NULL, 2, "mymaster"),
                 AUTHCORE_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(authcore_options_set_redis_sentinel_store(o, nodes, 2, NULL),
                 AUTHCORE_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(authcore_options_set_redis_sentinel_store(o, with_null, 2, "mymaster"),
                 AUTHCORE_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(authcore_options_set_redis_sentinel_store(o, NULL, 0, "mymaster"),
                 AUTHCORE_STATUS_CONFIG);
    CHECK_STATUS(authcore_options_set_redis_cluster_store(o, NULL, 1), AUTHCORE_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(authcore_options_set_redis_cluster_store(o, nodes, 0), AUTHCORE_STATUS_CONFIG);
    CHECK_STATUS(authcore_options_set_redis_store(o, "redis+sentinel://127.0.0.1:1"),
                 AUTHCORE_STATUS_CONFIG);
    CHECK_OK(authcore_options_set_redis_cluster_store(o, nodes, 2));
    CHECK_OK(authcore_options_set_redis_store(o, "redis+cluster://127.0.0.1:1,127.0.0.1:2"));
    CHECK_OK(authcore_options_set_redis_sentinel_store(o, nodes, 2, "mymaster"));
    char token_url[512];
    snprintf(token_url, sizeof token_url, "%s", url_of("/oauth2/token"));
    authcore_client *cc = NULL;
    CHECK_OK(authcore_client_new_client_credentials(token_url, "dev-client", "dev-secret",
                                                    "reporting:read", 0, o, &cc));
    authcore_options_free(o);
    char *t = NULL;
    CHECK_OK(authcore_client_token(cc, &t));
    authcore_string_free(t);
    CHECK(token_requests() == 1, "renewed without the store: %ld", token_requests());
    authcore_client_free(cc);
}

int main(void) {
    char dir[] = "/tmp/authcore-c-store-XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "temp dir");
    test_processes_share_a_rotating_refresh_token(dir);
    test_unusable_directory_leaves_options_unchanged(dir);
    test_callback_store();
    test_an_old_layout_never_has_remove_read();
    test_callbacks_sizes();
    test_two_users_share_a_file_store_apart(dir);
    test_a_failed_save_keeps_the_newest_refresh_token();
    test_revoke_with_the_store_unreachable();
    test_sign_out_revokes_and_ends_the_session_in_the_store();
    test_sign_out_with_and_without_a_revocation_endpoint();
    test_sign_out_when_the_provider_refuses();
    test_sign_out_from_inside_a_renewal_fails_at_once();
    test_an_unsaved_refresh_token_is_reported();
    test_redis_store();
    test_unreachable_redis();
    test_redis_sentinel_and_cluster();
    /* Remove the store's files and the directory. */
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0, "cleaned up");
    return harness_finish("test_store");
}
