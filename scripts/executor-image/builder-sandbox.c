/* builder-sandbox: starts one sandboxed RUN step for builder (src/run/sandbox.ts) in one process (plus the pid
 * namespace's init and the watcher), doing what the sh + util-linux chain does in ~16 (docs/run.md):
 *   builder-sandbox ROOT RUNDIR FLAGS HOSTNAME UID GID GROUPS CWD -- ARGV..
 * ROOT: the build root (a real path); RUNDIR: the per-run dir runSandboxed filled (root.fstab, proc-dev.fstab,
 * runtime.fstab, the dev/ template); FLAGS: space-separated, the mount points the root has (proc dev sys resolv hosts)
 * and lo (--network=none: a net namespace with loopback up); GROUPS: comma-separated, may be empty.
 * The step's environment is our BUILDER_ENV_0, BUILDER_ENV_1.. in order ("K=V" each), nothing else of ours.
 * fd 0: a pipe builder holds and never writes (EOF: builder died, the step is killed); fd 3: the setup report, "ready"
 * once the root is pivoted and privileges dropped, else an error line and exit 125. After "ready", failures are the
 * step's: chdir/setuid exit 1, exec 126/127, as util-linux unshare's. Built by scripts/bundle.mjs into dist/bin. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <mntent.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

struct args {
  const char *root, *rundir, *flags, *hostname, *cwd;
  uid_t uid;
  gid_t gid;
  gid_t *groups;
  size_t ngroups;
  char **argv;
};

/* Docker's default capability set (moby oci/caps/defaults.go, DOCKER_CAPS in src/run/sandbox.ts). */
static const int DOCKER_CAPS[] = {
  CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FSETID, CAP_FOWNER, CAP_MKNOD, CAP_NET_RAW, CAP_SETGID, CAP_SETUID,
  CAP_SETFCAP, CAP_SETPCAP, CAP_NET_BIND_SERVICE, CAP_SYS_CHROOT, CAP_KILL, CAP_AUDIT_WRITE,
};

/* Setup failed: "detail: errno text" (when given) and the message builder shows, on fd 3, then exit 125. */
static void fail(const char *detail, int err, const char *msg) {
  char buf[8192];
  int n = detail ? snprintf(buf, sizeof buf, "%s: %s\n%s\n", detail, strerror(err), msg) : snprintf(buf, sizeof buf, "%s\n", msg);
  if (n > 0) {
    size_t len = (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1;
    if (write(3, buf, len) < 0) { /* builder is gone: nobody to tell */ }
  }
  _exit(125);
}

static int has_flag(const char *flags, const char *name) {
  size_t len = strlen(name);
  for (const char *p = flags; (p = strstr(p, name)) != NULL; p += len) {
    if ((p == flags || p[-1] == ' ') && (p[len] == ' ' || p[len] == 0)) return 1;
  }
  return 0;
}

/* a/b into buf, or the setup fails (never a truncated path) */
static void join(char *buf, size_t size, const char *a, const char *b, const char *msg) {
  int n = snprintf(buf, size, "%s/%s", a, b);
  if (n < 0 || (size_t)n >= size) fail(a, ENAMETOOLONG, msg);
}

static int parse_id(const char *s, unsigned long *out) {
  char *end;
  if (*s < '0' || *s > '9') return -1;
  errno = 0;
  unsigned long v = strtoul(s, &end, 10);
  if (errno || *end || v > 0xfffffffeUL) return -1;
  *out = v;
  return 0;
}

static int parse_args(int argc, char **argv, struct args *a) {
  unsigned long v;
  if (argc < 11 || strcmp(argv[9], "--") != 0) return -1;
  a->root = argv[1]; a->rundir = argv[2]; a->flags = argv[3]; a->hostname = argv[4]; a->cwd = argv[8];
  if (a->root[0] != '/' || a->rundir[0] != '/' || a->cwd[0] != '/') return -1;
  if (parse_id(argv[5], &v)) return -1;
  a->uid = (uid_t)v;
  if (parse_id(argv[6], &v)) return -1;
  a->gid = (gid_t)v;
  size_t n = argv[7][0] ? 1 : 0;
  for (const char *p = argv[7]; *p; p++) n += *p == ',';
  a->groups = calloc(n + 1, sizeof *a->groups);
  if (!a->groups) return -1;
  a->ngroups = 0;
  char *save = NULL, *list = strdup(argv[7]);
  if (!list) return -1;
  for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    if (a->ngroups >= n || parse_id(t, &v)) return -1;
    a->groups[a->ngroups++] = (gid_t)v;
  }
  free(list);
  a->argv = argv + 10;
  return 0;
}

