/*
 * splitsleep: a thread whose waiting time splits between two known functions,
 * for checking how an off-CPU profile divides a thread's time between stacks
 * when its waits are short (far below parkscope's stack sampling period).
 *
 * Build:
 *   cc -O2 -g -fno-omit-frame-pointer -pthread -o splitsleep splitsleep.c
 *
 * Run:
 *   ./splitsleep [--seconds S]
 *
 * One thread, named "split", loops: split_short() sleeps 200 us, then
 * split_long() sleeps 600 us (clock_nanosleep, timer slack set to 1 ns so the
 * kernel does not stretch them). So about a quarter of its waiting is in
 * split_short and three quarters in split_long; the exact shares depend on the
 * wake-up latency, which is why a test compares with an exact profile rather
 * than with 1/4. Runs for --seconds S (default 60), then exits 0.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

static volatile int stop;
static volatile unsigned long sleeps;

/* The count after each call keeps the calls from becoming tail calls (jumps), which would
 * leave split_short and split_long without frames of their own on the stack. */
static void __attribute__((noinline)) sleep_us(long us)
{
    struct timespec ts = { .tv_sec = 0, .tv_nsec = us * 1000 };
    clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL);
    sleeps++;
}

void __attribute__((noinline)) split_short(void)
{
    sleep_us(200);
    sleeps++;
}

void __attribute__((noinline)) split_long(void)
{
    sleep_us(600);
    sleeps++;
}

static void *split_main(void *arg)
{
    (void)arg;
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    while (!stop) {
        split_short();
        split_long();
    }
    return NULL;
}

int main(int argc, char **argv)
{
    long seconds = 60;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seconds") && i + 1 < argc) {
            seconds = strtol(argv[++i], NULL, 10);
        } else {
            fprintf(stderr, "usage: splitsleep [--seconds S]\n");
            return 2;
        }
    }
    if (seconds <= 0) {
        fprintf(stderr, "splitsleep: --seconds must be positive\n");
        return 2;
    }
    pthread_t t;
    if (pthread_create(&t, NULL, split_main, NULL) != 0) {
        perror("pthread_create");
        return 1;
    }
    pthread_setname_np(t, "split");
    sleep((unsigned)seconds);
    stop = 1;
    pthread_join(t, NULL);
    return 0;
}
