"""A queue of trials in a study that workers take from, each trial once: a trial a worker
cannot run goes back to the queue, and a worker waits for the trials still running before it
stops. Searches (tune) and shared sweeps use it alike."""

import time
import warnings
from collections.abc import Callable

KEPT = ("point", "baseline", "key")  # what a trial queued again carries over


def set_aside(trial, requeue: bool) -> None:
    """This worker does not run the trial (or stops it), and stops: with `requeue`, its
    settings go back to the queue (a grid's point, a sweep's run, the baseline, or the point
    the sampler chose) for this or any worker to run later."""
    import optuna

    if requeue:
        kept = {key: trial.user_attrs[key] for key in KEPT if key in trial.user_attrs}
        trial.study.enqueue_trial(trial.params, {**kept, "requeued": True})
    trial.set_user_attr("idle", True)
    trial.study.stop()
    raise optuna.TrialPruned("set aside" + ("; its settings are queued again" if requeue else ""))


def queue_wait(heartbeat: int, should_stop: Callable[[], bool] | None = None):
    """After each trial of a fixed queue (a grid, a sweep): go on while trials are queued;
    when none are, wait for those still running (one whose worker died is failed when its
    heartbeat is stale, and queued again), and stop when nothing is left, or when
    `should_stop()` turns true."""
    import optuna
    from optuna.storages._heartbeat import is_heartbeat_enabled
    from optuna.trial import TrialState

    clocked: set[int] = set()  # running trials this worker has given a first heartbeat

    def callback(study, trial) -> None:
        while True:
            if should_stop is not None and should_stop():  # (this worker's trial is done)
                study.stop()
                return
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
            if study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
                return
            running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if not running:
                study.stop()
                return
            # Optuna counts a trial stale only from its last heartbeat: one whose worker died
            # after the trial began but before its first heartbeat (a kill, the OOM killer)
            # would be waited on for ever. One heartbeat on its behalf, the first time this
            # worker waits on it, starts the clock; a live worker's own keep it fresh.
            storage = study._storage
            if is_heartbeat_enabled(storage):
                for other in running:
                    if other._trial_id not in clocked:
                        clocked.add(other._trial_id)
                        storage.record_heartbeat(other._trial_id)
            time.sleep(min(1.0, heartbeat))

    return callback
