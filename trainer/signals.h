// Clean stops: SIGTERM (schedulers' preemption) and SIGUSR1 (Slurm's --signal warning) set a flag
// that the training loop reads at each step boundary; the run then finishes the step, saves, and
// exits 0 instead of dying mid-step.
#pragma once

namespace nexus {

void install_stop_signals();
// The signal number that asked for a stop, or 0.
int stop_signal();

}  // namespace nexus
