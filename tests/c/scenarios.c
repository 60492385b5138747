/*
 * The C runner over the shared scenarios (the JSON files in tests/scenarios): the same provider
 * set-up, client, steps and expectations as the Rust runner, through libauthcore.
 * Usage: scenarios DIR  (AUTHCORE_DEVSERVER_URL names the provider).
 */
#include <dirent.h>
#include <pthread.h>

#include "harness.h"

#define MAX_THREADS 64
#define MAX_KINDS 128

/* What callers saw: errors by status, and every OAuth error code. */
typedef struct {
    pthread_mutex_t lock;
    long errors[MAX_KINDS];
    int oauth_total;
    int oauth_mismatched;
    int printed;
    const char *oauth_expected;
} observed;

static void record(observed *o, authcore_status s) {
    if (s == AUTHCORE_STATUS_OK) {
        return;
    }
    const char *oauth = authcore_last_error_oauth_error();
    pthread_mutex_lock(&o->lock);
    if (o->printed < 3) {
        o->printed++;
        fprintf(stderr, "    %s: %s\n", authcore_status_name(s), authcore_last_error_message());
    }
    o->errors[s < MAX_KINDS ? s : MAX_KINDS - 1]++;
    if (oauth != NULL) {
        o->oauth_total++;
        if (o->oauth_expected == NULL || strcmp(oauth, o->oauth_expected) != 0) {
            o->oauth_mismatched++;
        }
    }
    pthread_mutex_unlock(&o->lock);
}

typedef enum { STEP_TOKEN, STEP_REQUEST, STEP_CHURN } step_kind;

typedef struct {
    const authcore_client *client;
    observed *obs;
    pthread_barrier_t *barrier;
    step_kind kind;
    long count;
    double until;
    char url[512];
} job;

static authcore_status request_once(const authcore_client *c, const char *url) {
    authcore_response *r = NULL;
    authcore_status s = authcore_client_request(c, "GET", url, NULL, 0, NULL, 0, &r);
    authcore_response_free(r);
    return s;
}

static void *run_job(void *arg) {
    job *j = (job *)arg;
    pthread_barrier_wait(j->barrier);
    if (j->kind == STEP_TOKEN) {
        char *t = NULL;
        record(j->obs, authcore_client_token(j->client, &t));
        authcore_string_free(t);
    } else if (j->kind == STEP_REQUEST) {
        for (long i = 0; i < j->count; i++) {
            record(j->obs, request_once(j->client, j->url));
        }
    } else {
        while (now_seconds() < j->until) {
            record(j->obs, request_once(j->client, j->url));
        }
    }
    return NULL;
}

static void in_threads(const authcore_client *c, observed *o, step_kind kind, long threads,
                       long count, double seconds, const char *path) {
    if (threads < 1) threads = 1;
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    if (count > 100000) count = 100000;
    if (seconds > 60) seconds = 60;
    pthread_t ids[MAX_THREADS];
    static job jobs[MAX_THREADS];
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, (unsigned)threads);
    double until = now_seconds() + seconds;
    for (long i = 0; i < threads; i++) {
        jobs[i] = (job){c, o, &barrier, kind, count, until, ""};
        snprintf(jobs[i].url, sizeof jobs[i].url, "%s%s", devserver_url(), path);
        if (pthread_create(&ids[i], NULL, run_job, &jobs[i]) != 0) {
            fprintf(stderr, "pthread_create failed\n");
            exit(2);
        }
    }
    for (long i = 0; i < threads; i++) {
        pthread_join(ids[i], NULL);
    }
    pthread_barrier_destroy(&barrier);
}

static const char *str_field(const cJSON *obj, const char *name, const char *fallback) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsString(v) ? v->valuestring : fallback;
}

static double num_field(const cJSON *obj, const char *name, double fallback) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsNumber(v) ? v->valuedouble : fallback;
}

/* Space-joined strings from the scenario's client.KEY (client.scopes by default), or NULL. */
static char *joined(const cJSON *client, const char *key) {
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(client, key);
    if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) == 0) {
        return NULL;
    }
    char *out = calloc(1, 1024);
    const cJSON *s;
    cJSON_ArrayForEach(s, list) {
        if (cJSON_IsString(s) && strlen(out) + strlen(s->valuestring) + 2 < 1024) {
            if (out[0] != '\0') strcat(out, " ");
            strcat(out, s->valuestring);
        }
    }
    return out;
}

static char *scopes_of(const cJSON *client) { return joined(client, "scopes"); }

/* One scenario's run: the client's options, kept for a restart, its store, the last
 * refresh token the client was given (for a restart), and what a replay saw. */
typedef struct {
    const cJSON *scenario;
    authcore_options *options;
    char store_dir[64];
    pthread_mutex_t lock;
    char *refresh_token;
    int replay_statuses[2];
    /* The assertion file of the assertion dialects, in a directory of the run's own. */
    char assertion_dir[64];
    char assertion_path[128];
    /* `oauth2_mtls`: the thumbprint (x5t#S256) of the client's certificate. */
    char x5t[64];
    /* A token exchange's subject client, whose token requests count with the client's. */
    authcore_client *subject;
} run;

/* Whether the dialect reads an assertion (a client assertion, a JWT bearer grant). */
static bool reads_assertion(const char *dialect) {
    return strcmp(dialect, "oauth2_assertion") == 0 || strcmp(dialect, "oauth2_jwt_bearer") == 0;
}

