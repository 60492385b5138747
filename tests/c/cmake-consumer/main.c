/* Built by tests/c/cmake-consumer/CMakeLists.txt against an installed libauthcore:
 * the library's version is the one its CMake package declares, and a client works. */
#include <stdio.h>
#include <string.h>
#include <authcore.h>

int main(void) {
    const char *version = authcore_version();
    if (strcmp(version, EXPECTED_VERSION) != 0) {
        fprintf(stderr, "authcore_version() is %s, the CMake package says %s\n", version,
                EXPECTED_VERSION);
        return 1;
    }
    authcore_client *client = NULL;
    authcore_status s = authcore_client_new_personal_access_token("consumer-token", &client);
    if (s != AUTHCORE_STATUS_OK) {
        fprintf(stderr, "%s: %s\n", authcore_status_name(s), authcore_last_error_message());
        return 1;
    }
    char *header = NULL;
    s = authcore_client_authorization_header(client, &header);
    int ok = s == AUTHCORE_STATUS_OK && strcmp(header, "Bearer consumer-token") == 0;
    if (!ok) {
        fprintf(stderr, "authorization header: %s %s\n", authcore_status_name(s),
                header ? "(unexpected value)" : authcore_last_error_message());
    }
    authcore_string_free(header);
    authcore_client_free(client);
    if (ok) {
        printf("libauthcore %s: ok\n", version);
    }
    return ok ? 0 : 1;
}
