/*
 * file.c - small POSIX file helpers for src/io: the write-side system calls with their
 * fault-injection switch, whole-file reads, atomic replacement (temporary file, fsync, rename,
 * fsync of the directory), paths and mkdir -p.
 */
#include "io/io.h"

#include <errno.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------- fault injection */
static atomic_long g_io_count;   /* write-side operations made */
static atomic_long g_io_fail_at; /* the one that fails (0: none) */
static atomic_int g_io_errno;

void recur_io_fail_after(long n, int err)
{
    atomic_store(&g_io_errno, err > 0 ? err : EIO);
    atomic_store(&g_io_fail_at, n > 0 ? atomic_load(&g_io_count) + n : 0);
}

long recur_io_op_count(void) { return atomic_load(&g_io_count); }

/* True (with errno set) when this operation is the one chosen to fail. */
static bool io_fault(void)
{
    long c = atomic_fetch_add(&g_io_count, 1) + 1;
    if (c != atomic_load(&g_io_fail_at)) return false;
    errno = atomic_load(&g_io_errno);
    return true;
}

int rc_sys_create(const char *path)
{
    if (io_fault()) return -1;
    return open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
}

ssize_t rc_sys_write(int fd, const void *buf, size_t n)
{
    if (io_fault()) {
        int err = errno;
        if (n > 1 && write(fd, buf, n / 2) > 0) {
            /* A short write now; the retry of the rest gets the error. */
            atomic_store(&g_io_fail_at, atomic_load(&g_io_count) + 1);
            atomic_store(&g_io_errno, err);
            return (ssize_t)(n / 2);
        }
        errno = err;
        return -1;
    }
    return write(fd, buf, n);
}

int rc_sys_fsync(int fd)
{
    if (io_fault()) return -1;
    return fsync(fd);
}

int rc_sys_rename(const char *from, const char *to)
{
    if (io_fault()) return -1;
    return rename(from, to);
}

int rc_sys_link(const char *from, const char *to)
{
    if (io_fault()) return -1;
    return link(from, to);
}

/* ---------------------------------------------------------------- files */
recur_code rc_read_file(const char *path, uint8_t **data, size_t *n, recur_status *st)
{
    *data = NULL;
    *n = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return rc_err(st, errno == ENOENT ? RECUR_NOT_FOUND
                          : errno == EACCES ? RECUR_PERMISSION_DENIED : RECUR_DATA_LOSS,
                      "Cannot open %s: %s", path, strerror(errno));
    struct stat sb;
    recur_code code = RECUR_OK;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        code = rc_err(st, RECUR_DATA_LOSS, "Cannot read %s: not a regular file", path);
        goto done;
    }
    size_t size = (size_t)sb.st_size;
    uint8_t *buf = rc_malloc(size + 1);
    if (!buf) {
        code = rc_oom(st);
        goto done;
    }
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            rc_free(buf);
            code = rc_err(st, RECUR_DATA_LOSS, "Cannot read %s: %s", path,
                          r < 0 ? strerror(errno) : "file shrank while reading");
            goto done;
        }
        got += (size_t)r;
    }
    buf[size] = 0;
    *data = buf;
    *n = size;
done:
    close(fd);
    return code;
}

bool rc_write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n) {
        ssize_t w = rc_sys_write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            if (w == 0) errno = EIO;
            return false;
        }
        p += w;
        n -= (size_t)w;
    }
    return true;
}

bool rc_fsync_parent(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    size_t n = slash ? (size_t)(slash - path) : 0;
    if (n >= sizeof dir) {
        errno = ENAMETOOLONG;
        return false;
    }
    memcpy(dir, path, n);
    strcpy(dir + n, !slash ? "." : n ? "" : "/");
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return false;
    bool ok = rc_sys_fsync(fd) == 0 || errno == EINVAL; /* some file systems cannot sync directories */
    close(fd);
    return ok;
}

recur_code rc_write_file_atomic(const char *path, const void *data, size_t n, recur_status *st)
{
    rc_strbuf tmp;
    rc_sb_init(&tmp);
    rc_sb_printf(&tmp, "%s.tmp%ld", path, (long)getpid());
    if (tmp.oom) return rc_oom(st);
    recur_code code = RECUR_OK;
    int fd = rc_sys_create(tmp.s);
    if (fd < 0) {
        code = rc_err(st, errno == EACCES || errno == EPERM || errno == EROFS ? RECUR_PERMISSION_DENIED : RECUR_DATA_LOSS, "Cannot create %s: %s", tmp.s, strerror(errno));
        goto done;
    }
    bool ok = rc_write_all(fd, data, n) && rc_sys_fsync(fd) == 0;
    int err = errno;
    ok = close(fd) == 0 && ok;
    if (!ok || rc_sys_rename(tmp.s, path) != 0) {
        code = rc_err(st, RECUR_DATA_LOSS, "Cannot write %s: %s", path, strerror(ok ? errno : err));
        unlink(tmp.s);
        goto done;
    }
    if (!rc_fsync_parent(path))
        code = rc_err(st, RECUR_DATA_LOSS, "Cannot sync the directory of %s: %s", path, strerror(errno));
done:
    rc_sb_free(&tmp);
    return code;
}

char *rc_path_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash) return rc_strdup(".");
    if (slash == path) return rc_strdup("/");
    return rc_strndup(path, (size_t)(slash - path));
}

const char *rc_path_base(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

char *rc_path_join(const char *dir, const char *name)
{
    if (name[0] == '/' || !dir[0]) return rc_strdup(name);
    rc_strbuf b;
    rc_sb_init(&b);
    rc_sb_puts(&b, dir);
    if (dir[strlen(dir) - 1] != '/') rc_sb_puts(&b, "/");
    rc_sb_puts(&b, name);
    return rc_sb_take(&b);
}

recur_code rc_mkdirs(const char *dir, recur_status *st)
{
    if (!dir[0]) return RECUR_OK;
    char *p = rc_strdup(dir);
    if (!p) return rc_oom(st);
    recur_code code = RECUR_OK;
    for (char *s = p + 1;; s++) {
        if (*s && *s != '/') continue;
        char c = *s;
        *s = 0;
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            code = rc_err(st, RECUR_PERMISSION_DENIED, "Cannot create directory %s: %s", p, strerror(errno));
            break;
        }
        *s = c;
        if (!c) break;
    }
    rc_free(p);
    return code;
}
