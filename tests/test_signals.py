"""SIGTERM / SIGINT stop a run at the next step; a second Ctrl-C interrupts at once."""

from __future__ import annotations

import os
import signal

import pytest

from hmer.engine.signals import StopSignals


def test_stop_signals_set_a_flag_then_a_second_sigint_interrupts():
    before = signal.getsignal(signal.SIGINT)
    with StopSignals() as signals:
        assert signals.signum is None
        os.kill(os.getpid(), signal.SIGTERM)
        assert signals.signum == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before
