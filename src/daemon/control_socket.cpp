#include "daemon/control_socket.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <utility>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

namespace postern::daemon {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using clock_type = std::chrono::steady_clock;

constexpr std::size_t max_request = 4096;
// Replies carry queue listings: allow large ones, but not without bound.
constexpr std::size_t max_reply = 512ull * 1024 * 1024;

struct fd_owner {
    int fd = -1;
    fd_owner() = default;
    explicit fd_owner(int f) : fd(f) {}
    fd_owner(fd_owner&& o) noexcept : fd(std::exchange(o.fd, -1)) {}
    fd_owner& operator=(fd_owner&& o) noexcept {
        if (this != &o) {
            reset();
            fd = std::exchange(o.fd, -1);
        }
        return *this;
    }
    ~fd_owner() { reset(); }
    void reset() {
        if (fd >= 0) ::close(fd);
        fd = -1;
    }
};

sockaddr_un address_of(const fs::path& path) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    const std::string& p = path.native();
    if (p.empty() || p.size() >= sizeof(addr.sun_path))
        throw std::runtime_error("control socket " + p + ": the path must be 1 to " +
                                 std::to_string(sizeof(addr.sun_path) - 1) + " bytes long");
    std::memcpy(addr.sun_path, p.c_str(), p.size() + 1);
    return addr;
}

/// connect() to a UNIX socket; 0 or errno. EAGAIN (a full backlog) counts as answering.
int try_connect(int fd, const fs::path& path) {
    sockaddr_un addr = address_of(path);
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) return 0;
    return errno;
}

int milliseconds_left(clock_type::time_point deadline) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now()).count();
    return static_cast<int>(std::clamp<long long>(left, 0, 1 << 30));
}

/// Reads up to the first '\n' (excluded). Empty optional on timeout, end of file, error,
/// an over-long line, or when `wake_fd` (if >= 0) becomes readable.
std::optional<std::string> read_line(int fd, clock_type::time_point deadline, int wake_fd, std::string& error,
                                     std::size_t max_length = max_request) {
    std::string line;
    for (;;) {
        pollfd fds[2] = {{fd, POLLIN, 0}, {wake_fd, POLLIN, 0}};
        int n = ::poll(fds, wake_fd >= 0 ? 2 : 1, milliseconds_left(deadline));
        if (n < 0) {
            if (errno == EINTR) continue;
            error = std::strerror(errno);
            return std::nullopt;
        }
        if (n == 0) {
            error = "timed out";
            return std::nullopt;
        }
        if (wake_fd >= 0 && (fds[1].revents & POLLIN)) {
            error = "shutting down";
            return std::nullopt;
        }
        char buf[16384];
        ssize_t got = ::recv(fd, buf, sizeof buf, 0);
        if (got < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            error = std::strerror(errno);
            return std::nullopt;
        }
        if (got == 0) {
            error = "closed";
            return std::nullopt;
        }
        const auto searched = line.size();
        line.append(buf, static_cast<std::size_t>(got));
        if (auto nl = line.find('\n', searched); nl != std::string::npos) {
            line.resize(nl);
            if (!line.empty() && line.back() == '\r') line.pop_back();
            return line;
        }
        if (line.size() > max_length) {
            error = max_length == max_request ? "request too long" : "reply too long";
            return std::nullopt;
        }
    }
}

bool write_all(int fd, const std::string& data) {
    for (std::size_t done = 0; done < data.size();) {
        ssize_t n = ::send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        done += static_cast<std::size_t>(n);
    }
    return true;
}

std::string reply_line(const control_reply& r) {
    json j;
    j["ok"] = r.ok;
    if (r.ok) {
        if (!r.message.empty()) j["message"] = r.message;
    } else {
        j["error"] = r.error;
        if (r.bad_request) j["bad_request"] = true;
    }
    if (!r.data.is_null()) j["data"] = r.data;
    // Stored text (a peer's reply, a client's headers) need not be UTF-8: replace, never throw.
    return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

control_reply failure(std::string error) { return {false, "", std::move(error)}; }

}  // namespace

struct control_socket::impl {
    control_socket_options options;
    fd_owner listener;
    fd_owner wake_read, wake_write;
    dev_t device = 0;
    ino_t inode = 0;
    control_handlers handlers;
    std::thread thread;
    std::mutex held_mutex;
    std::vector<fd_owner> held;   // connections of `stop` requests, closed at destruction
    bool serving = false;

