// config/recipient_list.cpp: recipient lists from files (recipient_list.hpp).
#include "config/recipient_list.hpp"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "config/detail.hpp"

namespace postern::config {

namespace {

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
    return s;
}

/// local@domain: a non-empty local part without spaces, angle brackets or controls, and
/// a domain name.
bool is_plain_address(std::string_view a) {
    const auto at = a.rfind('@');
    if (at == std::string_view::npos || at == 0 || at + 1 == a.size()) return false;
    for (unsigned char c : a.substr(0, at))
        if (c <= ' ' || c == 0x7f || c == '<' || c == '>' || c == ',') return false;
    return detail::is_domain_name(a.substr(at + 1));
}

}  // namespace

std::string fold_address(std::string_view address) {
    std::string out(address);
    for (auto& c : out)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return out;
}

std::shared_ptr<const recipient_list> recipient_list::parse(std::string_view text) {
    auto list = std::make_shared<recipient_list>();
    if (!text.empty() && text.back() != '\n')
        throw recipient_list_error(0, "does not end with a newline: is it still being written? (write the list to "
                                      "another name, then rename it into place)");
    std::uint32_t number = 0;
    std::size_t start = 0;
    while (start < text.size()) {
        const auto end = text.find('\n', start);
        ++number;
        auto line = trim(text.substr(start, end - start));
        start = end + 1;
        if (const auto hash = line.find('#'); hash != std::string_view::npos) line = trim(line.substr(0, hash));
        if (line.empty()) continue;
        if (!is_plain_address(line))
            throw recipient_list_error(number, fmt::format("\"{}\" is not an address (local@domain)", line));
        list->addresses_.insert(fold_address(line));
    }
    return list;
}

std::shared_ptr<const recipient_list> recipient_list::load(const std::filesystem::path& file) {
    std::ifstream in(file, std::ios::binary);
    if (!in) throw recipient_list_error(0, fmt::format("cannot read it: {}", std::strerror(errno)));
    std::ostringstream text;
    text << in.rdbuf();
    return parse(text.str());
}

bool recipient_list::contains(std::string_view address) const { return addresses_.contains(fold_address(address)); }

}  // namespace postern::config
