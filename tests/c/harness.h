/*
 * Shared helpers for the C tests: checks that count failures, and control of the
 * development provider (`authcore devserver`) whose URL is in AUTHCORE_DEVSERVER_URL.
 * The provider is driven through libauthcore itself (a personal-access-token client),
 * so these programs need nothing but the library and cJSON.
 */
#ifndef AUTHCORE_TEST_HARNESS_H
#define AUTHCORE_TEST_HARNESS_H

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "authcore.h"

static int harness_failures = 0;
static int harness_checks = 0;

#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        harness_checks++;                                                       \
        if (!(cond)) {                                                          \
            harness_failures++;                                                 \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);     \
            fprintf(stderr, __VA_ARGS__);                                       \
            fprintf(stderr, " (last error: %s)\n", authcore_last_error_message()); \
        }                                                                       \
    } while (0)

#define CHECK_STATUS(expr, want)                                                \
    do {                                                                        \
        authcore_status got_ = (expr);                                          \
        CHECK(got_ == (authcore_status)(want), "status %u (%s), wanted %u (%s)", \
              (unsigned)got_, authcore_status_str(got_), (unsigned)(want),      \
              authcore_status_str(want));                                       \
    } while (0)

#define CHECK_OK(expr) CHECK_STATUS(expr, AUTHCORE_STATUS_OK)

static inline int harness_finish(const char *name) {
    printf("%s: %d checks, %d failures\n", name, harness_checks, harness_failures);
    return harness_failures == 0 ? 0 : 1;
}

static inline double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* The provider's base URL, e.g. "http://127.0.0.1:40123" ("https://" for the one in TLS
 * mode). Exits if unset. */
static inline const char *devserver_url(void) {
    const char *url = getenv("AUTHCORE_DEVSERVER_URL");
    if (url == NULL || (strncmp(url, "http://127.0.0.1:", 17) != 0 &&
                        strncmp(url, "https://127.0.0.1:", 18) != 0)) {
        fprintf(stderr, "AUTHCORE_DEVSERVER_URL must be set to the loopback devserver\n");
        exit(2);
    }
    return url;
}

/* Joins the provider's URL and a path into a static buffer: one thread, one at a time. */
static inline const char *url_of(const char *path) {
    static char buf[512];
    snprintf(buf, sizeof buf, "%s%s", devserver_url(), path);
    return buf;
}

/* Sends a control request and returns the parsed JSON answer (caller frees). */
static inline cJSON *control(const char *method, const char *path, const char *json_body) {
    authcore_client *pat = NULL;
    authcore_response *resp = NULL;
    cJSON *parsed = NULL;
    char url[512];
    snprintf(url, sizeof url, "%s%s", devserver_url(), path);
    if (authcore_client_new_personal_access_token("control", &pat) != AUTHCORE_STATUS_OK) {
        fprintf(stderr, "control client: %s\n", authcore_last_error_message());
        exit(2);
    }
    authcore_header ct = {"Content-Type", "application/json"};
    size_t len = json_body ? strlen(json_body) : 0;
    if (authcore_client_request(pat, method, url, &ct, 1, (const uint8_t *)json_body, len,
                                &resp) != AUTHCORE_STATUS_OK) {
        fprintf(stderr, "control %s %s: %s\n", method, path, authcore_last_error_message());
        exit(2);
    }
    const uint8_t *data = NULL;
    size_t n = 0;
    if (authcore_response_status(resp) != 200 ||
        authcore_response_body(resp, &data, &n) != AUTHCORE_STATUS_OK) {
        fprintf(stderr, "control %s %s: HTTP %u\n", method, path,
                (unsigned)authcore_response_status(resp));
        exit(2);
    }
    parsed = cJSON_ParseWithLength((const char *)data, n);
    authcore_response_free(resp);
    authcore_client_free(pat);
    if (parsed == NULL) {
        fprintf(stderr, "control %s %s: not JSON\n", method, path);
        exit(2);
    }
    return parsed;
}

static inline void control_post(const char *path, const char *json_body) {
    cJSON_Delete(control("POST", path, json_body));
}

static inline void devserver_reset(void) { control_post("/_control/reset", "{}"); }