/* Where the scenario's client reads its assertion: the file, or `cat` of it. */
static authcore_status assertion_source(run *r, authcore_assertion_source **out) {
    const cJSON *client = cJSON_GetObjectItemCaseSensitive(r->scenario, "client");
    const char *kind = str_field(client, "assertion", "file");
    if (strcmp(kind, "command") == 0) {
        const char *args[] = {r->assertion_path};
        return authcore_assertion_source_command("cat", args, 1, 0, out);
    }
    return authcore_assertion_source_file(r->assertion_path, out);
}

/* The `write_assertion` step: the provider's test issuer mints a JWT about `sub` (default
 * the client id) for itself, valid for `ttl_s` seconds, written to the assertion file. */
static void write_assertion(run *r, const cJSON *arg) {
    char body[512];
    snprintf(body, sizeof body, "{\"sub\":\"%s\",\"aud\":\"%s\",\"ttl_s\":%ld}",
             str_field(arg, "sub", "dev-client"), devserver_url(), (long)num_field(arg, "ttl_s", 300));
    cJSON *answer = control("POST", "/_control/test_issuer/mint", body);
    const cJSON *jwt = cJSON_GetObjectItemCaseSensitive(answer, "jwt");
    FILE *f = cJSON_IsString(jwt) ? fopen(r->assertion_path, "w") : NULL;
    if (f == NULL || fputs(jwt->valuestring, f) < 0 || fclose(f) != 0) {
        fprintf(stderr, "cannot write the assertion to %s\n", r->assertion_path);
        exit(2);
    }
    cJSON_Delete(answer);
}

static void wipe_free(char *s) {
    if (s != NULL) {
        memset(s, 0, strlen(s));
        free(s);
    }
}

/* The refresh-token callback of a scenario that restarts: keeps the latest one. */
static int keep_refresh_token(void *userdata, const char *token, size_t len) {
    run *r = (run *)userdata;
    char *copy = malloc(len + 1);
    if (copy == NULL) return 1;
    memcpy(copy, token, len);
    copy[len] = '\0';
    pthread_mutex_lock(&r->lock);
    wipe_free(r->refresh_token);
    r->refresh_token = copy;
    pthread_mutex_unlock(&r->lock);
    return 0;
}

static bool has_step(const cJSON *scenario, const char *kind) {
    const cJSON *step;
    cJSON_ArrayForEach(step, cJSON_GetObjectItemCaseSensitive(scenario, "steps")) {
        if (step->child != NULL && strcmp(step->child->string, kind) == 0) return true;
    }
    return false;
}

/* The options of the scenario's client, kept in `r` (a file store in a directory of the
 * run's own, which the caller removes; DPoP with a key generated for the named
 * algorithm). */
static authcore_status make_options(run *r) {
    const cJSON *client = cJSON_GetObjectItemCaseSensitive(r->scenario, "client");
    const char *store = str_field(client, "store", NULL);
    const char *dpop = str_field(client, "dpop", NULL);
    authcore_options *o = NULL;
    authcore_status s = authcore_options_new(&o);
    r->options = o;
    if (s == AUTHCORE_STATUS_OK) s = authcore_options_set_failure_backoff_ms(o, 50, 500);
    if (s == AUTHCORE_STATUS_OK) s = authcore_options_set_timeout_ms(o, 10000);
    if (s == AUTHCORE_STATUS_OK && dpop != NULL) s = authcore_options_set_dpop(o, dpop);
    if (s == AUTHCORE_STATUS_OK && reads_assertion(str_field(r->scenario, "dialect", ""))) {
        snprintf(r->assertion_dir, sizeof r->assertion_dir, "/tmp/authcore-c-assertion-XXXXXX");
        if (mkdtemp(r->assertion_dir) == NULL) {
            r->assertion_dir[0] = '\0';
            s = AUTHCORE_STATUS_CONFIG;
        } else {
            snprintf(r->assertion_path, sizeof r->assertion_path, "%s/assertion", r->assertion_dir);
        }
    }
    if (s == AUTHCORE_STATUS_OK && has_step(r->scenario, "restart"))
        s = authcore_options_set_refresh_token_callback(o, keep_refresh_token, r);
    if (s == AUTHCORE_STATUS_OK && store != NULL) {
        if (strcmp(store, "file") != 0) {
            fprintf(stderr, "unknown store %s\n", store);
            s = AUTHCORE_STATUS_CONFIG;
        } else {
            snprintf(r->store_dir, sizeof r->store_dir, "/tmp/authcore-c-scenario-XXXXXX");
            if (mkdtemp(r->store_dir) == NULL) {
                r->store_dir[0] = '\0';
                s = AUTHCORE_STATUS_CONFIG;
            } else {
                s = authcore_options_set_file_store(o, r->store_dir);
            }
        }
        if (s == AUTHCORE_STATUS_OK) s = authcore_options_set_store_key(o, "scenario-user");
    }
    return s;
}

/* The token endpoint, body format and client authentication of a dialect that renews
 * with a refresh token; false for the others. */
static bool refresh_endpoint(const char *dialect, char *token_url, size_t len, bool *json,
                             uint32_t *method) {
    const char *base = devserver_url();
    if (strcmp(dialect, "oauth2_code") == 0 || strcmp(dialect, "oauth2_device") == 0) {
        snprintf(token_url, len, "%s/oauth2/token", base);
        *json = false;
        *method = AUTHCORE_AUTH_METHOD_CLIENT_SECRET_BASIC;
        return true;
    }
    if (strcmp(dialect, "viewneo_code") == 0) {
        snprintf(token_url, len, "%s/oauth/token", base);
        *json = true;
        *method = AUTHCORE_AUTH_METHOD_CLIENT_SECRET_POST;
        return true;
    }
    return false;
}

