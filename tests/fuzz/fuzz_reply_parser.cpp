// libFuzzer: the client's reply parser (smtp/reply_parser.hpp) on arbitrary server bytes.
// Invariants: where the bytes are split never changes the replies read or where reading
// stops; a reply read has a code 200..599 and survives its own wire form; whenever
// complete_reply_buffered() says a reply is waiting, next() does not ask for more; the
// parser never buffers more than one line over its limit.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "smtp/reply_parser.hpp"

using namespace postern::smtp;

namespace {

struct reading {
    std::vector<reply> replies;
    bool malformed = false;
};

/// Feeds `input` in pieces whose lengths cycle through `sizes`, reading replies as it goes.
reading read_all(std::string_view input, const std::vector<std::size_t>& sizes) {
    reading out;
    reply_parser parser;
    std::size_t pos = 0, turn = 0;
    while (!out.malformed) {
        for (;;) {
            const bool waiting = parser.complete_reply_buffered();
            reply r;
            const auto st = parser.next(r);
            if (st == reply_parser::status::need_more) {
                if (waiting) __builtin_trap();
                break;
            }
            if (st == reply_parser::status::malformed) {
                out.malformed = true;
                break;
            }
            if (r.code < 200 || r.code > 599) __builtin_trap();
            if (!r.status.empty() && r.status.klass != r.code / 100) __builtin_trap();
            out.replies.push_back(std::move(r));
        }
        if (parser.buffered() > reply_parser::max_line + 1 && !out.malformed) __builtin_trap();
        if (pos >= input.size()) break;
        const std::size_t n = sizes[turn++ % sizes.size()];
        parser.feed(input.substr(pos, n));
        pos += n;
    }
    return out;
}

bool same(const reading& a, const reading& b) {
    return a.malformed == b.malformed && a.replies == b.replies;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2) return 0;
    // The first two octets choose a split pattern; the rest is what the server sent.
    const std::vector<std::size_t> pattern = {std::size_t(data[0] % 13) + 1, std::size_t(data[1] % 5) + 1};
    const std::string_view input(reinterpret_cast<const char*>(data) + 2, size - 2);

    const auto whole = read_all(input, {input.size() ? input.size() : 1});
    if (!same(whole, read_all(input, {1})) || !same(whole, read_all(input, pattern))) __builtin_trap();

    for (const auto& r : whole.replies) {
        reply_parser again;
        again.feed(r.wire());
        reply back;
        if (again.next(back) != reply_parser::status::complete || back != r) __builtin_trap();
    }
    return 0;
}
