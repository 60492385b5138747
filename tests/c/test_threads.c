/*
 * One client shared by 32 pthreads: across a token expiry, and after a revocation,
 * the provider sees exactly one token request, and every thread gets a valid token.
 */
#include <pthread.h>

#include "harness.h"

#define THREADS 32

typedef struct {
    const authcore_client *client;
    pthread_barrier_t *barrier;
    char token[256];
    authcore_status token_status;
    int http_status;
} worker;

static void *work(void *arg) {
    worker *w = (worker *)arg;
    pthread_barrier_wait(w->barrier);
    size_t needed = 0;
    w->token_status = authcore_client_token_into(w->client, w->token, sizeof w->token, &needed);
    w->http_status = get_status(w->client, "/api/resource");
    if (w->http_status < 0) {
        fprintf(stderr, "request failed: %s\n", authcore_last_error_message());
    }
    return NULL;
}

/* Runs THREADS workers at once; returns how many failed, and checks they share a token. */
static int run_herd(const authcore_client *client, bool expect_same_token) {
    pthread_t threads[THREADS];
    worker workers[THREADS];
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, THREADS);
    for (int i = 0; i < THREADS; i++) {
        workers[i] = (worker){client, &barrier, "", AUTHCORE_STATUS_PANIC, 0};
        CHECK(pthread_create(&threads[i], NULL, work, &workers[i]) == 0, "thread %d", i);
    }
    int failed = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(threads[i], NULL);
        if (workers[i].token_status != AUTHCORE_STATUS_OK || workers[i].http_status != 200) {
            fprintf(stderr, "thread %d: token %s, request %d\n", i,
                    authcore_status_name(workers[i].token_status), workers[i].http_status);
            failed++;
        }
        if (expect_same_token) {
            CHECK(strcmp(workers[i].token, workers[0].token) == 0, "thread %d shares the token", i);
        }
    }
    pthread_barrier_destroy(&barrier);
    return failed;
}

int main(void) {
    devserver_reset();
    /* Two-second tokens and a slow token endpoint, so that all threads pile up. */
    control_post("/_control/config", "{\"lifetime_secs\": 2, \"latency_ms\": 200}");
    authcore_client *client = NULL;
    CHECK_OK(authcore_client_new_client_credentials(url_of("/oauth2/token"), "dev-client",
                                                    "dev-secret", "campaigns:read",
                                                    AUTHCORE_AUTH_METHOD_CLIENT_SECRET_BASIC, NULL,
                                                    &client));
    if (client == NULL) {
        return harness_finish("test_threads");
    }

    /* Cold cache: 32 threads, one token request. */
    CHECK(run_herd(client, true) == 0, "every thread got a token accepted by the provider");
    CHECK(token_requests() == 1, "cold herd: %ld token requests", token_requests());

    /* Across the expiry: wait until the token must no longer be sent, then 32 at once. */
    sleep_ms(2200);
    long before = token_requests();
    CHECK(run_herd(client, true) == 0, "every thread got a fresh token after the expiry");
    long renewals = token_requests() - before;
    CHECK(renewals == 1, "across the expiry: %ld token requests", renewals);
    CHECK(counter("resource_rejected_expired", NULL) == 0, "no expired token was sent");

    /* After a revocation: every thread's request is refused once, one renewal serves all. */
    control_post("/_control/config", "{\"lifetime_secs\": 3600, \"latency_ms\": 200}");
    char *token = NULL;
    CHECK_OK(authcore_client_token(client, &token));
    authcore_string_free(token);
    control_post("/_control/revoke", "{\"refresh\": false}");
    before = token_requests();
    CHECK(run_herd(client, false) == 0, "every request recovered after the revocation");
    renewals = token_requests() - before;
    CHECK(renewals == 1, "after revocation: %ld token requests", renewals);

    authcore_client_free(client);
    return harness_finish("test_threads");
}
