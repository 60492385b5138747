/*
 * Token exchange (RFC 8693) from C against the development provider: the description's
 * arguments checked, a subject token given as a string, a file read again for every
 * exchange, a chained subject client (its handle freed once handed over) whose token
 * the provider revokes, and a refused subject reported without the token.
 */
#include <unistd.h>

#include "harness.h"

#define ACCESS_TOKEN_TYPE "urn:ietf:params:oauth:token-type:access_token"
#define EXCHANGE_GRANT "oauth2/urn:ietf:params:oauth:grant-type:token-exchange"

static authcore_options *quick_options(void) {
    authcore_options *o = NULL;
    CHECK_OK(authcore_options_new(&o));
    CHECK_OK(authcore_options_set_max_retries(o, 0));
    CHECK_OK(authcore_options_set_timeout_ms(o, 5000));
    CHECK_OK(authcore_options_set_failure_backoff_ms(o, 10, 50));
    return o;
}

/* A client-credentials client of the provider (dev-client, credentials in the body). */
static authcore_client *cc_client(const authcore_options *o) {
    authcore_client *c = NULL;
    char token_url[512];
    snprintf(token_url, sizeof token_url, "%s/oauth2/token", devserver_url());
    CHECK_OK(authcore_client_new_client_credentials(token_url, "dev-client", "dev-secret",
                                                    "campaigns:read reporting:read",
                                                    AUTHCORE_AUTH_METHOD_CLIENT_SECRET_POST, o, &c));
    return c;
}

/* A new description of an exchange at the provider by dev-client. */
static authcore_token_exchange *exchange_at_provider(void) {
    authcore_token_exchange *x = NULL;
    char token_url[512];
    snprintf(token_url, sizeof token_url, "%s/oauth2/token", devserver_url());
    CHECK_OK(authcore_token_exchange_new(token_url, "dev-client", "dev-secret",
                                         AUTHCORE_AUTH_METHOD_CLIENT_SECRET_BASIC, &x));
    return x;
}

/* A fresh access token of a new client-credentials client (malloc'd). */
static char *fresh_subject_token(const authcore_options *o) {
    authcore_client *c = cc_client(o);
    char *token = NULL;
    CHECK_OK(authcore_client_token(c, &token));
    char *copy = strdup(token ? token : "");
    authcore_string_free(token);
    authcore_client_free(c);
    return copy;
}

/* Revokes a token at the provider by its value. */
static void revoke_at_provider(const char *token) {
    char body[1024];
    snprintf(body, sizeof body, "{\"token\":\"%s\"}", token);
    control_post("/_control/revoke_token", body);
}

