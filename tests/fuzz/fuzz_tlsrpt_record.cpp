// libFuzzer: the TLS-RPT record parser (tlsrpt/record.hpp) on arbitrary bytes, as one TXT
// record and as several (split at NUL bytes). Invariants: a record read has at least one
// address; a mailto address has an '@' with text on both sides and no control bytes or
// spaces; an https address has a lower-case host of letters, digits, '-' and '.', a
// non-zero port and a path that starts with '/'; no URI parse throws.
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "tlsrpt/record.hpp"

using namespace postern::tlsrpt;

namespace {

void check(const record& r) {
    if (r.rua.empty()) std::abort();
    for (const auto& u : r.rua) {
        if (u.what == report_uri::scheme::mailto) {
            const auto at = u.address.rfind('@');
            if (at == std::string::npos || at == 0 || at + 1 >= u.address.size()) std::abort();
            for (unsigned char c : u.address)
                if (c <= 0x20 || c == 0x7f) std::abort();
        } else {
            if (u.host.empty() || u.port == 0 || u.path.empty() || u.path.front() != '/') std::abort();
            for (unsigned char c : u.host)
                if (!(std::islower(c) || std::isdigit(c) || c == '-' || c == '.')) std::abort();
            for (unsigned char c : u.path)
                if (c <= 0x20 || c == 0x7f) std::abort();
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    std::vector<std::string> records;
    std::size_t start = 0;
    for (std::size_t i = 0; i <= input.size(); ++i)
        if (i == input.size() || input[i] == '\0') {
            records.emplace_back(input.substr(start, i - start));
            start = i + 1;
        }
    std::string error;
    if (auto r = parse_record(input, error)) check(*r);
    if (auto r = select_record(records, error)) check(*r);
    if (auto u = parse_report_uri(input, error)) check(record{{*u}});
    return 0;
}
