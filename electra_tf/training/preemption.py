"""Preemption: SIGTERM becomes a flag the loop passes into every compiled call, then a clean exit.

A stopped run writes a checkpoint and ``python -m electra_tf.pretrain`` exits with
:data:`EXIT_PREEMPTED`; rerunning the same command resumes.
"""

from __future__ import annotations

import signal
import threading

EXIT_PREEMPTED = 143  # 128 + SIGTERM: stopped cleanly, rerun the same command to resume


class TerminationFlag:
    """Turns SIGTERM (preemption) into a flag, ``raised``, that the loop reads between calls.

    Python runs signal handlers between bytecodes, so a SIGTERM that arrives while a compiled
    call runs raises the flag when the call returns. The previous handler comes back on exit.
    Signals can only be handled in the main thread; elsewhere the flag stays down and SIGTERM
    keeps its previous effect.
    """

    def __init__(self):
        self.raised = False
        self._previous = None

    def _handle(self, signum, frame):
        self.raised = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