/* Adds every counter of `s` to `sum` (every field is a uint64_t). */
static void add_stats(authcore_stats *sum, const authcore_stats *s) {
    uint64_t *to = (uint64_t *)sum;
    const uint64_t *from = (const uint64_t *)s;
    for (size_t i = 0; i < sizeof *sum / sizeof(uint64_t); i++) to[i] += from[i];
}

/* The `restart` step: the client is replaced by one a restarted process would make
 * (same options, a new store over the same directory, a newly generated DPoP key, a
 * refresh-token grant from the last refresh token the old one held). Its counters are
 * added to `carried`. */
static authcore_status restart(run *r, authcore_client **client, authcore_stats *carried) {
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(r->scenario, "client");
    const char *dpop = str_field(c, "dpop", NULL);
    const char *secret = str_field(c, "secret", "dev-secret");
    char token_url[512];
    bool json = false;
    uint32_t method = 0;
    if (!refresh_endpoint(str_field(r->scenario, "dialect", ""), token_url, sizeof token_url, &json,
                          &method)) {
        fprintf(stderr, "    restart: the dialect does not renew with a refresh token\n");
        return AUTHCORE_STATUS_CONFIG;
    }
    authcore_stats s;
    if (authcore_client_stats(*client, &s, sizeof s) == AUTHCORE_STATUS_OK) add_stats(carried, &s);
    authcore_client_free(*client);
    *client = NULL;
    authcore_status st = AUTHCORE_STATUS_OK;
    if (dpop != NULL) st = authcore_options_set_dpop(r->options, dpop);
    if (st == AUTHCORE_STATUS_OK && r->store_dir[0] != '\0')
        st = authcore_options_set_file_store(r->options, r->store_dir);
    if (st != AUTHCORE_STATUS_OK) return st;
    pthread_mutex_lock(&r->lock);
    char *refresh = r->refresh_token ? strdup(r->refresh_token) : NULL;
    pthread_mutex_unlock(&r->lock);
    if (refresh == NULL) {
        fprintf(stderr, "    restart: the client was given no refresh token\n");
        return AUTHCORE_STATUS_CONFIG;
    }
    st = authcore_client_new_refresh_token(token_url, "dev-client", secret, refresh, json, method,
                                           r->options, client);
    wipe_free(refresh);
    return st;
}

/* The `replay` step in TLS mode (`oauth2_mtls`): the token of `authorization` sent twice
 * by a client of the runner's own that presents no client certificate (a personal
 * access token client: it only sends the token). */
static authcore_status replay_without_certificate(run *r, const char *url, const char *authorization) {
    const char *token = strchr(authorization, ' ');
    authcore_client *bare = NULL;
    authcore_status s = authcore_client_new_personal_access_token(token ? token + 1 : "", &bare);
    for (int i = 0; i < 2 && s == AUTHCORE_STATUS_OK; i++) {
        authcore_response *resp = NULL;
        s = authcore_client_get(bare, url, &resp);
        if (s == AUTHCORE_STATUS_OK) r->replay_statuses[i] = authcore_response_status(resp);
        authcore_response_free(resp);
    }
    authcore_client_free(bare);
    return s;
}

/* The `replay` step: the client's headers for `GET /api/replay`, sent twice as they are
 * with the runner's own HTTP client. */
static authcore_status replay(run *r, const authcore_client *client) {
    char url[512], reply[8192];
    snprintf(url, sizeof url, "%s/api/replay", devserver_url());
    char *authorization = NULL, *proof = NULL;
    authcore_status s = authcore_client_request_headers(client, "GET", url, &authorization, &proof);
    if (s != AUTHCORE_STATUS_OK) return s;
    if (r->x5t[0] != '\0') {
        s = replay_without_certificate(r, url, authorization);
        authcore_string_free(authorization);
        authcore_string_free(proof);
        return s;
    }
    size_t cap = strlen(authorization) + (proof ? strlen(proof) : 0) + 64;
    char *headers = malloc(cap);
    if (headers == NULL) exit(2);
    snprintf(headers, cap, "Authorization: %s\r\n%s%s%s", authorization, proof ? "DPoP: " : "",
             proof ? proof : "", proof ? "\r\n" : "");
    for (int i = 0; i < 2; i++) {
        r->replay_statuses[i] = http_exchange("GET", url, headers, NULL, reply, sizeof reply);
    }
    memset(headers, 0, cap);
    free(headers);
    authcore_string_free(authorization);
    authcore_string_free(proof);
    return AUTHCORE_STATUS_OK;
}

/* The `oauth2_mtls` client's certificate: issued by the provider for "scenario-mtls",
 * registered for tls_client_auth with its subject beside the scenario's provider
 * settings, and set in the options; its thumbprint kept in `r`. */
static authcore_status mtls_certificate(run *r) {
    cJSON *made = control("POST", "/_control/client_certificate", "{\"cn\": \"scenario-mtls\"}");
    const cJSON *provider = cJSON_GetObjectItemCaseSensitive(r->scenario, "provider");
    cJSON *config = provider ? cJSON_Duplicate(provider, true) : cJSON_CreateObject();
    cJSON *clients = cJSON_AddArrayToObject(config, "mtls_clients");
    cJSON *client = cJSON_CreateObject();
    cJSON_AddStringToObject(client, "client_id", "scenario-mtls");
    cJSON_AddStringToObject(client, "tls_client_auth_subject_dn", str_field(made, "subject", ""));
    cJSON_AddItemToArray(clients, client);
    char *body = cJSON_PrintUnformatted(config);
    control_post("/_control/config", body);
    free(body);
    cJSON_Delete(config);
    snprintf(r->x5t, sizeof r->x5t, "%s", str_field(made, "x5t#S256", ""));
    authcore_status s = authcore_options_set_client_certificate_pem(
        r->options, str_field(made, "certificate", ""), str_field(made, "key", ""));
    cJSON_Delete(made);
    return s;
}

