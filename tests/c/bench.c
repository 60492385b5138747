/*
 * C benchmark: cost of a cached token fetch through libauthcore (owned string and
 * caller buffer, 1 and 4 threads), and the 32-thread cold herd against the
 * development provider. Prints a Markdown table. Run with `bash tests/c/run.sh bench`.
 */
#include <pthread.h>

#include "harness.h"

#define ROUNDS 7
#define CALLS 200000

typedef struct {
    const authcore_client *client;
    int use_buffer;
    pthread_barrier_t *barrier;
    double ns_per_call;
} bench_job;

static void *bench_thread(void *arg) {
    bench_job *j = (bench_job *)arg;
    char buf[256];
    pthread_barrier_wait(j->barrier);
    double start = now_seconds();
    for (long i = 0; i < CALLS; i++) {
        if (j->use_buffer) {
            if (authcore_client_token_into(j->client, buf, sizeof buf, NULL) != AUTHCORE_STATUS_OK) {
                abort();
            }
        } else {
            char *t = NULL;
            if (authcore_client_token(j->client, &t) != AUTHCORE_STATUS_OK) {
                abort();
            }
            authcore_string_free(t);
        }
    }
    j->ns_per_call = (now_seconds() - start) * 1e9 / CALLS;
    return NULL;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median over ROUNDS of the mean per-call time per thread. */
static double measure(const authcore_client *c, int use_buffer, int threads) {
    double rounds[ROUNDS];
    for (int r = 0; r < ROUNDS; r++) {
        pthread_t ids[8];
        bench_job jobs[8];
        pthread_barrier_t barrier;
        pthread_barrier_init(&barrier, NULL, (unsigned)threads);
        for (int i = 0; i < threads; i++) {
            jobs[i] = (bench_job){c, use_buffer, &barrier, 0};
            pthread_create(&ids[i], NULL, bench_thread, &jobs[i]);
        }
        double sum = 0;
        for (int i = 0; i < threads; i++) {
            pthread_join(ids[i], NULL);
            sum += jobs[i].ns_per_call;
        }
        pthread_barrier_destroy(&barrier);
        rounds[r] = sum / threads;
    }
    qsort(rounds, ROUNDS, sizeof rounds[0], cmp_double);
    return rounds[ROUNDS / 2];
}

static void *herd_thread(void *arg) {
    bench_job *j = (bench_job *)arg;
    char buf[256];
    pthread_barrier_wait(j->barrier);
    j->ns_per_call = authcore_client_token_into(j->client, buf, sizeof buf, NULL);
    return NULL;
}

int main(void) {
    devserver_reset();
    authcore_client *c = NULL;
    if (authcore_client_new_client_credentials(url_of("/oauth2/token"), "dev-client", "dev-secret",
                                               NULL, 0, NULL, &c) != AUTHCORE_STATUS_OK) {
        fprintf(stderr, "%s\n", authcore_last_error_message());
        return 1;
    }
    char warm[256];
    authcore_client_token_into(c, warm, sizeof warm, NULL);

    printf("| measurement | threads | result |\n|---|---|---|\n");
    int thread_counts[] = {1, 4};
    for (int k = 0; k < 2; k++) {
        int n = thread_counts[k];
        printf("| cached token, owned string (`authcore_client_token` + free) | %d | %.0f ns/call |\n",
               n, measure(c, 0, n));
        printf("| cached token, caller buffer (`authcore_client_token_into`) | %d | %.0f ns/call |\n",
               n, measure(c, 1, n));
    }
    /* The same with a FileStore configured: the cached path never touches it. */
    char dir[] = "/tmp/authcore-c-bench-XXXXXX";
    authcore_options *o = NULL;
    authcore_client *stored = NULL;
    if (mkdtemp(dir) == NULL || authcore_options_new(&o) != AUTHCORE_STATUS_OK ||
        authcore_options_set_file_store(o, dir) != AUTHCORE_STATUS_OK ||
        authcore_client_new_client_credentials(url_of("/oauth2/token"), "dev-client", "dev-secret",
                                               NULL, 0, o, &stored) != AUTHCORE_STATUS_OK) {
        fprintf(stderr, "%s\n", authcore_last_error_message());
        return 1;
    }
    authcore_options_free(o);
    authcore_client_token_into(stored, warm, sizeof warm, NULL);
    double plain_ns = 0, stored_ns = 0;
    for (int round = 0; round < 5; round++) { /* interleaved: both see the same machine */
        plain_ns += measure(c, 1, 1) / 5;
        stored_ns += measure(stored, 1, 1) / 5;
    }
    printf("| cached token, caller buffer: no store / FileStore configured | 1 | %.0f / %.0f ns/call |\n",
           plain_ns, stored_ns);
    authcore_client_free(stored);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    authcore_client_free(c);

    /* The herd: 32 threads, cold cache, a 200 ms token endpoint. */
    devserver_reset();
    control_post("/_control/config", "{\"latency_ms\": 200}");
    CHECK_OK(authcore_client_new_client_credentials(url_of("/oauth2/token"), "dev-client",
                                                    "dev-secret", NULL, 0, NULL, &c));
    pthread_t ids[32];
    bench_job jobs[32];
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, 32);
    double start = now_seconds();
    for (int i = 0; i < 32; i++) {
        jobs[i] = (bench_job){c, 1, &barrier, -1};
        pthread_create(&ids[i], NULL, herd_thread, &jobs[i]);
    }
    int failed = 0;
    for (int i = 0; i < 32; i++) {
        pthread_join(ids[i], NULL);
        failed += jobs[i].ns_per_call != 0;
    }
    double elapsed = now_seconds() - start;
    pthread_barrier_destroy(&barrier);
    printf("| herd, cold cache, 200 ms token endpoint: token requests | 32 | %ld (%d failed, %.0f ms) |\n",
           token_requests(), failed, elapsed * 1000);
    authcore_client_free(c);
    devserver_reset();
    return failed == 0 ? 0 : 1;
}
