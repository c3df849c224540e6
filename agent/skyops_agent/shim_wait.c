/*
 * skyops-shim-wait: the wait phase of the per-job shim (shim.py), in C.
 *
 * The Python shim does the setup (spec.json, cgroup, fork, uid drop, exec of the job,
 * status.json "running"), then execve()s this program with the same pid, so the process
 * that waits out the job's whole life is about 1 MB instead of a Python interpreter
 * (docs/fleet.md, "Memory per job"). SIGCHLD, SIGTERM and SIGUSR2 stay blocked across
 * execve, and so does the child-subreaper flag.
 *
 *   skyops-shim-wait --job-dir DIR PID CGROUP_KIND CGROUP_PATH STOP UNSTOP FIXED_JSON
 *
 * CGROUP_KIND and CGROUP_PATH are "-" without a cgroup; STOP and UNSTOP are "1" when the
 * Python shim caught a SIGTERM or SIGUSR2 it did not act on yet; FIXED_JSON is the
 * status.json object without the fields written here (state, exit_code, signal,
 * stop_reason, ended_at, kill_failed, unstop). It never runs a shell and never forks.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define KILL_FAILED_AFTER_S 30.0 /* shim.KILL_FAILED_AFTER_S */
#define MAX_JSON_BYTES (1 << 20)
#define MAX_DEPTH 32

enum phase { IDLE, CHECKPOINT, TERM, KILL };
static const char *const PHASE_NAMES[] = {"idle", "checkpoint", "term", "kill"};

static const char *job_dir;
static pid_t job_pid;
static const char *cg_kind; /* NULL: the process group is all there is */
static const char *cg_path;
static const char *fixed_json;

/* What status.json says beyond FIXED_JSON (Shim.status). Strings are raw JSON tokens. */
static char *stop_reason;
static int kill_failed;
static char *unstop_answer; /* the "unstop" object, or NULL */

/* StopSequence */
static enum phase phase = IDLE;
static int has_deadline;
static double deadline, term_grace_s, killed_at;
static int killed;
static char *stop_handled; /* requested_at of the last stop carried out; NULL: None */

static void complain(const char *what, const char *path)
{
    fprintf(stderr, "skyops-shim-wait: %s %s: %s\n", what, path ? path : "", strerror(errno));
}

