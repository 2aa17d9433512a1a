#include "trainer/signals.h"

#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

namespace nexus {

namespace {

volatile std::sig_atomic_t g_stop_signal = 0;
volatile std::sig_atomic_t g_in_setup = 1;
pid_t g_launcher = 0;  // the parent at watch_launcher(); 0 when not watching

// write(2) of a C string: the only output allowed in a signal handler.
void write_stderr(const char* text) {
  for (std::size_t left = std::strlen(text); left > 0;) {
    const ssize_t n = ::write(STDERR_FILENO, text, left);
    if (n <= 0) return;
    text += n;
    left -= static_cast<std::size_t>(n);
  }
}

extern "C" void on_stop_signal(int sig) {
  if (g_in_setup) {
    write_stderr(sig == SIGTERM ? "nexus: SIGTERM during setup (before the first step): stopping now; "
                                  "no step was trained and no checkpoint written\n"
                                : "nexus: SIGUSR1 during setup (before the first step): stopping now; "
                                  "no step was trained and no checkpoint written\n");
    ::_exit(128 + sig);
  }
  g_stop_signal = sig;
}

}  // namespace

void install_stop_signals() {
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;  // MPI and file I/O calls resume rather than fail with EINTR
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGUSR1, &action, nullptr);
}

void defer_stop_signals_to_step_boundaries() { g_in_setup = 0; }

int stop_signal() { return g_stop_signal; }

bool launcher_gone() { return g_launcher != 0 && ::getppid() != g_launcher; }

void watch_launcher() {
  const bool launched = std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMIX_RANK") || std::getenv("PMI_RANK") ||
                        std::getenv("SLURM_STEP_ID");
  if (!launched || g_launcher != 0) return;
  g_launcher = ::getppid();
  std::thread([] {
    while (!launcher_gone()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    const std::string message = "nexus: the launcher (parent process " + std::to_string(g_launcher) +
                                ") is gone, e.g. mpirun was killed: stopping now without writing anything\n";
    write_stderr(message.c_str());
    // Not exit(): MPI_Finalize and atexit handlers would wait on the dead launcher.
    ::_exit(1);
  }).detach();
}

void failpoint(const char* name) {
  const char* spec = std::getenv("NEXUS_FAILPOINT");
  if (!spec) return;
  const std::string s(spec), n(name);
  if (s == n + ":kill") {
    std::raise(SIGKILL);
  } else if (s == n + ":pause") {
    std::fprintf(stderr, "nexus: failpoint %s: pausing\n", name);
    std::fflush(stderr);
    std::this_thread::sleep_for(std::chrono::seconds(60));
  }
}

}  // namespace nexus
