#include "daemon/ready_file.hpp"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <stdexcept>
#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace postern::daemon {

std::string ready_file_json(int pid, const std::vector<ready_listener>& listeners,
                            const std::filesystem::path& control_socket) {
    nlohmann::json doc;
    doc["pid"] = pid;
    doc["listeners"] = nlohmann::json::array();
    for (const auto& l : listeners)
        doc["listeners"].push_back({{"connector", l.connector}, {"address", l.address}, {"port", l.port}});
    doc["control_socket"] = control_socket.string();
    return doc.dump() + "\n";
}

void write_file_atomically(const std::filesystem::path& path, const std::string& content) {
    const auto dir = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
    const auto temp = dir / fmt::format(".{}.{}.tmp", path.filename().string(), ::getpid());
    auto fail = [&](const char* step) {
        const int saved = errno;
        ::unlink(temp.c_str());
        throw std::runtime_error(fmt::format("{}: {}: {}", path.string(), step, std::strerror(saved)));
    };
    // The directory may be shared (/run, /tmp): a new file of our own, never through a
    // symlink someone left at the temporary name. rename() does not follow one either.
    if (::unlink(temp.c_str()) != 0 && errno != ENOENT) fail("remove a stale temporary file");
    const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) fail("create");
    std::string_view rest = content;
    while (!rest.empty()) {
        const ssize_t n = ::write(fd, rest.data(), rest.size());
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) { ::close(fd); fail("write"); }
        rest.remove_prefix(static_cast<std::size_t>(n));
    }
    if (::fsync(fd) != 0) { ::close(fd); fail("fsync"); }
    if (::close(fd) != 0) fail("close");
    if (::rename(temp.c_str(), path.c_str()) != 0) fail("rename");
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        ::fsync(dfd);   // the rename itself must survive a crash
        ::close(dfd);
    }
}

}  // namespace postern::daemon
