/*
 * pingpong: syscall-heavy benchmark workload for measuring tracer overhead.
 *
 * Build:
 *   cc -O2 -g -fno-omit-frame-pointer -pthread -o pingpong pingpong.c
 *
 * Run:
 *   ./pingpong [--seconds S | --rounds N] [--start-delay-ms N]
 *
 * Two threads, named "ping" and "pong", bounce one byte over two pipes:
 * ping writes to pipe A and reads pipe B, pong reads A and writes B.  One round
 * is 2 writes + 2 reads (4 syscalls), and every read blocks briefly, so each
 * round is also two sleep/wakeup pairs.  Runs for --seconds S (default 5) or
 * exactly --rounds N, then prints one line on stdout:
 *
 *   {"rounds":N,"seconds":F,"syscalls_per_sec":F}
 *
 * --start-delay-ms N waits N ms (pid on stderr) before starting, so a tracer
 * can attach first.  SIGTERM/SIGINT exit with status 0 without the summary.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))

static int pipe_a[2]; /* ping -> pong */
static int pipe_b[2]; /* pong -> ping */
static double run_seconds = 5.0;
static long long run_rounds = -1; /* -1: time bound */
static long long done_rounds;

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static double now(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        die("clock_gettime");
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void set_name(const char *name)
{
    int err = pthread_setname_np(pthread_self(), name);
    if (err) {
        errno = err;
        die("pthread_setname_np");
    }
}

static void write_byte(int fd, char c)
{
    for (;;) {
        ssize_t n = write(fd, &c, 1);
        if (n == 1)
            return;
        if (n < 0 && errno == EINTR)
            continue;
        die("write");
    }
}

static char read_byte(int fd)
{
    char c;
    for (;;) {
        ssize_t n = read(fd, &c, 1);
        if (n == 1)
            return c;
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0) {
            fprintf(stderr, "pingpong: unexpected EOF\n");
            exit(1);
        }
        die("read");
    }
}

/* Returns the number of rounds completed. 'q' tells pong to stop. */
NOINLINE long long ping_loop(double deadline)
{
    long long rounds = 0;
    for (;;) {
        if (run_rounds >= 0) {
            if (rounds >= run_rounds)
                break;
        } else if ((rounds & 255) == 0 && now() >= deadline) {
            break;
        }
        write_byte(pipe_a[1], 'p');
        if (read_byte(pipe_b[0]) != 'p') {
            fprintf(stderr, "pingpong: protocol error\n");
            exit(1);
        }
        rounds++;
    }
    write_byte(pipe_a[1], 'q');
    return rounds;
}

NOINLINE void pong_loop(void)
{
    for (;;) {
        char c = read_byte(pipe_a[0]);
        if (c == 'q')
            return;
        write_byte(pipe_b[1], c);
    }
}

static void *ping_main(void *arg)
{
    double *elapsed = arg;
    set_name("ping");
    double t0 = now();
    done_rounds = ping_loop(t0 + run_seconds);
    *elapsed = now() - t0;
    return NULL;
}

static void *pong_main(void *arg)
{
    (void)arg;
    set_name("pong");
    pong_loop();
    return NULL;
}

static void on_term(int sig)
{
    (void)sig;
    _exit(0);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: pingpong [--seconds S | --rounds N] [--start-delay-ms N]\n");
}

static const char *opt_value(int argc, char **argv, int *i, const char *name)
{
    size_t len = strlen(name);
    if (!strcmp(argv[*i], name) && *i + 1 < argc)
        return argv[++*i];
    if (!strncmp(argv[*i], name, len) && argv[*i][len] == '=')
        return argv[*i] + len + 1;
    return NULL;
}

int main(int argc, char **argv)
{
    long delay_ms = 0;
    for (int i = 1; i < argc; i++) {
        const char *v;
        char *end;
        errno = 0;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if ((v = opt_value(argc, argv, &i, "--seconds"))) {
            run_seconds = strtod(v, &end);
            if (errno || *end || end == v || !(run_seconds > 0)) {
                fprintf(stderr, "pingpong: --seconds wants a positive number, got '%s'\n", v);
                return 2;
            }
        } else if ((v = opt_value(argc, argv, &i, "--rounds"))) {
            run_rounds = strtoll(v, &end, 10);
            if (errno || *end || end == v || run_rounds < 0) {
                fprintf(stderr, "pingpong: --rounds wants a non-negative integer, got '%s'\n", v);
                return 2;
            }
        } else if ((v = opt_value(argc, argv, &i, "--start-delay-ms"))) {
            delay_ms = strtol(v, &end, 10);
            if (errno || *end || end == v || delay_ms < 0) {
                fprintf(stderr, "pingpong: --start-delay-ms wants a non-negative integer, got '%s'\n", v);
                return 2;
            }
        } else {
            usage(stderr);
            return 2;
        }
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGINT, &sa, NULL) != 0)
        die("sigaction");

    if (pipe(pipe_a) != 0 || pipe(pipe_b) != 0)
        die("pipe");

    if (delay_ms > 0) {
        fprintf(stderr, "pingpong: pid %d, starting in %ld ms\n", (int)getpid(), delay_ms);
        struct timespec ts = { .tv_sec = delay_ms / 1000, .tv_nsec = (delay_ms % 1000) * 1000000L };
        while (nanosleep(&ts, &ts) != 0)
            if (errno != EINTR)
                die("nanosleep");
    }

    double elapsed = 0;
    pthread_t ping, pong;
    int err;
    if ((err = pthread_create(&pong, NULL, pong_main, NULL)) ||
        (err = pthread_create(&ping, NULL, ping_main, &elapsed))) {
        errno = err;
        die("pthread_create");
    }
    if ((err = pthread_join(ping, NULL)) || (err = pthread_join(pong, NULL))) {
        errno = err;
        die("pthread_join");
    }

    double sps = elapsed > 0 ? (double)done_rounds * 4.0 / elapsed : 0.0;
    printf("{\"rounds\":%lld,\"seconds\":%.6f,\"syscalls_per_sec\":%.1f}\n", done_rounds, elapsed, sps);
    if (fflush(stdout) != 0)
        die("fflush(stdout)");
    return 0;
}
