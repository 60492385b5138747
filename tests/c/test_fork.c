/*
 * A client used in a child after fork(): no renewal "in flight" inherited from the
 * parent, no lock held across the fork, no pooled connection shared with the parent, and
 * no store lock held for the parent by a child. Every child is bounded by alarm() so that
 * a hang fails the test instead of blocking it.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

static authcore_client *client;

static void *renew_in_background(void *arg) {
    (void)arg;
    char *token = NULL;
    authcore_status s = authcore_client_token(client, &token);
    authcore_string_free(token);
    return (void *)(uintptr_t)s;
}

static atomic_bool stop_hammer;

static void *hammer(void *arg) {
    (void)arg;
    char buf[512];
    size_t needed = 0;
    /* Takes the cache again and again while the main thread forks. */
    for (long i = 0; i < 50000000 && !atomic_load(&stop_hammer); i++) {
        (void)authcore_client_token_into(client, buf, sizeof buf, &needed);
        bool dropped = false;
        if (i % 64 == 0) (void)authcore_client_invalidate(client, "not-the-token", &dropped);
    }
    return NULL;
}

/* In the child: a request through the inherited client must succeed promptly. */
static int child_uses_client(double budget_seconds) {
    alarm((unsigned)(10 * slowdown()));
    double start = now_seconds();
    int status = get_status(client, "/api/resource");
    double took = now_seconds() - start;
    if (status != 200) {
        fprintf(stderr, "child: HTTP %d (%s)\n", status, authcore_last_error_message());
        return 1;
    }
    if (took > budget_seconds) {
        fprintf(stderr, "child: took %.2f s\n", took);
        return 2;
    }
    return 0;
}

static int wait_child(pid_t pid) {
    int wstatus = 0;
    if (waitpid(pid, &wstatus, 0) != pid) return -1;
    if (WIFEXITED(wstatus)) return WEXITSTATUS(wstatus);
    return 100 + (WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : 0);
}

static void test_fork_during_renewal(void) {
    devserver_reset();
    /* Token requests take 1.5 s: the parent's renewal is in flight across the fork. */
    control_post("/_control/config", "{\"lifetime_secs\": 3600, \"latency_ms\": 1500}");
    pthread_t t;
    pthread_create(&t, NULL, renew_in_background, NULL);
    CHECK(wait_token_requests(1, 5.0), "the parent's renewal reached the provider");
    pid_t pid = fork();
    if (pid == 0) {
        /* The child renews on its own (1.5 s) instead of waiting for a leader that does
         * not exist here, which used to take the whole wait deadline (8 s). */
        _exit(child_uses_client(4.0 * slowdown()));
    }
    void *parent_status = NULL;
    pthread_join(t, &parent_status);
    CHECK((uintptr_t)parent_status == AUTHCORE_STATUS_OK, "the parent's renewal finished");
    CHECK(wait_child(pid) == 0, "the child got its own token and used it");
    CHECK(get_status(client, "/api/resource") == 200, "the parent still works");
    control_post("/_control/config", "{\"lifetime_secs\": 3600, \"latency_ms\": 0}");
}

/* A child forked while the parent renews through a file store (holding the store's
 * lock) does not hold that lock for the parent: the child sleeps 3 s holding nothing it
 * uses, and the parent's next renewal takes the lock at once. */
static void *renew_stored_in_background(void *arg) {
    char *token = NULL;
    authcore_status s = authcore_client_token((const authcore_client *)arg, &token);
    authcore_string_free(token);
    return (void *)(uintptr_t)s;
}

