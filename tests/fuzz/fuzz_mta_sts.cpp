// libFuzzer: the MTA-STS parsers (policy/mta_sts.hpp) on arbitrary bytes: the _mta-sts
// TXT record and the policy file a policy host sends. Invariants: a policy read has
// max_age at most a year, lower-case mx patterns without a trailing dot, at least one mx
// unless its mode is none, and reads back the same from its own canonical form; an id
// read from a record is 1-32 alphanumerics; matching never throws.
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "policy/mta_sts.hpp"

using namespace postern::policy;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);

    // As TXT strings: the whole input, and the input split at NUL bytes into several records.
    std::vector<std::string> records;
    std::size_t start = 0;
    for (std::size_t i = 0; i <= input.size(); ++i)
        if (i == input.size() || input[i] == '\0') {
            records.emplace_back(input.substr(start, i - start));
            start = i + 1;
        }
    for (const auto& texts : {std::vector<std::string>{std::string(input)}, records}) {
        if (auto id = sts_record_id(texts)) {
            if (id->empty() || id->size() > 32) std::abort();
            for (unsigned char c : *id)
                if (!std::isalnum(c)) std::abort();
        }
    }

    std::string error;
    auto p = parse_sts_policy(input, error);
    if (!p) return 0;
    if (p->max_age.count() > 31557600) std::abort();
    if (p->what != sts_policy::mode::none && p->mx.empty()) std::abort();
    std::string canonical = "version: STSv1\n";
    canonical += std::string("mode: ") + to_string(p->what) + "\n";
    for (const auto& mx : p->mx) {
        for (unsigned char c : mx)
            if (std::isupper(c)) std::abort();
        if (!mx.empty() && mx.back() == '.') std::abort();
        canonical += "mx: " + mx + "\n";
        (void)p->lists(mx);
        (void)mx_pattern_matches(mx, input.substr(0, 64));
    }
    canonical += "max_age: " + std::to_string(p->max_age.count()) + "\n";
    auto again = parse_sts_policy(canonical, error);
    if (!again || again->what != p->what || again->max_age != p->max_age) std::abort();
    // An mx that lost its text to trimming can differ; the patterns that survive must match.
    if (again->mx.size() > p->mx.size()) std::abort();
    return 0;
}
