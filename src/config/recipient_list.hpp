// config/recipient_list.hpp: a list of recipient addresses kept in a file of its own
// ([[send_connector]] recipients, [[accepted_domain]] recipients; DESIGN.md §3).
//
// One address per line; blank lines and `#` comments are ignored; surrounding spaces are
// trimmed. Addresses are kept lower-cased, so lookups ignore case in the local part as in
// the domain (what Exchange and Domino directories do). A line that is not an address, or
// a file without its final newline (a sign of a file still being written: write lists to
// a temporary name and rename), refuses the whole file with the line number; the loader
// then refuses the configuration, so `reload` keeps the old list.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_set>

namespace postern::config {

struct recipient_list_error : std::runtime_error {
    recipient_list_error(std::uint32_t line_, const std::string& message)
        : std::runtime_error(message), line(line_) {}
    std::uint32_t line;   // 0: the file as a whole
};

class recipient_list {
public:
    /// Reads `file`. Throws recipient_list_error.
    static std::shared_ptr<const recipient_list> load(const std::filesystem::path& file);
    /// The same from text (`source` names it in errors).
    static std::shared_ptr<const recipient_list> parse(std::string_view text);

    bool contains(std::string_view address) const;
    std::size_t size() const { return addresses_.size(); }
    const std::unordered_set<std::string>& addresses() const { return addresses_; }

private:
    std::unordered_set<std::string> addresses_;
};

/// Lower case, as lists keep addresses.
std::string fold_address(std::string_view address);

}  // namespace postern::config