/* Whether the provider says the client's token is bound to its certificate: the
 * `cnf.x5t#S256` of its answer to the client at `/api/certificate`. */
static bool certificate_bound(const run *r, const authcore_client *client) {
    char url[512];
    snprintf(url, sizeof url, "%s/api/certificate", devserver_url());
    authcore_response *resp = NULL;
    bool bound = false;
    if (r->x5t[0] != '\0' && authcore_client_get(client, url, &resp) == AUTHCORE_STATUS_OK) {
        const uint8_t *data = NULL;
        size_t n = 0;
        if (authcore_response_body(resp, &data, &n) == AUTHCORE_STATUS_OK) {
            cJSON *answer = cJSON_ParseWithLength((const char *)data, n);
            const cJSON *cnf = cJSON_GetObjectItemCaseSensitive(answer, "cnf");
            bound = strcmp(str_field(cnf, "x5t#S256", ""), r->x5t) == 0;
            cJSON_Delete(answer);
        }
    }
    authcore_response_free(resp);
    return bound;
}

/* A scenario's list of strings (client.audience), one `add` call each. */
static authcore_status add_each(const cJSON *list, authcore_token_exchange *x,
                                authcore_status (*add)(authcore_token_exchange *, const char *)) {
    const cJSON *item;
    cJSON_ArrayForEach(item, list) {
        if (!cJSON_IsString(item)) return AUTHCORE_STATUS_CONFIG;
        authcore_status s = add(x, item->valuestring);
        if (s != AUTHCORE_STATUS_OK) return s;
    }
    return AUTHCORE_STATUS_OK;
}

/* Chained token exchange: a subject client (client credentials, body authentication, for
 * client.subject_scopes, no store, no DPoP), kept in `r`, whose token the client
 * exchanges at the same endpoint (body authentication, client.scopes, client.audience). */
static authcore_status build_exchange(run *r, const char *secret, const char *scopes,
                                      authcore_client **out) {
    const cJSON *client = cJSON_GetObjectItemCaseSensitive(r->scenario, "client");
    char token_url[512];
    snprintf(token_url, sizeof token_url, "%s/oauth2/token", devserver_url());
    char *subject_scopes = joined(client, "subject_scopes");
    authcore_options *so = NULL;
    authcore_token_exchange *x = NULL;
    authcore_status s = authcore_options_new(&so);
    if (s == AUTHCORE_STATUS_OK) s = authcore_options_set_failure_backoff_ms(so, 50, 500);
    if (s == AUTHCORE_STATUS_OK) s = authcore_options_set_timeout_ms(so, 10000);
    if (s == AUTHCORE_STATUS_OK)
        s = authcore_client_new_client_credentials(token_url, "dev-client", secret, subject_scopes,
                                                   AUTHCORE_AUTH_METHOD_CLIENT_SECRET_POST, so,
                                                   &r->subject);
    if (s == AUTHCORE_STATUS_OK)
        s = authcore_token_exchange_new(token_url, "dev-client", secret,
                                        AUTHCORE_AUTH_METHOD_CLIENT_SECRET_POST, &x);
    if (s == AUTHCORE_STATUS_OK)
        s = authcore_token_exchange_set_subject_client(x, r->subject, "access_token");
    if (s == AUTHCORE_STATUS_OK)
        s = add_each(cJSON_GetObjectItemCaseSensitive(client, "audience"), x,
                     authcore_token_exchange_add_audience);
    if (s == AUTHCORE_STATUS_OK) s = authcore_token_exchange_set_scopes(x, scopes);
    if (s == AUTHCORE_STATUS_OK) s = authcore_client_new_token_exchange(x, r->options, out);
    authcore_token_exchange_free(x);
    authcore_options_free(so);
    free(subject_scopes);
    return s;
}

/* The `revoke_subject` step: the provider revokes the subject client's current token. */
static authcore_status revoke_subject(run *r) {
    authcore_token *t = NULL;
    if (r->subject == NULL) return AUTHCORE_STATUS_CONFIG;
    authcore_status s = authcore_client_token_info(r->subject, &t);
    if (s != AUTHCORE_STATUS_OK) return s;
    char body[1024];
    snprintf(body, sizeof body, "{\"token\":\"%s\"}", authcore_token_access_token(t));
    control_post("/_control/revoke_token", body);
    memset(body, 0, sizeof body);
    authcore_token_free(t);
    return AUTHCORE_STATUS_OK;
}

