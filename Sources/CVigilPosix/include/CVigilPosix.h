#ifndef VIGIL_CPOSIX_H
#define VIGIL_CPOSIX_H
#include <stddef.h>
#include <sys/types.h>

/// Opens a new pseudo-terminal master (posix_openpt + grantpt + unlockpt) and writes the
/// slave's path into `name`. Returns the master fd, or -1 with errno set.
/// Glibc's declarations of these are not visible to Swift, so this target wraps them.
int vigil_open_pty_master(char *name, size_t name_length);

/// Peer credentials of a connected Unix socket (SO_PEERCRED). Returns 0 or -1 with errno.
int vigil_peer_credentials(int fd, pid_t *pid, uid_t *uid, gid_t *gid);

/// Supplementary groups of the peer of a connected Unix socket (SO_PEERGROUPS, Linux >= 4.13),
/// as the peer had them at connect(). Writes at most `capacity` gids to `groups` and the
/// total number into `*count`. Returns 0, or -1 with errno (ERANGE when `capacity` is too
/// small: `*count` then holds the number needed; ENOPROTOOPT on kernels older than 4.13).
int vigil_peer_groups(int fd, gid_t *groups, size_t capacity, size_t *count);

/// The kernel's clock discipline state (adjtimex(2) with modes 0: reads only, needs no
/// privilege). Returns 1 when synchronised (STA_UNSYNC clear), 0 when not, -1 with errno.
/// `*max_error_us` receives the kernel's maximum error estimate in microseconds.
int vigil_clock_synchronised(long *max_error_us);
#endif
