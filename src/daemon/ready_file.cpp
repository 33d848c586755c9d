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
                            const std::filesystem::path& control_socket, const ready_listener* metrics) {
    nlohmann::json doc;
    doc["pid"] = pid;
    doc["listeners"] = nlohmann::json::array();
    for (const auto& l : listeners)
        doc["listeners"].push_back({{"connector", l.connector}, {"address", l.address}, {"port", l.port}});
    doc["control_socket"] = control_socket.string();
    if (metrics) doc["metrics"] = {{"address", metrics->address}, {"port", metrics->port}};
    return doc.dump() + "\n";
}

}  // namespace postern::daemon
