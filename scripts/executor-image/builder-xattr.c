/* builder-xattr: read or set extended attributes without following symlinks, for builder in place (no python3 there).
 *   builder-xattr get   stdin: path\0 ...            stdout: path\0name\0hexvalue\0 per attribute
 *   builder-xattr set   stdin: path\0name\0hex\0 ... stdout: path\0name\0reason\0 per failure
 * Built static by scripts/executor-image/build.sh; src/rootfs/xattr.ts finds it on PATH. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

static char *read_all(size_t *len) {
  size_t cap = 1 << 16, n = 0, r;
  char *buf = malloc(cap);
  while (buf && (r = fread(buf + n, 1, cap - n, stdin)) > 0) {
    n += r;
    if (n == cap) buf = realloc(buf, cap *= 2);
  }
  *len = n;
  return buf;
}

static void out(const char *s, size_t n) { fwrite(s, 1, n, stdout); fputc(0, stdout); }

static void hex(const unsigned char *v, ssize_t n) {
  static const char d[] = "0123456789abcdef";
  for (ssize_t i = 0; i < n; i++) { fputc(d[v[i] >> 4], stdout); fputc(d[v[i] & 15], stdout); }
  fputc(0, stdout);
}

static int unhex(const char *s, unsigned char *v) {
  size_t n = strlen(s);
  if (n % 2) return -1;
  for (size_t i = 0; i < n / 2; i++) {
    unsigned int b;
    if (sscanf(s + 2 * i, "%2x", &b) != 1) return -1;
    v[i] = (unsigned char)b;
  }
  return (int)(n / 2);
}

int main(int argc, char **argv) {
  if (argc != 2 || (strcmp(argv[1], "get") && strcmp(argv[1], "set"))) {
    fprintf(stderr, "usage: builder-xattr get|set < records\n");
    return 2;
  }
  size_t len;
  char *in = read_all(&len), *p = in, *end = in + len;
  if (!in) return 1;
  static char names[65536];
  static unsigned char val[65536];
  if (!strcmp(argv[1], "get")) {
    for (; p < end; p += strlen(p) + 1) {
      ssize_t n = llistxattr(p, names, sizeof names);
      for (ssize_t i = 0; i < n; i += (ssize_t)strlen(names + i) + 1) {
        ssize_t vn = lgetxattr(p, names + i, val, sizeof val);
        if (vn < 0) continue;
        out(p, strlen(p)); out(names + i, strlen(names + i)); hex(val, vn);
      }
    }
  } else {
    while (p < end) {
      char *path = p, *name = path + strlen(path) + 1, *hv = name < end ? name + strlen(name) + 1 : end;
      if (hv >= end) break;
      p = hv + strlen(hv) + 1;
      int n = unhex(hv, val);
      const char *why = n < 0 ? "bad value" : lsetxattr(path, name, val, (size_t)n, 0) ? strerror(errno) : NULL;
      if (why) { out(path, strlen(path)); out(name, strlen(name)); out(why, strlen(why)); }
    }
  }
  return fflush(stdout) ? 1 : 0;
}
