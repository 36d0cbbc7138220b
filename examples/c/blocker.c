/*
 * blocker: a target process whose threads sit in known blocking states.
 *
 * Build:
 *   cc -O2 -g -fno-omit-frame-pointer -pthread -o blocker blocker.c
 *
 * Run:
 *   ./blocker [--late-ms N] [--exit-after-ms N]
 *
 * One thread per role, named after the role (pthread_setname_np), each parked
 * inside a noinline function called blocker_<role>:
 *
 *   pipe_read   read(2) on a pipe nobody writes                  -> read (0)
 *   pipe_write  write(2) to a full pipe nobody reads             -> write (1)
 *   mutex_wait  pthread_mutex_lock on a mutex main holds forever -> futex (202)
 *   cond_wait   pthread_cond_wait that is never signalled        -> futex (202)
 *   epoll_wait  raw epoll_wait(2) on {idle pipe, listening sock} -> epoll_wait (232)
 *   tcp_recv    raw recvfrom(2) on a 127.0.0.1 TCP socket whose
 *               (in-process) peer never writes                   -> recvfrom (45)
 *   sleeper     raw clock_nanosleep(2), 1 hour                   -> clock_nanosleep (230)
 *   spinner     busy loop on a volatile counter, no syscalls     -> (none, on CPU)
 *   late_read   raw nanosleep(2) for --late-ms (default 3000),
 *               then read(2) on its own idle pipe                -> nanosleep (35), then read (0)
 *               SIGUSR1 sent to this thread (tgkill) ends the nanosleep early, so a test
 *               can start the read when it chooses instead of racing a timer.
 *
 * Once every thread has started, main waits ~100 ms, then checks
 * /proc/self/task/<tid>/syscall until each thread is observed in the expected
 * syscall (warnings on stderr if that does not happen within 5 s), and prints
 * the manifest on stdout, one JSON object per line, flushed after each line:
 *
 *   {"role":"pipe_read","comm":"pipe_read","func":"blocker_pipe_read","tid":1235,
 *    "syscall":"read","syscall_nr":0,"fd":3,"fd_desc":"pipe:[123456]","inode":123456}
 *   ...
 *   {"ready":true,"pid":1234}
 *
 * Then main blocks in pause(2) forever, or with --exit-after-ms N exits with
 * status 0 after N ms.  SIGTERM and SIGINT make the process exit with status 0.
 * See ../README.md for the per-role fields.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))
/* Keeps the compiler from turning the call before it into a tail call, so the
 * caller's frame stays on the stack. */
#define NO_TAIL_CALL() __asm__ volatile("" ::: "memory")

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void die_msg(const char *what)
{
    fprintf(stderr, "blocker: %s\n", what);
    exit(1);
}

/* ---------------------------------------------------------------- state -- */

enum role_id {
    R_PIPE_READ,
    R_PIPE_WRITE,
    R_MUTEX_WAIT,
    R_COND_WAIT,
    R_EPOLL_WAIT,
    R_TCP_RECV,
    R_SLEEPER,
    R_SPINNER,
    R_LATE_READ,
    R_COUNT
};

struct role {
    const char *name;     /* role == thread name (comm), <= 15 chars */
    const char *syscall;  /* kernel syscall it blocks in, NULL for spinner */
    long syscall_nr;      /* x86_64 number, -1 for spinner */
    long first_nr;        /* syscall expected when main checks (late_read: nanosleep) */
    int fd;               /* fd it blocks on, -1 if none */
    void *(*start)(void *);
    pthread_t thread;
    volatile pid_t tid;   /* written by the thread itself */
};

static pthread_mutex_t started_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t started_cond = PTHREAD_COND_INITIALIZER;
static int started_count;

/* mutex_wait */
static pthread_mutex_t held_mutex = PTHREAD_MUTEX_INITIALIZER;
/* cond_wait */
static pthread_mutex_t cond_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t never_cond = PTHREAD_COND_INITIALIZER;

