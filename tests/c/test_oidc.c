/*
 * Interoperability from C with a real, certified authorization server (oidc-provider,
 * started by tests/c/run.sh; its issuer in AUTHCORE_OIDC_ISSUER): discovery, client
 * credentials with a resource indicator, revocation (checked with the server's own
 * introspection), the device flow up to the user's approval (cancel, timeout), and the
 * argument checks of the new functions.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

static const char *API = "https://api.example.test/";
/* base64("cc-basic:cc-basic-secret-0123456789") */
static const char *CC_BASIC_AUTH = "Y2MtYmFzaWM6Y2MtYmFzaWMtc2VjcmV0LTAxMjM0NTY3ODk=";

/* POSTs `token` to the introspection endpoint as cc-basic; 1 if active, 0 if not, -1
 * on failure. A plain HTTP/1.0 exchange over a loopback socket. */
static int introspect_active(const char *issuer, const char *token) {
    unsigned port = 0;
    if (sscanf(issuer, "http://127.0.0.1:%u", &port) != 1) return -1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        close(fd);
        return -1;
    }
    char body[4096], request[6144], reply[8192];
    snprintf(body, sizeof body, "token=%s", token); /* opaque tokens are URL-safe */
    int n = snprintf(request, sizeof request,
                     "POST /token/introspection HTTP/1.0\r\nHost: 127.0.0.1:%u\r\n"
                     "Authorization: Basic %s\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     port, CC_BASIC_AUTH, strlen(body), body);
    int active = -1;
    if (n > 0 && write(fd, request, (size_t)n) == n) {
        size_t got = 0;
        ssize_t r;
        while (got < sizeof reply - 1 && (r = read(fd, reply + got, sizeof reply - 1 - got)) > 0) {
            got += (size_t)r;
        }
        reply[got] = '\0';
        if (strstr(reply, "\"active\":true")) active = 1;
        else if (strstr(reply, "\"active\":false")) active = 0;
    }
    close(fd);
    return active;
}