static double clock_s(clockid_t which)
{
    struct timespec ts;
    if (clock_gettime(which, &ts) != 0) {
        complain("clock_gettime", NULL);
        exit(1);
    }
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static char *dup_or_die(const char *s, size_t n)
{
    char *copy = strndup(s, n);
    if (copy == NULL) {
        complain("out of memory", NULL);
        exit(1);
    }
    return copy;
}

static char *job_path(const char *name)
{
    char *path;
    if (asprintf(&path, "%s/%s", job_dir, name) < 0) {
        complain("out of memory", NULL);
        exit(1);
    }
    return path;
}

/* ---- jobdir.py: signal names, JSON files -------------------------------------- */

static const struct {
    int number;
    const char *name;
} SIGNALS[] = {
    /* jobdir.signal_name: of aliases, the first in alphabetical order */
    {SIGABRT, "SIGABRT"}, {SIGALRM, "SIGALRM"}, {SIGBUS, "SIGBUS"},   {SIGCHLD, "SIGCHLD"},
    {SIGCONT, "SIGCONT"}, {SIGFPE, "SIGFPE"},   {SIGHUP, "SIGHUP"},   {SIGILL, "SIGILL"},
    {SIGINT, "SIGINT"},   {SIGIO, "SIGIO"},     {SIGKILL, "SIGKILL"}, {SIGPIPE, "SIGPIPE"},
    {SIGPROF, "SIGPROF"}, {SIGQUIT, "SIGQUIT"}, {SIGSEGV, "SIGSEGV"}, {SIGSTOP, "SIGSTOP"},
    {SIGSYS, "SIGSYS"},   {SIGTERM, "SIGTERM"}, {SIGTRAP, "SIGTRAP"}, {SIGTSTP, "SIGTSTP"},
    {SIGTTIN, "SIGTTIN"}, {SIGTTOU, "SIGTTOU"}, {SIGURG, "SIGURG"},   {SIGUSR1, "SIGUSR1"},
    {SIGUSR2, "SIGUSR2"}, {SIGVTALRM, "SIGVTALRM"}, {SIGWINCH, "SIGWINCH"},
    {SIGXCPU, "SIGXCPU"}, {SIGXFSZ, "SIGXFSZ"},
#ifdef SIGPWR
    {SIGPWR, "SIGPWR"},
#endif
#ifdef SIGSTKFLT
    {SIGSTKFLT, "SIGSTKFLT"},
#endif
};
#define N_SIGNALS (sizeof SIGNALS / sizeof SIGNALS[0])

/* jobdir.signal_name, as a JSON string token */
static char *signal_token(int number)
{
    char *token;
    int n = -1;
    for (size_t i = 0; i < N_SIGNALS; i++)
        if (SIGNALS[i].number == number) {
            n = asprintf(&token, "\"%s\"", SIGNALS[i].name);
            break;
        }
    if (n < 0 && number == SIGRTMIN)
        n = asprintf(&token, "\"SIGRTMIN\"");
    else if (n < 0 && number == SIGRTMAX)
        n = asprintf(&token, "\"SIGRTMAX\"");
    else if (n < 0)
        n = asprintf(&token, "\"SIG%d\"", number);
    if (n < 0) {
        complain("out of memory", NULL);
        exit(1);
    }
    return token;
}

/* jobdir.signal_number: "SIGUSR1" or "USR1"; 0 if unknown */
static int signal_number(const char *name, size_t len)
{
    if (len >= 3 && strncmp(name, "SIG", 3) == 0) {
        name += 3;
        len -= 3;
    }
    for (size_t i = 0; i < N_SIGNALS; i++)
        if (strlen(SIGNALS[i].name + 3) == len && strncmp(SIGNALS[i].name + 3, name, len) == 0)
            return SIGNALS[i].number;
    if (len == 5 && strncmp(name, "RTMIN", 5) == 0)
        return SIGRTMIN;
    if (len == 5 && strncmp(name, "RTMAX", 5) == 0)
        return SIGRTMAX;
    return 0;
}

static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

/* The end of the JSON value at p, or NULL if it is not one. Checks the shape only. */
static const char *skip_value(const char *p, int depth)
{
    if (depth > MAX_DEPTH)
        return NULL;
    if (*p == '"') {
        for (p++; *p != '"'; p++) {
            if ((unsigned char)*p < 0x20)
                return NULL; /* control characters and the end of the text */
            if (*p == '\\' && *++p == '\0')
                return NULL;
        }
        return p + 1;
    }
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        p = skip_ws(p + 1);
        if (*p == close)
            return p + 1;
        for (;;) {
            if (close == '}') {
                if (*p != '"' || (p = skip_value(p, depth + 1)) == NULL)
                    return NULL;
                p = skip_ws(p);
                if (*p++ != ':')
                    return NULL;
                p = skip_ws(p);
            }
            if ((p = skip_value(p, depth + 1)) == NULL)
                return NULL;
            p = skip_ws(p);
            if (*p == close)
                return p + 1;
            if (*p++ != ',')
                return NULL;
            p = skip_ws(p);
        }
    }
    static const char *const words[] = {"true", "false", "null"};
    for (size_t i = 0; i < 3; i++)
        if (strncmp(p, words[i], strlen(words[i])) == 0)
            return p + strlen(words[i]);
    const char *start = p;
    while (*p && strchr("-+.eE0123456789", *p))
        p++;
    return p > start ? p : NULL;
}

