// files/replace.cpp: see replace.hpp.
#include "files/replace.hpp"

#include <cerrno>
#include <cstring>
#include <string>

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

namespace postern::files {

namespace {

[[noreturn]] void fail(const std::filesystem::path& file, const char* what, int err) {
    throw file_error(fmt::format("{}: {}: {}", file.string(), what, std::strerror(err)));
}

/// A step on the temporary file that failed, with its errno (taken at once: throwing may
/// allocate).
struct step_failed {
    const char* what;
    int err;
};

struct fd_guard {
    int fd;
    ~fd_guard() {
        if (fd >= 0) ::close(fd);
    }
};

/// A writer killed between mkstemp() and rename() leaves its temporary file behind (0600,
/// so nobody else can read it); its lock died with it, so every temporary file of `file`
/// that nobody holds locked is abandoned and removed.
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

/// A new temporary file, created and locked; retried when a concurrent writer took it for
/// abandoned between the two.
int create_locked_temporary(const std::filesystem::path& file, const std::filesystem::path& dir,
                            const std::string& prefix, std::string& temp) {
    for (int attempt = 0;; ++attempt) {
        temp = (dir / (prefix + "XXXXXX")).string();
        const int fd = ::mkstemp(temp.data());   // O_EXCL, mode 0600
        if (fd < 0) fail(file, "cannot create a temporary file", errno);
        struct stat st {};
        if (::flock(fd, LOCK_EX) != 0 || ::fstat(fd, &st) != 0) {
            const int err = errno;
            ::close(fd);
            ::unlink(temp.c_str());
            fail(file, "cannot lock the temporary file", err);
        }
        if (st.st_nlink > 0 || attempt >= 3) return fd;
        ::close(fd);
    }
}

/// Mode and owner of the new file, set on its descriptor before the rename.
void set_mode_and_owner(int fd, const std::filesystem::path& target, const std::filesystem::path& dir,
                        const replace_options& options) {
    struct stat existing {};
    const bool exists = ::stat(target.c_str(), &existing) == 0 && S_ISREG(existing.st_mode);
    const mode_t mode = options.keep_mode && exists ? (existing.st_mode & 07777) : options.mode;
    if (mode != 0600 && ::fchmod(fd, mode) != 0) throw step_failed{"cannot set the mode", errno};
    if (!options.keep_owner || ::geteuid() != 0) return;
    struct stat owner = existing;
    if (!exists && ::stat(dir.c_str(), &owner) != 0) return;
    if ((owner.st_uid != 0 || owner.st_gid != 0) && ::fchown(fd, owner.st_uid, owner.st_gid) != 0)
        throw step_failed{"cannot give the file to its owner", errno};
}

void write_all(int fd, std::string_view bytes) {
    while (!bytes.empty()) {
        const ssize_t n = ::write(fd, bytes.data(), bytes.size());
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw step_failed{"cannot write", errno};
        bytes.remove_prefix(static_cast<std::size_t>(n));
    }
}

}  // namespace

void replace_file(const std::filesystem::path& file, std::string_view bytes, const replace_options& options) {
    namespace fs = std::filesystem;
    fs::path target = file;
    if (options.through_symlink) {
        std::error_code ec;
        if (auto real = fs::canonical(file, ec); !ec) target = std::move(real);   // missing: write `file`
    }
    fs::path dir = target.parent_path();
    if (dir.empty()) dir = ".";
    const std::string prefix = fmt::format(".{}.tmp-", target.filename().string());
    remove_abandoned_temporaries(dir, prefix);

    std::string temp;
    fd_guard guard{create_locked_temporary(target, dir, prefix, temp)};
    try {
        write_all(guard.fd, bytes);
        set_mode_and_owner(guard.fd, target, dir, options);
        if (::fsync(guard.fd) != 0) throw step_failed{"cannot fsync", errno};
        // Renamed while still locked, so no other writer can take it for abandoned.
        if (::rename(temp.c_str(), target.c_str()) != 0) throw step_failed{"cannot rename the temporary file", errno};
    } catch (const step_failed& e) {
        ::unlink(temp.c_str());
        fail(target, e.what, e.err);
    }
    const int fd = guard.fd;
    guard.fd = -1;
    if (::close(fd) != 0) fail(target, "cannot close", errno);
    fd_guard dir_guard{::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
    if (dir_guard.fd < 0) fail(dir, "cannot open the directory to fsync it", errno);
    if (::fsync(dir_guard.fd) != 0) fail(dir, "cannot fsync the directory", errno);
}

}  // namespace postern::files