/* fds; every other end of every pipe/socket is kept open by main */
static int pipe_read_fds[2];   /* thread reads [0], nobody writes [1] */
static int pipe_write_fds[2];  /* thread writes [1], nobody reads [0] */
static int epoll_pipe_fds[2];  /* [0] watched by epoll, [1] idle */
static int epoll_fd = -1;
static int epoll_listen_fd = -1;
static int tcp_listen_fd = -1;
static int tcp_client_fd = -1;  /* tcp_recv blocks on this */
static int tcp_accepted_fd = -1;  /* held by main, never written */
static int late_pipe_fds[2];   /* late_read reads [0] */
static long late_ms = 3000;
static volatile long pipe_write_filled;  /* bytes queued before blocking */

static volatile uint64_t spin_counter;

static struct role roles[R_COUNT];

/* ----------------------------------------------------------- utilities -- */

static pid_t my_tid(void)
{
    return (pid_t)syscall(SYS_gettid);
}

static void sleep_ms_raw(long ms)
{
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
    while (syscall(SYS_nanosleep, &ts, &ts) != 0) {
        if (errno != EINTR)
            die("nanosleep");
    }
}

/* Called first thing by every thread. */
static void thread_started(struct role *r)
{
    int err = pthread_setname_np(pthread_self(), r->name);
    if (err) {
        errno = err;
        die("pthread_setname_np");
    }
    r->tid = my_tid();
    if ((err = pthread_mutex_lock(&started_lock))) {
        errno = err;
        die("pthread_mutex_lock(started_lock)");
    }
    started_count++;
    pthread_cond_broadcast(&started_cond);
    pthread_mutex_unlock(&started_lock);
}

static void make_pipe(int fds[2])
{
    if (pipe(fds) != 0)
        die("pipe");
}

static int listen_loopback(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket");
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = 0 };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0)
        die("bind(127.0.0.1:0)");
    if (listen(fd, 16) != 0)
        die("listen");
    return fd;
}

static void fmt_addr(const struct sockaddr_in *a, char *buf, size_t len)
{
    char ip[INET_ADDRSTRLEN];
    if (!inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip))
        die("inet_ntop");
    snprintf(buf, len, "%s:%u", ip, (unsigned)ntohs(a->sin_port));
}

static void sock_local(int fd, char *buf, size_t len)
{
    struct sockaddr_in a;
    socklen_t al = sizeof a;
    if (getsockname(fd, (struct sockaddr *)&a, &al) != 0)
        die("getsockname");
    fmt_addr(&a, buf, len);
}

static void sock_remote(int fd, char *buf, size_t len)
{
    struct sockaddr_in a;
    socklen_t al = sizeof a;
    if (getpeername(fd, (struct sockaddr *)&a, &al) != 0)
        die("getpeername");
    fmt_addr(&a, buf, len);
}

static void fd_desc(int fd, char *buf, size_t len)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, buf, len - 1);
    if (n < 0)
        die("readlink /proc/self/fd");
    buf[n] = '\0';
}

static unsigned long fd_inode(int fd)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        die("fstat");
    return (unsigned long)st.st_ino;
}

/* Writes s as a JSON string (with quotes). */
static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

/* "fd":N,"fd_desc":"...","inode":N  (no leading comma) */
static void json_fd(FILE *f, int fd)
{
    char desc[256];
    fd_desc(fd, desc, sizeof desc);
    fprintf(f, "\"fd\":%d,\"fd_desc\":", fd);
    json_str(f, desc);
    fprintf(f, ",\"inode\":%lu", fd_inode(fd));
}

/* --------------------------------------------------------- the blockers -- */

