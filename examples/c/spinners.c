/*
 * spinners: N threads that spin on CPU forever (no syscalls), to reproduce CPU contention.
 * Pinned to one CPU (`taskset -c 1 spinners 2`), exactly one of them runs at any instant and
 * the others wait on the run queue: the "running" vs "runnable" ground truth for parkscope.
 *
 * Build: cc -O2 -g -fno-omit-frame-pointer -pthread -o spinners spinners.c
 * Usage: spinners [N] [--late-cpu-ms MS]   (default 2 spinners)
 * Prints one line per thread {"role":"spin<i>","tid":T}, then {"ready":true,"pid":P}, then the
 * main thread waits in pause(2). SIGTERM ends it.
 *
 * With --late-cpu-ms MS, main instead waits for a line on stdin, then starts one more thread,
 * "late", which prints {"role":"late","tid":T}, spins until it has used exactly MS ms of its
 * own CPU time (CLOCK_THREAD_CPUTIME_ID), prints {"role":"late","tid":T,"done":true,
 * "cpu_ns":NS} and sleeps in pause(2): a thread born at a moment the caller chooses, with a
 * known CPU time, for profilers that must pick up new threads.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAX_SPINNERS 64

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int started;
static pid_t tids[MAX_SPINNERS];

__attribute__((noinline)) static void spinners_spin(void)
{
    volatile unsigned long counter = 0;
    for (;;)
        counter++;
}

static void *spin(void *arg)
{
    int i = (int)(long)arg;
    char name[16];
    snprintf(name, sizeof name, "spin%d", i);
    pthread_setname_np(pthread_self(), name);
    pthread_mutex_lock(&lock);
    tids[i] = (pid_t)syscall(SYS_gettid);
    started++;
    pthread_cond_signal(&cond);
    pthread_mutex_unlock(&lock);
    spinners_spin();
    return NULL;
}

static long late_cpu_ms;

static long long thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Spins until this thread has used late_cpu_ms of CPU time. The per-thread clock is a real
 * syscall (the vDSO serves no per-thread clocks), so it is read only every 2^16 rounds. */
__attribute__((noinline)) static long long spinners_late_spin(void)
{
    volatile unsigned long counter = 0;
    long long start = thread_cpu_ns(), used;
    do {
        for (int i = 0; i < (1 << 16); i++)
            counter++;
        used = thread_cpu_ns() - start;
    } while (used < late_cpu_ms * 1000000LL);
    return used;
}

static void *late(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "late");
    pid_t tid = (pid_t)syscall(SYS_gettid);
    printf("{\"role\":\"late\",\"tid\":%d}\n", tid);
    fflush(stdout);
    long long used = spinners_late_spin();
    printf("{\"role\":\"late\",\"tid\":%d,\"done\":true,\"cpu_ns\":%lld}\n", tid, used);
    fflush(stdout);
    for (;;)
        pause();
    return NULL;
}

static void on_term(int sig)
{
    (void)sig;
    _exit(0);
}

int main(int argc, char **argv)
{
    int n = 2;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--late-cpu-ms") && i + 1 < argc)
            late_cpu_ms = atol(argv[++i]);
        else
            n = atoi(argv[i]);
    }
    if (n < 1 || n > MAX_SPINNERS || late_cpu_ms < 0) {
        fprintf(stderr, "usage: spinners [N] [--late-cpu-ms MS]  (1..%d threads)\n", MAX_SPINNERS);
        return 2;
    }
    signal(SIGTERM, on_term);
    for (int i = 0; i < n; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, spin, (void *)(long)i) != 0) {
            perror("pthread_create");
            return 1;
        }
    }
    pthread_mutex_lock(&lock);
    while (started < n)
        pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);
    for (int i = 0; i < n; i++)
        printf("{\"role\":\"spin%d\",\"tid\":%d}\n", i, tids[i]);
    printf("{\"ready\":true,\"pid\":%d}\n", getpid());
    fflush(stdout);
    if (late_cpu_ms > 0) {
        char line[64];
        pthread_t t;
        if (fgets(line, sizeof line, stdin) && pthread_create(&t, NULL, late, NULL) != 0) {
            perror("pthread_create");
            return 1;
        }
    }
    for (;;)
        pause();
}
