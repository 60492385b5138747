/*
 * Events and counters from C against the development provider: the log callback gets
 * each renewal, request and failure with its level and name and never a secret; the
 * counters match what the provider counted; the callback can be replaced and removed;
 * a callback that calls the client whose renewal raised the event gets an error at
 * once instead of waiting for that renewal.
 */
#include <pthread.h>

#include "harness.h"

#define SECRET "dev-secret"
#define CLIENT_ID "dev-client"

/* Events seen by the callback; it may be called from any thread, hence the mutex. Every
 * event is kept whole ("name: message"), from the first, and checked for secrets at
 * the end, once every token the test obtained is known. */
typedef struct {
    pthread_mutex_t lock;
    int count;
    int by_level[6];
    char names[64][40];
    char **records;
    size_t n_records;
    size_t cap_records;
    int reentry_status;
} event_log;

static void on_event(void *userdata, authcore_log_level level, const char *event,
                     const char *message) {
    event_log *log = (event_log *)userdata;
    pthread_mutex_lock(&log->lock);
    if (log->count < 64) {
        snprintf(log->names[log->count], sizeof log->names[0], "%s", event);
    }
    log->count++;
    if (level < 6) {
        log->by_level[level]++;
    }
    if (log->n_records == log->cap_records) {
        size_t cap = log->cap_records ? 2 * log->cap_records : 64;
        char **grown = realloc(log->records, cap * sizeof *grown);
        if (grown == NULL) {
            pthread_mutex_unlock(&log->lock);
            return;
        }
        log->records = grown;
        log->cap_records = cap;
    }
    size_t len = strlen(event) + strlen(message) + 3;
    char *record = malloc(len);
    if (record != NULL) {
        snprintf(record, len, "%s: %s", event, message);
        log->records[log->n_records++] = record;
    }
    pthread_mutex_unlock(&log->lock);
}

/* How many recorded events contain `value`. */
static int leaks(event_log *log, const char *value) {
    int n = 0;
    pthread_mutex_lock(&log->lock);
    for (size_t i = 0; i < log->n_records; i++) {
        if (strstr(log->records[i], value) != NULL) {
            fprintf(stderr, "secret in event: %s\n", log->records[i]);
            n++;
        }
    }
    pthread_mutex_unlock(&log->lock);
    return n;
}

static void forget_records(event_log *log) {
    for (size_t i = 0; i < log->n_records; i++) {
        free(log->records[i]);
    }
    free(log->records);
    log->records = NULL;
    log->n_records = log->cap_records = 0;
}

/* Tries to replace the callback from inside it: refused. */
static void on_event_reentrant(void *userdata, authcore_log_level level, const char *event,
                               const char *message) {
    (void)level;
    (void)event;
    (void)message;
    event_log *log = (event_log *)userdata;
    log->reentry_status = (int)authcore_set_log_callback(AUTHCORE_LOG_LEVEL_OFF, NULL, NULL);
    log->count++;
}

static int seen(event_log *log, const char *name) {
    int n = 0;
    pthread_mutex_lock(&log->lock);
    for (int i = 0; i < log->count && i < 64; i++) {
        n += strcmp(log->names[i], name) == 0;
    }
    pthread_mutex_unlock(&log->lock);
    return n;
}

static authcore_client *cc_client(const char *secret) {
    authcore_options *o = NULL;
    CHECK_OK(authcore_options_new(&o));
    CHECK_OK(authcore_options_set_max_retries(o, 0));
    CHECK_OK(authcore_options_set_failure_backoff_ms(o, 30000, 60000));
    authcore_client *c = NULL;
    CHECK_OK(authcore_client_new_client_credentials(url_of("/oauth2/token"), CLIENT_ID, secret,
                                                    "campaigns:read", 0, o, &c));
    authcore_options_free(o);
    return c;
}