NOINLINE void blocker_pipe_read(int fd)
{
    char b;
    for (;;) {
        ssize_t n = read(fd, &b, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            die("pipe_read: read");
        die_msg("pipe_read: read returned unexpectedly");
    }
}

NOINLINE void blocker_pipe_write(int fd)
{
    static char chunk[4096];
    long filled = 0;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0)
        die("pipe_write: fcntl(O_NONBLOCK)");
    /* Fill the pipe: page-sized writes, then single bytes for any tail room. */
    static const size_t sizes[2] = { sizeof chunk, 1 };
    for (int i = 0; i < 2; i++) {
        for (;;) {
            ssize_t n = write(fd, chunk, sizes[i]);
            if (n > 0) {
                filled += n;
                continue;
            }
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && errno == EAGAIN)
                break;
            die("pipe_write: fill write");
        }
    }
    pipe_write_filled = filled;
    if (fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0)
        die("pipe_write: fcntl(~O_NONBLOCK)");
    for (;;) {
        ssize_t n = write(fd, chunk, 1); /* blocks: pipe is full, nobody reads */
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            die("pipe_write: write");
        die_msg("pipe_write: write returned unexpectedly");
    }
}

NOINLINE void blocker_mutex_wait(pthread_mutex_t *m)
{
    int err = pthread_mutex_lock(m); /* main holds it forever -> futex wait */
    errno = err;
    if (err)
        die("mutex_wait: pthread_mutex_lock");
    die_msg("mutex_wait: got the mutex unexpectedly");
}

NOINLINE void blocker_cond_wait(pthread_mutex_t *m, pthread_cond_t *c)
{
    int err = pthread_mutex_lock(m);
    if (err) {
        errno = err;
        die("cond_wait: pthread_mutex_lock");
    }
    for (;;) { /* never signalled; loop over spurious wakeups */
        err = pthread_cond_wait(c, m);
        if (err) {
            errno = err;
            die("cond_wait: pthread_cond_wait");
        }
    }
}

