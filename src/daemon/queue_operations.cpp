#include "daemon/queue_operations.hpp"

#include <cstdio>
#include <ctime>

#include <fmt/format.h>

#include "queue/queue_id.hpp"

namespace postern::daemon {

namespace {

using nlohmann::json;
using smtp::recipient_state;

const char* state_name(recipient_state s) {
    switch (s) {
    case recipient_state::pending: return "pending";
    case recipient_state::delivered: return "delivered";
    case recipient_state::failed: return "failed";
    }
    return "pending";
}

queue_result failure(std::string error, bool bad_request = false) {
    queue_result r;
    r.error = std::move(error);
    r.bad_request = bad_request;
    return r;
}

queue_result success(std::string message, json data = nullptr) {
    queue_result r;
    r.ok = true;
    r.message = std::move(message);
    r.data = std::move(data);
    return r;
}

/// Ids from users go through parse_queue_id() before they reach the store.
std::optional<queue_result> check_id(const std::string& id) {
    if (!queue::parse_queue_id(id))
        return failure("not a queue id: \"" + id + "\" (ids are " + std::to_string(queue::queue_id_length) +
                           " lowercase hex digits, as `postern queue list` shows them)",
                       true);
    return std::nullopt;
}

queue_result not_found(const std::string& id) { return failure("no message " + id + " in the queue"); }

std::uint64_t size_of(const queue::store& store, const smtp::envelope& env) {
    if (env.body_size != 0) return env.body_size;
    // Records written before the size was kept: the body itself says.
    auto body = store.load_body(env.id);
    return body ? body->size() : 0;
}

std::size_t pending_count(const smtp::envelope& env) {
    std::size_t n = 0;
    for (const auto& r : env.recipients) n += r.state == recipient_state::pending;
    return n;
}

/// "held" | "deferred" | "ready", and why the message waits, in words.
std::pair<std::string, std::string> status_of(const smtp::envelope& env, smtp::sys_time now) {
    if (env.held) return {"held", "held (postern queue release " + env.id + " lets it go)"};
    const smtp::recipient* waiting = nullptr;
    for (const auto& r : env.recipients) {
        if (r.state != recipient_state::pending) continue;
        if (r.next_attempt > now && r.attempts > 0) {
            if (!waiting || r.next_attempt < waiting->next_attempt) waiting = &r;
        } else {
            return {"ready", r.attempts == 0 ? "not attempted yet" : "due now; last reply: " + r.last_reply};
        }
    }
    if (!waiting) return {"ready", "nothing pending"};
    return {"deferred", waiting->last_reply.empty() ? "deferred" : waiting->last_reply};
}

json message_json(const queue::store& store, const smtp::envelope& env, smtp::sys_time now) {
    auto [status, reason] = status_of(env, now);
    json recipients = json::array();
    for (const auto& r : env.recipients) {
        recipients.push_back({{"address", r.address},
                              {"orcpt", r.orcpt},
                              {"notify", r.notify},
                              {"state", state_name(r.state)},
                              {"attempts", r.attempts},
                              {"next_attempt", r.state == recipient_state::pending ? json(iso_time(r.next_attempt))
                                                                                   : json(nullptr)},
                              {"last_reply", r.last_reply},
                              {"last_tls", r.last_tls}});
    }
    return {{"id", env.id},
            {"received_at", iso_time(env.received_at)},
            {"sender", env.mail_from},
            {"size", size_of(store, env)},
            {"held", env.held},
            {"status", status},
            {"reason", reason},
            {"recipients", std::move(recipients)}};
}

// --- reading JSON back for the human forms ------------------------------------------------

/// Text for a terminal: control bytes (from a peer's reply or a client's headers) as
/// \xNN, so nothing stored can send escape sequences to an administrator's terminal.
std::string printable(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (unsigned char c : s) {
        if ((c < 0x20 && c != '\t') || c == 0x7f) out += fmt::format("\\x{:02x}", c);
        else out.push_back(static_cast<char>(c));
    }
    return out;
}

std::string text(const json& j, const char* key) {
    auto it = j.find(key);
    return it != j.end() && it->is_string() ? printable(it->get<std::string>()) : std::string();
}

std::optional<smtp::sys_time> parse_iso(const std::string& s) {
    std::tm tm{};
    char z = 0;
    if (std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%c", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                    &tm.tm_min, &tm.tm_sec, &z) != 7 || z != 'Z')
        return std::nullopt;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return std::chrono::system_clock::from_time_t(::timegm(&tm));
}

std::string span_text(std::chrono::seconds s) {
    auto n = s.count();
    if (n < 60) return fmt::format("{}s", n);
    if (n < 3600) return fmt::format("{}m{:02}s", n / 60, n % 60);
    if (n < 86400) return fmt::format("{}h{:02}m", n / 3600, (n % 3600) / 60);
    return fmt::format("{}d{:02}h", n / 86400, (n % 86400) / 3600);
}

std::string when_text(const std::string& iso, smtp::sys_time now) {
    auto t = parse_iso(iso);
    if (!t) return iso;
    auto left = std::chrono::duration_cast<std::chrono::seconds>(*t - now);
    if (left.count() <= 0) return iso + " (due now)";
    return iso + " (in " + span_text(left) + ")";
}

std::string display_sender(const std::string& s) { return s.empty() ? "<>" : s; }

void append_recipients(std::string& out, const json& message, smtp::sys_time now, const char* indent) {
    for (const auto& r : message.value("recipients", json::array())) {
        out += fmt::format("{}{:<10} {}\n", indent, text(r, "state"), text(r, "address"));
        std::string detail = fmt::format("attempts {}", r.value("attempts", 0));
        if (r.contains("next_attempt") && r["next_attempt"].is_string())
            detail += ", next attempt " + when_text(r["next_attempt"].get<std::string>(), now);
        out += fmt::format("{}{:<10} {}\n", indent, "", detail);
        // RFC 3461 parameters as received, only when the client gave them.
        std::string dsn;
        if (auto notify = text(r, "notify"); !notify.empty()) dsn = "NOTIFY=" + notify;
        if (auto orcpt = text(r, "orcpt"); !orcpt.empty()) {
            if (!dsn.empty()) dsn += ' ';
            dsn += "ORCPT=" + orcpt;
        }
        if (!dsn.empty()) out += fmt::format("{}{:<10} dsn: {}\n", indent, "", dsn);
        if (auto reply = text(r, "last_reply"); !reply.empty())
            out += fmt::format("{}{:<10} last reply: {}\n", indent, "", reply);
        if (auto tls = text(r, "last_tls"); !tls.empty()) out += fmt::format("{}{:<10} last TLS: {}\n", indent, "", tls);
    }
}

}  // namespace

std::string iso_time(smtp::sys_time t) {
    auto seconds = std::chrono::system_clock::to_time_t(std::chrono::time_point_cast<std::chrono::seconds>(t));
    std::tm utc{};
    ::gmtime_r(&seconds, &utc);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &utc);
    return buf;
}

std::string header_section_of(const std::string& body) {
    // The first empty line ends the header section (RFC 5322 §2.1); stored bodies use CRLF.
    std::size_t end = body.size();
    if (body.starts_with("\r\n")) return {};
    if (auto crlf = body.find("\r\n\r\n"); crlf != std::string::npos) end = crlf + 2;
    if (auto lf = body.find("\n\n"); lf != std::string::npos && lf + 1 < end) end = lf + 1;
    return body.substr(0, end);
}

queue_result queue_operations::list(smtp::sys_time now) const {
    json messages = json::array();
    std::uint64_t total = 0;
    for (const auto& env : store_.list()) {
        auto m = message_json(store_, env, now);
        total += m["size"].get<std::uint64_t>();
        messages.push_back(std::move(m));
    }
    const auto count = messages.size();
    return success(fmt::format("{} message(s)", count),
                   json{{"messages", std::move(messages)}, {"count", count}, {"total_size", total}});
}

queue_result queue_operations::show(const std::string& id, smtp::sys_time now) const {
    if (auto bad = check_id(id)) return *bad;
    auto env = store_.load_envelope(id);
    if (!env) return not_found(id);
    auto m = message_json(store_, *env, now);
    m["envid"] = env->envid;
    m["ret"] = env->ret;
    m["body_8bit"] = env->body_8bit;
    m["smtputf8"] = env->smtputf8;
    m["client_address"] = env->client_address;
    m["client_helo"] = env->client_helo;
    m["receive_connector"] = env->receive_connector;
    m["session_id"] = env->session_id;
    m["delay_notice_sent"] = env->delay_notice_sent;
    auto body = store_.load_body(id);
    m["headers"] = body ? header_section_of(*body) : std::string();
    return success("", json{{"message", std::move(m)}});
}

queue_result queue_operations::retry(const std::optional<std::string>& id, smtp::sys_time now) {
    if (id)
        if (auto bad = check_id(*id)) return *bad;
    std::vector<std::string> ids;
    if (id) {
        ids.push_back(*id);
    } else {
        for (const auto& env : store_.list()) ids.push_back(env.id);
    }
    std::size_t recipients = 0, messages = 0, held = 0;
    for (const auto& one : ids) {
        std::size_t changed = 0;
        bool is_held = false;
        auto r = queue::change_and_wait(store_, one, [&](smtp::envelope& env, auto&) {
            changed = 0;
            for (auto& rcpt : env.recipients) {
                if (rcpt.state != recipient_state::pending) continue;
                rcpt.next_attempt = now;
                ++changed;
            }
            is_held = env.held;
            return changed ? queue::change_action::update : queue::change_action::keep;
        });
        if (!r.found) {
            if (id) return not_found(one);
            continue;   // delivered or deleted meanwhile
        }
        if (!r.ok) {
            if (id) return failure("cannot update " + one + ": " + r.reason);
            continue;
        }
        if (changed == 0) continue;
        recipients += changed;
        ++messages;
        held += is_held;
    }
    std::string message = id ? fmt::format("{}: {} recipient(s) due now", *id, recipients)
                              : fmt::format("{} recipient(s) of {} message(s) due now", recipients, messages);
    if (held) message += id ? "; the message is held: it is attempted once released"
                            : fmt::format("; {} of them held: attempted once released", held);
    return success(message, json{{"recipients", recipients}, {"messages", messages}, {"held", held}});
}

queue_result queue_operations::set_held(const std::string& id, bool held) {
    if (auto bad = check_id(id)) return *bad;
    bool already = false;
    auto r = queue::change_and_wait(store_, id, [&](smtp::envelope& env, auto&) {
        already = env.held == held;
        env.held = held;
        return already ? queue::change_action::keep : queue::change_action::update;
    });
    if (!r.found) return not_found(id);
    if (!r.ok) return failure("cannot update " + id + ": " + r.reason);
    if (already) return success(fmt::format("{} is already {}", id, held ? "held" : "released"));
    return success(fmt::format("{} {}", id, held ? "held: it is not attempted until released" : "released"));
}

queue_result queue_operations::hold(const std::string& id) { return set_held(id, true); }

queue_result queue_operations::release(const std::string& id) { return set_held(id, false); }

queue_result queue_operations::remove(const std::string& id) {
    if (auto bad = check_id(id)) return *bad;
    smtp::envelope removed;
    auto r = queue::change_and_wait(store_, id, [&](smtp::envelope& env, auto&) {
        removed = env;
        return queue::change_action::remove;
    });
    if (!r.found) return not_found(id);
    if (!r.ok) return failure("cannot delete " + id + ": " + r.reason);
    return success(fmt::format("deleted {} (from <{}>, {} recipient(s), {} still pending)", id, removed.mail_from,
                               removed.recipients.size(), pending_count(removed)));
}

bool is_queue_command(const std::string& command) {
    return command == "queue-list" || command == "queue-show" || command == "queue-retry" ||
           command == "queue-hold" || command == "queue-release" || command == "queue-delete";
}

queue_result handle_queue_request(queue_operations& ops, const nlohmann::json& request, smtp::sys_time now) {
    if (!request.is_object() || !request.contains("command") || !request["command"].is_string())
        return failure("bad request: no command", true);
    const auto command = request["command"].get<std::string>();
    std::optional<std::string> id;
    if (auto it = request.find("id"); it != request.end() && !it->is_null()) {
        if (!it->is_string()) return failure("bad request: \"id\" must be a string", true);
        id = it->get<std::string>();
    }
    auto need_id = [&]() -> std::optional<queue_result> {
        if (!id) return failure(command + " needs an \"id\"", true);
        return std::nullopt;
    };
    if (command == "queue-list") return ops.list(now);
    if (command == "queue-retry") return ops.retry(id, now);
    if (auto missing = need_id()) return *missing;
    if (command == "queue-show") return ops.show(*id, now);
    if (command == "queue-hold") return ops.hold(*id);
    if (command == "queue-release") return ops.release(*id);
    if (command == "queue-delete") return ops.remove(*id);
    return failure("unknown queue command \"" + command + "\"", true);
}

std::string format_queue_list(const nlohmann::json& data, smtp::sys_time now) {
    const auto messages = data.value("messages", json::array());
    if (messages.empty()) return "The queue is empty.\n";
    std::string out = fmt::format("{:<16}  {:>10}  {:<20}  {}\n", "ID", "SIZE", "ARRIVED", "SENDER");
    for (const auto& m : messages) {
        out += fmt::format("{:<16}  {:>10}  {:<20}  {}{}\n", text(m, "id"), m.value("size", std::uint64_t{0}),
                           text(m, "received_at"), display_sender(text(m, "sender")),
                           m.value("held", false) ? "  [HELD]" : "");
        out += fmt::format("    waiting: {}\n", text(m, "reason"));
        append_recipients(out, m, now, "    ");
        out += "\n";
    }
    out += fmt::format("-- {} message(s), {} octets\n", data.value("count", messages.size()),
                       data.value("total_size", std::uint64_t{0}));
    return out;
}

std::string format_queue_show(const nlohmann::json& data, smtp::sys_time now) {
    const auto m = data.value("message", json::object());
    std::string out;
    auto line = [&](const char* name, const std::string& value) { out += fmt::format("{:<18} {}\n", name, value); };
    auto flag = [&](const char* key) { return m.value(key, false) ? std::string("yes") : std::string("no"); };
    line("id:", text(m, "id"));
    line("received:", text(m, "received_at"));
    line("sender:", display_sender(text(m, "sender")));
    line("size:", std::to_string(m.value("size", std::uint64_t{0})) + " octets");
    line("held:", flag("held"));
    line("status:", text(m, "status"));
    line("waiting:", text(m, "reason"));
    line("client:", text(m, "client_address") + " (HELO " + text(m, "client_helo") + ")");
    line("receive connector:", text(m, "receive_connector"));
    line("session:", text(m, "session_id"));
    line("8bitmime:", flag("body_8bit"));
    line("smtputf8:", flag("smtputf8"));
    if (auto envid = text(m, "envid"); !envid.empty()) line("envid:", envid);
    if (auto ret = text(m, "ret"); !ret.empty()) line("ret:", ret);
    line("delay notice:", m.value("delay_notice_sent", false) ? "sent" : "not sent");
    out += "recipients:\n";
    append_recipients(out, m, now, "  ");
    out += "headers:\n";
    const auto it = m.find("headers");
    const std::string headers = it != m.end() && it->is_string() ? it->get<std::string>() : std::string();
    std::size_t start = 0;
    while (start < headers.size()) {
        auto end = headers.find('\n', start);
        if (end == std::string::npos) end = headers.size();
        std::string_view l(headers.data() + start, end - start);
        if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
        out += "  " + printable(l) + "\n";
        start = end + 1;
    }
    return out;
}

}  // namespace postern::daemon
