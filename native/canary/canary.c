/* The canary: the smallest program that proves a sandbox started and ran what it was given. It prints the
 * marker kata-sysextd waits for, then the kernel it ran under (a Kata sandbox runs its own guest kernel), and
 * exits 0. Built with `gcc -static` (scripts/build-canary.ts) so the image needs no libraries.
 * Tests build variants: -DCANARY_MARKER="..." prints another marker, -DCANARY_HANG never exits. */
#include <stdio.h>
#include <sys/utsname.h>
#include <unistd.h>

#ifndef CANARY_MARKER
#define CANARY_MARKER "kata-sysextd-canary: ok"
#endif

int main(void) {
  struct utsname u;
  const char *kernel = uname(&u) == 0 ? u.release : "unknown";
#ifdef CANARY_HANG
  for (;;) pause();
#endif
  printf("%s kernel=%s\n", CANARY_MARKER, kernel);
  return fflush(stdout) == 0 ? 0 : 1;
}
