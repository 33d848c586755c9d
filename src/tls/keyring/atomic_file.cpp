#include "tls/keyring/atomic_file.hpp"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

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

}  // namespace

void write_file_atomically(const std::filesystem::path& file, std::string_view bytes, mode_t mode) {
    auto dir = file.parent_path();
    if (dir.empty()) dir = ".";
    std::string temp = (dir / ("." + file.filename().string() + ".tmp-XXXXXX")).string();
    int fd = ::mkstemp(temp.data());   // mkstemp creates the file 0600
    if (fd < 0) fail(file, "cannot create a temporary file", errno);
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
    if (::fsync(fd) != 0) discard("cannot fsync");
    guard.fd = -1;
    if (::close(fd) != 0) discard("cannot close");
    if (::rename(temp.c_str(), file.c_str()) != 0) discard("cannot rename the temporary file");
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
