/*
 * mill-netif IFACE ADDR/PREFIX MTU
 *
 * Gives a network interface its IPv4 address and netmask, sets its MTU and brings it up, with
 * plain ioctls, so Mill needs neither iproute2 nor netlink from JavaScript (which cannot open
 * netlink sockets). Repeating a call is harmless. Owns nothing else: no routes, no other links.
 *
 * Exit codes: 0 done, 1 a system call failed, 2 bad arguments. Errors are one line on stderr.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *iface;

static int usage(const char *why) {
  fprintf(stderr, "mill-netif: %s\nusage: mill-netif IFACE ADDR/PREFIX MTU (e.g. mill-netif mill0 10.99.0.1/16 1420)\n", why);
  return 2;
}

static int fail(const char *step) {
  int err = errno;
  const char *hint = "";
  if (err == EPERM || err == EACCES) hint = " (needs CAP_NET_ADMIN)";
  else if (err == ENODEV || err == ENXIO) hint = " (no such interface in this network namespace)";
  fprintf(stderr, "mill-netif: %s on %s failed: %s%s\n", step, iface, strerror(err), hint);
  return 1;
}

static long parse_number(const char *text, long min, long max) {
  char *end;
  errno = 0;
  long value = strtol(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || value < min || value > max) return -1;
  return value;
}

static void set_ipv4(struct ifreq *request, in_addr_t address) {
  struct sockaddr_in sin;
  memset(&sin, 0, sizeof sin);
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = address;
  memcpy(&request->ifr_addr, &sin, sizeof sin);
}

int main(int argc, char **argv) {
  /* `mill doctor` runs this to check the embedded helper executes on the host. */
  if (argc == 2 && strcmp(argv[1], "--version") == 0) {
    puts("mill-netif 1");
    return 0;
  }
  if (argc != 4) return usage("expected 3 arguments");
  iface = argv[1];
  if (strlen(iface) == 0 || strlen(iface) >= IFNAMSIZ) return usage("IFACE must have 1 to 15 characters");

  char address_text[INET_ADDRSTRLEN + 4];
  if (strlen(argv[2]) >= sizeof address_text) return usage("ADDR/PREFIX is too long");
  strcpy(address_text, argv[2]);
  char *slash = strchr(address_text, '/');
  if (slash == NULL) return usage("ADDR/PREFIX needs a /PREFIX");
  *slash = '\0';
  struct in_addr address;
  if (inet_pton(AF_INET, address_text, &address) != 1) return usage("ADDR is not an IPv4 address");
  long prefix = parse_number(slash + 1, 1, 32);
  if (prefix < 0) return usage("PREFIX must be 1-32");
  long mtu = parse_number(argv[3], 68, 65535);
  if (mtu < 0) return usage("MTU must be 68-65535");

  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail("socket(AF_INET)");

  struct ifreq request;
  memset(&request, 0, sizeof request);
  strncpy(request.ifr_name, iface, IFNAMSIZ - 1);

  set_ipv4(&request, address.s_addr);
  if (ioctl(fd, SIOCSIFADDR, &request) < 0 && errno != EEXIST) return fail("SIOCSIFADDR");

  set_ipv4(&request, htonl(prefix == 32 ? 0xffffffffu : ~(0xffffffffu >> prefix)));
  if (ioctl(fd, SIOCSIFNETMASK, &request) < 0) return fail("SIOCSIFNETMASK");

  request.ifr_mtu = (int)mtu;
  if (ioctl(fd, SIOCSIFMTU, &request) < 0) return fail("SIOCSIFMTU");

  if (ioctl(fd, SIOCGIFFLAGS, &request) < 0) return fail("SIOCGIFFLAGS");
  if ((request.ifr_flags & IFF_UP) == 0) {
    request.ifr_flags |= IFF_UP;
    if (ioctl(fd, SIOCSIFFLAGS, &request) < 0) return fail("SIOCSIFFLAGS");
  }
  close(fd);
  return 0;
}
