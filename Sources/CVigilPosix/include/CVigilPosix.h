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
#endif
