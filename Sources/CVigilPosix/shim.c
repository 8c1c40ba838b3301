#define _GNU_SOURCE
#include "CVigilPosix.h"
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <errno.h>
#include <sys/timex.h>

int vigil_open_pty_master(char *name, size_t name_length) {
    int fd = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) return -1;
    if (grantpt(fd) != 0 || unlockpt(fd) != 0 || ptsname_r(fd, name, name_length) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

int vigil_peer_credentials(int fd, pid_t *pid, uid_t *uid, gid_t *gid) {
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return -1;
    *pid = cred.pid;
    *uid = cred.uid;
    *gid = cred.gid;
    return 0;
}

#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59
#endif

int vigil_peer_groups(int fd, gid_t *groups, size_t capacity, size_t *count) {
    socklen_t len = (socklen_t)(capacity * sizeof(gid_t));
    int rc;
    do {
        rc = getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len);
    } while (rc != 0 && errno == EINTR);
    *count = len / sizeof(gid_t);
    return rc;
}

int vigil_clock_synchronised(long *max_error_us) {
    struct timex t;
    memset(&t, 0, sizeof(t));
    int rc = adjtimex(&t);
    if (rc < 0) return -1;
    *max_error_us = t.maxerror;
    return (rc == TIME_ERROR || (t.status & STA_UNSYNC)) ? 0 : 1;
}
