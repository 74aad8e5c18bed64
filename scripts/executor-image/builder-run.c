/* builder-run: starts one in-place RUN step for builder and stands between it and everything else in the container.
 *   builder-run probe                 stdout: "landlock ABI" (0: none), the scopes a step gets depend on it
 *   builder-run [--uid N --gid N --groups G,G..] [--cwd DIR] [--hide PATH].. [--orphan-unlink PATH].. -- ARGV..
 * The step (its environment is ours) runs in its own session, with no_new_privs and a Landlock domain scoped for
 * signals and abstract unix sockets (ABI >= 6): it cannot signal, ptrace or read the memory, fds, cwd or root of any
 * process outside it (builder, this launcher, the job). --hide files are read into memory and unlinked for the step
 * and written back byte for byte (mode, owner, times) after it, whatever ends it. This launcher is a child subreaper:
 * whatever the step leaves running is killed when the step exits, when builder asks (SIGTERM/SIGINT/SIGHUP), and when
 * builder dies (parent-death signal); then --orphan-unlink files (builder's secrets put in "/") are removed too.
 * Built static by scripts/executor-image/build.mjs; src/run/in-place-launcher.ts finds it beside node. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/landlock.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef LANDLOCK_SCOPE_SIGNAL
#define LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET (1ULL << 0)
#define LANDLOCK_SCOPE_SIGNAL (1ULL << 1)
#endif

struct ruleset_attr { unsigned long long fs, net, scoped; };
struct hidden { const char *path; char dir[4096]; const char *name; char *data; size_t len; struct stat st; };

static int landlock_abi(void) {
  long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
  return abi < 0 ? 0 : (int)abi;
}

/* ABI >= 6: scopes only, the file system untouched. ABI 1-5: a ruleset that allows every file access under "/" still
 * makes a domain, which is enough for ptrace, /proc/PID/mem and fd protection (signals stay open: builder warns). */
static int enter_landlock(void) {
  int abi = landlock_abi(), fd;
  if (abi == 0) return 0;
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) return -1;
  if (abi >= 6) {
    struct ruleset_attr a = { 0, 0, LANDLOCK_SCOPE_SIGNAL | LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET };
    fd = (int)syscall(SYS_landlock_create_ruleset, &a, sizeof a, 0);
  } else {
    struct { unsigned long long fs; } a = { LANDLOCK_ACCESS_FS_EXECUTE };
    fd = (int)syscall(SYS_landlock_create_ruleset, &a, sizeof a, 0);
    struct landlock_path_beneath_attr pb = { LANDLOCK_ACCESS_FS_EXECUTE, open("/", O_PATH | O_CLOEXEC) };
    if (fd >= 0 && syscall(SYS_landlock_add_rule, fd, LANDLOCK_RULE_PATH_BENEATH, &pb, 0)) return -1;
  }
  if (fd < 0 || syscall(SYS_landlock_restrict_self, fd, 0)) return -1;
  close(fd);
  return 0;
}

static int parse_groups(char *s, gid_t *out, int max) {
  int n = 0;
  for (char *t = strtok(s, ","); t && n < max; t = strtok(NULL, ",")) out[n++] = (gid_t)strtoul(t, NULL, 10);
  return n;
}

static int hide(struct hidden *h) {
  /* where it goes back: its directory resolved now, before a step could plant a symlink on the way */
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s", h->path);
  char *slash = strrchr(tmp, '/');
  if (!slash || !slash[1]) return 1;
  *slash = 0;
  if (!realpath(tmp[0] ? tmp : "/", h->dir)) return -1;
  h->name = h->path + (slash - tmp) + 1;
  int fd = open(h->path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? 1 : -1;
  if (fstat(fd, &h->st) || !S_ISREG(h->st.st_mode)) { close(fd); return 1; }
  h->data = malloc(h->st.st_size + 1);
  ssize_t r;
  h->len = 0;
  while (h->data && (r = read(fd, h->data + h->len, h->st.st_size + 1 - h->len)) > 0) h->len += r;
  close(fd);
  if (!h->data || h->len != (size_t)h->st.st_size) return -1;
  return unlink(h->path) ? -1 : 0;
}

/* The directory as resolved at hide time, walked from "/" without following symlinks: a component the step turned
 * into a symlink or a file is removed and made again (root-owned 0755), so the bytes never land where it points. */
static int open_dir_safely(const char *dir) {
  char buf[4096], *save = NULL;
  snprintf(buf, sizeof buf, "%s", dir);
  int fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
  for (char *name = strtok_r(buf, "/", &save); fd >= 0 && name; name = strtok_r(NULL, "/", &save)) {
    int next = openat(fd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (next < 0 && errno != ENOENT) unlinkat(fd, name, 0);
    if (next < 0) {
      mkdirat(fd, name, 0755);
      next = openat(fd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    close(fd);
    fd = next;
  }
  return fd;
}

/* Temp file beside it, then rename over whatever the step left there: the user's bytes come back whole. */
static int restore(struct hidden *h) {
  char tmp[4200];
  snprintf(tmp, sizeof tmp, ".%s.builder-restore-%d", h->name, getpid());
  int dfd = open_dir_safely(h->dir);
  if (dfd < 0) return -1;
  int fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) { close(dfd); return -1; }
  size_t off = 0;
  ssize_t w;
  while (off < h->len && (w = write(fd, h->data + off, h->len - off)) > 0) off += w;
  struct timespec t[2] = { h->st.st_atim, h->st.st_mtim };
  int bad = off != h->len || fchown(fd, h->st.st_uid, h->st.st_gid) || fchmod(fd, h->st.st_mode & 07777) || fsync(fd);
  bad |= futimens(fd, t);
  close(fd);
  if (bad || renameat(dfd, tmp, dfd, h->name)) { unlinkat(dfd, tmp, 0); close(dfd); return -1; }
  close(dfd);
  return 0;
}

/* Every process below this subreaper: kill the children, reap, repeat (orphans of the killed become our children). */
static void kill_all(pid_t main_pid, int *main_status) {
  pid_t self = getpid();
  for (;;) {
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d))) {
      char p[300], buf[512];
      snprintf(p, sizeof p, "/proc/%s/stat", e->d_name);
      int fd = open(p, O_RDONLY | O_CLOEXEC);
      if (fd < 0) continue;
      ssize_t n = read(fd, buf, sizeof buf - 1);
      close(fd);
      if (n <= 0) continue;
      buf[n] = 0;
      char *rp = strrchr(buf, ')');
      int ppid;
      if (rp && sscanf(rp + 2, "%*c %d", &ppid) == 1 && ppid == self) kill(atoi(e->d_name), SIGKILL);
    }
    if (d) closedir(d);
    int st;
    pid_t r = waitpid(-1, &st, 0);
    if (r < 0 && errno == ECHILD) return;
    if (r == main_pid && main_status) *main_status = st;
  }
}