/* Descriptors builder inherited without close-on-exec never reach the step (runc closes them too). */
static void close_from(int low) {
#ifdef SYS_close_range
  if (syscall(SYS_close_range, (unsigned)low, ~0U, 0) == 0) return;
#endif
  DIR *d = opendir("/proc/self/fd");
  if (!d) return;
  int keep = dirfd(d), fds[1024], n;
  do {
    n = 0;
    rewinddir(d);
    for (struct dirent *e; (e = readdir(d)) && n < 1024;) {
      int fd = atoi(e->d_name);
      if (fd >= low && fd != keep && e->d_name[0] != '.') fds[n++] = fd;
    }
    for (int i = 0; i < n; i++) close(fds[i]);
  } while (n == 1024);
  closedir(d);
}

/* One fstab line as mount(8) does it: known flags as MS_*, the rest as data; "bind" is a bind then a remount with exactly
 * the flags asked for (util-linux 2.38's mount -a), adding the source mount's own only where the kernel refuses to clear
 * a locked one (EPERM), as runc does. A bind with options this code does not know fails: none is ever dropped. */
static int mount_entry(const struct mntent *m) {
  static const struct { const char *name; unsigned long flag; } known[] = {
    { "ro", MS_RDONLY }, { "rw", 0 }, { "nosuid", MS_NOSUID }, { "nodev", MS_NODEV }, { "noexec", MS_NOEXEC },
    { "strictatime", MS_STRICTATIME }, { "bind", MS_BIND }, { "defaults", 0 },
  };
  char opts[4096], data[4096] = "", *save = NULL;
  unsigned long flags = 0;
  size_t used = 0;
  if (snprintf(opts, sizeof opts, "%s", m->mnt_opts) >= (int)sizeof opts) return errno = E2BIG, -1;
  for (char *t = strtok_r(opts, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    size_t i = 0;
    while (i < sizeof known / sizeof known[0] && strcmp(t, known[i].name) != 0) i++;
    if (i < sizeof known / sizeof known[0]) { flags |= known[i].flag; continue; }
    int n = snprintf(data + used, sizeof data - used, "%s%s", used ? "," : "", t);
    if (n < 0 || (size_t)n >= sizeof data - used) return errno = E2BIG, -1;
    used += (size_t)n;
  }
  if (!(flags & MS_BIND)) return mount(m->mnt_fsname, m->mnt_dir, m->mnt_type, flags, used ? data : NULL);
  if (used) return errno = EINVAL, -1;
  if (mount(m->mnt_fsname, m->mnt_dir, NULL, MS_BIND, NULL)) return -1;
  flags &= ~MS_BIND;
  if (!flags) return 0;
  if (mount(NULL, m->mnt_dir, NULL, MS_REMOUNT | MS_BIND | flags, NULL) == 0) return 0;
  if (errno != EPERM) return -1;
  struct statvfs sv;
  if (statvfs(m->mnt_dir, &sv)) return -1;
  static const struct { unsigned long st, ms; } keep[] = {
    { ST_RDONLY, MS_RDONLY }, { ST_NOSUID, MS_NOSUID }, { ST_NODEV, MS_NODEV }, { ST_NOEXEC, MS_NOEXEC },
    { ST_NOATIME, MS_NOATIME }, { ST_NODIRATIME, MS_NODIRATIME }, { ST_RELATIME, MS_RELATIME },
  };
  for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++) if (sv.f_flag & keep[i].st) flags |= keep[i].ms;
  return mount(NULL, m->mnt_dir, NULL, MS_REMOUNT | MS_BIND | flags, NULL);
}

