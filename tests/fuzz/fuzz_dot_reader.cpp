// libFuzzer: the DATA reader. Invariants: chunking never changes the outcome; an accepted
// body never holds a bare CR, a bare LF or a NUL; the reader consumes nothing after the end.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "smtp/dot_reader.hpp"

using namespace postern::smtp;

namespace {
struct outcome {
    bool done;
    data_verdict verdict;
    std::string body;
    std::size_t consumed;
};

outcome read(std::string_view input, std::size_t chunk) {
    dot_reader r({.max_size = 1 << 16, .max_header_size = 1 << 12, .max_hop_count = 5});
    std::size_t pos = 0;
    while (pos < input.size() && !r.done()) {
        auto piece = input.substr(pos, chunk);
        auto used = r.feed(piece);
        if (used > piece.size()) __builtin_trap();
        if (used < piece.size() && !r.done()) __builtin_trap();
        pos += used;
    }
    return {r.done(), r.verdict(), r.take_body(), pos};
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view input(reinterpret_cast<const char*>(data), size);
    auto whole = read(input, input.size() ? input.size() : 1);
    for (std::size_t chunk : {std::size_t(1), std::size_t(2), std::size_t(7), std::size_t(16), std::size_t(17)}) {
        auto part = read(input, chunk);
        if (part.done != whole.done || part.verdict != whole.verdict || part.body != whole.body ||
            part.consumed != whole.consumed)
            __builtin_trap();
    }
    if (whole.done) {
        // The end is exactly the first <CRLF>.<CRLF> (or ".\r\n" at the very start).
        auto consumed = input.substr(0, whole.consumed);
        if (consumed.size() < 3 || consumed.substr(consumed.size() - 3) != ".\r\n") __builtin_trap();
    }
    if (whole.verdict == data_verdict::ok) {
        const auto& b = whole.body;
        for (std::size_t i = 0; i < b.size(); ++i) {
            if (b[i] == '\0') __builtin_trap();
            if (b[i] == '\r' && (i + 1 >= b.size() || b[i + 1] != '\n')) __builtin_trap();
            if (b[i] == '\n' && (i == 0 || b[i - 1] != '\r')) __builtin_trap();
        }
    } else if (!whole.body.empty()) {
        __builtin_trap();
    }
    return 0;
}
