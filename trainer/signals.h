// Clean stops and launcher loss.
//
// SIGTERM (schedulers' preemption) and SIGUSR1 (Slurm's --signal warning, and what
// launch/mpirun.sh turns a SIGTERM into for plain mpirun, which kills its ranks on SIGTERM but
// forwards SIGUSR1) ask for a stop:
//  - during setup (before the training loop: building the model, opening data, restoring a
//    checkpoint) the process ends at once with a message and exit code 128 + signal; nothing
//    has been trained, so there is nothing to save, and setup may take long (big reads);
//  - in the training loop the signal sets a flag that the loop reads at each step boundary; the
//    run then finishes the step, saves, and exits 0 instead of dying mid-step.
//
// A rank whose launcher (mpirun, orted, slurmstepd: its parent process) dies, e.g. `kill -9` of
// mpirun, is orphaned and would go on training and writing checkpoints that nobody asked for. A
// watchdog notices the new parent within 50 ms and ends the rank at once (exit 1) with a message;
// launcher_gone() lets a checkpoint in flight skip its final rename, so nothing new is published.
#pragma once

namespace nexus {

// Installs the handlers, in setup mode (a signal ends the process at once).
void install_stop_signals();
// Switches to step-boundary mode: a signal from now on only sets the flag stop_signal() reads.
void defer_stop_signals_to_step_boundaries();
// The signal number that asked for a stop, or 0.
int stop_signal();

// Starts the watchdog when the process was started by an MPI or Slurm launcher (Open MPI, PMIx,
// PMI or Slurm environment); a process started from a shell may outlive its shell (nohup).
void watch_launcher();
// True once the parent process that started this one is gone (checked on every call).
bool launcher_gone();

// Fault injection for tests: with NEXUS_FAILPOINT=<name>:kill the process SIGKILLs itself at
// failpoint(<name>), as a crash or `kill -9` would; with <name>:pause it announces
// "failpoint <name>: pausing" on stderr and waits (up to 60 s) for a signal to end it. Points:
// "checkpoint_write" (the temporary file half written: tensors, no metadata yet),
// "checkpoint_after_rename" (a step file is in place, `latest` not yet rewritten),
// "train_setup" (before the model is built) and "delta_reduction" (a step's backward done, its
// last delta all-reduce not yet posted: the peers wait for this rank there). No-op when the variable does not name `name`.
void failpoint(const char* name);

}  // namespace nexus