/* Builds the scenario's client with the options `make_options` put in `r`. */
static authcore_status build_client(run *r, authcore_client **out) {
    const cJSON *scenario = r->scenario;
    const char *dialect = str_field(scenario, "dialect", "");
    const cJSON *client = cJSON_GetObjectItemCaseSensitive(scenario, "client");
    const char *secret = str_field(client, "secret", NULL);
    char *scopes = scopes_of(client);
    const char *base = devserver_url();
    char token_url[512], authorize_url[512];
    authcore_options *o = r->options;
    authcore_status s = AUTHCORE_STATUS_OK;
    if (strcmp(dialect, "apivideo") == 0) {
        s = authcore_client_new_api_video_at(base, secret ? secret : "dev-api-key", o, out);
    } else if (strcmp(dialect, "vibe") == 0 || strcmp(dialect, "oauth2_post") == 0) {
        snprintf(token_url, sizeof token_url, "%s/oauth2/token", base);
        uint32_t method = strcmp(dialect, "vibe") == 0 ? AUTHCORE_AUTH_METHOD_CLIENT_SECRET_BASIC
                                                       : AUTHCORE_AUTH_METHOD_CLIENT_SECRET_POST;
        s = authcore_client_new_client_credentials(token_url, "dev-client",
                                                   secret ? secret : "dev-secret", scopes, method,
                                                   o, out);
    } else if (reads_assertion(dialect)) {
        snprintf(token_url, sizeof token_url, "%s/oauth2/token", base);
        authcore_assertion_source *source = NULL;
        s = assertion_source(r, &source);
        if (s == AUTHCORE_STATUS_OK && strcmp(dialect, "oauth2_assertion") == 0) {
            s = authcore_options_set_client_assertion(o, source);
            if (s == AUTHCORE_STATUS_OK)
                s = authcore_client_new_client_credentials(token_url, "dev-client", "", scopes,
                                                           AUTHCORE_AUTH_METHOD_CLIENT_ASSERTION, o,
                                                           out);
        } else if (s == AUTHCORE_STATUS_OK) {
            s = authcore_client_new_jwt_bearer(token_url, source, NULL, NULL, scopes, 0, o, out);
        }
        authcore_assertion_source_free(source);
    } else if (strcmp(dialect, "viewneo_pat") == 0) {
        s = authcore_client_new_personal_access_token("dev-personal-access-token", out);
    } else if (strcmp(dialect, "oauth2_code") == 0 || strcmp(dialect, "viewneo_code") == 0) {
        authcore_code_flow *flow = NULL;
        const char *redirect = "http://127.0.0.1/callback";
        const char *sec = secret ? secret : "dev-secret";
        if (strcmp(dialect, "viewneo_code") == 0) {
            s = authcore_code_flow_new_viewneo(base, "dev-client", sec, redirect, scopes, o, &flow);
        } else {
            snprintf(authorize_url, sizeof authorize_url, "%s/oauth2/authorize", base);
            snprintf(token_url, sizeof token_url, "%s/oauth2/token", base);
            char revoke_url[512];
            snprintf(revoke_url, sizeof revoke_url, "%s/oauth2/revoke", base);
            if (s == AUTHCORE_STATUS_OK) s = authcore_options_set_revocation_url(o, revoke_url);
            if (s == AUTHCORE_STATUS_OK)
                s = authcore_code_flow_new(authorize_url, token_url, "dev-client", sec, redirect,
                                           scopes, false, AUTHCORE_AUTH_METHOD_CLIENT_SECRET_BASIC,
                                           true, o, &flow);
        }
        char *url = NULL, *state = NULL;
        if (s == AUTHCORE_STATUS_OK) s = authcore_code_flow_authorization_url(flow, &url, &state);
        if (s == AUTHCORE_STATUS_OK) {
            char *callback = follow_authorize(url);
            /* The state kept in the user's session binds the callback to this sign-in. */
            s = callback ? authcore_code_flow_finish_with_state(flow, callback, state, out)
                         : AUTHCORE_STATUS_CONFIG;
            free(callback);
        }
        authcore_string_free(url);
        authcore_string_free(state);
        authcore_code_flow_free(flow);
    } else if (strcmp(dialect, "oauth2_device") == 0) {
        authcore_metadata *m = NULL;
        authcore_device_flow *flow = NULL;
        authcore_device_authorization *auth = NULL;
        s = authcore_discover(base, o, &m);
        if (s == AUTHCORE_STATUS_OK)
            s = authcore_device_flow_new_from_metadata(m, "dev-client", secret ? secret : "dev-secret",
                                                       scopes, o, &flow);
        if (s == AUTHCORE_STATUS_OK) s = authcore_device_flow_start(flow, &auth);
        if (s == AUTHCORE_STATUS_OK) s = authcore_device_authorization_poll(auth, 30000, out);
        authcore_device_authorization_free(auth);
        authcore_device_flow_free(flow);
        authcore_metadata_free(m);
    } else if (strcmp(dialect, "oauth2_mtls") == 0) {
        authcore_metadata *m = NULL;
        s = mtls_certificate(r);
        if (s == AUTHCORE_STATUS_OK) s = authcore_discover(base, o, &m);
        if (s == AUTHCORE_STATUS_OK)
            s = authcore_client_new_client_credentials_from_metadata(
                m, "scenario-mtls", NULL, scopes, AUTHCORE_AUTH_METHOD_TLS_CLIENT_AUTH, o, out);
        authcore_metadata_free(m);
    } else if (strcmp(dialect, "oauth2_token_exchange") == 0) {
        s = build_exchange(r, secret ? secret : "dev-secret", scopes, out);
    } else {
        fprintf(stderr, "unknown dialect %s\n", dialect);
        s = AUTHCORE_STATUS_CONFIG;
    }
    free(scopes);
    return s;
}

