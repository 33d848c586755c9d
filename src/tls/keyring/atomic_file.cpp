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

#include "files/replace.hpp"
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
    files::replace_options options;
    options.mode = mode;
    options.keep_owner = true;   // root installing for a server that runs as [server] user
    try {
        files::replace_file(file, bytes, options);
    } catch (const files::file_error& e) {
        throw tls_error(e.what());
    }
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
