// daemon/queue_operations.hpp: `postern queue list | show | retry | hold | release | delete`
// as operations over a queue::store (DESIGN.md §4).
//
// The same code answers in two places: inside `postern serve`, behind the control socket
// (the server holds the store's lock; daemon/mail_pipeline.hpp adds waking the delivery
// engine and the server log), and in `postern queue` itself when no server runs (it opens
// the store directly). Requests and answers are JSON, the control socket's form:
//
//     {"command": "queue-list"}                       -> data {"messages": [message...]}
//     {"command": "queue-show",    "id": ID}          -> data {"message": message + details}
//     {"command": "queue-retry"}   | {..., "id": ID}  -> message "..." , data {"recipients": N}
//     {"command": "queue-hold",    "id": ID}
//     {"command": "queue-release", "id": ID}
//     {"command": "queue-delete",  "id": ID}
//
// A message in `data`:
//     {"id", "received_at" (ISO 8601 UTC), "sender" ("" = null sender), "size" (octets),
//      "held", "status" ("held" | "deferred" | "ready"), "reason" (why it waits),
//      "recipients": [{"address", "orcpt", "notify" (RFC 3461 NOTIFY as received, upper case;
//                      "" = absent), "state" ("pending" | "delivered" | "failed"),
//                      "attempts", "next_attempt" (ISO 8601 UTC; null unless pending),
//                      "last_reply"}]}
// `show` adds "envid", "ret", "body_8bit", "smtputf8", "client_address", "client_helo",
// "receive_connector", "session_id", "delay_notice_sent" and "headers" (the message's
// header section as stored; the body is never shown).
//
// Concurrency: every load-modify-update of an envelope is a store change()
// (queue/store.hpp), run in order on the store's writer thread, as the delivery engine's
// are, so an operation and a delivery result never overwrite each other's change.
#pragma once

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "smtp/envelope.hpp"
#include "queue/store.hpp"

namespace postern::daemon {

struct queue_result {
    bool ok = false;
    std::string message;      // ok: one line for people (may be empty)
    std::string error;        // not ok: one line saying why
    nlohmann::json data;      // list and show (null otherwise)
    bool bad_request = false; // not ok because the request itself is wrong (exit status 2)
};

class queue_operations {
public:
    explicit queue_operations(queue::store& store) : store_(store) {}

    queue_result list(smtp::sys_time now) const;
    queue_result show(const std::string& id, smtp::sys_time now) const;
    /// Every pending recipient of the message (all messages without `id`) becomes due now.
    /// Held messages get the new time too, but stay held (the message says so).
    queue_result retry(const std::optional<std::string>& id, smtp::sys_time now);
    queue_result hold(const std::string& id);
    queue_result release(const std::string& id);
    /// Removes envelope and body.
    queue_result remove(const std::string& id);

private:
    queue_result set_held(const std::string& id, bool held);

    queue::store& store_;
};

/// Commands the control socket passes to handle_queue_request().
bool is_queue_command(const std::string& command);

/// Runs one request ({"command": "queue-...", "id": ...}); a missing or malformed id is a
/// bad request.
queue_result handle_queue_request(queue_operations& ops, const nlohmann::json& request, smtp::sys_time now);

/// The header section of a stored message (up to, not including, the first empty line).
std::string header_section_of(const std::string& body);

/// ISO 8601 UTC with seconds and Z ("2024-06-01T12:00:03Z").
std::string iso_time(smtp::sys_time t);

/// Human forms of list and show data (postqueue -p / Get-Queue style); `now` for the
/// "in 4m" of next attempts.
std::string format_queue_list(const nlohmann::json& data, smtp::sys_time now);
std::string format_queue_show(const nlohmann::json& data, smtp::sys_time now);

}  // namespace postern::daemon