    void bind_and_listen();
    void loop();
    void answer(fd_owner connection);
};

void control_socket::impl::bind_and_listen() {
    const fs::path& path = options.path;
    sockaddr_un addr = address_of(path);

    std::error_code ec;
    if (path.has_parent_path() && !fs::exists(path.parent_path(), ec)) {
        fs::create_directories(path.parent_path(), ec);
        if (ec) throw std::runtime_error("control socket " + path.string() + ": cannot create its directory: " + ec.message());
        ::chmod(path.parent_path().c_str(), 0700);
        if (options.owner && ::chown(path.parent_path().c_str(), options.owner->first, options.owner->second) != 0)
            throw std::runtime_error("control socket " + path.string() + ": cannot give its directory to the service user: " +
                                     std::strerror(errno));
    }

    // Another user who may write to the directory could swap the socket for a symlink
    // (or for a socket of their own) at any moment; a sticky directory (/tmp) at least
    // keeps our file ours. So: no such directory, and nothing below follows a symlink.
    struct stat st {};
    const auto dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
    if (::stat(dir.c_str(), &st) == 0 && (st.st_mode & (S_IWGRP | S_IWOTH)) && !(st.st_mode & S_ISVTX))
        throw std::runtime_error("control socket " + path.string() + ": its directory " + dir.string() +
                                 " can be written by other users; use a private directory (the default is in data_dir)");
    if (::lstat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            throw std::runtime_error("control socket " + path.string() + ": something else than a socket is in the way");
        fd_owner probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
        if (probe.fd < 0) throw std::runtime_error(std::string("control socket: socket(): ") + std::strerror(errno));
        int err = try_connect(probe.fd, path);
        if (err == 0 || err == EAGAIN || err == EINPROGRESS)
            throw std::runtime_error("another postern serve is running (control socket " + path.string() + " answers)");
        if (err != ECONNREFUSED)
            throw std::runtime_error("control socket " + path.string() + ": cannot check the socket left there: " +
                                     std::strerror(err));
        // Left by a server that is gone (crashed or killed): replace it.
        if (::unlink(path.c_str()) != 0 && errno != ENOENT)
            throw std::runtime_error("control socket " + path.string() + ": cannot remove the stale socket: " +
                                     std::strerror(errno));
        spdlog::info("control socket {}: replaced the stale socket of a previous run", path.string());
    }

    listener = fd_owner(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (listener.fd < 0) throw std::runtime_error(std::string("control socket: socket(): ") + std::strerror(errno));
    // The file is created by bind() with the umask's mode: no moment with a wider mode.
    mode_t old_mask = ::umask(0177);
    int rc = ::bind(listener.fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
    int err = errno;
    ::umask(old_mask);
    if (rc != 0) throw std::runtime_error("control socket " + path.string() + ": cannot bind: " + std::strerror(err));
    // bind() made it 0600 (umask 0177). lchown, not chown: never follows a symlink.
    if (options.owner && ::lchown(path.c_str(), options.owner->first, options.owner->second) != 0)
        throw std::runtime_error("control socket " + path.string() + ": cannot give it to the service user: " +
                                 std::strerror(errno));
    if (::lstat(path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode) || (st.st_mode & 0777) != 0600)
        throw std::runtime_error("control socket " + path.string() + ": not the 0600 socket just created (replaced?)");
    device = st.st_dev;
    inode = st.st_ino;
    if (::listen(listener.fd, 16) != 0)
        throw std::runtime_error("control socket " + path.string() + ": cannot listen: " + std::strerror(errno));

    int pipe_fds[2];
    if (::pipe2(pipe_fds, O_CLOEXEC | O_NONBLOCK) != 0)
        throw std::runtime_error(std::string("control socket: pipe(): ") + std::strerror(errno));
    wake_read = fd_owner(pipe_fds[0]);
    wake_write = fd_owner(pipe_fds[1]);
}

void control_socket::impl::loop() {
    for (;;) {
        pollfd fds[2] = {{listener.fd, POLLIN, 0}, {wake_read.fd, POLLIN, 0}};
        if (::poll(fds, 2, -1) < 0) {
            if (errno == EINTR) continue;
            spdlog::error("control socket: poll: {}", std::strerror(errno));
            return;
        }
        if (fds[1].revents & POLLIN) return;
        if (!(fds[0].revents & POLLIN)) continue;
        fd_owner connection(::accept4(listener.fd, nullptr, nullptr, SOCK_CLOEXEC));
        if (connection.fd < 0) {
            if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED)
                spdlog::warn("control socket: accept: {}", std::strerror(errno));
            continue;
        }
        try {
            answer(std::move(connection));
        } catch (const std::exception& e) {
            spdlog::error("control socket: {}", e.what());
        }
    }
}

void control_socket::impl::answer(fd_owner connection) {
    timeval send_timeout{5, 0};
    ::setsockopt(connection.fd, SOL_SOCKET, SO_SNDTIMEO, &send_timeout, sizeof send_timeout);

    ucred peer{};
    socklen_t len = sizeof peer;
    if (::getsockopt(connection.fd, SOL_SOCKET, SO_PEERCRED, &peer, &len) != 0) {
        spdlog::warn("control socket: cannot read the peer's credentials: {}", std::strerror(errno));
        return;
    }
    if (std::find(options.allowed_uids.begin(), options.allowed_uids.end(), peer.uid) == options.allowed_uids.end()) {
        spdlog::warn("control socket: refused a request from uid {} (pid {}): only root and the service user may use it",
                     peer.uid, peer.pid);
        write_all(connection.fd, reply_line(failure("permission denied: uid " + std::to_string(peer.uid) +
                                                    " may not use this control socket")));
        return;
    }

    std::string error;
    auto line = read_line(connection.fd, clock_type::now() + options.request_timeout, wake_read.fd, error);
    if (!line) {
        if (error != "closed" && error != "shutting down")
            spdlog::warn("control socket: no request from uid {} (pid {}): {}", peer.uid, peer.pid, error);
        if (error == "timed out" || error == "request too long")
            write_all(connection.fd, reply_line(failure("bad request: " + error)));
        return;
    }

    std::string command;
    json request;
    try {
        request = json::parse(*line);
        if (request.is_object() && request.contains("command") && request["command"].is_string())
            command = request["command"].get<std::string>();
    } catch (const json::exception&) {
    }
    control_reply reply;
    if (command.empty()) {
        reply = failure("bad request: expected one line {\"command\": \"reload\"|\"stop\"}");
    } else if (command == "reload" || command == "stop") {
        spdlog::info("control socket: {} requested by uid {} (pid {})", command, peer.uid, peer.pid);
        const auto& handler = command == "reload" ? handlers.reload : handlers.stop;
        try {
            reply = handler ? handler() : failure(command + " is not available");
        } catch (const std::exception& e) {
            reply = failure(e.what());
        }
    } else if (command == "status") {
        try {
            reply = handlers.status ? handlers.status() : failure("status is not available");
        } catch (const std::exception& e) {
            reply = failure(e.what());
        }
    } else if (command == "route") {
        try {
            reply = handlers.route ? handlers.route(request) : failure("route is not available");
        } catch (const std::exception& e) {
            reply = failure(e.what());
        }
    } else if (command == "tlsrpt") {
        try {
            reply = handlers.tlsrpt ? handlers.tlsrpt(request) : failure("tlsrpt is not available");
        } catch (const std::exception& e) {
            reply = failure(e.what());
        }
    } else if (command == "policy") {
        const auto action = request.value("action", std::string());
        if (action == "forget")
            spdlog::info("control socket: policy forget {}{} requested by uid {} (pid {})",
                         request.value("domain", std::string()), request.value("dry_run", false) ? " (dry run)" : "",
                         peer.uid, peer.pid);
        try {
            reply = handlers.policy ? handlers.policy(request) : failure("policy is not available");
        } catch (const std::exception& e) {
            reply = failure(e.what());
        }
    } else if (command.starts_with("queue-")) {
        // Changes are logged; looking is not worth a line each time.
        if (command == "queue-list" || command == "queue-show")
            spdlog::debug("control socket: {} requested by uid {} (pid {})", command, peer.uid, peer.pid);
        else
            spdlog::info("control socket: {} {} requested by uid {} (pid {})", command,
                         request.value("id", std::string("(all)")), peer.uid, peer.pid);
        try {
            reply = handlers.queue ? handlers.queue(request) : failure(command + " is not available");
        } catch (const std::exception& e) {
            reply = failure(e.what());
        }
    } else {
        reply = failure("unknown command \"" + command +
                        "\" (known: reload, stop, status, route, policy, tlsrpt, queue-list, queue-show, queue-retry, queue-hold, queue-release, "
                        "queue-delete)");
    }
    write_all(connection.fd, reply_line(reply));
    if (command == "stop" && reply.ok) {
        std::lock_guard lock(held_mutex);
        held.push_back(std::move(connection));   // closed when the server is gone
    }
}

control_socket::control_socket(control_socket_options options) : impl_(std::make_unique<impl>()) {
    impl_->options = std::move(options);
    impl_->bind_and_listen();
}

control_socket::~control_socket() {
    stop_serving();
    {
        std::lock_guard lock(impl_->held_mutex);
        impl_->held.clear();
    }
    impl_->listener.reset();
    // Remove the file only while it is still ours (not a newer server's).
    struct stat st {};
    if (impl_->inode != 0 && ::lstat(impl_->options.path.c_str(), &st) == 0 && st.st_ino == impl_->inode &&
        st.st_dev == impl_->device) {
        if (::unlink(impl_->options.path.c_str()) != 0)
            spdlog::debug("control socket {}: cannot remove it: {}", impl_->options.path.string(), std::strerror(errno));
    }
}

void control_socket::start(control_handlers handlers) {
    if (impl_->serving) return;
    impl_->handlers = std::move(handlers);
    impl_->serving = true;
    impl_->thread = std::thread([this] { impl_->loop(); });
}

void control_socket::stop_serving() {
    if (!impl_->serving) return;
    impl_->serving = false;
    char byte = 1;
    while (::write(impl_->wake_write.fd, &byte, 1) < 0 && errno == EINTR) {
    }
    if (impl_->thread.joinable()) impl_->thread.join();
}

const std::filesystem::path& control_socket::path() const { return impl_->options.path; }

control_reply control_request(const std::filesystem::path& socket, const std::string& command,
                              std::chrono::milliseconds timeout, bool wait_for_close) {
    return control_exchange(socket, json{{"command", command}}, timeout, wait_for_close);
}

control_reply control_exchange(const std::filesystem::path& socket, const nlohmann::json& request,
                              std::chrono::milliseconds timeout, bool wait_for_close) {
    const auto deadline = clock_type::now() + timeout;
    const std::string where = "socket " + socket.string();
    fd_owner fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (fd.fd < 0) return failure(std::string("socket(): ") + std::strerror(errno));
    int err = 0;
    try {
        err = try_connect(fd.fd, socket);
    } catch (const std::exception& e) {
        return failure(e.what());
    }
    switch (err) {
        case 0: break;
        case ENOENT:
        case ECONNREFUSED: {
            auto r = failure("no server is running (" + where + (err == ENOENT ? ": no such file)" : ": connection refused)"));
            r.no_server = true;
            return r;
        }
        case EACCES:
        case EPERM:
            return failure(where + ": permission denied (only root and the service user may use it)");
        default: return failure(where + ": " + std::strerror(err));
    }
    // A server that refuses this peer answers at once and closes without reading, so a
    // failed send may still leave its refusal waiting to be read: read before giving up.
    const bool sent = write_all(fd.fd, request.dump() + "\n");
    const int send_errno = errno;

    std::string error;
    auto line = read_line(fd.fd, deadline, -1, error, max_reply);
    if (!line && !sent) return failure(where + ": cannot send the request: " + std::strerror(send_errno));
    if (!line) {
        if (error == "closed") return failure(where + ": the server closed the connection without a reply");
        if (error == "timed out")
            return failure(where + ": no reply within " + std::to_string(timeout.count() / 1000) + "s");
        return failure(where + ": " + error);
    }
    control_reply reply;
    try {
        json j = json::parse(*line);
        reply.ok = j.value("ok", false);
        reply.message = j.value("message", "");
        reply.error = j.value("error", reply.ok ? "" : "the server refused without a reason");
        reply.bad_request = j.value("bad_request", false);
        if (auto it = j.find("data"); it != j.end()) reply.data = *it;
    } catch (const json::exception&) {
        return failure(where + ": a reply that is not JSON: " + line->substr(0, 200));
    }
    if (!reply.ok || !wait_for_close) return reply;

    // Wait until the server closes the connection: it is gone (or nearly: its last words).
    for (;;) {
        pollfd p{fd.fd, POLLIN, 0};
        int n = ::poll(&p, 1, milliseconds_left(deadline));
        if (n < 0 && errno == EINTR) continue;
        if (n == 0)
            return failure("the server did not stop within " + std::to_string(timeout.count() / 1000) + "s");
        char buf[256];
        ssize_t got = ::recv(fd.fd, buf, sizeof buf, 0);
        if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (got <= 0) return reply;
    }
}

}  // namespace postern::daemon