/* A counter from /_control/counters; `grant` non-NULL reads token_requests_by_grant. */
static inline long counter(const char *name, const char *grant) {
    cJSON *c = control("GET", "/_control/counters", NULL);
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(c, name);
    if (grant != NULL) {
        item = cJSON_GetObjectItemCaseSensitive(item, grant);
    }
    long value = cJSON_IsNumber(item) ? (long)item->valuedouble : 0;
    cJSON_Delete(c);
    return value;
}

static inline long token_requests(void) { return counter("token_requests", NULL); }

/* How much slower this run is than a plain one: run.sh sets AUTHCORE_TEST_SLOWDOWN for
 * the valgrind runs, and every time budget of a test is multiplied by it. */
static inline double slowdown(void) {
    const char *v = getenv("AUTHCORE_TEST_SLOWDOWN");
    double f = v != NULL ? atof(v) : 1.0;
    return f >= 1.0 && f <= 100.0 ? f : 1.0;
}

/* Waits until the provider has received at least `at_least` token requests (counted on
 * arrival, before any added latency): the signal that a renewal is in flight. Polls
 * every 5 ms for at most `seconds` (times the slowdown); false if it never came. */
static inline bool wait_token_requests(long at_least, double seconds) {
    double until = now_seconds() + seconds * slowdown();
    for (int i = 0; i < 100000 && now_seconds() < until; i++) {
        if (token_requests() >= at_least) return true;
        sleep_ms(5);
    }
    return token_requests() >= at_least;
}

/* Plays the user's browser: GETs the authorization URL and returns the redirect
 * (the callback URL) as a malloc'd string, or NULL. */
static inline char *follow_authorize(const char *authorization_url) {
    authcore_client *browser = NULL;
    authcore_response *resp = NULL;
    char *location = NULL;
    if (authcore_client_new_personal_access_token("browser", &browser) != AUTHCORE_STATUS_OK) {
        return NULL;
    }
    if (authcore_client_request(browser, "GET", authorization_url, NULL, 0, NULL, 0, &resp) ==
        AUTHCORE_STATUS_OK) {
        const char *loc = authcore_response_header(resp, "location");
        if (loc != NULL) {
            location = strdup(loc);
        }
        authcore_response_free(resp);
    }
    authcore_client_free(browser);
    return location;
}

/* GETs a provider resource with the client; returns the HTTP status or -status. */
static inline int get_status(const authcore_client *client, const char *path) {
    authcore_response *resp = NULL;
    char url[512]; /* not url_of(): this runs on many threads at once */
    snprintf(url, sizeof url, "%s%s", devserver_url(), path);
    authcore_status s = authcore_client_get(client, url, &resp);
    if (s != AUTHCORE_STATUS_OK) {
        return -(int)s;
    }
    int status = authcore_response_status(resp);
    authcore_response_free(resp);
    return status;
}

/* An HTTP client of the tests' own, for requests libauthcore must not shape (a request
 * with exactly the headers a test chose, a replayed proof): one HTTP/1.0 exchange with
 * a loopback server, `url` being "http://127.0.0.1:PORT/path". `headers` is NULL or
 * "Name: value\r\n" lines. The answer (status line, headers, a blank line, the body)
 * is written NUL-terminated into `reply`; returns the HTTP status, or 0 when there was
 * no answer. Reads for at most 10 s (times the slowdown). */
static inline int http_exchange(const char *method, const char *url, const char *headers,
                                const char *body, char *reply, size_t reply_len) {
    unsigned port = 0;
    int consumed = 0;
    reply[0] = '\0';
    if (sscanf(url, "http://127.0.0.1:%u%n", &port, &consumed) != 1 || port == 0 ||
        port > 65535) {
        return 0;
    }
    const char *path = url[consumed] == '/' ? url + consumed : "/";
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return 0;
    double limit = 10.0 * slowdown();
    struct timeval tv = {(time_t)limit, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        close(fd);
        return 0;
    }
    size_t body_len = body ? strlen(body) : 0;
    size_t cap = strlen(path) + (headers ? strlen(headers) : 0) + body_len + 256;
    char *request = malloc(cap);
    int n = request ? snprintf(request, cap,
                               "%s %s HTTP/1.0\r\nHost: 127.0.0.1:%u\r\n%sContent-Length: %zu\r\n\r\n%s",
                               method, path, port, headers ? headers : "", body_len,
                               body ? body : "")
                    : -1;
    int status = 0;
    if (n > 0 && (size_t)n < cap && write(fd, request, (size_t)n) == n) {
        size_t got = 0;
        ssize_t r;
        double until = now_seconds() + limit;
        while (got < reply_len - 1 && now_seconds() < until &&
               (r = read(fd, reply + got, reply_len - 1 - got)) > 0) {
            got += (size_t)r;
        }
        reply[got] = '\0';
        if (sscanf(reply, "HTTP/1.%*c %d", &status) != 1) status = 0;
    }
    free(request);
    close(fd);
    return status;
}

