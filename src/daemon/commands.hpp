// daemon/commands.hpp: the command that runs the server.
//
// A command's callback stores its exit status in `exit_code` (DESIGN.md §4: 0 success,
// 1 failure with one clear line on stderr, 2 bad usage; `serve` also 75, store lost).
#pragma once

#include <CLI/CLI.hpp>

namespace postern::daemon {

void add_serve_command(CLI::App& app, int& exit_code);     // daemon/serve_command.cpp

}  // namespace postern::daemon
