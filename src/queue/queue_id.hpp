// queue/queue_id.hpp: queue ids that sort by arrival and are safe everywhere.
//
// An id is 16 lowercase hex digits of a microsecond timestamp (UTC, since 1970). The
// generator never hands out the same value twice: when two messages arrive in the same
// microsecond, or the clock steps back, the next id is the previous one plus one. So ids
// are unique within a store, sort by arrival, and contain only [0-9a-f]: fine in file
// names, log lines, CSV fields and shell arguments.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace postern::queue {

inline constexpr std::size_t queue_id_length = 16;

std::string format_queue_id(std::uint64_t value);
/// The value of a well-formed id; std::nullopt for anything else (ids from users, e.g.
/// `postern queue show ID`, go through this before they reach the store).
std::optional<std::uint64_t> parse_queue_id(std::string_view id);

class queue_id_generator {
public:
    /// `floor`: the largest id value already in use (from the store), so ids stay unique
    /// across restarts even if the clock went back meanwhile.
    explicit queue_id_generator(std::uint64_t floor = 0) : last_(floor) {}

    /// Thread-safe.
    std::string next();
    /// Same, with the clock reading passed in (microseconds since 1970), for tests.
    std::string next(std::uint64_t now_us);

private:
    std::atomic<std::uint64_t> last_;
};

}  // namespace postern::queue
