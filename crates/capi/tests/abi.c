/*
 * abi.c: the C ABI's edge cases, from C (run by tests/c_example.rs, also under
 * valgrind). Usage: abi CONFIG_WITH_MILTER_TABLE
 * Prints one line per failed check and exits 1 if any failed.
 */
#include "chaff.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int failures = 0;

#define CHECK(cond)                                                    \
    do {                                                               \
        if (!(cond)) {                                                 \
            printf("%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                \
        }                                                              \
    } while (0)

/* The number of threads of this process (Linux), or -1 when unknown. */
static int thread_count(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    int n = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "Threads: %d", &n) == 1) break;
    fclose(f);
    return n;
}

static const char SPAM[] =
    "Subject: =?utf-8?B?5Luj5byA5Y+R56Wo?=\r\n\r\n"
    "\xe4\xbb\xa3\xe5\xbc\x80\xe5\x8f\x91\xe7\xa5\xa8\xef\xbc\x8c" /* 代开发票， */
    "\xe5\x85\x8d\xe8\xb4\xb9\xe5\x92\xa8\xe8\xaf\xa2\xef\xbc\x8c" /* 免费咨询， */
    "\xe8\xb5\x9a\xe9\x92\xb1\xe5\x8f\x91\xe8\xb4\xa2\r\n";        /* 赚钱发财 */

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: abi CONFIG\n");
        return 2;
    }

    /* NULL everywhere. */
    CHECK(chaff_scan(NULL, (const uint8_t *)SPAM, sizeof SPAM - 1, NULL) == NULL);
    CHECK(chaff_verdict_action(NULL) == -1);
    CHECK(isnan(chaff_verdict_score(NULL)));
    CHECK(chaff_verdict_reply(NULL) == NULL);
    CHECK(chaff_verdict_json(NULL) == NULL);
    chaff_verdict_free(NULL);
    chaff_engine_free(NULL);
    chaff_envelope_free(NULL);
    chaff_string_free(NULL);
    chaff_envelope_set_sender(NULL, "a@example.com");
    chaff_envelope_add_recipient(NULL, NULL);
    chaff_envelope_set_client_ip(NULL, NULL);
    chaff_envelope_set_auth_user(NULL, NULL);

    /* A bad configuration path: NULL, and an error naming the file. */
    char *error = NULL;
    const char *missing = "/nonexistent/chaff-abi-test.toml";
    CHECK(chaff_engine_new(missing, &error) == NULL);
    CHECK(error != NULL && strstr(error, missing) != NULL);
    chaff_string_free(error);
    CHECK(chaff_engine_new(missing, NULL) == NULL);

    /* A configuration with tables for other programs ([milter]) is accepted. */
    error = (char *)"not reset";
    chaff_engine *engine = chaff_engine_new(argv[1], &error);
    CHECK(engine != NULL);
    CHECK(error == NULL);
    if (engine == NULL) return 1;

    /* Fully loaded, with no thread left behind: fork() is safe, and the child
     * scans with the parent's engine. */
    int threads = thread_count();
    CHECK(threads == 1 || threads == -1);
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        chaff_verdict *v = chaff_scan(engine, (const uint8_t *)SPAM, sizeof SPAM - 1, NULL);
        int rejected = chaff_verdict_action(v) == CHAFF_ACTION_REJECT;
        chaff_verdict_free(v);
        chaff_engine_free(engine);
        _exit(rejected ? 0 : 1);
    }
    int status = -1;
    CHECK(child > 0 && waitpid(child, &status, 0) == child);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    /* NULL and zero-length messages are empty messages. */
    const uint8_t *msgs[] = {NULL, NULL, (const uint8_t *)SPAM};
    size_t lens[] = {0, 100, 0};
    for (int i = 0; i < 3; i++) {
        chaff_verdict *v = chaff_scan(engine, msgs[i], lens[i], NULL);
        CHECK(v != NULL);
        CHECK(chaff_verdict_action(v) == CHAFF_ACTION_DELIVER);
        CHECK(chaff_verdict_score(v) == 0.0);
        CHECK(chaff_verdict_reply(v) == NULL);
        char *json = chaff_verdict_json(v);
        CHECK(json != NULL && strncmp(json, "{\"action\":\"deliver\",", 20) == 0);
        chaff_string_free(json);
        chaff_verdict_free(v);
    }

    /* Spam, with an envelope (bad IP and invalid UTF-8 included): rejected. */
    chaff_envelope *env = chaff_envelope_new();
    CHECK(env != NULL);
    chaff_envelope_set_sender(env, "someone@example.com");
    chaff_envelope_add_recipient(env, "a@example.org");
    chaff_envelope_add_recipient(env, "b\xff@example.org");
    chaff_envelope_set_client_ip(env, "not an address");
    chaff_envelope_set_client_ip(env, "192.0.2.1");
    chaff_envelope_set_auth_user(env, "");
    chaff_verdict *v = chaff_scan(engine, (const uint8_t *)SPAM, sizeof SPAM - 1, env);
    CHECK(chaff_verdict_action(v) == CHAFF_ACTION_REJECT);
    CHECK(chaff_verdict_score(v) >= 15.0);
    CHECK(chaff_verdict_reply(v) != NULL &&
          strcmp(chaff_verdict_reply(v), "557 5.7.1 forbid to send spam mail") == 0);
    chaff_verdict_free(v);
    chaff_envelope_free(env);
    chaff_engine_free(engine);

    if (failures == 0) printf("ok\n");
    return failures ? 1 : 0;
}
