/* The C face of the request-path benchmark (core/benches/request_path.sh): N
 * authcore_client_get calls against the benchmark's server, to be counted by cachegrind
 * next to the Rust roles. Usage: request_path PORT N */
#include <stdio.h>
#include <stdlib.h>

#include "authcore.h"

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s PORT N\n", argv[0]);
        return 2;
    }
    char token_url[128], api_url[128];
    snprintf(token_url, sizeof token_url, "http://127.0.0.1:%s/token", argv[1]);
    snprintf(api_url, sizeof api_url, "http://127.0.0.1:%s/api", argv[1]);
    long n = strtol(argv[2], NULL, 10);
    authcore_client *client = NULL;
    if (authcore_client_new_client_credentials(token_url, "bench", "bench-secret", NULL, 0, NULL, &client) !=
        AUTHCORE_STATUS_OK) {
        fprintf(stderr, "no client\n");
        return 1;
    }
    /* The same warm-up as the Rust roles. */
    for (long i = 0; i < n + 200; i++) {
        authcore_response *response = NULL;
        if (authcore_client_get(client, api_url, &response) != AUTHCORE_STATUS_OK ||
            authcore_response_status(response) != 200) {
            fprintf(stderr, "request %ld failed\n", i);
            authcore_response_free(response);
            authcore_client_free(client);
            return 1;
        }
        authcore_response_free(response);
    }
    authcore_client_free(client);
    return 0;
}