/* Every line of RUNDIR/name in order; the first failure ends the setup with msg. */
static void mount_table(const struct args *a, const char *name, const char *msg) {
  char file[PATH_MAX];
  join(file, sizeof file, a->rundir, name, msg);
  FILE *f = setmntent(file, "re");
  struct stat st;
  if (!f || fstat(fileno(f), &st)) fail(file, errno, msg);
  /* getmntent(3) keeps 4095 bytes of a line and parses them, dropping the rest (",nodev" of a long RUN --mount
   * target): a buffer the size of the whole file holds any line, and a read that stops before EOF fails */
  if (st.st_size > (1 << 24)) fail(file, EFBIG, msg);
  size_t cap = (size_t)st.st_size + 2;
  char *buf = malloc(cap);
  if (!buf) fail(file, ENOMEM, msg);
  struct mntent ent;
  for (struct mntent *m; (m = getmntent_r(f, &ent, buf, (int)cap)) != NULL;) {
    if (mount_entry(m)) {
      int err = errno;
      char detail[PATH_MAX + 16];
      snprintf(detail, sizeof detail, "mount %s", m->mnt_dir);
      fail(detail, err, msg);
    }
  }
  if (ferror(f) || !feof(f)) fail(file, EIO, msg);
  free(buf);
  endmntent(f);
}

/* The /dev template (empty files as bind targets, symlinks, dirs) copied into the fresh /dev tmpfs, as cp -a would. */
static int copy_dev(const char *tpl, const char *dst) {
  DIR *d = opendir(tpl);
  int to = open(dst, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (!d || to < 0) return -1;
  for (struct dirent *e; (e = readdir(d)) != NULL;) {
    struct stat st;
    char link[PATH_MAX];
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW)) return -1;
    if (S_ISDIR(st.st_mode)) {
      if (mkdirat(to, e->d_name, 0700) || fchmodat(to, e->d_name, st.st_mode & 07777, 0)) return -1;
    } else if (S_ISLNK(st.st_mode)) {
      ssize_t n = readlinkat(dirfd(d), e->d_name, link, sizeof link - 1);
      if (n < 0) return -1;
      link[n] = 0;
      if (symlinkat(link, to, e->d_name)) return -1;
    } else if (S_ISREG(st.st_mode)) {
      int fd = openat(to, e->d_name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
      if (fd < 0) return -1;
      int bad = fchmod(fd, st.st_mode & 07777);
      close(fd);
      if (bad) return -1;
    }
  }
  closedir(d);
  close(to);
  return 0;
}

static void lo_up(void) {
  struct ifreq ifr;
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return;
  memset(&ifr, 0, sizeof ifr);
  memcpy(ifr.ifr_name, "lo", 3);
  if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0) {
    ifr.ifr_flags |= IFF_UP;
    if (ioctl(s, SIOCSIFFLAGS, &ifr)) { /* as `ip link set lo up 2>/dev/null`: the step just has no loopback */ }
  }
  close(s);
}

/* Docker's bounding set, no inheritable or ambient caps, gid and groups; no no_new_privs (as in Docker). */
static void drop_privileges(const struct args *a) {
  const char *msg = "cannot drop privileges";
  unsigned long long keep = 0;
  for (size_t i = 0; i < sizeof DOCKER_CAPS / sizeof DOCKER_CAPS[0]; i++) keep |= 1ULL << DOCKER_CAPS[i];
  for (int c = 0; c < 64 && prctl(PR_CAPBSET_READ, c, 0, 0, 0) >= 0; c++) {
    if (!(keep & (1ULL << c)) && prctl(PR_CAPBSET_DROP, c, 0, 0, 0)) fail("drop from the bounding set", errno, msg);
  }
  struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
  struct __user_cap_data_struct d[2];
  if (syscall(SYS_capget, &h, d)) fail("capget", errno, msg);
  d[0].inheritable = d[1].inheritable = 0;
  if (syscall(SYS_capset, &h, d)) fail("capset", errno, msg);
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) && errno != EINVAL) fail("clear ambient caps", errno, msg);
  if (setgroups(a->ngroups, a->groups)) fail("setgroups", errno, msg);
  if (setresgid(a->gid, a->gid, a->gid)) fail("setresgid", errno, msg);
}

