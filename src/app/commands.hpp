// app/commands.hpp: each `postern` subcommand registers itself on the CLI11 app.
//
// A command's callback stores its exit status in `exit_code` (DESIGN.md §4: 0 success,
// 1 failure with one clear line on stderr, 2 bad usage).
#pragma once

#include <CLI/CLI.hpp>

namespace postern::app {

void add_serve_command(CLI::App& app, int& exit_code);     // app/serve_command.cpp
void add_config_command(CLI::App& app, int& exit_code);    // app/config_command.cpp
void add_keyring_command(CLI::App& app, int& exit_code);   // app/keyring_command.cpp
void add_ca_command(CLI::App& app, int& exit_code);        // app/ca_command.cpp
void add_control_commands(CLI::App& app, int& exit_code);  // app/control_command.cpp: reload, stop
void add_queue_command(CLI::App& app, int& exit_code);     // app/queue_command.cpp
void add_send_command(CLI::App& app, int& exit_code);      // app/send_command.cpp
void add_probe_command(CLI::App& app, int& exit_code);     // app/probe_command.cpp
void add_demo_command(CLI::App& app, int& exit_code);      // app/demo_command.cpp

}  // namespace postern::app
