#include "daemon/privileges.hpp"

#include <cerrno>
#include <cstring>
#include <grp.h>
#include <pwd.h>
#include <stdexcept>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

namespace postern::daemon {

namespace fs = std::filesystem;

service_account find_service_account(const std::string& user) {
    errno = 0;
    const passwd* pw = ::getpwnam(user.c_str());
    if (pw == nullptr)
        throw std::runtime_error(fmt::format("[server] user \"{}\": no such user", user));
    if (pw->pw_uid == 0)
        throw std::runtime_error(fmt::format("[server] user \"{}\" is root; name an unprivileged user", user));
    return {user, pw->pw_uid, pw->pw_gid};
}

void prepare_private_directory(const fs::path& dir, const std::optional<service_account>& owner) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec)
        throw std::runtime_error(fmt::format("{}: cannot create: {}", dir.string(), ec.message()));
    if (::chmod(dir.c_str(), 0700) != 0)
        throw std::runtime_error(fmt::format("{}: cannot set mode 0700: {}", dir.string(), std::strerror(errno)));
    if (owner && ::chown(dir.c_str(), owner->uid, owner->gid) != 0)
        throw std::runtime_error(fmt::format("{}: cannot give to {}: {}", dir.string(), owner->name,
                                             std::strerror(errno)));
}

void give_tree_to(const fs::path& dir, const service_account& owner) {
    std::error_code ec;
    if (!fs::exists(dir, ec)) return;
    auto give = [&](const fs::path& p) {
        if (::lchown(p.c_str(), owner.uid, owner.gid) != 0)
            throw std::runtime_error(fmt::format("{}: cannot give to {}: {}", p.string(), owner.name,
                                                 std::strerror(errno)));
    };
    give(dir);
    for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec))
        give(it->path());
    if (ec) throw std::runtime_error(fmt::format("{}: {}", dir.string(), ec.message()));
}

void drop_privileges(const service_account& account) {
    // Supplementary groups first: root's groups would otherwise survive setuid.
    if (::setgroups(1, &account.gid) != 0)
        throw std::runtime_error(fmt::format("setgroups: {}", std::strerror(errno)));
    if (::setgid(account.gid) != 0)
        throw std::runtime_error(fmt::format("setgid({}): {}", account.gid, std::strerror(errno)));
    if (::setuid(account.uid) != 0)
        throw std::runtime_error(fmt::format("setuid({}): {}", account.uid, std::strerror(errno)));
    if (::setuid(0) == 0 || ::geteuid() == 0)
        throw std::runtime_error("privileges were not dropped: root could be regained");
}

}  // namespace postern::daemon