/* Runs one scenario; returns the number of mismatches. */
static int run_scenario(const cJSON *sc) {
    const char *name = str_field(sc, "name", "?");
    const cJSON *expect = cJSON_GetObjectItemCaseSensitive(sc, "expect");
    observed obs;
    memset(&obs, 0, sizeof obs);
    pthread_mutex_init(&obs.lock, NULL);
    obs.oauth_expected = str_field(expect, "oauth_error", NULL);

    /* Mutual TLS runs against the provider in TLS mode (whose CA main() made trusted). */
    bool tls = strcmp(str_field(sc, "dialect", ""), "oauth2_mtls") == 0;
    char *plain_url = strdup(devserver_url());
    if (tls) {
        const char *tls_url = getenv("AUTHCORE_DEVSERVER_TLS_URL");
        if (tls_url == NULL) {
            fprintf(stderr, "%s: AUTHCORE_DEVSERVER_TLS_URL is not set\n", name);
            free(plain_url);
            return 1;
        }
        setenv("AUTHCORE_DEVSERVER_URL", tls_url, 1);
    }
    devserver_reset();
    const cJSON *provider = cJSON_GetObjectItemCaseSensitive(sc, "provider");
    if (provider != NULL) {
        char *body = cJSON_PrintUnformatted(provider);
        control_post("/_control/config", body);
        free(body);
    }
    authcore_client *client = NULL;
    run r;
    memset(&r, 0, sizeof r);
    r.scenario = sc;
    r.replay_statuses[0] = r.replay_statuses[1] = -1;
    pthread_mutex_init(&r.lock, NULL);
    authcore_stats carried; /* the counters of clients a restart replaced */
    memset(&carried, 0, sizeof carried);
    double started = now_seconds();
    authcore_status made = make_options(&r);
    record(&obs, made == AUTHCORE_STATUS_OK ? build_client(&r, &client) : made);
    const cJSON *step;
    const cJSON *steps = client != NULL ? cJSON_GetObjectItemCaseSensitive(sc, "steps") : NULL;
    cJSON_ArrayForEach(step, steps) {
        const cJSON *arg = step->child;
        const char *kind = arg ? arg->string : "";
        if (strcmp(kind, "token") == 0) {
            in_threads(client, &obs, STEP_TOKEN, (long)num_field(arg, "threads", 1), 1, 0, "");
        } else if (strcmp(kind, "request") == 0) {
            in_threads(client, &obs, STEP_REQUEST, (long)num_field(arg, "threads", 1),
                       (long)num_field(arg, "count", 1), 0,
                       str_field(arg, "path", "/api/resource"));
        } else if (strcmp(kind, "churn") == 0) {
            in_threads(client, &obs, STEP_CHURN, (long)num_field(arg, "threads", 1), 0,
                       num_field(arg, "seconds", 1), "/api/resource");
        } else if (strcmp(kind, "revoke") == 0) {
            const cJSON *refresh = cJSON_GetObjectItemCaseSensitive(arg, "refresh");
            control_post("/_control/revoke",
                         cJSON_IsTrue(refresh) ? "{\"refresh\": true}" : "{\"refresh\": false}");
        } else if (strcmp(kind, "fail") == 0 || strcmp(kind, "malformed") == 0) {
            char *body = cJSON_PrintUnformatted(arg);
            control_post(strcmp(kind, "fail") == 0 ? "/_control/fail" : "/_control/malformed",
                         body);
            free(body);
        } else if (strcmp(kind, "revoke_client") == 0) {
            record(&obs, authcore_client_revoke(client));
        } else if (strcmp(kind, "sign_out") == 0) {
            authcore_sign_out outcome = AUTHCORE_SIGN_OUT_NOT_SIGNED_IN;
            record(&obs, authcore_client_sign_out(client, &outcome));
        } else if (strcmp(kind, "refresh") == 0) {
            record(&obs, authcore_client_refresh(client, NULL));
        } else if (strcmp(kind, "restart") == 0 && r.subject != NULL) {
            /* A token exchange is made anew, subject client and all. */
            authcore_stats s1, s2;
            if (authcore_client_stats(client, &s1, sizeof s1) == AUTHCORE_STATUS_OK)
                add_stats(&carried, &s1);
            if (authcore_client_stats(r.subject, &s2, sizeof s2) == AUTHCORE_STATUS_OK)
                add_stats(&carried, &s2);
            authcore_client_free(client);
            authcore_client_free(r.subject);
            client = NULL;
            r.subject = NULL;
            record(&obs, build_client(&r, &client));
            if (client == NULL) break;
        } else if (strcmp(kind, "restart") == 0) {
            record(&obs, restart(&r, &client, &carried));
            if (client == NULL) break;
        } else if (strcmp(kind, "write_assertion") == 0) {
            write_assertion(&r, arg);
        } else if (strcmp(kind, "remove_assertion") == 0) {
            unlink(r.assertion_path);
        } else if (strcmp(kind, "revoke_subject") == 0) {
            record(&obs, revoke_subject(&r));
        } else if (strcmp(kind, "dpop_rotate") == 0) {
            control_post("/_control/dpop_rotate", "{}");
        } else if (strcmp(kind, "replay") == 0) {
            record(&obs, replay(&r, client));
        } else if (strcmp(kind, "sleep_ms") == 0) {
            double ms = cJSON_IsNumber(arg) ? arg->valuedouble : 0;
            sleep_ms((long)(ms > 60000 ? 60000 : ms));
        } else {
            fprintf(stderr, "%s: unknown step %s\n", name, kind);
            obs.errors[MAX_KINDS - 1]++;
        }
    }
    /* The type of the client's token at the end, when the scenario names one. */
    const char *want_type = str_field(expect, "token_type", NULL);
    char got_type[32] = "";
    if (want_type != NULL && client != NULL) {
        authcore_token *t = NULL;
        if (authcore_client_token_info(client, &t) == AUTHCORE_STATUS_OK) {
            snprintf(got_type, sizeof got_type, "%s", authcore_token_type(t));
        }
        authcore_token_free(t);
    }
    /* What the server said it issued, when the scenario names it. */
    const char *want_issued = str_field(expect, "issued_token_type", NULL);
    char got_issued[128] = "";
    if (want_issued != NULL && client != NULL) {
        authcore_token *t = NULL;
        if (authcore_client_token_info(client, &t) == AUTHCORE_STATUS_OK &&
            authcore_token_issued_token_type(t) != NULL) {
            snprintf(got_issued, sizeof got_issued, "%s", authcore_token_issued_token_type(t));
        }
        authcore_token_free(t);
    }
    const cJSON *want_bound = cJSON_GetObjectItemCaseSensitive(expect, "certificate_bound");
    bool bound = want_bound != NULL && client != NULL && certificate_bound(&r, client);
    /* What the client counted (with the clients a restart replaced, and a token
     * exchange's subject client), compared below with what the provider counted. */
    authcore_stats stats = {0};
    int have_stats = client != NULL &&
                     authcore_client_stats(client, &stats, sizeof stats) == AUTHCORE_STATUS_OK;
    if (have_stats) add_stats(&stats, &carried);
    authcore_stats subject_stats = {0};
    if (have_stats && r.subject != NULL &&
        authcore_client_stats(r.subject, &subject_stats, sizeof subject_stats) == AUTHCORE_STATUS_OK)
        add_stats(&stats, &subject_stats);
    authcore_client_free(r.subject);
    authcore_client_free(client);
    authcore_options_free(r.options);
    wipe_free(r.refresh_token);
    pthread_mutex_destroy(&r.lock);
    if (r.store_dir[0] != '\0') {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", r.store_dir);
        if (system(cmd) != 0) fprintf(stderr, "  %s: could not remove %s\n", name, r.store_dir);
    }
    if (r.assertion_dir[0] != '\0') {
        unlink(r.assertion_path);
        if (rmdir(r.assertion_dir) != 0)
            fprintf(stderr, "  %s: could not remove %s\n", name, r.assertion_dir);
    }

    /* Compare with the expectations. */
    cJSON *counters = control("GET", "/_control/counters", NULL);
    int problems = 0;
    /* Renewals the client counted, by reason, for the reasons the scenario names. */
    const cJSON *renewals = cJSON_GetObjectItemCaseSensitive(expect, "renewals");
    const cJSON *reason;
    cJSON_ArrayForEach(reason, renewals) {
        const struct {
            const char *name;
            uint64_t value;
        } by_reason[] = {{"initial", stats.renewals_initial}, {"ahead", stats.renewals_ahead},
                         {"expired", stats.renewals_expired}, {"rejected", stats.renewals_rejected},
                         {"forced", stats.renewals_forced}};
        double got = -1;
        for (size_t i = 0; i < sizeof by_reason / sizeof by_reason[0]; i++) {
            if (strcmp(by_reason[i].name, reason->string) == 0) {
                got = (double)by_reason[i].value;
            }
        }
        if (!have_stats || got != reason->valuedouble) {
            fprintf(stderr, "  %s: renewals %s expected %g, observed %g\n", name, reason->string,
                    reason->valuedouble, got);
            problems++;
        }
    }
    if (have_stats) {
        double counted = (double)(stats.token_requests_succeeded + stats.token_requests_refused +
                                  stats.token_requests_failed);
        if (counted != num_field(counters, "token_requests", -1)) {
            fprintf(stderr, "  %s: the client counted %g token requests, the provider %g\n", name,
                    counted, num_field(counters, "token_requests", -1));
            problems++;
        }
    }
    struct {
        const char *expect_key, *counter_key;
    } exact[] = {{"token_requests", "token_requests"},
                 {"expired_sent", "resource_rejected_expired"},
                 {"resource_rejected_invalid", "resource_rejected_invalid"},
                 {"revocations", "revocations"},
                 {"assertions_resent", "assertions_resent"},
                 {"assertions_expired", "assertions_expired"}};
    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++) {
        const cJSON *want = cJSON_GetObjectItemCaseSensitive(expect, exact[i].expect_key);
        if (cJSON_IsNumber(want)) {
            double got = num_field(counters, exact[i].counter_key, -1);
            if (got != want->valuedouble) {
                fprintf(stderr, "  %s: %s expected %g, observed %g\n", name, exact[i].expect_key,
                        want->valuedouble, got);
                problems++;
            }
        }
    }
    const cJSON *max = cJSON_GetObjectItemCaseSensitive(expect, "token_requests_max");
    if (cJSON_IsNumber(max) && num_field(counters, "token_requests", 0) > max->valuedouble) {
        fprintf(stderr, "  %s: token requests expected at most %g, observed %g\n", name,
                max->valuedouble, num_field(counters, "token_requests", 0));
        problems++;
    }
    const cJSON *min = cJSON_GetObjectItemCaseSensitive(expect, "resource_accepted_min");
    if (cJSON_IsNumber(min) && num_field(counters, "resource_accepted", 0) < min->valuedouble) {
        fprintf(stderr, "  %s: accepted expected at least %g, observed %g\n", name,
                min->valuedouble, num_field(counters, "resource_accepted", 0));
        problems++;
    }
    const cJSON *by = cJSON_GetObjectItemCaseSensitive(expect, "token_requests_by_grant");
    const cJSON *by_got = cJSON_GetObjectItemCaseSensitive(counters, "token_requests_by_grant");
    const cJSON *g;
    cJSON_ArrayForEach(g, by) {
        double got = num_field(by_got, g->string, 0);
        if (got != g->valuedouble) {
            fprintf(stderr, "  %s: token requests for %s expected %g, observed %g\n", name,
                    g->string, g->valuedouble, got);
            problems++;
        }
    }
    if (want_type != NULL && strcmp(want_type, got_type) != 0) {
        fprintf(stderr, "  %s: token type expected %s, observed %s\n", name, want_type,
                got_type[0] ? got_type : "(no token)");
        problems++;
    }
    if (want_issued != NULL && strcmp(want_issued, got_issued) != 0) {
        fprintf(stderr, "  %s: issued token type expected %s, observed %s\n", name, want_issued,
                got_issued[0] ? got_issued : "(none)");
        problems++;
    }
    const cJSON *retries = cJSON_GetObjectItemCaseSensitive(expect, "dpop_nonce_retries");
    if (cJSON_IsNumber(retries) &&
        (!have_stats || (double)stats.dpop_nonce_retries != retries->valuedouble)) {
        fprintf(stderr, "  %s: DPoP nonce retries expected %g, observed %g\n", name,
                retries->valuedouble, have_stats ? (double)stats.dpop_nonce_retries : -1.0);
        problems++;
    }
    const cJSON *replayed = cJSON_GetObjectItemCaseSensitive(expect, "replay_statuses");
    if (replayed != NULL) {
        const cJSON *a = cJSON_GetArrayItem(replayed, 0), *b = cJSON_GetArrayItem(replayed, 1);
        if (cJSON_GetArraySize(replayed) != 2 || !cJSON_IsNumber(a) || !cJSON_IsNumber(b) ||
            a->valuedouble != r.replay_statuses[0] || b->valuedouble != r.replay_statuses[1]) {
            char *want = cJSON_PrintUnformatted(replayed);
            fprintf(stderr, "  %s: replay statuses expected %s, observed [%d, %d]\n", name,
                    want ? want : "?", r.replay_statuses[0], r.replay_statuses[1]);
            free(want);
            problems++;
        }
    }
    const cJSON *errors = cJSON_GetObjectItemCaseSensitive(expect, "errors");
    for (unsigned k = 1; k < MAX_KINDS; k++) {
        const char *kname = k == MAX_KINDS - 1 ? "runner" : authcore_status_name(k);
        double want = num_field(errors, kname, 0);
        if ((double)obs.errors[k] != want) {
            fprintf(stderr, "  %s: %s errors expected %g, observed %ld\n", name, kname, want,
                    obs.errors[k]);
            problems++;
        }
    }
    if (obs.oauth_expected != NULL && (obs.oauth_total == 0 || obs.oauth_mismatched > 0)) {
        fprintf(stderr, "  %s: OAuth errors expected all %s, observed %d (%d other)\n", name,
                obs.oauth_expected, obs.oauth_total, obs.oauth_mismatched);
        problems++;
    }
    cJSON_Delete(counters);
    pthread_mutex_destroy(&obs.lock);
    if (want_bound != NULL && cJSON_IsTrue(want_bound) != bound) {
        fprintf(stderr, "  %s: certificate bound expected %s, observed %s\n", name,
                cJSON_IsTrue(want_bound) ? "true" : "false", bound ? "true" : "false");
        problems++;
    }
    setenv("AUTHCORE_DEVSERVER_URL", plain_url, 1);
    free(plain_url);
    printf("%-32s %s (%.2f s)\n", name, problems == 0 ? "ok" : "FAILED", now_seconds() - started);
    return problems;
}

