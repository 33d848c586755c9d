// daemon/privileges.hpp: started as root, Postern binds its ports and opens the key ring,
// then becomes [server] user before it serves anyone (DESIGN.md §3).
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <sys/types.h>

namespace postern::daemon {

struct service_account {
    std::string name;
    uid_t uid = 0;
    gid_t gid = 0;
};

/// Looks the user up; throws std::runtime_error with a clear line when it does not exist
/// or is root itself.
service_account find_service_account(const std::string& user);

/// Makes `dir` (and its parents) exist with mode 0700 and, when an account is given,
/// owned by it, so the dropped process can write its queue and logs there.
void prepare_private_directory(const std::filesystem::path& dir,
                               const std::optional<service_account>& owner);

/// Gives every file and directory under `dir` to the account (used for data_dir's queue
/// and log trees, which the server writes after dropping privileges).
void give_tree_to(const std::filesystem::path& dir, const service_account& owner);

/// setgroups, setgid, setuid, in that order; then proves that root cannot be regained.
/// Throws std::runtime_error when any step fails: serving as root by accident is worse
/// than not serving.
void drop_privileges(const service_account& account);

}  // namespace postern::daemon
