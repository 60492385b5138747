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

static void test_callback_store(void) {
    devserver_reset();
    my_store s;
    memset(&s, 0, sizeof s);
    pthread_mutex_init(&s.mu, NULL);
    pthread_mutex_init(&s.lock, NULL);
    authcore_store_callbacks cb = {&s, my_load, my_save, my_lock, my_unlock, my_remove};
    authcore_options *o = NULL;
    CHECK_OK(authcore_options_new(&o));
    authcore_store_callbacks half = {&s, my_load, my_save, my_lock, NULL, NULL};
    CHECK_STATUS(authcore_options_set_store_callbacks(o, &half), AUTHCORE_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(authcore_options_set_store_callbacks(o, NULL), AUTHCORE_STATUS_NULL_ARGUMENT);
    CHECK_OK(authcore_options_set_store_callbacks(o, &cb));
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

    /* Revocation empties the store through `remove`. */
    char token_url[512], revoke_url[512];
    snprintf(token_url, sizeof token_url, "%s", url_of("/oauth2/token"));
    snprintf(revoke_url, sizeof revoke_url, "%s", url_of("/oauth2/revoke"));
    CHECK_OK(authcore_options_new(&o));
    CHECK_OK(authcore_options_set_store_callbacks(o, &cb));
    CHECK_OK(authcore_options_set_revocation_url(o, revoke_url));
    authcore_client *c = NULL;
    CHECK_OK(authcore_client_new_client_credentials(token_url, "dev-client", "dev-secret", NULL, 0, o, &c));
    authcore_options_free(o);
    CHECK_OK(authcore_client_token(c, &ta));
    CHECK(s.len > 0, "stored");
    CHECK_OK(authcore_client_revoke(c));
    CHECK(s.removes == 1 && s.len == 0, "removed from the store (%d)", s.removes);
    CHECK(counter("revocations", NULL) == 1, "one revocation: %ld", counter("revocations", NULL));
    authcore_string_free(ta);
    authcore_client_free(c);
    pthread_mutex_destroy(&s.mu);
    pthread_mutex_destroy(&s.lock);
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
    test_redis_store();
    test_unreachable_redis();
    test_redis_sentinel_and_cluster();
    /* Remove the store's files and the directory. */
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0, "cleaned up");
    return harness_finish("test_store");
}
