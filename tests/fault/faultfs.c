/* faultfs.c — a fault-injecting file layer for the end-to-end tests, loaded
 * into iyagid with LD_PRELOAD (tests/e2e/diskfault.test.mjs).
 *
 * While the file named by $IYAGI_FAULT_FLAG exists, every write and sync of
 * a regular file fails with EIO: write(2), pwrite(2), writev(2), pwritev(2),
 * fsync(2), fdatasync(2). Sockets, pipes and terminals are untouched, so the
 * server keeps talking while its disk fails under it. When the flag is
 * removed, the disk works again. Nothing here is linked into iyagid.
 *
 * RocksDB's POSIX file layer calls these through the PLT, so interposing
 * them reaches every file it writes (WAL, SST, MANIFEST). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

static int failing(int fd)
{
    const char *flag = getenv("IYAGI_FAULT_FLAG");
    struct stat st;
    if (!flag || access(flag, F_OK) != 0) return 0;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return 0;
    errno = EIO;
    return 1;
}

#define NEXT(name) ((__typeof__(&name))dlsym(RTLD_NEXT, #name))

ssize_t write(int fd, const void *buf, size_t n)
{
    return failing(fd) ? -1 : NEXT(write)(fd, buf, n);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    return failing(fd) ? -1 : NEXT(pwrite)(fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t off)
{
    return failing(fd) ? -1 : NEXT(pwrite64)(fd, buf, n, off);
}

ssize_t writev(int fd, const struct iovec *iov, int n)
{
    return failing(fd) ? -1 : NEXT(writev)(fd, iov, n);
}

ssize_t pwritev(int fd, const struct iovec *iov, int n, off_t off)
{
    return failing(fd) ? -1 : NEXT(pwritev)(fd, iov, n, off);
}

int fsync(int fd)
{
    return failing(fd) ? -1 : NEXT(fsync)(fd);
}

int fdatasync(int fd)
{
    return failing(fd) ? -1 : NEXT(fdatasync)(fd);
}