/* The step's environment from BUILDER_ENV_0..n-1 (all of them, none missing), in that order. */
static char **step_env(void) {
  size_t n = 0;
  for (char **e = environ; *e; e++) n += strncmp(*e, "BUILDER_ENV_", 12) == 0;
  char **out = calloc(n + 1, sizeof *out);
  if (!out) fail(NULL, 0, "out of memory");
  for (char **e = environ; *e; e++) {
    if (strncmp(*e, "BUILDER_ENV_", 12) != 0) continue;
    char *end;
    unsigned long i = strtoul(*e + 12, &end, 10);
    if (*end != '=' || end == *e + 12 || i >= n || out[i]) fail(NULL, 0, "invalid step environment");
    out[i] = end + 1;
  }
  return out;
}

/* pid 1 of the new namespaces: mounts, /dev, hostname, pivot_root, privileges, "ready", then the step. */
static void run_step(const struct args *a) {
  char path[PATH_MAX];
  char **env = step_env();
  if (sethostname(a->hostname, strlen(a->hostname))) { /* as the chain's `echo >/proc/sys/kernel/hostname 2>/dev/null` */ }
  mount_table(a, "root.fstab", "cannot bind-mount the build root or the host tool view");
  mount_table(a, "proc-dev.fstab", "cannot mount /proc or /dev");
  if (has_flag(a->flags, "dev")) {
    char tpl[PATH_MAX];
    join(tpl, sizeof tpl, a->rundir, "dev", "cannot populate /dev");
    join(path, sizeof path, a->root, "dev", "cannot populate /dev");
    if (copy_dev(tpl, path)) fail(path, errno, "cannot populate /dev");
  }
  if (has_flag(a->flags, "sys")) {
    join(path, sizeof path, a->root, "sys", "cannot mount /sys");
    char sys[] = "/sys", none[] = "none", opts[] = "bind,ro,nosuid,nodev,noexec";
    struct mntent bind = { sys, path, none, opts, 0, 0 };
    if (mount("sysfs", path, "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) && mount_entry(&bind)) fail(path, errno, "cannot mount /sys");
  }
  mount_table(a, "runtime.fstab", "cannot provide /dev, /sys, /etc/resolv.conf, /etc/hosts or the RUN --mount targets");
  if (has_flag(a->flags, "lo")) lo_up();
  /* The old root lands on top of "." and is detached at once: nothing of the host stays reachable. */
  if (chdir(a->root)) fail(a->root, errno, "cannot enter the build root after pivot_root");
  if (syscall(SYS_pivot_root, ".", ".")) fail("pivot_root", errno, "pivot_root into the build root failed");
  if (umount2(".", MNT_DETACH)) fail("umount", errno, "cannot detach the host root");
  if (chdir("/")) fail("/", errno, "cannot enter the build root after pivot_root");
  drop_privileges(a);
  if (write(3, "ready\n", 6) != 6) _exit(125);
  close(3);
  if (chroot(".")) { fprintf(stderr, "builder-sandbox: cannot change root directory to '.': %s\n", strerror(errno)); _exit(1); }
  if (chdir(a->cwd)) { fprintf(stderr, "builder-sandbox: cannot change directory to %s: %s\n", a->cwd, strerror(errno)); _exit(1); }
  if (setresuid(a->uid, a->uid, a->uid)) { fprintf(stderr, "builder-sandbox: setuid failed: %s\n", strerror(errno)); _exit(1); }
  environ = env;
  execvp(a->argv[0], a->argv);
  int err = errno;
  fprintf(stderr, "builder-sandbox: failed to execute %s: %s\n", a->argv[0], strerror(err));
  _exit(err == ENOENT ? 127 : 126);
}

/* Forked before the namespaces, dies with us (parent-death signal: it never changes credentials, so it keeps it). A
 * SIGKILL of builder closes its end of fd 0: then the step's pid 1 is killed (its death empties the namespace; its own
 * parent-death signal is gone once it drops to a non-root uid or gid) and so are we. */
static void watch(pid_t parent, int pid_in, int pid_out) {
  prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  if (getppid() != parent) _exit(0);
  close(pid_out);
  close(1);
  close(2);
  close(3);
  char b;
  ssize_t r;
  while ((r = read(0, &b, 1)) < 0 && errno == EINTR) {}
  if (r > 0) _exit(0);
  pid_t step = 0;
  while ((r = read(pid_in, &step, sizeof step)) < 0 && errno == EINTR) {}
  if (getppid() != parent) _exit(0);
  if (r == (ssize_t)sizeof step && step > 0) kill(step, SIGKILL);
  kill(parent, SIGKILL);
  _exit(0);
}

/* The step's status as ours, as util-linux unshare --fork reports it: its exit code, or death by the same signal. */
static int exit_like(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  int sig = WTERMSIG(status);
  struct rlimit none = { 0, 0 };
  sigset_t set;
  setrlimit(RLIMIT_CORE, &none);
  signal(sig, SIG_DFL);
  sigemptyset(&set);
  sigaddset(&set, sig);
  sigprocmask(SIG_UNBLOCK, &set, NULL);
  kill(getpid(), sig);
  return 128 + sig;
}

int main(int argc, char **argv) {
  struct args a;
  if (parse_args(argc, argv, &a)) fail(NULL, 0, "builder-sandbox: invalid arguments");
  close_from(4);
  int pids[2];
  if (pipe2(pids, O_CLOEXEC)) fail("pipe", errno, "cannot start the builder-death watcher");
  pid_t self = getpid();
  pid_t w = fork();
  if (w < 0) fail("fork", errno, "cannot start the builder-death watcher");
  if (w == 0) watch(self, pids[0], pids[1]);
  close(pids[0]);
  int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null < 0 || dup2(null, 0) < 0) fail("/dev/null", errno, "cannot start the sandbox");
  close(null);
  /* Failures here leave fd 3 silent, as the chain's outer unshare did: builder reports "cannot create namespaces". */
  int ns = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | (has_flag(a.flags, "lo") ? CLONE_NEWNET : 0);
  if (unshare(ns)) { fprintf(stderr, "builder-sandbox: unshare failed: %s\n", strerror(errno)); return 1; }
  if (mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL)) { fprintf(stderr, "builder-sandbox: cannot change root filesystem propagation: %s\n", strerror(errno)); return 1; }
  sigset_t stop, old;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  sigprocmask(SIG_BLOCK, &stop, &old);
  int alive[2];
  if (pipe2(alive, O_CLOEXEC)) { fprintf(stderr, "builder-sandbox: pipe failed: %s\n", strerror(errno)); return 1; }
  pid_t step = fork();
  if (step < 0) { fprintf(stderr, "builder-sandbox: fork failed: %s\n", strerror(errno)); return 1; }
  if (step == 0) {
    close(pids[1]);
    close(alive[1]);
    sigprocmask(SIG_SETMASK, &old, NULL);
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    /* killed between the fork and the line above, the parent's end is closed (its pid is not visible from here) */
    struct pollfd gone = { alive[0], POLLIN, 0 };
    if (poll(&gone, 1, 0) != 0) _exit(125);
    close(alive[0]);
    run_step(&a);
  }
  close(alive[0]);
  signal(SIGPIPE, SIG_IGN); /* a watcher already gone must not take us with it */
  if (write(pids[1], &step, sizeof step) < 0) { /* the watcher died with its parent's end: nothing to tell */ }
  close(pids[1]);
  close(3);
  /* the step's pid stays ours (not reaped) until the watcher, which may kill it, is gone: it never hits a reused pid */
  siginfo_t si;
  while (waitid(P_PID, (id_t)step, &si, WEXITED | WNOWAIT) < 0) if (errno != EINTR) return 1;
  kill(w, SIGKILL);
  while (waitpid(w, NULL, 0) < 0 && errno == EINTR) {}
  int status;
  while (waitpid(step, &status, 0) < 0) if (errno != EINTR) return 1;
  return exit_like(status);
}