static void test_discovery(const char *issuer) {
    authcore_metadata *m = NULL;
    CHECK_OK(authcore_discover(issuer, NULL, &m));
    CHECK(strcmp(authcore_metadata_get(m, AUTHCORE_METADATA_FIELD_ISSUER), issuer) == 0, "issuer");
    const char *token = authcore_metadata_get(m, AUTHCORE_METADATA_FIELD_TOKEN_ENDPOINT);
    CHECK(token && strstr(token, "/token"), "token endpoint %s", token ? token : "(null)");
    CHECK(authcore_metadata_get(m, AUTHCORE_METADATA_FIELD_DEVICE_AUTHORIZATION_ENDPOINT) != NULL, "device");
    CHECK(authcore_metadata_get(m, AUTHCORE_METADATA_FIELD_REVOCATION_ENDPOINT) != NULL, "revocation");
    CHECK(authcore_metadata_get(m, 99) == NULL, "unknown field");
    CHECK(authcore_metadata_get(NULL, 0) == NULL, "NULL metadata");
    CHECK(authcore_metadata_iss_supported(m), "iss supported");
    authcore_metadata_free(m);

    char other[512];
    snprintf(other, sizeof other, "%s/", issuer);
    authcore_metadata *none = NULL;
    CHECK_STATUS(authcore_discover(other, NULL, &none), AUTHCORE_STATUS_ISSUER_MISMATCH);
    CHECK(none == NULL, "nothing written on failure");
    CHECK(strcmp(authcore_status_name(AUTHCORE_STATUS_ISSUER_MISMATCH), "issuer_mismatch") == 0, "name");
    CHECK_STATUS(authcore_discover(NULL, NULL, &none), AUTHCORE_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(authcore_discover(issuer, NULL, NULL), AUTHCORE_STATUS_NULL_ARGUMENT);
    authcore_metadata_free(NULL);
}

static void test_client_credentials_resource_and_revocation(const char *issuer) {
    authcore_metadata *m = NULL;
    CHECK_OK(authcore_discover(issuer, NULL, &m));

    /* A token for the API: a JWT (three dot-separated parts). */
    authcore_options *o = NULL;
    CHECK_OK(authcore_options_new(&o));
    CHECK_STATUS(authcore_options_add_resource(o, ""), AUTHCORE_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(authcore_options_add_resource(o, NULL), AUTHCORE_STATUS_NULL_ARGUMENT);
    CHECK_OK(authcore_options_add_resource(o, API));
    authcore_client *api = NULL;
    CHECK_OK(authcore_client_new_client_credentials_from_metadata(
        m, "cc-basic", "cc-basic-secret-0123456789", "api:read", AUTHCORE_AUTH_METHOD_CLIENT_SECRET_BASIC, o, &api));
    authcore_options_free(o);
    char *jwt = NULL;
    CHECK_OK(authcore_client_token(api, &jwt));
    int dots = 0;
    for (const char *p = jwt; p && *p; p++) dots += *p == '.';
    CHECK(dots == 2, "a JWT for the resource (%d dots)", dots);
    authcore_string_free(jwt);
    authcore_client_free(api);

    /* An opaque token, revoked: the server's introspection says so. */
    authcore_client *c = NULL;
    CHECK_OK(authcore_client_new_client_credentials_from_metadata(
        m, "cc-basic", "cc-basic-secret-0123456789", NULL, AUTHCORE_AUTH_METHOD_CLIENT_SECRET_BASIC, NULL, &c));
    char *first = NULL;
    CHECK_OK(authcore_client_token(c, &first));
    CHECK(first && introspect_active(issuer, first) == 1, "active before revocation");
    CHECK_OK(authcore_client_revoke(c));
    CHECK(first && introspect_active(issuer, first) == 0, "inactive after revocation");
    char *second = NULL;
    CHECK_OK(authcore_client_token(c, &second));
    CHECK(first && second && strcmp(first, second) != 0, "a new token after revocation");
    authcore_string_free(first);
    authcore_string_free(second);
    authcore_client_free(c);

    /* A wrong secret is an OAuth error; a client without a revocation endpoint cannot revoke. */
    authcore_client *wrong = NULL;
    CHECK_OK(authcore_client_new_client_credentials_from_metadata(
        m, "cc-basic", "not-the-secret", NULL, AUTHCORE_AUTH_METHOD_CLIENT_SECRET_BASIC, NULL, &wrong));
    char *t = NULL;
    CHECK_STATUS(authcore_client_token(wrong, &t), AUTHCORE_STATUS_OAUTH);
    CHECK(strcmp(authcore_last_error_oauth_error(), "invalid_client") == 0, "%s", authcore_last_error_oauth_error());
    authcore_client_free(wrong);
    authcore_client *plain = NULL;
    CHECK_OK(authcore_client_new_client_credentials(authcore_metadata_get(m, AUTHCORE_METADATA_FIELD_TOKEN_ENDPOINT),
                                                    "cc-basic", "cc-basic-secret-0123456789", NULL, 0, NULL, &plain));
    CHECK_STATUS(authcore_client_revoke(plain), AUTHCORE_STATUS_CONFIG);
    CHECK_STATUS(authcore_client_revoke(NULL), AUTHCORE_STATUS_NULL_ARGUMENT);
    authcore_client_free(plain);
    authcore_metadata_free(m);
}

static void *cancel_later(void *auth) {
    sleep_ms(200);
    authcore_device_authorization_cancel((const authcore_device_authorization *)auth);
    return NULL;
}

static void test_device_flow(const char *issuer) {
    authcore_metadata *m = NULL;
    CHECK_OK(authcore_discover(issuer, NULL, &m));
    authcore_device_flow *flow = NULL;
    CHECK_OK(authcore_device_flow_new_from_metadata(m, "cli", NULL, "openid", NULL, &flow));
    authcore_metadata_free(m); /* the flow keeps what it needs */
    authcore_device_authorization *auth = NULL;
    CHECK_OK(authcore_device_flow_start(flow, &auth));
    const char *code = authcore_device_authorization_user_code(auth);
    const char *uri = authcore_device_authorization_verification_uri(auth);
    CHECK(code && strlen(code) > 0, "user code");
    CHECK(uri && strncmp(uri, issuer, strlen(issuer)) == 0, "verification uri %s", uri ? uri : "(null)");
    CHECK(authcore_device_authorization_verification_uri_complete(auth) != NULL, "complete uri");
    CHECK(authcore_device_authorization_expires_in_secs(auth) > 0, "expires");
    CHECK(authcore_device_authorization_interval_secs(auth) > 0, "interval");
    CHECK(authcore_device_authorization_user_code(NULL) == NULL, "NULL handle");

    /* Not approved within the timeout: TIMEOUT, and nothing written. */
    authcore_client *client = NULL;
    double start = now_seconds();
    CHECK_STATUS(authcore_device_authorization_poll(auth, 1000, &client), AUTHCORE_STATUS_TIMEOUT);
    CHECK(client == NULL && now_seconds() - start < 3.0 * slowdown(), "bounded wait");

    /* Cancelled from another thread. */
    pthread_t t;
    pthread_create(&t, NULL, cancel_later, auth);
    CHECK_STATUS(authcore_device_authorization_poll(auth, 0, &client), AUTHCORE_STATUS_CANCELLED);
    pthread_join(t, NULL);
    CHECK_STATUS(authcore_device_authorization_poll(NULL, 0, &client), AUTHCORE_STATUS_NULL_ARGUMENT);
    authcore_device_authorization_free(auth);
    authcore_device_authorization_free(NULL);
    authcore_device_flow_free(flow);
    authcore_device_flow_free(NULL);
}

static void test_private_key_arguments(void) {
    authcore_options *o = NULL;
    CHECK_OK(authcore_options_new(&o));
    CHECK_STATUS(authcore_options_set_private_key(o, "not a key", NULL, NULL), AUTHCORE_STATUS_CONFIG);
    CHECK_STATUS(authcore_options_set_private_key(o, NULL, NULL, NULL), AUTHCORE_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(authcore_options_set_private_key(o, "x", "HS256", NULL), AUTHCORE_STATUS_CONFIG);
    CHECK_OK(authcore_options_set_revocation_url(o, "https://id.example.com/revoke"));
    /* private_key_jwt without a key: a configuration error when the client is made. */
    authcore_client *c = NULL;
    CHECK_STATUS(authcore_client_new_client_credentials("https://id.example.com/token", "id", "", NULL,
                                                        AUTHCORE_AUTH_METHOD_PRIVATE_KEY_JWT, o, &c),
                 AUTHCORE_STATUS_CONFIG);
    CHECK(c == NULL, "nothing written on failure");
    authcore_options_free(o);
}

int main(void) {
    const char *issuer = getenv("AUTHCORE_OIDC_ISSUER");
    CHECK(issuer != NULL, "AUTHCORE_OIDC_ISSUER is set by tests/c/run.sh");
    if (issuer) {
        test_discovery(issuer);
        test_client_credentials_resource_and_revocation(issuer);
        test_device_flow(issuer);
    }
    test_private_key_arguments();
    return harness_finish("test_oidc");
}
