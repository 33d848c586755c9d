// log/protocol_log.hpp: the SMTP protocol log in Exchange's CSV format (DESIGN.md §6).
//
// Files <dir>/smtp-receive/RECVyyyymmdd-N.log and <dir>/smtp-send/SENDyyyymmdd-N.log,
// each with the #Software/#Version/#Log-type/#Date/#Fields header. Thread-safe: one
// mutex around a buffered file; lines are flushed at every session's disconnect and at
// least once a second, so a reader sees them promptly.
// Security: control bytes become \xNN so no client text can forge a line; fields with
// comma, quote or newline are quoted per RFC 4180. Bodies are never logged.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>

namespace postern::log {

enum class log_kind { receive, send };
enum class event : char { connect = '+', disconnect = '-', sent = '>', received = '<', info = '*' };

struct protocol_log_options {
    std::filesystem::path dir;           // the [log] dir; the kind's subdirectory is added
    log_kind kind = log_kind::receive;
    std::chrono::seconds max_age = std::chrono::hours(24 * 30);
    std::uint64_t max_size = 1024ull * 1024 * 1024;
    /// A file that has passed this size is closed and the next line starts file N+1
    /// (Exchange's per-file limit is 10 MB too).
    std::uint64_t max_file_size = 10ull * 1024 * 1024;
    /// Where line times come from; empty = system_clock::now. Tests move time forward.
    std::function<std::chrono::system_clock::time_point()> clock{};
};

class protocol_log {
public:
    explicit protocol_log(protocol_log_options options);   // creates the directory (0700)
    ~protocol_log();

    /// One line. connector: connector name; session: session id; sequence: per-session
    /// counter from 0 (the caller keeps it); endpoints "IP:port".
    void write(std::string_view connector, std::string_view session, std::uint64_t sequence,
               std::string_view local, std::string_view remote, event ev,
               std::string_view data, std::string_view context = {});
    /// Lines formatted by the caller without their date-time field (each ",connector,...,
    /// context\r\n", fields escaped with csv_field()); all get the same time stamp, taken
    /// under the lock. flush_now: write them out at once (a disconnect line).
    void write_lines(std::string_view lines, bool flush_now);
    void flush();

    /// Unique, sortable session id (16 upper-case hex digits, like Exchange's).
    static std::string new_session_id();

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

/// The length (2 or 3) of a UTF-8 character at s[i] that reorders text or breaks a line on
/// a reader's screen (bidi controls, U+2028, U+2029), else 0. Logs escape these bytes.
std::size_t reordering_character_at(std::string_view s, std::size_t i);
/// Appends `raw` with control bytes, the backslash and those characters as \xNN; with
/// `double_quotes`, a '"' is doubled (inside a quoted CSV field).
void append_escaped(std::string& out, std::string_view raw, bool double_quotes);

/// Writes one CSV field per RFC 4180 with control bytes as \xNN (exposed for tests/fuzz).
std::string csv_field(std::string_view raw);
/// The same, appended to `out`.
void append_csv_field(std::string& out, std::string_view raw);

/// One session's view of a protocol log: fills in connector, session id, endpoints and
/// the sequence number. Not thread-safe (one session = one strand).
class session_logger {
public:
    session_logger(protocol_log* log, std::string connector, std::string local, std::string remote,
                   bool enabled = true);
    const std::string& session_id() const { return session_; }
    void connect()                          { put(event::connect, {}); }
    void disconnect()                       { put(event::disconnect, {}); }
    void sent(std::string_view line)        { put(event::sent, line); }
    void received(std::string_view line)    { put(event::received, line); }
    void info(std::string_view text, std::string_view context = {}) { put(event::info, text, context); }
    /// Several lines with one lock of the log and one time stamp (the lines of one step).
    struct line {
        event what;
        std::string_view data;
        std::string_view context;
    };
    void put_all(std::span<const line> lines);

    /// DESIGN §6: at most `max_lines` lines between accepted messages (0: no cap). Past it,
    /// one `*` line says the cap was reached and later lines are only counted; the count
    /// is written when the next message is accepted (message_accepted()) and at disconnect.
    /// Connect and disconnect lines are always written.
    void cap_lines(std::uint32_t max_lines) { cap_ = max_lines; }
    void message_accepted();
    std::uint64_t lines_not_written() const { return held_back_total_; }
    void set_remote(std::string remote) { remote_ = std::move(remote); }
    const std::string& remote() const { return remote_; }
    void set_local(std::string local) { local_ = std::move(local); }

private:
    void put(event ev, std::string_view data, std::string_view context = {});
    bool over_cap(event ev, std::string& out);   // counts the line; true: do not write it
    void report_held_back(std::string& out);
    protocol_log* log_;
    std::string connector_, local_, remote_, session_;
    std::uint64_t sequence_ = 0;
    bool enabled_;
    std::string scratch_;                   // put_all's buffer, reused
    std::uint32_t cap_ = 0;
    std::uint32_t since_message_ = 0;       // lines written since the last accepted message
    std::uint64_t held_back_ = 0;           // not written since then
    std::uint64_t held_back_total_ = 0;
};

}  // namespace postern::log