NOINLINE void blocker_epoll_wait(int epfd)
{
    struct epoll_event ev[4];
    for (;;) {
        long n = syscall(SYS_epoll_wait, epfd, ev, 4, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            die("epoll_wait: epoll_wait");
        die_msg("epoll_wait: an event arrived unexpectedly");
    }
}

NOINLINE void blocker_tcp_recv(int fd)
{
    char buf[256];
    for (;;) {
        long n = syscall(SYS_recvfrom, fd, buf, sizeof buf, 0, NULL, NULL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            die("tcp_recv: recvfrom");
        die_msg("tcp_recv: recvfrom returned unexpectedly");
    }
}

NOINLINE void blocker_sleeper(void)
{
    for (;;) {
        struct timespec ts = { .tv_sec = 3600, .tv_nsec = 0 };
        long r = syscall(SYS_clock_nanosleep, CLOCK_MONOTONIC, 0, &ts, NULL);
        if (r != 0 && errno != EINTR)
            die("sleeper: clock_nanosleep");
    }
}

NOINLINE void blocker_spinner(void)
{
    for (;;)
        spin_counter++;
}

static volatile sig_atomic_t late_go; /* set by SIGUSR1: late_read reads now */

static void on_late_go(int sig)
{
    (void)sig;
    late_go = 1;
}

NOINLINE void blocker_late_read(int fd, long ms)
{
    /* raw nanosleep(2), over early on SIGUSR1 */
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
    while (!late_go && syscall(SYS_nanosleep, &ts, &ts) != 0) {
        if (errno != EINTR)
            die("nanosleep");
    }
    char b;
    for (;;) {
        ssize_t n = read(fd, &b, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            die("late_read: read");
        die_msg("late_read: read returned unexpectedly");
    }
}

/* ------------------------------------------------------ thread routines -- */

static void *start_pipe_read(void *arg)
{
    thread_started(arg);
    blocker_pipe_read(pipe_read_fds[0]);
    NO_TAIL_CALL();
    return NULL;
}

static void *start_pipe_write(void *arg)
{
    thread_started(arg);
    blocker_pipe_write(pipe_write_fds[1]);
    NO_TAIL_CALL();
    return NULL;
}

static void *start_mutex_wait(void *arg)
{
    thread_started(arg);
    blocker_mutex_wait(&held_mutex);
    NO_TAIL_CALL();
    return NULL;
}

static void *start_cond_wait(void *arg)
{
    thread_started(arg);
    blocker_cond_wait(&cond_mutex, &never_cond);
    NO_TAIL_CALL();
    return NULL;
}

static void *start_epoll_wait(void *arg)
{
    thread_started(arg);
    blocker_epoll_wait(epoll_fd);
    NO_TAIL_CALL();
    return NULL;
}

static void *start_tcp_recv(void *arg)
{
    thread_started(arg);
    blocker_tcp_recv(tcp_client_fd);
    NO_TAIL_CALL();
    return NULL;
}

static void *start_sleeper(void *arg)
{
    thread_started(arg);
    blocker_sleeper();
    NO_TAIL_CALL();
    return NULL;
}

static void *start_spinner(void *arg)
{
    thread_started(arg);
    blocker_spinner();
    NO_TAIL_CALL();
    return NULL;
}

static void *start_late_read(void *arg)
{
    thread_started(arg);
    blocker_late_read(late_pipe_fds[0], late_ms);
    NO_TAIL_CALL();
    return NULL;
}

/* ------------------------------------------------------------------ main -- */

static void on_term(int sig)
{
    (void)sig;
    _exit(0);
}

static long parse_ms(const char *opt, const char *v)
{
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || *end || end == v || n < 0) {
        fprintf(stderr, "blocker: %s wants a non-negative integer (ms), got '%s'\n", opt, v);
        exit(2);
    }
    return n;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: blocker [--late-ms N] [--exit-after-ms N]\n"
               "  --late-ms N        late_read sleeps N ms before its read (default 3000)\n"
               "  --exit-after-ms N  exit(0) N ms after printing the manifest (default: never)\n");
}

/* First field of /proc/self/task/TID/syscall: syscall nr, -1 (user mode) or
 * "running" (reported as -2).  *arg0 gets the first argument. Returns 0 on
 * success. */
static int read_task_syscall(pid_t tid, long *nr, unsigned long *arg0)
{
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/self/task/%d/syscall", (int)tid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char *ok = fgets(buf, sizeof buf, f);
    fclose(f);
    if (!ok)
        return -1;
    if (strncmp(buf, "running", 7) == 0) {
        *nr = -2;
        *arg0 = 0;
        return 0;
    }
    if (sscanf(buf, "%ld %lx", nr, arg0) < 1)
        return -1;
    return 0;
}

/* Waits (up to 5 s) until every thread is seen in the syscall it should be
 * in when the manifest is printed. Warns on stderr for the ones that are not. */
static void wait_until_blocked(void)
{
    int pending = 0;
    for (int attempt = 0; attempt < 100; attempt++) {
        pending = 0;
        for (int i = 0; i < R_COUNT; i++) {
            struct role *r = &roles[i];
            long nr;
            unsigned long a0;
            if (read_task_syscall(r->tid, &nr, &a0) != 0) {
                pending++;
                continue;
            }
            if (r->first_nr < 0) {
                if (nr >= 0) /* spinner must not be in a syscall */
                    pending++;
                continue;
            }
            if (i == R_LATE_READ && nr == r->syscall_nr && a0 == (unsigned long)r->fd)
                continue; /* short --late-ms: already in its read */
            if (nr != r->first_nr)
                pending++;
            else if (r->fd >= 0 && r->first_nr == r->syscall_nr && a0 != (unsigned long)r->fd)
                pending++;
        }
        if (!pending)
            return;
        sleep_ms_raw(50);
    }
    for (int i = 0; i < R_COUNT; i++) {
        long nr = -99;
        unsigned long a0 = 0;
        read_task_syscall(roles[i].tid, &nr, &a0);
        if (nr != roles[i].first_nr && !(roles[i].first_nr < 0 && nr < 0))
            fprintf(stderr, "blocker: warning: %s (tid %d) is in syscall %ld, expected %ld\n",
                    roles[i].name, (int)roles[i].tid, nr, roles[i].first_nr);
    }
}

static void print_role(const struct role *r)
{
    FILE *f = stdout;
    fprintf(f, "{\"role\":\"%s\",\"comm\":\"%s\",\"func\":\"blocker_%s\",\"tid\":%d,", r->name, r->name,
            r->name, (int)r->tid);
    if (r->syscall)
        fprintf(f, "\"syscall\":\"%s\",\"syscall_nr\":%ld,", r->syscall, r->syscall_nr);
    else
        fprintf(f, "\"syscall\":null,\"syscall_nr\":null,");
    if (r->fd >= 0)
        json_fd(f, r->fd);
    else
        fprintf(f, "\"fd\":null");

    char local[64], remote[64];
    switch ((enum role_id)(r - roles)) {
    case R_PIPE_WRITE:
        fprintf(f, ",\"pipe_bytes_queued\":%ld", pipe_write_filled);
        break;
    case R_MUTEX_WAIT:
        /* the futex word is the first int of a glibc pthread_mutex_t */
        fprintf(f, ",\"futex_uaddr\":\"%p\"", (void *)&held_mutex);
        break;
    case R_COND_WAIT:
        /* glibc waits on a futex word inside the pthread_cond_t (e.g. __g_signals) */
        fprintf(f, ",\"cond_addr\":\"%p\",\"cond_size\":%zu", (void *)&never_cond, sizeof never_cond);
        break;
    case R_EPOLL_WAIT:
        fprintf(f, ",\"watched\":[{");
        json_fd(f, epoll_pipe_fds[0]);
        fprintf(f, "},{");
        json_fd(f, epoll_listen_fd);
        sock_local(epoll_listen_fd, local, sizeof local);
        fprintf(f, ",\"local\":\"%s\",\"listening\":true}]", local);
        break;
    case R_TCP_RECV:
        sock_local(tcp_client_fd, local, sizeof local);
        sock_remote(tcp_client_fd, remote, sizeof remote);
        fprintf(f, ",\"local\":\"%s\",\"remote\":\"%s\"", local, remote);
        break;
    case R_SLEEPER:
        fprintf(f, ",\"sleep_s\":3600");
        break;
    case R_LATE_READ:
        fprintf(f, ",\"late_ms\":%ld,\"initial_syscall\":\"nanosleep\",\"initial_syscall_nr\":35", late_ms);
        break;
    default:
        break;
    }
    fprintf(f, "}\n");
    if (fflush(f) != 0)
        die("fflush(stdout)");
}

int main(int argc, char **argv)
{
    long exit_after_ms = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--late-ms") && i + 1 < argc) {
            late_ms = parse_ms(a, argv[++i]);
        } else if (!strncmp(a, "--late-ms=", 10)) {
            late_ms = parse_ms("--late-ms", a + 10);
        } else if (!strcmp(a, "--exit-after-ms") && i + 1 < argc) {
            exit_after_ms = parse_ms(a, argv[++i]);
        } else if (!strncmp(a, "--exit-after-ms=", 16)) {
            exit_after_ms = parse_ms("--exit-after-ms", a + 16);
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
    sa.sa_handler = on_late_go; /* no SA_RESTART: the nanosleep returns EINTR */
    if (sigaction(SIGUSR1, &sa, NULL) != 0)
        die("sigaction");
    signal(SIGPIPE, SIG_IGN);

    /* --- set up every fd before any thread starts --- */
    make_pipe(pipe_read_fds);
    make_pipe(pipe_write_fds);
    make_pipe(epoll_pipe_fds);
    make_pipe(late_pipe_fds);

    epoll_listen_fd = listen_loopback();
    epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd < 0)
        die("epoll_create1");
    struct epoll_event ev = { .events = EPOLLIN };
    ev.data.fd = epoll_pipe_fds[0];
    if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, epoll_pipe_fds[0], &ev) != 0)
        die("epoll_ctl(pipe)");
    ev.data.fd = epoll_listen_fd;
    if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, epoll_listen_fd, &ev) != 0)
        die("epoll_ctl(listen socket)");

    tcp_listen_fd = listen_loopback();
    struct sockaddr_in la;
    socklen_t lal = sizeof la;
    if (getsockname(tcp_listen_fd, (struct sockaddr *)&la, &lal) != 0)
        die("getsockname(listener)");
    tcp_client_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (tcp_client_fd < 0)
        die("socket");
    if (connect(tcp_client_fd, (struct sockaddr *)&la, sizeof la) != 0)
        die("connect(127.0.0.1)");
    tcp_accepted_fd = accept4(tcp_listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (tcp_accepted_fd < 0)
        die("accept");

    /* main holds this one forever */
    int err = pthread_mutex_lock(&held_mutex);
    if (err) {
        errno = err;
        die("pthread_mutex_lock(held_mutex)");
    }

    /* --- roles --- */
    roles[R_PIPE_READ] = (struct role){ .name = "pipe_read", .syscall = "read", .syscall_nr = 0,
        .first_nr = 0, .fd = pipe_read_fds[0], .start = start_pipe_read };
    roles[R_PIPE_WRITE] = (struct role){ .name = "pipe_write", .syscall = "write", .syscall_nr = 1,
        .first_nr = 1, .fd = pipe_write_fds[1], .start = start_pipe_write };
    roles[R_MUTEX_WAIT] = (struct role){ .name = "mutex_wait", .syscall = "futex", .syscall_nr = 202,
        .first_nr = 202, .fd = -1, .start = start_mutex_wait };
    roles[R_COND_WAIT] = (struct role){ .name = "cond_wait", .syscall = "futex", .syscall_nr = 202,
        .first_nr = 202, .fd = -1, .start = start_cond_wait };
    roles[R_EPOLL_WAIT] = (struct role){ .name = "epoll_wait", .syscall = "epoll_wait", .syscall_nr = 232,
        .first_nr = 232, .fd = epoll_fd, .start = start_epoll_wait };
    roles[R_TCP_RECV] = (struct role){ .name = "tcp_recv", .syscall = "recvfrom", .syscall_nr = 45,
        .first_nr = 45, .fd = tcp_client_fd, .start = start_tcp_recv };
    roles[R_SLEEPER] = (struct role){ .name = "sleeper", .syscall = "clock_nanosleep", .syscall_nr = 230,
        .first_nr = 230, .fd = -1, .start = start_sleeper };
    roles[R_SPINNER] = (struct role){ .name = "spinner", .syscall = NULL, .syscall_nr = -1,
        .first_nr = -1, .fd = -1, .start = start_spinner };
    roles[R_LATE_READ] = (struct role){ .name = "late_read", .syscall = "read", .syscall_nr = 0,
        .first_nr = 35, .fd = late_pipe_fds[0], .start = start_late_read };

    for (int i = 0; i < R_COUNT; i++) {
        if ((err = pthread_create(&roles[i].thread, NULL, roles[i].start, &roles[i]))) {
            errno = err;
            die("pthread_create");
        }
    }
    pthread_mutex_lock(&started_lock);
    while (started_count < R_COUNT)
        pthread_cond_wait(&started_cond, &started_lock);
    pthread_mutex_unlock(&started_lock);

    sleep_ms_raw(100);
    wait_until_blocked();

    for (int i = 0; i < R_COUNT; i++)
        print_role(&roles[i]);
    printf("{\"ready\":true,\"pid\":%d}\n", (int)getpid());
    if (fflush(stdout) != 0)
        die("fflush(stdout)");

    if (exit_after_ms >= 0) {
        sleep_ms_raw(exit_after_ms);
        exit(0);
    }
    for (;;)
        pause();
}
