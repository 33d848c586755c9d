#include "queue/queue_id.hpp"

#include <chrono>

namespace postern::queue {

std::string format_queue_id(std::uint64_t value) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string id(queue_id_length, '0');
    for (std::size_t i = queue_id_length; i-- > 0; value >>= 4) id[i] = digits[value & 0xf];
    return id;
}

std::optional<std::uint64_t> parse_queue_id(std::string_view id) {
    if (id.size() != queue_id_length) return std::nullopt;
    std::uint64_t value = 0;
    for (char c : id) {
        unsigned digit;
        if (c >= '0' && c <= '9')
            digit = static_cast<unsigned>(c - '0');
        else if (c >= 'a' && c <= 'f')
            digit = static_cast<unsigned>(c - 'a' + 10);
        else
            return std::nullopt;
        value = (value << 4) | digit;
    }
    return value;
}

std::string queue_id_generator::next() {
    auto now = std::chrono::duration_cast<std::chrono::microseconds>(
        std::chrono::system_clock::now().time_since_epoch());
    return next(static_cast<std::uint64_t>(now.count()));
}

std::string queue_id_generator::next(std::uint64_t now_us) {
    std::uint64_t last = last_.load(std::memory_order_relaxed);
    std::uint64_t value;
    do {
        value = now_us > last ? now_us : last + 1;
    } while (!last_.compare_exchange_weak(last, value, std::memory_order_relaxed));
    return format_queue_id(value);
}

}  // namespace postern::queue