static void test_the_description_checks_its_arguments(void) {
    authcore_token_exchange *x = NULL;
    CHECK_STATUS(authcore_token_exchange_new(NULL, "id", NULL, 0, &x), AUTHCORE_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(authcore_token_exchange_new("http://127.0.0.1:9/token", "id", NULL, 0, NULL),
                 AUTHCORE_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(authcore_token_exchange_new("http://127.0.0.1:9/token", "id", NULL, 77, &x),
                 AUTHCORE_STATUS_INVALID_ARGUMENT);
    CHECK(x == NULL, "nothing handed out on failure");
    CHECK_OK(authcore_token_exchange_new("http://127.0.0.1:9/token", "id", NULL,
                                         AUTHCORE_AUTH_METHOD_CLIENT_SECRET_BASIC, &x));
    authcore_client *c = NULL;
    CHECK_STATUS(authcore_client_new_token_exchange(x, NULL, &c), AUTHCORE_STATUS_CONFIG);
    CHECK(strstr(authcore_last_error_message(), "subject") != NULL, "names the missing subject");
    CHECK_STATUS(authcore_token_exchange_set_subject_token(NULL, "t", NULL), AUTHCORE_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(authcore_token_exchange_set_subject_token(x, NULL, NULL), AUTHCORE_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(authcore_token_exchange_set_subject_client(x, NULL, NULL), AUTHCORE_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(authcore_token_exchange_add_audience(x, NULL), AUTHCORE_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(authcore_client_new_token_exchange(x, NULL, NULL), AUTHCORE_STATUS_NULL_ARGUMENT);
    /* A token type that is no URI: refused when the client is made. */
    CHECK_OK(authcore_token_exchange_set_subject_token(x, "subject", ""));
    CHECK_STATUS(authcore_client_new_token_exchange(x, NULL, &c), AUTHCORE_STATUS_CONFIG);
    CHECK_OK(authcore_token_exchange_set_subject_token(x, "subject", "jwt"));
    CHECK_OK(authcore_token_exchange_set_requested_token_type(x, NULL));
    CHECK_OK(authcore_token_exchange_set_actor_token(x, NULL, NULL));
    CHECK_OK(authcore_client_new_token_exchange(x, NULL, &c));
    CHECK(c != NULL, "a client");
    authcore_client_free(c);
    authcore_token_exchange_free(x);
    authcore_token_exchange_free(NULL);
    CHECK(authcore_token_issued_token_type(NULL) == NULL, "NULL for NULL");
}

static void test_a_subject_token_is_exchanged(void) {
    devserver_reset();
    authcore_options *o = quick_options();
    char *subject = fresh_subject_token(o);
    authcore_token_exchange *x = exchange_at_provider();
    CHECK_OK(authcore_token_exchange_set_subject_token(x, subject, "access_token"));
    CHECK_OK(authcore_token_exchange_add_audience(x, "orders"));
    CHECK_OK(authcore_token_exchange_set_scopes(x, "campaigns:read"));
    CHECK_OK(authcore_token_exchange_set_requested_token_type(x, "access_token"));
    authcore_client *c = NULL;
    CHECK_OK(authcore_client_new_token_exchange(x, o, &c));
    authcore_token_exchange_free(x); /* the client keeps working */
    authcore_token *t = NULL;
    CHECK_OK(authcore_client_token_info(c, &t));
    const char *issued = authcore_token_issued_token_type(t);
    CHECK(issued != NULL && strcmp(issued, ACCESS_TOKEN_TYPE) == 0, "issued type %s",
          issued ? issued : "(null)");
    CHECK(authcore_token_scope(t) != NULL && strcmp(authcore_token_scope(t), "campaigns:read") == 0,
          "the scope asked for");
    CHECK(strcmp(authcore_token_access_token(t), subject) != 0, "a new token");
    authcore_token_free(t);
    CHECK(get_status(c, "/api/resource") == 200, "the exchanged token is accepted");
    CHECK(counter("token_requests_by_grant", EXCHANGE_GRANT) == 1, "one exchange");

    /* The subject revoked: the next exchange is refused, the token never in the message. */
    revoke_at_provider(subject);
    char *token = NULL;
    CHECK_STATUS(authcore_client_refresh(c, &token), AUTHCORE_STATUS_OAUTH);
    CHECK(strcmp(authcore_last_error_oauth_error(), "invalid_grant") == 0, "invalid_grant");
    CHECK(strstr(authcore_last_error_message(), subject) == NULL, "no token in the message");
    authcore_client_free(c);
    authcore_options_free(o);
    free(subject);
}

static void test_a_subject_file_is_read_for_every_exchange(void) {
    devserver_reset();
    authcore_options *o = quick_options();
    char path[] = "/tmp/authcore-subject-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "a temporary file");
    char *first = fresh_subject_token(o);
    char *second = fresh_subject_token(o);
    CHECK(write(fd, first, strlen(first)) == (ssize_t)strlen(first), "written");
    close(fd);
    authcore_token_exchange *x = exchange_at_provider();
    CHECK_OK(authcore_token_exchange_set_subject_token_file(x, path, NULL));
    authcore_client *c = NULL;
    CHECK_OK(authcore_client_new_token_exchange(x, o, &c));
    char *token = NULL;
    CHECK_OK(authcore_client_token(c, &token));
    authcore_string_free(token);
    /* Rewritten (as a kubelet would): the next exchange sends the new one. The first
     * is revoked, so an exchange that sent it again would fail. */
    FILE *f = fopen(path, "w");
    CHECK(f != NULL, "reopened");
    if (f != NULL) {
        fputs(second, f);
        fclose(f);
    }
    revoke_at_provider(first);
    token = NULL;
    CHECK_OK(authcore_client_refresh(c, &token));
    authcore_string_free(token);
    CHECK(counter("token_requests_by_grant", EXCHANGE_GRANT) == 2, "two exchanges, none refused");
    /* Gone: a configuration error naming the file. */
    unlink(path);
    token = NULL;
    CHECK_STATUS(authcore_client_refresh(c, &token), AUTHCORE_STATUS_CONFIG);
    CHECK(strstr(authcore_last_error_message(), "authcore-subject-") != NULL, "names the file: %s",
          authcore_last_error_message());
    authcore_client_free(c);
    authcore_token_exchange_free(x);
    authcore_options_free(o);
    free(first);
    free(second);
}

static void test_a_chained_subject_client_gives_its_next_token(void) {
    devserver_reset();
    authcore_options *o = quick_options();
    authcore_client *subject = cc_client(o);
    char *s1 = NULL;
    CHECK_OK(authcore_client_token(subject, &s1));
    authcore_token_exchange *x = exchange_at_provider();
    CHECK_OK(authcore_token_exchange_set_subject_client(x, subject, "access_token"));
    authcore_client_free(subject); /* the description keeps its own reference */
    authcore_client *c = NULL;
    CHECK_OK(authcore_client_new_token_exchange(x, o, &c));
    authcore_token_exchange_free(x);
    char *x1 = NULL;
    CHECK_OK(authcore_client_token(c, &x1));
    CHECK(counter("token_requests_by_grant", "oauth2/client_credentials") == 1,
          "the subject client's cached token was exchanged");

    revoke_at_provider(s1);
    char *x2 = NULL;
    CHECK_OK(authcore_client_refresh(c, &x2));
    CHECK(x1 != NULL && x2 != NULL && strcmp(x1, x2) != 0, "a new exchanged token");
    CHECK(counter("token_requests_by_grant", EXCHANGE_GRANT) == 3, "issued, refused, issued");
    CHECK(counter("token_requests_by_grant", "oauth2/client_credentials") == 2,
          "the subject client renewed once");
    CHECK(get_status(c, "/api/resource") == 200, "accepted");
    authcore_string_free(s1);
    authcore_string_free(x1);
    authcore_string_free(x2);
    authcore_client_free(c);
    authcore_options_free(o);
}

/* Any assertion source as the subject: a command (a CI system's token helper) that
 * prints the subject token, run for every exchange; the source is copied and may be
 * freed at once. NULL arguments are refused. */
static void test_a_command_source_is_the_subject(void) {
    devserver_reset();
    authcore_options *o = quick_options();
    char path[] = "/tmp/authcore-subject-cmd-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "a temporary file");
    char *subject = fresh_subject_token(o);
    CHECK(write(fd, subject, strlen(subject)) == (ssize_t)strlen(subject), "written");
    close(fd);
    const char *args[] = {path};
    authcore_assertion_source *source = NULL;
    CHECK_OK(authcore_assertion_source_command("cat", args, 1, 0, &source));
    authcore_token_exchange *x = exchange_at_provider();
    CHECK_STATUS(authcore_token_exchange_set_subject_source(x, NULL, NULL), AUTHCORE_STATUS_NULL_ARGUMENT);
    CHECK_OK(authcore_token_exchange_set_subject_source(x, source, "access_token"));
    CHECK_OK(authcore_token_exchange_set_actor_source(x, NULL, NULL));
    authcore_assertion_source_free(source);
    authcore_client *c = NULL;
    CHECK_OK(authcore_client_new_token_exchange(x, o, &c));
    authcore_token_exchange_free(x);
    char *token = NULL;
    CHECK_OK(authcore_client_token(c, &token));
    CHECK(token != NULL && strcmp(token, subject) != 0, "an exchanged token");
    authcore_string_free(token);
    CHECK(counter("token_requests_by_grant", EXCHANGE_GRANT) == 1, "one exchange");
    authcore_client_free(c);
    authcore_options_free(o);
    unlink(path);
    free(subject);
}

int main(void) {
    test_the_description_checks_its_arguments();
    test_a_subject_token_is_exchanged();
    test_a_subject_file_is_read_for_every_exchange();
    test_a_chained_subject_client_gives_its_next_token();
    test_a_command_source_is_the_subject();
    return harness_finish("test_exchange");
}
