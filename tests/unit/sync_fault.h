/* sync_fault.h - disk errors on demand for the tests of the POSIX port:
 * the test executables that include this are linked with
 * -Wl,--wrap=fdatasync,--wrap=fsync (posix.cmake), so every sync of the
 * port comes here first. Include it in one file of an executable. */
#ifndef TCPOTA_TEST_SYNC_FAULT_H
#define TCPOTA_TEST_SYNC_FAULT_H

#include <errno.h>
#include <unistd.h>

/* The fdatasync() of the file descriptor fail_sync_fd fails as a disk
 * error would; every fdatasync() while fail_all_fdatasync is set (a file
 * whose descriptor the test cannot know beforehand). */
int fail_sync_fd = -1;
int fail_all_fdatasync;

int __real_fdatasync(int fd);
int __wrap_fdatasync(int fd);

int __wrap_fdatasync(int fd)
{
    if (fd == fail_sync_fd || fail_all_fdatasync) {
        errno = EIO;
        return -1;
    }
    return __real_fdatasync(fd);
}

/* And every fsync() (the port's only one syncs a directory after a
 * rename), which fails while fail_fsync is set; or only the next one when
 * fail_next_fsync is set (it clears itself). */
int fail_fsync;
int fail_next_fsync;

int __real_fsync(int fd);
int __wrap_fsync(int fd);

int __wrap_fsync(int fd)
{
    if (fail_fsync || fail_next_fsync) {
        fail_next_fsync = 0;
        errno = EIO;
        return -1;
    }
    return __real_fsync(fd);
}

#endif
