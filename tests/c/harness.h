/*
 * Shared helpers for the C tests: checks that count failures, and control of the
 * development provider (`authcore devserver`) whose URL is in AUTHCORE_DEVSERVER_URL.
 * The provider is driven through libauthcore itself (a personal-access-token client),
 * so these programs need nothing but the library and cJSON.
 */
#ifndef AUTHCORE_TEST_HARNESS_H
#define AUTHCORE_TEST_HARNESS_H

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

/* The provider's base URL, e.g. "http://127.0.0.1:40123". Exits if unset. */
static inline const char *devserver_url(void) {
    const char *url = getenv("AUTHCORE_DEVSERVER_URL");
    if (url == NULL || strncmp(url, "http://127.0.0.1:", 17) != 0) {
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

#endif
