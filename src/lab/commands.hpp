// lab/commands.hpp: tools for trying a mail path by hand: send one message, probe a
// server's TLS, run the two-organisation demo with Postfix (DESIGN.md §4; exit status as
// in daemon/commands.hpp).
#pragma once

#include <CLI/CLI.hpp>

namespace postern::lab {

void add_send_command(CLI::App& app, int& exit_code);      // lab/send_command.cpp
void add_probe_command(CLI::App& app, int& exit_code);     // lab/probe_command.cpp
void add_demo_command(CLI::App& app, int& exit_code);      // lab/demo_command.cpp

}  // namespace postern::lab
