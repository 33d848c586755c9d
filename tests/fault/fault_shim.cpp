// tests/fault/fault_shim.cpp: an LD_PRELOAD library that makes a process's disk calls fail
// on cue, for the storage-fault tests (tests/integration/test_storage_faults.py) and the
// key ring crash test (test_keyring_crash.py).
//
//   LD_PRELOAD=libpostern_fault_shim.so POSTERN_FAULT_DIR=<dir> POSTERN_FAULT_CONTROL=<file> postern serve ...
//
// The first word of the control file says what happens to files under POSTERN_FAULT_DIR,
// read again at every call, so a test switches faults on and off while the process runs:
//   (missing, empty, "none")  nothing
//   "eio"       fsync/fdatasync fail with EIO (the write(2) before them succeeds: the data
//               sits in the page cache, as when a disk fails under a sync)
//   "enospc"    fsync/fdatasync and write fail with ENOSPC (a full disk)
//   "eio-open"  as "eio", and opening a file there fails with EIO too, except the store's
//               disk check ("postern-disk-check"): a disk that works, a database that
//               cannot be opened
//   "pause-rename"  the first rename() onto a file there creates <control>.paused and
//               waits until the process is killed: a crash at the worst moment of a file
//               replacement (files/replace.hpp), after the new content is synced
// Each fault injected appends one line to <control>.log ("fdatasync EIO <path>").
// Only the test build has this library; nothing of it is in the product.
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

namespace {

enum class fault { none, eio, enospc, eio_open, pause_rename };

fault current_fault() {
    const char* control = std::getenv("POSTERN_FAULT_CONTROL");
    if (!control) return fault::none;
    // Raw syscalls: this runs inside our own open() hook.
    const int fd = static_cast<int>(::syscall(SYS_openat, AT_FDCWD, control, O_RDONLY | O_CLOEXEC));
    if (fd < 0) return fault::none;
    char word[32] = {};
    const auto n = ::syscall(SYS_read, fd, word, sizeof word - 1);
    ::syscall(SYS_close, fd);
    if (n <= 0) return fault::none;
    if (std::strncmp(word, "eio-open", 8) == 0) return fault::eio_open;
    if (std::strncmp(word, "pause-rename", 12) == 0) return fault::pause_rename;
    if (std::strncmp(word, "eio", 3) == 0) return fault::eio;
    if (std::strncmp(word, "enospc", 6) == 0) return fault::enospc;
    return fault::none;
}

bool under_fault_dir(const char* path) {
    const char* dir = std::getenv("POSTERN_FAULT_DIR");
    if (!dir || !*dir || !path) return false;
    const auto len = std::strlen(dir);
    return std::strncmp(path, dir, len) == 0 && (path[len] == '/' || path[len] == '\0');
}

bool fd_under_fault_dir(int fd, char* path, std::size_t size) {
    char link[64];
    std::snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    const auto n = ::readlink(link, path, size - 1);
    if (n <= 0) return false;
    path[n] = '\0';
    return under_fault_dir(path);
}

void note(const char* call, const char* error, const char* path) {
    const char* control = std::getenv("POSTERN_FAULT_CONTROL");
    if (!control) return;
    char log_path[4096];
    std::snprintf(log_path, sizeof log_path, "%s.log", control);
    const int fd = static_cast<int>(
        ::syscall(SYS_openat, AT_FDCWD, log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
    if (fd < 0) return;
    char line[4300];
    const int len = std::snprintf(line, sizeof line, "%s %s %s\n", call, error, path);
    if (len > 0) ::syscall(SYS_write, fd, line, static_cast<std::size_t>(len));
    ::syscall(SYS_close, fd);
}

template <class Fn>
Fn next(const char* name) {
    return reinterpret_cast<Fn>(::dlsym(RTLD_NEXT, name));
}

// The sync calls: EIO or ENOSPC for files under the directory while a fault is on.
bool spared(fault f, const char* path) {
    if (f != fault::eio_open) return false;
    const char* base = std::strrchr(path, '/');
    return base && std::strcmp(base + 1, "postern-disk-check") == 0;
}

int failing_sync(int fd, const char* call) {
    const auto f = current_fault();
    if (f == fault::none || f == fault::pause_rename) return 0;
    char path[4096];
    if (!fd_under_fault_dir(fd, path, sizeof path) || spared(f, path)) return 0;
    const bool full = f == fault::enospc;
    note(call, full ? "ENOSPC" : "EIO", path);
    errno = full ? ENOSPC : EIO;
    return -1;
}

bool failing_open(const char* path) {
    if (!under_fault_dir(path) || current_fault() != fault::eio_open || spared(fault::eio_open, path)) return false;
    note("open", "EIO", path);
    errno = EIO;
    return true;
}

}  // namespace

extern "C" {

int fsync(int fd) {
    if (failing_sync(fd, "fsync") != 0) return -1;
    static auto real = next<int (*)(int)>("fsync");
    return real(fd);
}

int fdatasync(int fd) {
    if (failing_sync(fd, "fdatasync") != 0) return -1;
    static auto real = next<int (*)(int)>("fdatasync");
    return real(fd);
}

ssize_t write(int fd, const void* buf, size_t count) {
    static auto real = next<ssize_t (*)(int, const void*, size_t)>("write");
    if (fd > 2 && current_fault() == fault::enospc) {
        char path[4096];
        if (fd_under_fault_dir(fd, path, sizeof path)) {
            note("write", "ENOSPC", path);
            errno = ENOSPC;
            return -1;
        }
    }
    return real(fd, buf, count);
}

// open(2) and friends take a mode only with O_CREAT or O_TMPFILE.
#define POSTERN_MODE_ARGUMENT(flags)                                      \
    mode_t mode = 0;                                                      \
    if ((flags) & (O_CREAT | O_TMPFILE)) {                                \
        va_list args;                                                     \
        va_start(args, flags);                                            \
        mode = static_cast<mode_t>(va_arg(args, int));                    \
        va_end(args);                                                     \
    }

int rename(const char* from, const char* to) {
    if (current_fault() == fault::pause_rename && under_fault_dir(to)) {
        note("rename", "PAUSED", to);
        char marker[4096];
        std::snprintf(marker, sizeof marker, "%s.paused", std::getenv("POSTERN_FAULT_CONTROL"));
        const int fd = static_cast<int>(::syscall(SYS_openat, AT_FDCWD, marker, O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
        if (fd >= 0) ::syscall(SYS_close, fd);
        for (;;) ::pause();
    }
    static auto real = next<int (*)(const char*, const char*)>("rename");
    return real(from, to);
}

int open(const char* path, int flags, ...) {
    POSTERN_MODE_ARGUMENT(flags)
    if (failing_open(path)) return -1;
    static auto real = next<int (*)(const char*, int, ...)>("open");
    return real(path, flags, mode);
}

int open64(const char* path, int flags, ...) {
    POSTERN_MODE_ARGUMENT(flags)
    if (failing_open(path)) return -1;
    static auto real = next<int (*)(const char*, int, ...)>("open64");
    return real(path, flags, mode);
}

int openat(int dirfd, const char* path, int flags, ...) {
    POSTERN_MODE_ARGUMENT(flags)
    if (failing_open(path)) return -1;
    static auto real = next<int (*)(int, const char*, int, ...)>("openat");
    return real(dirfd, path, flags, mode);
}

}  // extern "C"