int main(int argc, char **argv) {
  if (argc == 2 && !strcmp(argv[1], "probe")) { printf("landlock %d\n", landlock_abi()); return 0; }
  static struct hidden hid[64];
  static const char *orphan[64];
  static gid_t groups[256];
  int nhid = 0, norphan = 0, ngroups = -1, i;
  long uid = -1, gid = -1;
  const char *cwd = NULL;
  for (i = 1; i < argc && strcmp(argv[i], "--"); i += 2) {
    if (i + 1 >= argc) break;
    if (!strcmp(argv[i], "--uid")) uid = atol(argv[i + 1]);
    else if (!strcmp(argv[i], "--gid")) gid = atol(argv[i + 1]);
    else if (!strcmp(argv[i], "--groups")) ngroups = parse_groups(argv[i + 1], groups, 256);
    else if (!strcmp(argv[i], "--cwd")) cwd = argv[i + 1];
    else if (!strcmp(argv[i], "--hide") && nhid < 64) hid[nhid++].path = argv[i + 1];
    else if (!strcmp(argv[i], "--orphan-unlink") && norphan < 64) orphan[norphan++] = argv[i + 1];
    else break;
  }
  if (i >= argc - 1 || strcmp(argv[i], "--")) { fprintf(stderr, "usage: builder-run probe | builder-run [options] -- argv...\n"); return 2; }
  char **cmd = argv + i + 1;

  sigset_t set, old;
  sigemptyset(&set);
  int sigs[] = { SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 };
  for (i = 0; i < 6; i++) sigaddset(&set, sigs[i]);
  sigprocmask(SIG_BLOCK, &set, &old);
  pid_t parent = getppid();
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  prctl(PR_SET_PDEATHSIG, SIGUSR1);
  int orphaned = getppid() != parent;

  int kept = 0;
  for (i = 0; i < nhid; i++) {
    int r = hide(&hid[i]);
    if (r < 0) fprintf(stderr, "builder-run: cannot hide %s from the step (%s): it stays readable\n", hid[i].path, strerror(errno));
    if (r == 0) hid[kept++] = hid[i];
  }
  nhid = kept;

  pid_t child = orphaned ? -1 : fork();
  if (child == 0) {
    sigprocmask(SIG_SETMASK, &old, NULL);
    setsid();
    if (ngroups >= 0 && setgroups(ngroups, groups)) { perror("builder-run: setgroups"); _exit(126); }
    if (gid >= 0 && setgid((gid_t)gid)) { perror("builder-run: setgid"); _exit(126); }
    if (uid >= 0 && setuid((uid_t)uid)) { perror("builder-run: setuid"); _exit(126); }
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* after the id change, which clears it */
    if (getppid() == 1) _exit(137);
    if (enter_landlock()) { perror("builder-run: landlock"); _exit(126); }
    if (cwd && chdir(cwd)) { fprintf(stderr, "builder: cannot enter %s: %s\n", cwd, strerror(errno)); _exit(126); }
    execvp(cmd[0], cmd);
    int e = errno;
    if (e == ENOENT) fprintf(stderr, "builder: %s: command not found\n", cmd[0]);
    else fprintf(stderr, "builder: %s: permission denied\n", cmd[0]);
    _exit(e == ENOENT ? 127 : 126);
  }
  int status = 0, stop = 0;
  if (child < 0) stop = orphaned ? SIGUSR1 : SIGTERM;
  while (!stop) {
    siginfo_t si;
    int s = sigwaitinfo(&set, &si);
    if (s == SIGCHLD) {
      int st;
      pid_t r;
      while ((r = waitpid(-1, &st, WNOHANG)) > 0) if (r == child) { status = st; child = 0; }
      if (child == 0) break;
    } else if (s > 0) stop = s;
  }
  kill_all(child, &status);
  for (i = 0; i < nhid; i++) if (restore(&hid[i])) { fprintf(stderr, "builder-run: cannot put %s back: %s\n", hid[i].path, strerror(errno)); }
  if (stop == SIGUSR1) for (i = 0; i < norphan; i++) unlink(orphan[i]);
  if (stop) return 128 + (stop == SIGUSR1 ? SIGKILL : stop);
  if (WIFSIGNALED(status)) {
    signal(WTERMSIG(status), SIG_DFL);
    sigprocmask(SIG_SETMASK, &old, NULL);
    raise(WTERMSIG(status));
    return 128 + WTERMSIG(status);
  }
  return WEXITSTATUS(status);
}