static void test_fork_during_a_stored_renewal(void) {
    devserver_reset();
    char dir[] = "/tmp/authcore-c-fork-XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "temp dir");
    authcore_options *o = NULL;
    CHECK_OK(authcore_options_new(&o));
    CHECK_OK(authcore_options_set_timeout_ms(o, 8000));
    CHECK_OK(authcore_options_set_file_store(o, dir));
    char token_url[512];
    snprintf(token_url, sizeof token_url, "%s", url_of("/oauth2/token"));
    authcore_client *stored = NULL;
    CHECK_OK(authcore_client_new_client_credentials(token_url, "dev-client", "dev-secret",
                                                    "reporting:read",
                                                    AUTHCORE_AUTH_METHOD_CLIENT_SECRET_BASIC, o,
                                                    &stored));
    authcore_options_free(o);
    /* The renewal takes the store's lock, then waits 1.5 s for the provider. */
    control_post("/_control/config", "{\"lifetime_secs\": 3600, \"latency_ms\": 1500}");
    pthread_t t;
    pthread_create(&t, NULL, renew_stored_in_background, stored);
    CHECK(wait_token_requests(1, 5.0), "the renewal holds the store's lock and is in flight");
    /* The child outlives the parent's next renewal by far, whatever the slowdown. */
    double child_sleeps = 3.0 * slowdown();
    pid_t pid = fork();
    if (pid == 0) {
        alarm((unsigned)(child_sleeps + 10));
        sleep_ms((long)(child_sleeps * 1000));
        _exit(0);
    }
    void *first = NULL;
    pthread_join(t, &first);
    CHECK((uintptr_t)first == AUTHCORE_STATUS_OK, "the renewal across the fork finished");
    control_post("/_control/config", "{\"lifetime_secs\": 3600, \"latency_ms\": 0}");
    double start = now_seconds();
    char *token = NULL;
    CHECK_OK(authcore_client_refresh(stored, &token));
    double took = now_seconds() - start;
    printf("test_fork: a renewal while a forked child lives took %.2f s\n", took);
    fflush(stdout); /* not again from the children forked later */
    CHECK(took < child_sleeps / 2, "the next renewal did not wait for the child: %.2f s", took);
    CHECK(wait_child(pid) == 0, "the child slept and exited");
    CHECK(get_status(stored, "/api/resource") == 200, "the renewed token works");
    authcore_string_free(token);
    authcore_client_free(stored);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0, "cleaned up");
}

static void test_forks_while_another_thread_holds_the_cache(void) {
    devserver_reset();
    CHECK(get_status(client, "/api/resource") == 200, "warm");
    atomic_store(&stop_hammer, false);
    pthread_t t;
    pthread_create(&t, NULL, hammer, NULL);
    int failures = 0;
    for (int i = 0; i < 20; i++) {
        pid_t pid = fork();
        if (pid == 0) _exit(child_uses_client(5.0 * slowdown()));
        if (wait_child(pid) != 0) failures++;
    }
    atomic_store(&stop_hammer, true);
    pthread_join(t, NULL);
    CHECK(failures == 0, "%d of 20 children failed", failures);
    CHECK(get_status(client, "/api/resource") == 200, "the parent still works");
}

/* A child counts only what it did: its counters start at zero at the fork. */
static int child_counts_from_zero(void) {
    authcore_stats st;
    if (authcore_client_stats(client, &st, sizeof st) != AUTHCORE_STATUS_OK) return 10;
    if (st.cache_hits != 0 || st.token_requests_succeeded != 0 || st.renewals_initial != 0)
        return 11;
    char *token = NULL;
    if (authcore_client_token(client, &token) != AUTHCORE_STATUS_OK) return 12;
    authcore_string_free(token);
    if (authcore_client_stats(client, &st, sizeof st) != AUTHCORE_STATUS_OK) return 13;
    return st.cache_hits == 1 && st.token_requests_succeeded == 0 ? 0 : 14;
}

static void test_a_child_counts_from_zero(void) {
    char *token = NULL;
    CHECK_OK(authcore_client_token(client, &token));
    authcore_string_free(token);
    authcore_stats before;
    CHECK_OK(authcore_client_stats(client, &before, sizeof before));
    CHECK(before.cache_hits + before.token_requests_succeeded > 0, "the parent counted");
    pid_t pid = fork();
    if (pid == 0) _exit(child_counts_from_zero());
    int code = wait_child(pid);
    CHECK(code == 0, "the child's counters started at zero (exit %d)", code);
    authcore_stats after;
    CHECK_OK(authcore_client_stats(client, &after, sizeof after));
    CHECK(after.cache_hits == before.cache_hits &&
              after.token_requests_succeeded == before.token_requests_succeeded,
          "the parent's counts are its own");
}

int main(void) {
    authcore_options *o = NULL;
    CHECK_OK(authcore_options_new(&o));
    CHECK_OK(authcore_options_set_timeout_ms(o, 8000));
    char token_url[512];
    snprintf(token_url, sizeof token_url, "%s", url_of("/oauth2/token"));
    CHECK_OK(authcore_client_new_client_credentials(token_url, "dev-client", "dev-secret",
                                                    "campaigns:read",
                                                    AUTHCORE_AUTH_METHOD_CLIENT_SECRET_BASIC, o,
                                                    &client));
    authcore_options_free(o);
    test_fork_during_renewal();
    test_fork_during_a_stored_renewal();
    test_forks_while_another_thread_holds_the_cache();
    test_a_child_counts_from_zero();
    authcore_client_free(client);
    return harness_finish("test_fork");
}
