/* kvm-probe: answers the one question CPU flags cannot: can this process actually create a KVM VM?
 *
 * Usage: kvm-probe [DEVICE]   (DEVICE defaults to /dev/kvm)
 * Prints exactly one JSON line on stdout and exits 0 whenever it could run the probe:
 *   {"open":"ok","chardev":true,"apiVersion":12,"createVm":"ok"}
 * Each step is "ok" or the errno name of its failure (EACCES, EBUSY, ...); later steps are null when an
 * earlier one failed. EBUSY from KVM_CREATE_VM means another hypervisor holds VT-x/AMD-V.
 * Exit 2 is a usage error. Node has no ioctl(2), hence this helper (built by scripts/build-helpers.mjs). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#define KVMIO 0xAE
#define KVM_GET_API_VERSION _IO(KVMIO, 0x00)
#define KVM_CREATE_VM _IO(KVMIO, 0x01)

static const char *errno_name(int e) {
  switch (e) {
  case EACCES: return "EACCES";
  case EPERM: return "EPERM";
  case ENOENT: return "ENOENT";
  case ENXIO: return "ENXIO";
  case ENODEV: return "ENODEV";
  case EBUSY: return "EBUSY";
  case EINVAL: return "EINVAL";
  case ENOMEM: return "ENOMEM";
  case ENOTTY: return "ENOTTY";
  case EMFILE: return "EMFILE";
  case EROFS: return "EROFS";
  case EOPNOTSUPP: return "EOPNOTSUPP";
  case EINTR: return "EINTR";
  default: return "EUNKNOWN";
  }
}

int main(int argc, char **argv) {
  if (argc > 2) {
    fprintf(stderr, "usage: kvm-probe [DEVICE]\n");
    return 2;
  }
  const char *device = argc == 2 ? argv[1] : "/dev/kvm";

  int fd = open(device, O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    printf("{\"open\":\"%s\",\"chardev\":null,\"apiVersion\":null,\"createVm\":null}\n", errno_name(errno));
    return 0;
  }
  struct stat st;
  int chardev = fstat(fd, &st) == 0 && S_ISCHR(st.st_mode);
  if (!chardev) {
    /* A regular file (a fixture tree) must not be ioctl'ed as if it were KVM. */
    printf("{\"open\":\"ok\",\"chardev\":false,\"apiVersion\":null,\"createVm\":null}\n");
    close(fd);
    return 0;
  }
  int api = ioctl(fd, KVM_GET_API_VERSION, 0);
  if (api < 0) {
    printf("{\"open\":\"ok\",\"chardev\":true,\"apiVersion\":\"%s\",\"createVm\":null}\n", errno_name(errno));
    close(fd);
    return 0;
  }
  int vm = ioctl(fd, KVM_CREATE_VM, 0);
  if (vm < 0) {
    printf("{\"open\":\"ok\",\"chardev\":true,\"apiVersion\":%d,\"createVm\":\"%s\"}\n", api, errno_name(errno));
  } else {
    printf("{\"open\":\"ok\",\"chardev\":true,\"apiVersion\":%d,\"createVm\":\"ok\"}\n", api);
    close(vm);
  }
  close(fd);
  return 0;
}