static void test_events_and_counters(void) {
    devserver_reset();
    static event_log log = {.lock = PTHREAD_MUTEX_INITIALIZER};
    /* Every token the test obtains: none may appear in any event. */
    char tokens[8][512];
    int n_tokens = 0;
    CHECK_STATUS(authcore_set_log_callback(42, on_event, &log), AUTHCORE_STATUS_INVALID_ARGUMENT);
    CHECK(strcmp(authcore_log_level_name(AUTHCORE_LOG_LEVEL_DEBUG), "debug") == 0, "level name");
    CHECK(strcmp(authcore_log_level_name(42), "unknown") == 0, "unknown level name");
    CHECK_OK(authcore_set_log_callback(AUTHCORE_LOG_LEVEL_DEBUG, on_event, &log));

    authcore_client *c = cc_client(SECRET);
    char token[512];
    for (int i = 0; i < 10; i++) {
        CHECK_OK(authcore_client_token_into(c, token, sizeof token, NULL));
    }
    snprintf(tokens[n_tokens++], sizeof tokens[0], "%s", token);
    CHECK(seen(&log, "token.requested") == 1, "one token.requested event");
    CHECK(seen(&log, "token.obtained") == 1, "one token.obtained event");
    CHECK(seen(&log, "token.renewed") == 1, "one token.renewed event");
    CHECK(log.by_level[AUTHCORE_LOG_LEVEL_INFO] == 1, "the renewal is the one info event");

    /* A forced renewal: counted with its reason, and a new token. */
    char *forced = NULL;
    CHECK_OK(authcore_client_refresh(c, &forced));
    CHECK(forced != NULL && strcmp(forced, token) != 0, "a new token");
    if (forced != NULL) {
        snprintf(tokens[n_tokens++], sizeof tokens[0], "%s", forced);
    }
    authcore_string_free(forced);
    CHECK(authcore_client_refresh(c, NULL) == AUTHCORE_STATUS_OK, "out may be NULL");

    authcore_stats stats;
    memset(&stats, 0xff, sizeof stats);
    CHECK_OK(authcore_client_stats(c, &stats, sizeof stats));
    CHECK(stats.cache_hits == 9, "cache hits %llu", (unsigned long long)stats.cache_hits);
    CHECK(stats.renewals_initial == 1, "initial %llu", (unsigned long long)stats.renewals_initial);
    CHECK(stats.renewals_forced == 2, "forced %llu", (unsigned long long)stats.renewals_forced);
    CHECK(stats.token_requests_succeeded == 3, "succeeded %llu",
          (unsigned long long)stats.token_requests_succeeded);
    CHECK((long)(stats.token_requests_succeeded + stats.token_requests_refused +
                 stats.token_requests_failed) == token_requests(),
          "the client counted what the provider counted");
    CHECK(stats.waits == 0 && stats.wait_time_us == 0, "no waits");

    /* An older program's smaller struct gets only its fields; a newer one's gets zeros. */
    unsigned char small[sizeof(authcore_stats) + 16];
    memset(small, 0xab, sizeof small);
    CHECK_OK(authcore_client_stats(c, (authcore_stats *)small, 2 * sizeof(uint64_t)));
    CHECK(small[2 * sizeof(uint64_t)] == 0xab, "nothing written past the given size");
    CHECK_OK(authcore_client_stats(c, (authcore_stats *)small, sizeof small));
    CHECK(small[sizeof small - 1] == 0, "the unknown tail is zeroed");
    CHECK_STATUS(authcore_client_stats(NULL, &stats, sizeof stats), AUTHCORE_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(authcore_client_stats(c, NULL, sizeof stats), AUTHCORE_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(authcore_client_refresh(NULL, NULL), AUTHCORE_STATUS_NULL_ARGUMENT);
    /* The token of the second forced renewal, read after the counters. */
    CHECK_OK(authcore_client_token_into(c, tokens[n_tokens++], sizeof tokens[0], NULL));
    authcore_client_free(c);

    /* Refused credentials: warnings, a backoff, and refusals counted without requests. */
    authcore_client *bad = cc_client("wrong-secret-value");
    int warns_before = log.by_level[AUTHCORE_LOG_LEVEL_WARN];
    for (int i = 0; i < 4; i++) {
        CHECK_STATUS(authcore_client_token_into(bad, token, sizeof token, NULL),
                     AUTHCORE_STATUS_OAUTH);
    }
    CHECK(seen(&log, "token.request_failed") == 2, "two failed requests");
    CHECK(seen(&log, "backoff.entered") == 1, "one backoff");
    CHECK(log.by_level[AUTHCORE_LOG_LEVEL_WARN] - warns_before >= 3, "failures are warnings");
    CHECK_OK(authcore_client_stats(bad, &stats, sizeof stats));
    CHECK(stats.token_requests_refused == 2, "refused %llu",
          (unsigned long long)stats.token_requests_refused);
    CHECK(stats.backoff_refusals == 2, "backoff refusals %llu",
          (unsigned long long)stats.backoff_refusals);
    authcore_client_free(bad);

    /* Off: no more calls. */
    CHECK_OK(authcore_set_log_callback(AUTHCORE_LOG_LEVEL_OFF, on_event, &log));
    int before = log.count;
    authcore_client *quiet = cc_client(SECRET);
    CHECK_OK(authcore_client_token_into(quiet, tokens[n_tokens++], sizeof tokens[0], NULL));
    CHECK(log.count == before, "no events when off (%d new)", log.count - before);
    authcore_client_free(quiet);

    /* Warn only: a successful renewal tells nothing. */
    CHECK_OK(authcore_set_log_callback(AUTHCORE_LOG_LEVEL_WARN, on_event, &log));
    quiet = cc_client(SECRET);
    CHECK_OK(authcore_client_token_into(quiet, tokens[n_tokens++], sizeof tokens[0], NULL));
    CHECK(log.count == before, "no info or debug events at warn (%d new)", log.count - before);
    authcore_client_free(quiet);

    /* The callback cannot replace itself from inside. */
    static event_log reentry = {.lock = PTHREAD_MUTEX_INITIALIZER};
    CHECK_OK(authcore_set_log_callback(AUTHCORE_LOG_LEVEL_INFO, on_event_reentrant, &reentry));
    quiet = cc_client(SECRET);
    CHECK_OK(authcore_client_token_into(quiet, token, sizeof token, NULL));
    CHECK(reentry.count >= 1, "the callback ran");
    CHECK(reentry.reentry_status == AUTHCORE_STATUS_INVALID_ARGUMENT,
          "replacing the callback from inside it is refused (%d)", reentry.reentry_status);
    authcore_client_free(quiet);
    CHECK_OK(authcore_set_log_callback(AUTHCORE_LOG_LEVEL_OFF, NULL, NULL));

    /* Every event since the first, against every secret and token seen. */
    CHECK(log.n_records >= 10, "the events were recorded (%zu)", log.n_records);
    CHECK(leaks(&log, SECRET) == 0, "the client secret is in no event");
    CHECK(leaks(&log, "wrong-secret-value") == 0, "the wrong secret is in no event");
    for (int i = 0; i < n_tokens; i++) {
        CHECK(strlen(tokens[i]) > 8, "token %d was obtained", i);
        CHECK(leaks(&log, tokens[i]) == 0, "token %d is in no event", i);
    }
    forget_records(&log);
}

/* Calls the client in `userdata` from inside the event of its own renewal. */
typedef struct {
    authcore_client *client;
    int calls;
    authcore_status token_status;
    authcore_status refresh_status;
    authcore_status header_status;
    char message[512];
    double took;
} reentry_call;

static void on_event_calling_the_client(void *userdata, authcore_log_level level,
                                        const char *event, const char *message) {
    (void)level;
    (void)message;
    reentry_call *call = (reentry_call *)userdata;
    if (strcmp(event, "token.requested") != 0 || call->calls++ > 0) {
        return;
    }
    double started = now_seconds();
    char *token = NULL;
    call->token_status = authcore_client_token(call->client, &token);
    snprintf(call->message, sizeof call->message, "%s", authcore_last_error_message());
    authcore_string_free(token);
    call->refresh_status = authcore_client_refresh(call->client, NULL);
    char *header = NULL;
    call->header_status = authcore_client_authorization_header(call->client, &header);
    authcore_string_free(header);
    call->took = now_seconds() - started;
}

/* A callback that calls the client whose renewal raised the event, on that renewal's
 * thread: the renewal cannot finish before the callback returns, so the call fails at
 * once (it used to wait up to 30 s, the renewal's budget). */
static void test_a_callback_calling_its_client_during_the_renewal_returns_at_once(void) {
    devserver_reset();
    authcore_options *o = NULL;
    CHECK_OK(authcore_options_new(&o));
    CHECK_OK(authcore_options_set_timeout_ms(o, 120000));
    static reentry_call call;
    CHECK_OK(authcore_client_new_client_credentials(url_of("/oauth2/token"), CLIENT_ID, SECRET,
                                                    "campaigns:read", 0, o, &call.client));
    authcore_options_free(o);
    CHECK_OK(authcore_set_log_callback(AUTHCORE_LOG_LEVEL_DEBUG, on_event_calling_the_client,
                                       &call));
    char token[512];
    CHECK_OK(authcore_client_token_into(call.client, token, sizeof token, NULL));
    CHECK_OK(authcore_set_log_callback(AUTHCORE_LOG_LEVEL_OFF, NULL, NULL));
    CHECK(call.calls >= 1, "the callback ran");
    CHECK_STATUS(call.token_status, AUTHCORE_STATUS_CONFIG);
    CHECK(strstr(call.message, "own token renewal") != NULL, "the error says why: %s",
          call.message);
    CHECK_STATUS(call.refresh_status, AUTHCORE_STATUS_CONFIG);
    CHECK_STATUS(call.header_status, AUTHCORE_STATUS_CONFIG);
    printf("test_events: the calls from inside the renewal took %.3f s\n", call.took);
    CHECK(token_requests() == 1, "the renewal went on: one token request");
    char again[512];
    CHECK_OK(authcore_client_token_into(call.client, again, sizeof again, NULL));
    CHECK(strcmp(again, token) == 0, "outside the renewal the client serves its token");
    authcore_client_free(call.client);
}

/* A burst of sign-ins beyond the bound (1024 in memory) evicts the oldest: never
 * silently — a signin.evicted warning each, counted in authcore_code_flow_stats. */
static void test_sign_in_evictions_are_told_and_counted(void) {
    static event_log log = {.lock = PTHREAD_MUTEX_INITIALIZER};
    authcore_code_flow *flow = NULL;
    CHECK_OK(authcore_code_flow_new_viewneo(devserver_url(), CLIENT_ID, SECRET,
                                            "http://127.0.0.1/callback", NULL, NULL, &flow));
    char *first_state = NULL, *url = NULL;
    CHECK_OK(authcore_code_flow_authorization_url(flow, &url, &first_state));
    authcore_string_free(url);
    CHECK_OK(authcore_set_log_callback(AUTHCORE_LOG_LEVEL_WARN, on_event, &log));
    for (int i = 0; i < 1024 + 1; i++) {
        url = NULL;
        CHECK_OK(authcore_code_flow_authorization_url(flow, &url, NULL));
        authcore_string_free(url);
    }
    CHECK_OK(authcore_set_log_callback(AUTHCORE_LOG_LEVEL_OFF, NULL, NULL));
    CHECK(seen(&log, "signin.evicted") == 2, "two evictions told (%d)", seen(&log, "signin.evicted"));
    CHECK(log.by_level[AUTHCORE_LOG_LEVEL_WARN] == 2, "as warnings");
    CHECK(leaks(&log, first_state) == 0, "the evicted state is never in an event");
    forget_records(&log);
    authcore_stats stats;
    memset(&stats, 0xff, sizeof stats);
    CHECK_OK(authcore_code_flow_stats(flow, &stats, sizeof stats));
    CHECK(stats.signins_evicted == 2, "counted (%llu)", (unsigned long long)stats.signins_evicted);
    CHECK(stats.token_requests_succeeded == 0 && stats.cache_hits == 0, "nothing else");
    /* A client's stats have the field, always zero. */
    authcore_client *c = NULL;
    CHECK_OK(authcore_client_new_personal_access_token("pat", &c));
    memset(&stats, 0xff, sizeof stats);
    CHECK_OK(authcore_client_stats(c, &stats, sizeof stats));
    CHECK(stats.signins_evicted == 0, "zero in a client");
    authcore_client_free(c);
    authcore_string_free(first_state);
    authcore_code_flow_free(flow);
}

/* authcore_last_error_message: set by every call that returns a status (cleared on
 * success), untouched by the others. */
static void test_last_error_rules(void) {
    authcore_client *c = NULL;
    CHECK_STATUS(authcore_client_new_personal_access_token(NULL, &c), AUTHCORE_STATUS_NULL_ARGUMENT);
    CHECK(strstr(authcore_last_error_message(), "token") != NULL, "message names the argument");
    /* Calls that return no status leave it as it is. */
    (void)authcore_status_name(AUTHCORE_STATUS_OK);
    (void)authcore_version();
    authcore_client_free(NULL);
    CHECK(authcore_last_error_status() == AUTHCORE_STATUS_NULL_ARGUMENT, "kept");
    CHECK(strlen(authcore_last_error_message()) > 0, "kept");
    /* A call that returns a status and succeeds clears it. */
    CHECK_OK(authcore_client_new_personal_access_token("pat", &c));
    CHECK(authcore_last_error_status() == AUTHCORE_STATUS_OK, "cleared");
    CHECK(strcmp(authcore_last_error_message(), "") == 0, "cleared");
    authcore_client_free(c);
}

int main(void) {
    test_events_and_counters();
    test_sign_in_evictions_are_told_and_counted();
    test_a_callback_calling_its_client_during_the_renewal_returns_at_once();
    test_last_error_rules();
    return harness_finish("test_events");
}
