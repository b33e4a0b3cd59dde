/* xattr-get: reads one extended attribute of several files (Node has no xattr API).
 *
 * Usage: xattr-get NAME FILE...   e.g. xattr-get security.selinux /opt/kata/bin/qemu-system-x86_64
 * Prints one line per FILE, in order: "ok <hex of the value>" or "err <ERRNO name>" (ENODATA: no such attribute).
 * The value is hex so labels with odd bytes never break the line protocol. Symlinks are not followed (lgetxattr),
 * like `ls -Z` on the path itself. Exit 2 is a usage error. Built by scripts/build-helpers.mjs. */
#include <errno.h>
#include <stdio.h>
#include <sys/types.h>
#include <sys/xattr.h>

static const char *errno_name(int e) {
  switch (e) {
  case ENODATA: return "ENODATA";
  case ENOENT: return "ENOENT";
  case EACCES: return "EACCES";
  case EPERM: return "EPERM";
  case ENOTSUP: return "ENOTSUP";
  case ERANGE: return "ERANGE";
  case ENOTDIR: return "ENOTDIR";
  case ELOOP: return "ELOOP";
  default: return "EUNKNOWN";
  }
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: xattr-get NAME FILE...\n");
    return 2;
  }
  unsigned char value[4096];
  for (int i = 2; i < argc; i++) {
    ssize_t n = lgetxattr(argv[i], argv[1], value, sizeof value);
    if (n < 0) {
      printf("err %s\n", errno_name(errno));
      continue;
    }
    printf("ok ");
    for (ssize_t j = 0; j < n; j++) printf("%02x", value[j]);
    printf("\n");
  }
  return 0;
}
