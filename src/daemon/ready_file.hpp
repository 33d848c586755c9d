// daemon/ready_file.hpp: the --ready-file of `postern serve` (DESIGN.md §4), written
// atomically once every listener accepts, so tests and supervisors wait on it instead
// of guessing with sleeps.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace postern::daemon {

struct ready_listener {
    std::string connector;
    std::string address;
    std::uint16_t port = 0;
};

/// {"pid": N, "listeners": [{"connector": C, "address": A, "port": P}], "control_socket": S}
/// and, when [metrics] listen is set, "metrics": {"address": A, "port": P}.
std::string ready_file_json(int pid, const std::vector<ready_listener>& listeners,
                            const std::filesystem::path& control_socket, const ready_listener* metrics = nullptr);

}  // namespace postern::daemon