/* The value of header `name` (case-insensitive) in an answer of `http_exchange`, copied
 * into `out` (trimmed; at most `out_len` - 1 bytes); the `which`-th one when it repeats
 * (0: the first). False if there is none. */
static inline bool http_header(const char *reply, const char *name, int which, char *out,
                               size_t out_len) {
    size_t name_len = strlen(name);
    const char *end = strstr(reply, "\r\n\r\n");
    const char *line = strstr(reply, "\r\n");
    while (line != NULL && (end == NULL || line < end)) {
        line += 2;
        if (strncasecmp(line, name, name_len) == 0 && line[name_len] == ':') {
            if (which-- == 0) {
                const char *v = line + name_len + 1;
                while (*v == ' ' || *v == '\t') v++;
                const char *stop = strstr(v, "\r\n");
                size_t len = stop ? (size_t)(stop - v) : strlen(v);
                if (len >= out_len) len = out_len - 1;
                memcpy(out, v, len);
                out[len] = '\0';
                return true;
            }
        }
        line = strstr(line, "\r\n");
    }
    return false;
}

/* The body of an answer of `http_exchange` ("" if none). */
static inline const char *http_body(const char *reply) {
    const char *end = strstr(reply, "\r\n\r\n");
    return end ? end + 4 : "";
}

/* Sends `method url` with the headers `client` gives for it (`authcore_client_request_headers`)
 * through `http_exchange`, following the DPoP nonce rule (`authcore_client_dpop_nonce_retry`:
 * once more with new headers when the server asks for a nonce). `proof_out` (if not NULL,
 * `proof_len` bytes) receives the last DPoP proof sent ("" for none). Returns the last
 * status, or -status for a library failure. */
static inline int call_with_headers(const authcore_client *client, const char *method,
                                    const char *url, char *reply, size_t reply_len,
                                    char *proof_out, size_t proof_len) {
    int status = 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        char *authorization = NULL, *proof = NULL;
        authcore_status s =
            authcore_client_request_headers(client, method, url, &authorization, &proof);
        if (s != AUTHCORE_STATUS_OK) return -(int)s;
        size_t cap = strlen(authorization) + (proof ? strlen(proof) : 0) + 64;
        char *headers = malloc(cap);
        if (headers == NULL) exit(2);
        if (proof != NULL) {
            snprintf(headers, cap, "Authorization: %s\r\nDPoP: %s\r\n", authorization, proof);
        } else {
            snprintf(headers, cap, "Authorization: %s\r\n", authorization);
        }
        if (proof_out != NULL) snprintf(proof_out, proof_len, "%s", proof ? proof : "");
        status = http_exchange(method, url, headers, NULL, reply, reply_len);
        memset(headers, 0, cap);
        free(headers);
        authcore_string_free(authorization);
        authcore_string_free(proof);
        char challenge[1024] = "", nonce[1024] = "";
        bool has_challenge = http_header(reply, "WWW-Authenticate", 0, challenge, sizeof challenge);
        bool has_nonce = http_header(reply, "DPoP-Nonce", 0, nonce, sizeof nonce);
        /* A second nonce request is final (and is not a resend to count). */
        if (attempt == 1 ||
            !authcore_client_dpop_nonce_retry(client, url, (uint16_t)status,
                                              has_challenge ? challenge : NULL,
                                              has_nonce ? nonce : NULL)) {
            break;
        }
    }
    return status;
}

#endif
