// log/protocol_log.cpp: Exchange-style SMTP protocol log (DESIGN.md §6).
//
// Lines are formatted outside the lock, appended to a buffer under it, and written with
// one write(2) per flush on an O_APPEND descriptor, so a line is never split between
// flushes. A background thread flushes at least once a second; a session's disconnect
// line flushes at once, so a finished session is on disk when an operator looks.
#include "log/protocol_log.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <iterator>
#include <limits>
#include <optional>
#include <system_error>
#include <thread>
#include <tuple>
#include <vector>

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace postern::log {

namespace {

namespace fs = std::filesystem;
using sys_clock = std::chrono::system_clock;

// The version of the file layout below, for parsers; not the software's version.
constexpr std::string_view format_version = "1.0";
constexpr std::string_view fields_line =
    "#Fields: date-time,connector-id,session-id,sequence-number,local-endpoint,remote-endpoint,event,data,context";
constexpr std::size_t buffer_limit = 64 * 1024;
constexpr auto flush_interval = std::chrono::seconds(1);

std::tm utc(sys_clock::time_point t) {
    std::time_t seconds = sys_clock::to_time_t(t);
    std::tm out{};
    ::gmtime_r(&seconds, &out);
    return out;
}

// ISO 8601, UTC, milliseconds, 'Z': 2026-03-01T14:05:09.123Z
std::string iso8601(sys_clock::time_point t) {
    std::tm tm = utc(t);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count() % 1000;
    if (ms < 0) ms += 1000;
    return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                       tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
}

std::string day_of(sys_clock::time_point t) {
    std::tm tm = utc(t);
    return fmt::format("{:04}{:02}{:02}", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
}

struct log_file_name {
    std::string day;       // yyyymmdd
    unsigned index = 0;    // N, from 1
};

// "RECV20260301-3.log" -> {"20260301", 3}; anything else is not ours and is left alone.
std::optional<log_file_name> parse_name(std::string_view name, std::string_view prefix) {
    if (name.size() < prefix.size() + 8 + 2 + 4 || name.substr(0, prefix.size()) != prefix) return std::nullopt;
    name.remove_prefix(prefix.size());
    std::string_view day = name.substr(0, 8);
    if (!std::all_of(day.begin(), day.end(), [](char c) { return c >= '0' && c <= '9'; }) || name[8] != '-')
        return std::nullopt;
    name.remove_prefix(9);
    if (name.size() < 5 || name.substr(name.size() - 4) != ".log") return std::nullopt;
    std::string_view digits = name.substr(0, name.size() - 4);
    if (digits.empty() || digits.size() > 9 ||
        !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return std::nullopt;
    return log_file_name{std::string(day), static_cast<unsigned>(std::stoul(std::string(digits)))};
}

// Creates the directory (and its parents) mode 0700. An existing directory keeps its
// mode unless `ours` says Postern owns it outright (the smtp-receive/smtp-send folders).
void make_private_directory(const fs::path& dir, bool ours) {
    std::error_code ec;
    bool existed = fs::is_directory(dir, ec);
    if (!existed) {
        fs::create_directories(dir, ec);
        if (ec) throw std::system_error(ec, "cannot create protocol log directory " + dir.string());
    }
    if ((ours || !existed) && ::chmod(dir.c_str(), 0700) != 0)
        throw std::system_error(errno, std::generic_category(), "cannot set mode 0700 on " + dir.string());
}

bool write_all(int fd, std::string_view data) {
    while (!data.empty()) {
        ssize_t n = ::write(fd, data.data(), data.size());
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
}

}  // namespace

std::size_t reordering_character_at(std::string_view s, std::size_t i) {
    // UTF-8 of U+061C (ALM), U+200E/U+200F (LRM, RLM), U+2028/U+2029 (line and paragraph
    // separators), U+202A-U+202E (embeddings, overrides) and U+2066-U+2069 (isolates).
    const auto at = [&](std::size_t k) { return k < s.size() ? static_cast<unsigned char>(s[k]) : 0u; };
    const unsigned b0 = at(i), b1 = at(i + 1), b2 = at(i + 2);
    if (b0 == 0xD8 && b1 == 0x9C) return 2;
    if (b0 != 0xE2) return 0;
    if (b1 == 0x80 && (b2 == 0x8E || b2 == 0x8F || (b2 >= 0xA8 && b2 <= 0xAE))) return 3;
    if (b1 == 0x81 && b2 >= 0xA6 && b2 <= 0xA9) return 3;
    return 0;
}

void append_csv_field(std::string& out, std::string_view raw) {
    // Control bytes (and the backslash that introduces an escape, so that an escape in the
    // log is never ambiguous with text the client sent) become \xNN: a client cannot end
    // a line, and so cannot forge one. Bytes >= 0x80 pass through (UTF-8 addresses), but
    // not the Unicode characters that reorder or break a line on a reader's screen
    // (Trojan Source, CVE-2021-42574): their bytes are escaped too.
    bool needs_escape = false, needs_quotes = false;
    for (std::size_t i = 0; i < raw.size(); ++i) {
        const auto c = static_cast<unsigned char>(raw[i]);
        if (c < 0x20 || c == 0x7F || c == '\\') needs_escape = true;
        else if (c == ',' || c == '"') needs_quotes = true;
        else if ((c == 0xD8 || c == 0xE2) && reordering_character_at(raw, i)) needs_escape = true;
    }
    if (!needs_escape && !needs_quotes) {       // the common case: one append
        out += raw;
        return;
    }
    if (needs_quotes) out += '"';
    append_escaped(out, raw, needs_quotes);
    if (needs_quotes) out += '"';
}

void append_escaped(std::string& out, std::string_view raw, bool double_quotes) {
    static constexpr char hex[] = "0123456789ABCDEF";
    auto escape_byte = [&](unsigned char c) {
        const char escape[4] = {'\\', 'x', hex[c >> 4], hex[c & 0xF]};
        out.append(escape, sizeof escape);
    };
    for (std::size_t i = 0; i < raw.size(); ++i) {
        const auto c = static_cast<unsigned char>(raw[i]);
        if (c < 0x20 || c == 0x7F || c == '\\') {
            escape_byte(c);
        } else if (const auto n = (c == 0xD8 || c == 0xE2) ? reordering_character_at(raw, i) : 0; n > 0) {
            for (std::size_t k = 0; k < n; ++k) escape_byte(static_cast<unsigned char>(raw[i + k]));
            i += n - 1;
        } else {
            if (c == '"' && double_quotes) out += '"';   // RFC 4180 §2.7: a quote inside quotes is doubled
            out += static_cast<char>(c);
        }
    }
}

std::string csv_field(std::string_view raw) {
    std::string out;
    out.reserve(raw.size());
    append_csv_field(out, raw);
    return out;
}

struct protocol_log::impl {
    protocol_log_options options;
    fs::path directory;
    std::string prefix;      // RECV | SEND
    std::string log_type;

    std::mutex mutex;
    int fd = -1;
    std::string day;                 // of the open file
    unsigned index = 0;              // N of the open file
    std::uint64_t file_size = 0;     // bytes written plus bytes buffered
    std::string buffer;
    bool failing = false;            // reported once until a write works again
    std::int64_t stamp_ms = -1;      // the millisecond `stamp` was formatted for
    std::string stamp;               // iso8601 of stamp_ms: most lines share their millisecond
    std::int64_t checked_day = std::numeric_limits<std::int64_t>::min();   // UTC day number of `day`

    std::condition_variable wake;
    bool stopping = false;
    std::thread flusher;

    explicit impl(protocol_log_options o) : options(std::move(o)) {
        bool receive = options.kind == log_kind::receive;
        directory = options.dir / (receive ? "smtp-receive" : "smtp-send");
        prefix = receive ? "RECV" : "SEND";
        log_type = receive ? "SMTP Receive Protocol Log" : "SMTP Send Protocol Log";
        if (!options.clock) options.clock = [] { return sys_clock::now(); };
        make_private_directory(options.dir, /*ours=*/false);
        make_private_directory(directory, /*ours=*/true);
        std::lock_guard lock(mutex);
        remove_expired(options.clock(), {});
    }

    fs::path path_of(const std::string& d, unsigned n) const {
        return directory / fmt::format("{}{}-{}.log", prefix, d, n);
    }

    const std::string& stamp_of(sys_clock::time_point now) {
        auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
        if (ms != stamp_ms) {
            stamp_ms = ms;
            stamp = iso8601(now);
        }
        return stamp;
    }

    // Appends formatted lines (each without its date-time field: ",connector,...\r\n"),
    // all stamped `now`, starting a new file first when the day has changed or the
    // current file has passed its size cap.
    void append(sys_clock::time_point now, std::string_view lines) {
        // The day's name is formatted only when the UTC day number changes.
        const auto day_number = std::chrono::floor<std::chrono::days>(now).time_since_epoch().count();
        if (fd < 0 || day_number != checked_day) {
            std::string today = day_of(now);
            if (fd < 0 || today != day) open_for(today, now);
            checked_day = day_number;
        }
        const std::string& time = stamp_of(now);
        while (!lines.empty()) {
            auto end = lines.find("\r\n");
            std::size_t length = end == std::string_view::npos ? lines.size() : end + 2;
            if (file_size >= options.max_file_size) start_file(day, index + 1, now);
            buffer += time;
            buffer.append(lines.data(), length);
            file_size += time.size() + length;
            lines.remove_prefix(length);
        }
        if (buffer.size() >= buffer_limit) flush_locked();
    }

    void flush_locked() {
        if (buffer.empty()) return;
        if (fd >= 0 && write_all(fd, buffer)) {
            failing = false;
        } else if (!failing) {
            failing = true;
            spdlog::error("protocol log {}: cannot write: {}; lines are being lost", directory.string(),
                          std::strerror(errno));
        }
        buffer.clear();
    }

    void close_locked() {
        flush_locked();
        if (fd >= 0) ::close(fd);
        fd = -1;
    }

    // At start-up and at each new day: continue today's newest file if it has room
    // (a restart should not leave a trail of tiny files), otherwise start the next one.
    void open_for(const std::string& d, sys_clock::time_point now) {
        unsigned newest = 0;
        std::error_code ec;
        for (const auto& entry : fs::directory_iterator(directory, ec))
            if (auto name = parse_name(entry.path().filename().string(), prefix); name && name->day == d)
                newest = std::max(newest, name->index);
        if (newest > 0) {
            std::uint64_t size = fs::file_size(path_of(d, newest), ec);
            if (!ec && size < options.max_file_size) {
                open_file(d, newest, size, now, /*write_header=*/false);
                return;
            }
        }
        start_file(d, newest + 1, now);
    }

    void start_file(const std::string& d, unsigned n, sys_clock::time_point now) {
        open_file(d, n, 0, now, /*write_header=*/true);
    }

    void open_file(const std::string& d, unsigned n, std::uint64_t existing_size, sys_clock::time_point now,
                   bool write_header) {
        close_locked();
        fs::path path = path_of(d, n);
        day = d;
        index = n;
        fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0) {
            spdlog::error("protocol log: cannot open {}: {}", path.string(), std::strerror(errno));
        } else {
            ::fchmod(fd, 0600);
        }
        file_size = existing_size;
        if (write_header) {
            std::string header = fmt::format("#Software: Postern\r\n#Version: {}\r\n#Log-type: {}\r\n#Date: {}\r\n{}\r\n",
                                             format_version, log_type, iso8601(now), fields_line);
            buffer += header;
            file_size += header.size();
        }
        remove_expired(now, path);
    }

    // Retention (DESIGN.md §3 [log]): files older than max_age go, then the oldest files
    // until the directory fits max_size. The file being written is never removed.
    void remove_expired(sys_clock::time_point now, const fs::path& keep) {
        struct entry {
            log_file_name name;
            fs::path path;
            std::uint64_t size;
        };
        std::vector<entry> files;
        std::error_code ec;
        for (const auto& e : fs::directory_iterator(directory, ec)) {
            auto name = parse_name(e.path().filename().string(), prefix);
            if (!name || !e.is_regular_file()) continue;
            struct stat st {};
            if (::stat(e.path().c_str(), &st) != 0) continue;
            auto modified = sys_clock::from_time_t(st.st_mtim.tv_sec);
            if (e.path() != keep && now - modified > options.max_age) {
                fs::remove(e.path(), ec);
                continue;
            }
            files.push_back({*name, e.path(), static_cast<std::uint64_t>(st.st_size)});
        }
        std::sort(files.begin(), files.end(), [](const entry& a, const entry& b) {
            return std::tie(a.name.day, a.name.index) < std::tie(b.name.day, b.name.index);
        });
        std::uint64_t total = 0;
        for (const auto& f : files) total += f.size;
        for (const auto& f : files) {
            if (total <= options.max_size) break;
            if (f.path == keep) continue;
            if (fs::remove(f.path, ec)) total -= f.size;
        }
    }

    void run_flusher() {
        std::unique_lock lock(mutex);
        while (!stopping) {
            wake.wait_for(lock, flush_interval);
            flush_locked();
        }
    }
};

protocol_log::protocol_log(protocol_log_options options) : impl_(std::make_unique<impl>(std::move(options))) {
    impl_->flusher = std::thread([this] {
        ::pthread_setname_np(::pthread_self(), "protocol-log");
        impl_->run_flusher();
    });
}

protocol_log::~protocol_log() {
    {
        std::lock_guard lock(impl_->mutex);
        impl_->stopping = true;
    }
    impl_->wake.notify_all();
    impl_->flusher.join();
    std::lock_guard lock(impl_->mutex);
    impl_->close_locked();
}

namespace {
void format_line(std::string& out, std::string_view connector, std::string_view session, std::uint64_t sequence,
                 std::string_view local, std::string_view remote, event ev, std::string_view data,
                 std::string_view context) {
    out += ',';
    append_csv_field(out, connector);
    out += ',';
    append_csv_field(out, session);
    out += ',';
    fmt::format_to(std::back_inserter(out), "{}", sequence);
    out += ',';
    append_csv_field(out, local);
    out += ',';
    append_csv_field(out, remote);
    out += ',';
    out += static_cast<char>(ev);
    out += ',';
    append_csv_field(out, data);
    out += ',';
    append_csv_field(out, context);
    out += "\r\n";
}
}  // namespace

void protocol_log::write(std::string_view connector, std::string_view session, std::uint64_t sequence,
                         std::string_view local, std::string_view remote, event ev, std::string_view data,
                         std::string_view context) {
    std::string line;
    line.reserve(128 + data.size());
    format_line(line, connector, session, sequence, local, remote, ev, data, context);
    write_lines(line, ev == event::disconnect);
}

void protocol_log::write_lines(std::string_view lines, bool flush_now) {
    // Formatting happened outside the lock; only the time stamp is taken under it, so the
    // lines of a file are in time order.
    std::lock_guard lock(impl_->mutex);
    impl_->append(impl_->options.clock(), lines);
    if (flush_now) impl_->flush_locked();
}

void protocol_log::flush() {
    std::lock_guard lock(impl_->mutex);
    impl_->flush_locked();
}

std::string protocol_log::new_session_id() {
    // Microseconds since the epoch, bumped by one when two sessions start in the same
    // microsecond: unique within the process, sortable by start time, and unlikely to
    // repeat across restarts.
    static std::atomic<std::uint64_t> last{0};
    auto now = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(sys_clock::now().time_since_epoch()).count());
    std::uint64_t previous = last.load();
    std::uint64_t next;
    do {
        next = std::max(now, previous + 1);
    } while (!last.compare_exchange_weak(previous, next));
    return fmt::format("{:016X}", next);
}

session_logger::session_logger(protocol_log* log, std::string connector, std::string local, std::string remote,
                               bool enabled)
    : log_(log),
      connector_(std::move(connector)),
      local_(std::move(local)),
      remote_(std::move(remote)),
      session_(protocol_log::new_session_id()),
      enabled_(enabled) {}

bool session_logger::over_cap(event ev, std::string& out) {
    if (cap_ == 0 || ev == event::connect || ev == event::disconnect) return false;
    if (since_message_ < cap_) {
        ++since_message_;
        return false;
    }
    if (held_back_++ == 0)
        format_line(out, connector_, session_, sequence_++, local_, remote_, event::info,
                    fmt::format("protocol log cap reached ({} lines since the last accepted message): "
                                "further lines of this session are counted, not written", cap_),
                    {});
    ++held_back_total_;
    return true;
}

void session_logger::report_held_back(std::string& out) {
    if (held_back_ == 0) return;
    format_line(out, connector_, session_, sequence_++, local_, remote_, event::info,
                fmt::format("{} lines not written (protocol log cap)", held_back_), {});
    held_back_ = 0;
}

void session_logger::message_accepted() {
    if (!enabled_ || !log_) return;
    std::string line;
    report_held_back(line);
    if (!line.empty()) log_->write_lines(line, false);
    since_message_ = 0;
}

void session_logger::put(event ev, std::string_view data, std::string_view context) {
    if (!enabled_ || !log_) return;
    std::string line;
    const bool held = over_cap(ev, line);
    if (ev == event::disconnect) report_held_back(line);
    if (!held) {
        line.reserve(line.size() + 128 + data.size());
        format_line(line, connector_, session_, sequence_++, local_, remote_, ev, data, context);
    }
    if (!line.empty()) log_->write_lines(line, ev == event::disconnect);
}

void session_logger::put_all(std::span<const line> lines) {
    if (!enabled_ || !log_ || lines.empty()) return;
    std::string& batch = scratch_;
    batch.clear();
    bool flush_now = false;
    for (const auto& l : lines) {
        if (over_cap(l.what, batch)) continue;
        if (l.what == event::disconnect) report_held_back(batch);
        format_line(batch, connector_, session_, sequence_++, local_, remote_, l.what, l.data, l.context);
        flush_now = flush_now || l.what == event::disconnect;
    }
    if (batch.empty()) return;
    log_->write_lines(batch, flush_now);
    if (batch.capacity() > 64 * 1024) std::string().swap(batch);   // a rare huge batch is not kept
}

}  // namespace postern::log