static int by_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0); /* keep results and error lines in order */
    /* The provider in TLS mode (mutual TLS scenarios) is trusted as a C program's users
     * would make it: through the platform's trust store, read once, before any client. */
    const char *tls_ca = getenv("AUTHCORE_DEVSERVER_TLS_CA");
    if (tls_ca != NULL) setenv("SSL_CERT_FILE", tls_ca, 1);
    if (argc != 2) {
        fprintf(stderr, "usage: %s SCENARIO_DIR\n", argv[0]);
        return 2;
    }
    DIR *dir = opendir(argv[1]);
    if (dir == NULL) {
        perror(argv[1]);
        return 2;
    }
    char *names[256];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL && n < 256) {
        size_t len = strlen(e->d_name);
        if (len > 5 && strcmp(e->d_name + len - 5, ".json") == 0) {
            names[n++] = strdup(e->d_name);
        }
    }
    closedir(dir);
    qsort(names, (size_t)n, sizeof names[0], by_name);
    int failed = 0;
    for (int i = 0; i < n; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", argv[1], names[i]);
        FILE *f = fopen(path, "rb");
        char *text = NULL;
        long size = 0;
        if (f != NULL && fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) > 0 &&
            fseek(f, 0, SEEK_SET) == 0) {
            text = calloc(1, (size_t)size + 1);
            if (fread(text, 1, (size_t)size, f) != (size_t)size) {
                free(text);
                text = NULL;
            }
        }
        if (f != NULL) fclose(f);
        cJSON *sc = text ? cJSON_Parse(text) : NULL;
        if (sc == NULL) {
            fprintf(stderr, "%s: cannot read or parse\n", path);
            failed++;
        } else if (run_scenario(sc) != 0) {
            failed++;
        }
        cJSON_Delete(sc);
        free(text);
        free(names[i]);
    }
    printf("scenarios: %d run, %d failed\n", n, failed);
    return failed == 0 && n > 0 ? 0 : 1;
}
