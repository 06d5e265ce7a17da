/*
 * scan.c: scan mail files with libchaff, on several threads sharing one engine.
 *
 *   scan [-c CONFIG] [-j THREADS] [-f SENDER] [--json] FILE...
 *
 * Prints one line per file, in the order given: PATH<TAB>ACTION<TAB>SCORE (two
 * decimals), then <TAB>JSON with --json (the verdict as `chaff score --format json`
 * has it, without "path"). A file that cannot be read gives PATH<TAB>error<TAB>WHY.
 * Exit status: 0, 1 if a file could not be read, 2 on bad usage or configuration.
 *
 * Build (see README.md):
 *   cc -Iinclude examples/scan.c -o scan ../../target/release/libchaff.a -lpthread -ldl -lm
 */
#include "chaff.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct result {
    const char *path;
    int action;          /* CHAFF_ACTION_*, or -1 when the file could not be read */
    double score;
    char *json;          /* from chaff_verdict_json, or NULL */
    char error[128];     /* why the file could not be read */
};

struct job {
    const chaff_engine *engine;
    const char *sender;  /* or NULL */
    int want_json;
    struct result *results;
    size_t count;
    size_t next;         /* the next file to take, under lock */
    pthread_mutex_t lock;
};

static const char *action_name(int action) {
    switch (action) {
    case CHAFF_ACTION_DELIVER: return "deliver";
    case CHAFF_ACTION_QUARANTINE: return "quarantine";
    case CHAFF_ACTION_REJECT: return "reject";
    default: return "invalid";
    }
}

/* Reads a whole file into *data (malloc'd, NULL when empty); 0 or an errno. */
static int read_file(const char *path, unsigned char **data, size_t *len) {
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return errno;
    unsigned char *buf = NULL;
    size_t used = 0, cap = 0;
    for (;;) {
        if (used == cap) {
            size_t ncap = cap ? cap * 2 : 65536;
            unsigned char *n = realloc(buf, ncap);
            if (!n) { free(buf); fclose(f); return ENOMEM; }
            buf = n;
            cap = ncap;
        }
        size_t got = fread(buf + used, 1, cap - used, f);
        used += got;
        if (got == 0) break;
    }
    int err = ferror(f) ? EIO : 0;
    fclose(f);
    if (err || used == 0) { free(buf); buf = NULL; }
    *data = buf;
    *len = used;
    return err;
}

static void scan_one(struct job *job, struct result *r) {
    unsigned char *msg = NULL;
    size_t len = 0;
    int err = read_file(r->path, &msg, &len);
    if (err) {
        r->action = -1;
        snprintf(r->error, sizeof r->error, "%s", strerror(err));
        return;
    }
    chaff_envelope *env = chaff_envelope_new();
    if (job->sender) chaff_envelope_set_sender(env, job->sender);
    chaff_verdict *v = chaff_scan(job->engine, msg, len, env);
    r->action = chaff_verdict_action(v);
    r->score = chaff_verdict_score(v);
    r->json = job->want_json ? chaff_verdict_json(v) : NULL;
    chaff_verdict_free(v);
    chaff_envelope_free(env);
    free(msg);
}

static void *worker(void *arg) {
    struct job *job = arg;
    for (;;) {
        pthread_mutex_lock(&job->lock);
        size_t i = job->next < job->count ? job->next++ : job->count;
        pthread_mutex_unlock(&job->lock);
        if (i == job->count) return NULL;
        scan_one(job, &job->results[i]);
    }
}

static int usage(void) {
    fprintf(stderr, "usage: scan [-c CONFIG] [-j THREADS] [-f SENDER] [--json] FILE...\n");
    return 2;
}

int main(int argc, char **argv) {
    const char *config = NULL, *sender = NULL;
    int threads = 4, want_json = 0, i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "--")) { i++; break; }
        if (!strcmp(argv[i], "--json")) want_json = 1;
        else if (!strcmp(argv[i], "-c") && i + 1 < argc) config = argv[++i];
        else if (!strcmp(argv[i], "-f") && i + 1 < argc) sender = argv[++i];
        else if (!strcmp(argv[i], "-j") && i + 1 < argc) threads = atoi(argv[++i]);
        else return usage();
    }
    if (i == argc || threads < 1) return usage();

    char *error = NULL;
    chaff_engine *engine = chaff_engine_new(config, &error);
    if (!engine) {
        fprintf(stderr, "scan: %s\n", error ? error : "cannot load the engine");
        chaff_string_free(error);
        return 2;
    }

    struct job job = {
        .engine = engine,
        .sender = sender,
        .want_json = want_json,
        .count = (size_t)(argc - i),
        .next = 0,
    };
    job.results = calloc(job.count, sizeof *job.results);
    if (!job.results) { chaff_engine_free(engine); return 2; }
    for (size_t k = 0; k < job.count; k++) job.results[k].path = argv[i + k];
    pthread_mutex_init(&job.lock, NULL);

    if ((size_t)threads > job.count) threads = (int)job.count;
    pthread_t *tids = calloc((size_t)threads, sizeof *tids);
    int started = 0;
    for (; tids && started < threads; started++)
        if (pthread_create(&tids[started], NULL, worker, &job) != 0) break;
    if (started == 0) worker(&job); /* no thread could start: scan here */
    for (int t = 0; t < started; t++) pthread_join(tids[t], NULL);
    free(tids);
    pthread_mutex_destroy(&job.lock);

    int status = 0;
    for (size_t k = 0; k < job.count; k++) {
        struct result *r = &job.results[k];
        if (r->action < 0) {
            printf("%s\terror\t%s\n", r->path, r->error);
            status = 1;
            continue;
        }
        printf("%s\t%s\t%.2f", r->path, action_name(r->action), r->score);
        if (r->json) printf("\t%s", r->json);
        putchar('\n');
        chaff_string_free(r->json);
    }
    free(job.results);
    chaff_engine_free(engine);
    return status;
}
