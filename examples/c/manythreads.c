/*
 * manythreads: a target process with many threads, every one blocked in read(2).
 * Used to measure and test how parkscope scales with the number of threads.
 *
 * Build:
 *   cc -O2 -g -fno-omit-frame-pointer -pthread -o manythreads manythreads.c
 *
 * Run:
 *   ./manythreads [--threads N]      (default 1000, at most 100000)
 *
 * Each thread is named "reader" (pthread_setname_np) and parks inside the
 * noinline function manythreads_read, in read(2) on the read end of one pipe
 * that nobody writes (all threads share that pipe).  Threads get 64 KiB stacks
 * (the default 8 MiB would need 80 GB of address space for 10,000 threads);
 * each stack is its own mapping plus a guard page, as with any pthread.
 *
 * Once every thread has started, main polls /proc/self/task/<tid>/syscall for
 * up to 30 s until every thread is in read(2) on the pipe (a warning on stderr
 * if not), then prints one line on stdout and flushes it:
 *
 *   {"ready":true,"pid":1234,"threads":1000,"comm":"reader",
 *    "func":"manythreads_read","syscall":"read","syscall_nr":0,"fd":3,
 *    "fd_desc":"pipe:[123456]","inode":123456,"tids":[1235,1236,...]}
 *
 * Then main blocks in pause(2). SIGTERM and SIGINT make the process exit with
 * status 0; bad flags exit with status 2, a failed setup call with status 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))
/* Keeps the compiler from turning the call before it into a tail call. */
#define NO_TAIL_CALL() __asm__ volatile("" ::: "memory")

#define STACK_SIZE (64 * 1024)
#define MAX_THREADS 100000

static int pipe_fds[2];
static pid_t *tids;
static pthread_mutex_t started_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t started_cond = PTHREAD_COND_INITIALIZER;
static long started;

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void on_signal(int sig)
{
    (void)sig;
    _exit(0);
}

/* The function every thread blocks in: it shows up in each user stack. */
NOINLINE static void manythreads_read(void)
{
    char byte;
    for (;;) {
        ssize_t n = read(pipe_fds[0], &byte, 1);
        if (n < 0 && errno != EINTR)
            die("read");
    }
    NO_TAIL_CALL();
}

static void *reader(void *arg)
{
    long index = (long)arg;
    pthread_setname_np(pthread_self(), "reader");
    pthread_mutex_lock(&started_lock);
    tids[index] = (pid_t)syscall(SYS_gettid);
    started++;
    pthread_cond_signal(&started_cond);
    pthread_mutex_unlock(&started_lock);
    manythreads_read();
    NO_TAIL_CALL();
    return NULL;
}

/* True when /proc/self/task/TID/syscall says the thread is in read on our pipe. */
static int in_read(pid_t tid)
{
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/self/task/%d/syscall", (int)tid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char *line = fgets(buf, sizeof buf, f);
    fclose(f);
    long nr;
    unsigned long arg0;
    if (!line || sscanf(line, "%ld 0x%lx", &nr, &arg0) != 2)
        return 0;
    return nr == SYS_read && arg0 == (unsigned long)pipe_fds[0];
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void usage(FILE *out)
{
    fprintf(out, "usage: manythreads [--threads N]\n");
}

int main(int argc, char **argv)
{
    long n = 1000;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *value = NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--threads") && i + 1 < argc) {
            value = argv[++i];
        } else if (!strncmp(a, "--threads=", 10)) {
            value = a + 10;
        } else {
            usage(stderr);
            return 2;
        }
        char *end;
        errno = 0;
        n = strtol(value, &end, 10);
        if (errno || *end || n < 1 || n > MAX_THREADS) {
            fprintf(stderr, "manythreads: --threads wants 1..%d, got %s\n", MAX_THREADS, value);
            return 2;
        }
    }

    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    if (pipe(pipe_fds) != 0)
        die("pipe");
    tids = calloc((size_t)n, sizeof *tids);
    if (!tids)
        die("calloc");

    pthread_attr_t attr;
    pthread_attr_init(&attr);
    if (pthread_attr_setstacksize(&attr, STACK_SIZE) != 0)
        die("pthread_attr_setstacksize");
    for (long i = 0; i < n; i++) {
        pthread_t t;
        int err = pthread_create(&t, &attr, reader, (void *)i);
        if (err) {
            errno = err;
            die("pthread_create");
        }
        pthread_detach(t);
    }
    pthread_mutex_lock(&started_lock);
    while (started < n)
        pthread_cond_wait(&started_cond, &started_lock);
    pthread_mutex_unlock(&started_lock);

    /* Every thread has its tid; wait until each is really parked in read. */
    sleep_ms(100);
    long waiting = n;
    for (int round = 0; round < 300 && waiting > 0; round++) {
        waiting = 0;
        for (long i = 0; i < n; i++)
            waiting += !in_read(tids[i]);
        if (waiting)
            sleep_ms(100);
    }
    if (waiting)
        fprintf(stderr, "manythreads: %ld of %ld threads not seen in read after 30 s\n", waiting, n);

    struct stat st;
    if (fstat(pipe_fds[0], &st) != 0)
        die("fstat");
    printf("{\"ready\":true,\"pid\":%d,\"threads\":%ld,\"comm\":\"reader\","
           "\"func\":\"manythreads_read\",\"syscall\":\"read\",\"syscall_nr\":%d,"
           "\"fd\":%d,\"fd_desc\":\"pipe:[%lu]\",\"inode\":%lu,\"tids\":[",
           (int)getpid(), n, SYS_read, pipe_fds[0], (unsigned long)st.st_ino,
           (unsigned long)st.st_ino);
    for (long i = 0; i < n; i++)
        printf(i ? ",%d" : "%d", (int)tids[i]);
    printf("]}\n");
    fflush(stdout);
    for (;;)
        pause();
}
