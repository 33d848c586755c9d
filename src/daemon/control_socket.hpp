// daemon/control_socket.hpp: the control socket of `postern serve` (DESIGN.md §3 [server]
// control_socket, §4 `postern reload|stop`).
//
// A UNIX stream socket, mode 0600, owned by the service user. Each connection carries one
// request line of JSON and gets one reply line of JSON:
//
//     -> {"command":"reload"}        <- {"ok":true,"message":"..."} | {"ok":false,"error":"..."}
//     -> {"command":"stop"}          <- {"ok":true,"message":"..."}, and the connection stays
//                                       open until the server has stopped (the client reads
//                                       to end of file to know when it is gone)
//     -> {"command":"queue-list"}    <- {"ok":true,"message":"...","data":{...}}
//     -> {"command":"status"}        <- {"ok":true,"data":{"version":...}} (`postern status`)
//     -> {"command":"route","address":"a@b"}  <- {"ok":true,"data":{"connector":...}} (`postern route`)
//     -> {"command":"queue-show","id":"0006..."}   (and queue-retry [id], queue-hold,
//        queue-release, queue-delete): the `postern queue` commands; requests carry their
//        arguments, replies their JSON data (daemon/queue_operations.hpp has the forms)
//
// Only root and the service user may talk to it: the file mode keeps others from
// connecting, and SO_PEERCRED is checked on every connection (refusals are logged), so
// a process that can pass the file mode (CAP_DAC_OVERRIDE) still needs the right uid.
//
// One thread accepts and answers connections one at a time; the handlers are the caller's
// (serve's reload and stop) and run on that thread.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

#include <nlohmann/json.hpp>

namespace postern::daemon {

struct control_reply {
    control_reply() = default;
    control_reply(bool ok_, std::string message_, std::string error_)
        : ok(ok_), message(std::move(message_)), error(std::move(error_)) {}

    bool ok = false;
    std::string message;   // ok: what happened (may be empty)
    std::string error;     // not ok: one line saying why
    nlohmann::json data;   // queue-list, queue-show: the answer (null when none)
    /// Client side: no server listens (no socket file, or connection refused), so the
    /// caller may work without one (`postern queue` opens the store directly).
    bool no_server = false;
    /// Server side: the request itself was wrong (bad id, missing argument).
    bool bad_request = false;
};

struct control_handlers {
    control_handlers() = default;
    control_handlers(std::function<control_reply()> reload_, std::function<control_reply()> stop_,
                     std::function<control_reply(const nlohmann::json&)> queue_ = {})
        : reload(std::move(reload_)), stop(std::move(stop_)), queue(std::move(queue_)) {}

    std::function<control_reply()> reload;
    std::function<control_reply()> stop;
    /// The queue-* commands, with the whole request object.
    std::function<control_reply(const nlohmann::json& request)> queue;
    /// "status": the running server's state as data (server_status.hpp).
    std::function<control_reply()> status;
    /// "route" with "address": where that address goes under the running configuration.
    std::function<control_reply(const nlohmann::json& request)> route;
    /// "policy" with "action" (show, forget, report): the downgrade memory (`postern policy`).
    std::function<control_reply(const nlohmann::json& request)> policy;
    /// "tlsrpt" with "action" show: the TLS-RPT counts of the open period; "send": close
    /// the period and send its reports.
    std::function<control_reply(const nlohmann::json& request)> tlsrpt;
};

struct control_socket_options {
    std::filesystem::path path;
    std::vector<uid_t> allowed_uids;             // besides these, nobody (root is not implied)
    std::optional<std::pair<uid_t, gid_t>> owner;   // chown the socket file to this account
    std::chrono::milliseconds request_timeout{5000};   // to read the request line
};

class control_socket {
public:
    /// Binds and listens (requests wait in the backlog until start()). A socket file left
    /// by a previous run is replaced; when a server answers on it, throws
    /// std::runtime_error("another postern serve is running (control socket PATH answers)").
    /// Anything else in the way (not a socket) is refused too.
    explicit control_socket(control_socket_options options);
    ~control_socket();   // stop_serving(), closes held connections, removes the socket file
    control_socket(const control_socket&) = delete;
    control_socket& operator=(const control_socket&) = delete;

    /// Starts the thread that answers requests with these handlers.
    void start(control_handlers handlers);
    /// Stops answering (joins the thread); the handlers are not called after it returns.
    /// Connections of `stop` requests stay open until destruction.
    void stop_serving();

    const std::filesystem::path& path() const;

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

/// The client side (`postern reload|stop`): connects, sends {"command": command}, reads
/// the reply line. When `wait_for_close` is set and the reply is ok, waits (up to
/// `timeout` in all) until the server closes the connection. Connection failures come back
/// as ok=false with a clear error ("no server is running (socket X: connection refused)").
control_reply control_request(const std::filesystem::path& socket, const std::string& command,
                              std::chrono::milliseconds timeout, bool wait_for_close = false);
/// Same with a whole request object ({"command": ..., arguments...}).
control_reply control_exchange(const std::filesystem::path& socket, const nlohmann::json& request,
                              std::chrono::milliseconds timeout, bool wait_for_close = false);

}  // namespace postern::daemon
