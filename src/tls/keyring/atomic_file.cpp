#include "tls/keyring/atomic_file.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include "tls/error.hpp"
#include "tls/openssl_ptr.hpp"

namespace postern::tls {

namespace {

[[noreturn]] void fail(const std::filesystem::path& file, const char* what, int err) {
    throw tls_error(file.string() + ": " + what + ": " + std::strerror(err));
}

struct fd_guard {
    int fd;
    ~fd_guard() {
        if (fd >= 0) ::close(fd);
    }
};

/// Temporary files of `file` are named "." + name + ".tmp-XXXXXX" and held under an
/// exclusive flock() while they are written. A writer killed between mkstemp() and
/// rename() leaves one behind (mode 0600, so nobody else can read it); the lock died with
/// it, so the next write of the same file removes every temporary file nobody holds.
void remove_abandoned_temporaries(const std::filesystem::path& dir, const std::string& prefix) {
    DIR* d = ::opendir(dir.c_str());
    if (!d) return;
    while (const dirent* e = ::readdir(d)) {
        std::string name = e->d_name;
        if (name.size() != prefix.size() + 6 || name.compare(0, prefix.size(), prefix) != 0) continue;
        int fd = ::openat(::dirfd(d), name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) continue;
        struct stat st {};
        if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && ::flock(fd, LOCK_EX | LOCK_NB) == 0)
            ::unlinkat(::dirfd(d), name.c_str(), 0);   // abandoned: its writer is gone
        ::close(fd);                                    // a live writer holds its lock: leave it
    }
    ::closedir(d);
}

/// Test hook (integration tests only, see tests/integration/test_keyring_crash.py): when
/// the environment variable POSTERN_TEST_PAUSE_BEFORE_RENAME names a path, the writer
/// creates that file once the temporary file is written and fsynced, just before the
/// rename, and then waits until it is killed. A test waits for the file and sends SIGKILL
/// to show that a crash at the worst moment leaves the old file intact.
void test_hook_pause_before_rename() {
    const char* marker = std::getenv("POSTERN_TEST_PAUSE_BEFORE_RENAME");
    if (!marker || !*marker) return;
    int fd = ::open(marker, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0) ::close(fd);
    for (;;) ::pause();
}

}  // namespace

void write_file_atomically(const std::filesystem::path& file, std::string_view bytes, mode_t mode) {
    auto dir = file.parent_path();
    if (dir.empty()) dir = ".";
    const std::string prefix = fmt::format(".{}.tmp-", file.filename().string());
    remove_abandoned_temporaries(dir, prefix);
    std::string temp;
    int fd = -1;
    for (int attempt = 0; fd < 0; ++attempt) {
        temp = (dir / (prefix + "XXXXXX")).string();
        fd = ::mkstemp(temp.data());   // mkstemp creates the file 0600
        if (fd < 0) fail(file, "cannot create a temporary file", errno);
        struct stat st {};
        if (::flock(fd, LOCK_EX) != 0 || ::fstat(fd, &st) != 0) {
            int err = errno;
            ::close(fd);
            ::unlink(temp.c_str());
            fail(file, "cannot lock the temporary file", err);
        }
        if (st.st_nlink == 0 && attempt < 3) {   // taken for abandoned by a concurrent writer
            ::close(fd);
            fd = -1;
        }
    }
    fd_guard guard{fd};
    auto discard = [&](const char* what) {
        int err = errno;
        ::unlink(temp.c_str());
        fail(file, what, err);
    };
    for (std::size_t done = 0; done < bytes.size();) {
        ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
        if (n < 0) {
            if (errno == EINTR) continue;
            discard("cannot write");
        }
        done += static_cast<std::size_t>(n);
    }
    if (mode != 0600 && ::fchmod(fd, mode) != 0) discard("cannot set the mode");
    // Root editing a service's file (`postern keyring install` run by root for a server
    // that runs as [server] user) keeps the file's owner, so the server can still read it;
    // a new file in a directory that belongs to someone else (data_dir, given to the
    // service user) goes to the directory's owner.
    if (::geteuid() == 0) {
        struct stat owner {};
        bool known = ::stat(file.c_str(), &owner) == 0 ? S_ISREG(owner.st_mode) : ::stat(dir.c_str(), &owner) == 0;
        if (known && (owner.st_uid != 0 || owner.st_gid != 0) && ::fchown(fd, owner.st_uid, owner.st_gid) != 0)
            discard("cannot give the file to its owner");
    }
    if (::fsync(fd) != 0) discard("cannot fsync");
    test_hook_pause_before_rename();
    // Renamed while still locked, so no other writer can take it for abandoned.
    if (::rename(temp.c_str(), file.c_str()) != 0) discard("cannot rename the temporary file");
    guard.fd = -1;
    if (::close(fd) != 0) fail(file, "cannot close", errno);
    int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0) fail(dir, "cannot open the directory to fsync it", errno);
    fd_guard dir_guard{dir_fd};
    if (::fsync(dir_fd) != 0) fail(dir, "cannot fsync the directory", errno);
}

std::string read_file(const std::filesystem::path& file) {
    std::ifstream in(file, std::ios::binary);
    if (!in) fail(file, "cannot open", errno ? errno : ENOENT);
    std::ostringstream content;
    content << in.rdbuf();
    if (in.bad()) fail(file, "cannot read", errno);
    return content.str();
}

}  // namespace postern::tls