/* jobdir.read_json: the file's text if it is one JSON object, else NULL */
static char *read_object(const char *name)
{
    char *path = job_path(name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    free(path);
    if (fd < 0)
        return NULL;
    char *text = malloc(MAX_JSON_BYTES + 1);
    size_t len = 0;
    ssize_t got = 1;
    while (text != NULL && len < MAX_JSON_BYTES && got > 0) {
        got = read(fd, text + len, MAX_JSON_BYTES - len);
        if (got < 0 && errno == EINTR)
            got = 1;
        else if (got > 0)
            len += (size_t)got;
    }
    if (close(fd) != 0 || text == NULL || got < 0) {
        free(text);
        return NULL;
    }
    text[len] = '\0';
    const char *p = skip_ws(text);
    const char *end = *p == '{' ? skip_value(p, 0) : NULL;
    if (end == NULL || *skip_ws(end) != '\0' || strlen(text) != len) {
        free(text);
        return NULL;
    }
    return text;
}

/* dict.get(key): the raw token of a top-level member, or NULL (with *len its length) */
static const char *member(const char *obj, const char *key, size_t *len)
{
    size_t klen = strlen(key);
    const char *p = skip_ws(skip_ws(obj) + 1);
    const char *found = NULL;
    while (*p == '"') {
        const char *kend = skip_value(p, 1);
        int match = (size_t)(kend - p) == klen + 2 && strncmp(p + 1, key, klen) == 0;
        p = skip_ws(skip_ws(kend) + 1);
        const char *vend = skip_value(p, 1);
        if (match) { /* the last one wins, as in json.loads */
            found = p;
            *len = (size_t)(vend - p);
        }
        p = skip_ws(vend);
        if (*p == ',')
            p = skip_ws(p + 1);
    }
    return found;
}

static int is_token(const char *tok, size_t len, const char *word)
{
    return tok != NULL && len == strlen(word) && strncmp(tok, word, len) == 0;
}

/* float(stop.get(key, 0)) for the numbers the agent writes */
static double number(const char *obj, const char *key, double otherwise)
{
    size_t len;
    const char *tok = member(obj, key, &len);
    if (tok == NULL || *tok == '"' || is_token(tok, len, "null"))
        return otherwise;
    return strtod(tok, NULL);
}

/* jobdir.write_json: a temporary file in the same folder, fsync, rename */
static int write_file(const char *name, const char *text)
{
    char *path = job_path(name), *tmp;
    int ok = 0;
    if (asprintf(&tmp, "%s.tmp.%d", path, (int)getpid()) < 0) {
        free(path);
        return 0;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) {
        complain("cannot write", tmp);
    } else {
        size_t len = strlen(text), done = 0;
        while (done < len) {
            ssize_t n = write(fd, text + done, len - done);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                break;
            done += (size_t)n;
        }
        if (done < len || fsync(fd) != 0)
            complain("cannot write", tmp);
        else
            ok = 1;
        if (close(fd) != 0) {
            complain("cannot close", tmp);
            ok = 0;
        }
        if (ok && rename(tmp, path) != 0) {
            complain("cannot rename", tmp);
            ok = 0;
        }
        if (!ok && unlink(tmp) != 0)
            complain("cannot remove", tmp);
    }
    free(tmp);
    free(path);
    return ok;
}

/* Shim._save: FIXED_JSON and what this program knows */
static int save_status(const char *state, const char *exit_code, const char *sig, double ended)
{
    char *text, ended_at[64] = "null";
    const char *body = skip_ws(skip_ws(fixed_json) + 1); /* after the '{' */
    size_t body_len = strlen(body);
    while (body_len > 0 && strchr(" \t\r\n}", body[body_len - 1]))
        body_len--;
    if (ended > 0)
        snprintf(ended_at, sizeof ended_at, "%.6f", ended);
    int n = asprintf(&text,
                     "{%.*s%s\"ended_at\": %s, \"exit_code\": %s, \"kill_failed\": %s, "
                     "\"signal\": %s, \"state\": \"%s\", \"stop_reason\": %s%s%s}",
                     (int)body_len, body, body_len ? ", " : "", ended_at, exit_code,
                     kill_failed ? "true" : "false", sig, state, stop_reason,
                     unstop_answer ? ", \"unstop\": " : "", unstop_answer ? unstop_answer : "");
    if (n < 0) {
        complain("out of memory", NULL);
        return 0;
    }
    int ok = write_file("status.json", text);
    free(text);
    return ok;
}

/* ---- cgroups.py: Cgroup.pids, Cgroup.signal, Cgroup.remove ------------------- */

/* Cgroup.pids: how many pids cgroup.procs lists, filling pids[] up to max */
static size_t cgroup_pids(pid_t *pids, size_t max)
{
    char *path;
    if (asprintf(&path, "%s/cgroup.procs", cg_path) < 0)
        return 0;
    FILE *f = fopen(path, "re");
    free(path);
    if (f == NULL)
        return 0;
    size_t n = 0;
    long pid;
    while (fscanf(f, "%ld", &pid) == 1) {
        if (n < max)
            pids[n] = (pid_t)pid;
        n++;
    }
    if (fclose(f) != 0)
        return 0;
    return n;
}

/* Cgroup.signal: cgroup.kill for SIGKILL on cgroup v2 (Linux 5.14+), else pid by pid */
static void cgroup_signal(int signum)
{
    if (signum == SIGKILL && strcmp(cg_kind, "cgroup2") == 0) {
        char *path;
        if (asprintf(&path, "%s/cgroup.kill", cg_path) >= 0) {
            int fd = open(path, O_WRONLY | O_CLOEXEC);
            free(path);
            if (fd >= 0) {
                ssize_t n = write(fd, "1", 1);
                if (close(fd) == 0 && n == 1)
                    return;
            }
        }
    }
    pid_t pids[4096];
    size_t n = cgroup_pids(pids, 4096);
    for (size_t i = 0; i < n && i < 4096; i++)
        if (kill(pids[i], signum) != 0 && errno != ESRCH && errno != EPERM)
            complain("kill", NULL);
}

static void cgroup_remove(void)
{
    if (rmdir(cg_path) != 0)
        return; /* Cgroup.remove: not empty yet, or gone; nothing to say */
}

/* ---- shim.py: StopSequence, group_alive ----------------------------------------- */

static void send(int signum) /* StopSequence._send */
{
    if (cg_path != NULL) {
        cgroup_signal(signum); /* the group, and what left it (setsid, double fork) */
        return;
    }
    if (killpg(job_pid, signum) != 0 && errno != ESRCH && errno != EPERM)
        complain("killpg", NULL);
}

static void stop_kill(double now) /* StopSequence.kill */
{
    send(SIGKILL);
    phase = KILL;
    has_deadline = 0;
    if (!killed) {
        killed = 1;
        killed_at = now;
    }
}

static void advance(double now) /* StopSequence.advance */
{
    while (has_deadline && now >= deadline) {
        if (phase == CHECKPOINT) {
            send(SIGTERM);
            phase = TERM;
            deadline = now + term_grace_s;
        } else {
            stop_kill(now);
        }
    }
}

/* StopSequence.request; ckpt is 0 for none (or a name the table does not know) */
static void stop_request(double grace, double term_grace, int ckpt, double now)
{
    term_grace_s = term_grace;
    if (phase == IDLE) {
        if (ckpt) {
            send(ckpt);
            phase = CHECKPOINT;
            deadline = now + grace;
        } else {
            send(SIGTERM);
            phase = TERM;
            deadline = now + term_grace_s;
        }
        has_deadline = 1;
    } else if (has_deadline) {
        double wait;
        if (phase == CHECKPOINT)
            wait = ckpt ? grace : 0.0; /* a stop without checkpoint: SIGTERM now */
        else
            wait = term_grace_s;
        if (now + wait < deadline)
            deadline = now + wait;
    }
    advance(now);
}

static int call_off(double now) /* StopSequence.call_off */
{
    advance(now);
    if (phase != IDLE && phase != CHECKPOINT)
        return 0;
    phase = IDLE;
    has_deadline = 0;
    return 1;
}

static int group_alive(void) /* group_alive */
{
    if (cg_path != NULL) {
        pid_t one[1];
        return cgroup_pids(one, 1) > 0;
    }
    if (killpg(job_pid, 0) != 0)
        return errno != ESRCH; /* EPERM: someone is there */
    return 1;
}

/* ---- shim.py: Shim._take_stop, Shim._take_unstop, Shim._reap ------------------ */

static void take_stop(double now) /* Shim._take_stop */
{
    /* SIGTERM from someone other than the agent: stop without a checkpoint */
    static const char DEFAULT[] = "{\"reason\": \"shim terminated\", \"grace_s\": 0, "
                                  "\"term_grace_s\": 10.0}";
    char *request = read_object("stop.json");
    const char *req = request ? request : DEFAULT;
    size_t len = 0;
    const char *tok = member(req, "called_off", &len);
    if (is_token(tok, len, "true")) {
        free(request);
        return;
    }
    tok = member(req, "requested_at", &len);
    if (is_token(tok, len, "null"))
        tok = NULL;
    if (tok != NULL && stop_handled != NULL && strlen(stop_handled) == len &&
        strncmp(stop_handled, tok, len) == 0) {
        free(request);
        return;
    }
    free(stop_handled);
    stop_handled = tok ? dup_or_die(tok, len) : NULL;
    tok = member(req, "reason", &len);
    free(stop_reason);
    stop_reason = tok ? dup_or_die(tok, len) : dup_or_die("null", 4);
    int ckpt = 0;
    tok = member(req, "checkpoint_signal", &len);
    if (tok != NULL && *tok == '"' && len > 2)
        ckpt = signal_number(tok + 1, len - 2);
    stop_request(number(req, "grace_s", 0), number(req, "term_grace_s", 0), ckpt, now);
    free(request);
}

static void take_unstop(int exited, double now) /* Shim._take_unstop */
{
    char *ask = read_object("unstop.json");
    if (ask == NULL)
        return;
    char *stop_path = job_path("stop.json");
    if (access(stop_path, F_OK) == 0)
        take_stop(now); /* a stop whose SIGTERM is still on its way */
    enum phase was = phase;
    int ok = !exited && call_off(now);
    if (ok) {
        char *request = read_object("stop.json");
        size_t len = 0;
        const char *tok = request ? member(request, "called_off", &len) : NULL;
        if (request != NULL && !is_token(tok, len, "true")) {
            char *end = strrchr(request, '}'), *text;
            *end = '\0';
            int empty = *skip_ws(skip_ws(request) + 1) == '\0';
            if (asprintf(&text, "%s%s\"called_off\": true, \"called_off_at\": %.6f}", request,
                         empty ? "" : ", ", clock_s(CLOCK_REALTIME)) >= 0) {
                write_file("stop.json", text);
                free(text);
            }
        }
        free(request);
        free(stop_reason);
        stop_reason = dup_or_die("null", 4);
    }
    char *unstop_path = job_path("unstop.json");
    if (unlink(unstop_path) != 0 && errno != ENOENT)
        complain("cannot remove", unstop_path);
    free(unstop_path);
    free(stop_path);
    size_t len = 0;
    const char *token = member(ask, "token", &len);
    free(unstop_answer);
    if (asprintf(&unstop_answer, "{\"ok\": %s, \"phase\": \"%s\", \"token\": %.*s}",
                 ok ? "true" : "false", PHASE_NAMES[was], token ? (int)len : 4,
                 token ? token : "null") < 0)
        unstop_answer = NULL;
    free(ask);
    save_status("running", "null", "null", 0);
}

/* Shim._reap: every exited child (the job, and orphans adopted); keep the job's status */
static void reap(int *have_exit, int *exit_status)
{
    for (;;) {
        int status;
        pid_t child = waitpid(-1, &status, WNOHANG);
        if (child < 0 && errno == EINTR)
            continue;
        if (child <= 0)
            return; /* ECHILD: none left; 0: none exited */
        if (child == job_pid) {
            *have_exit = 1;
            *exit_status = status;
        }
    }
}

static int usage(void)
{
    fprintf(stderr, "usage: skyops-shim-wait --job-dir DIR PID CGROUP_KIND CGROUP_PATH "
                    "STOP UNSTOP FIXED_JSON\n");
    return 2;
}

int main(int argc, char **argv) /* Shim._supervise */
{
    if (argc != 9 || strcmp(argv[1], "--job-dir") != 0)
        return usage();
    job_dir = argv[2];
    job_pid = (pid_t)atol(argv[3]);
    cg_kind = strcmp(argv[4], "-") == 0 ? NULL : argv[4];
    cg_path = strcmp(argv[5], "-") == 0 ? NULL : argv[5];
    int stop_requested = strcmp(argv[6], "1") == 0;
    int unstop_requested = strcmp(argv[7], "1") == 0;
    fixed_json = argv[8];
    if (job_pid <= 0 || (cg_kind == NULL) != (cg_path == NULL) || *skip_ws(fixed_json) != '{')
        return usage();
    stop_reason = dup_or_die("null", 4);

    sigset_t waited;
    if (sigemptyset(&waited) != 0 || sigaddset(&waited, SIGCHLD) != 0 ||
        sigaddset(&waited, SIGTERM) != 0 || sigaddset(&waited, SIGUSR2) != 0 ||
        sigprocmask(SIG_BLOCK, &waited, NULL) != 0) {
        complain("sigprocmask", NULL);
        return 1;
    }
    /* Shim.run's no-op handlers: this program starts nothing, so SIG_IGN will do */
    struct sigaction ignore = {.sa_handler = SIG_IGN};
    if (sigaction(SIGHUP, &ignore, NULL) != 0 || sigaction(SIGINT, &ignore, NULL) != 0) {
        complain("sigaction", NULL);
        return 1;
    }
    sigset_t hup_int;
    if (sigemptyset(&hup_int) != 0 || sigaddset(&hup_int, SIGHUP) != 0 ||
        sigaddset(&hup_int, SIGINT) != 0 || sigprocmask(SIG_UNBLOCK, &hup_int, NULL) != 0) {
        complain("sigprocmask", NULL);
        return 1;
    }
    /* execve keeps the flag; this only covers a kernel that would not */
    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0)
        complain("prctl(PR_SET_CHILD_SUBREAPER)", NULL);

    int have_exit = 0, exit_status = 0;
    for (;;) {
        reap(&have_exit, &exit_status);
        double now = clock_s(CLOCK_MONOTONIC);
        if (stop_requested) {
            stop_requested = 0;
            take_stop(now);
        }
        if (unstop_requested) {
            unstop_requested = 0;
            take_unstop(have_exit, now);
        }
        if (have_exit || phase == KILL) {
            if (have_exit && !group_alive())
                break;
            if (phase == IDLE || (phase == KILL && cg_path != NULL))
                stop_kill(now); /* nothing the job left may linger; forks race a kill */
        }
        if (killed && now - killed_at > KILL_FAILED_AFTER_S) {
            if (!kill_failed) {
                kill_failed = 1;
                save_status("running", "null", "null", 0);
            }
            if (have_exit)
                break;
        }
        double timeout = 1.0;
        if (has_deadline)
            timeout = deadline - now < 0 ? 0 : deadline - now < 1 ? deadline - now : 1.0;
        struct timespec ts = {(time_t)timeout, (long)((timeout - (time_t)timeout) * 1e9)};
        siginfo_t info;
        int got = sigtimedwait(&waited, &info, &ts);
        if (got == SIGTERM)
            stop_requested = 1;
        else if (got == SIGUSR2)
            unstop_requested = 1;
        else if (got < 0 && errno != EAGAIN && errno != EINTR)
            complain("sigtimedwait", NULL);
        advance(clock_s(CLOCK_MONOTONIC));
    }
    char code[16] = "null";
    char *sig = NULL;
    if (WIFEXITED(exit_status))
        snprintf(code, sizeof code, "%d", WEXITSTATUS(exit_status));
    else if (WIFSIGNALED(exit_status))
        sig = signal_token(WTERMSIG(exit_status));
    if (cg_path != NULL) {
        pid_t one[1];
        if (cgroup_pids(one, 1) == 0)
            cgroup_remove();
    }
    int ok = save_status("exited", code, sig ? sig : "null", clock_s(CLOCK_REALTIME));
    free(sig);
    return ok ? 0 : 1;
}
