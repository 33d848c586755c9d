// libFuzzer: MAIL FROM / RCPT TO arguments. Invariants: no crash; an accepted address has
// no control characters, is at most 256 octets with brackets, and is UTF-8 only with SMTPUTF8.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "smtp/address.hpp"

using namespace postern::smtp;

namespace {
void check_address(std::string_view a, bool utf8) {
    if (a.size() + 2 > 256) __builtin_trap();
    for (char c : a) {
        const auto u = static_cast<unsigned char>(c);
        if (u < 32 || u == 127) __builtin_trap();
        if (u >= 0x80 && !utf8) __builtin_trap();
    }
    if (utf8 && !valid_utf8(a)) __builtin_trap();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view input(reinterpret_cast<const char*>(data), size);
    auto m = parse_mail_from(input);
    if (m.ok()) check_address(m.value.address, m.value.smtputf8);
    for (bool utf8 : {false, true}) {
        auto r = parse_rcpt_to(input, utf8);
        if (r.ok()) check_address(r.value.address, utf8);
    }
    (void)valid_domain(input, true);
    (void)valid_address_literal(input);
    (void)domain_of(input);
    return 0;
}
