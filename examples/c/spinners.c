/*
 * spinners: N threads that spin on CPU forever (no syscalls), to reproduce CPU contention.
 * Pinned to one CPU (`taskset -c 1 spinners 2`), exactly one of them runs at any instant and
 * the others wait on the run queue: the "running" vs "runnable" ground truth for parkscope.
 *
 * Build: cc -O2 -g -fno-omit-frame-pointer -pthread -o spinners spinners.c
 * Usage: spinners [N]   (default 2)
 * Prints one line per thread {"role":"spin<i>","tid":T}, then {"ready":true,"pid":P}, then the
 * main thread waits in pause(2). SIGTERM ends it.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
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

static void on_term(int sig)
{
    (void)sig;
    _exit(0);
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 2;
    if (n < 1 || n > MAX_SPINNERS) {
        fprintf(stderr, "usage: spinners [N]  (1..%d threads)\n", MAX_SPINNERS);
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
    for (;;)
        pause();
}
