"""Turn-taking: the variants of one training row run at the same time and share the timed window in turns.

Why: one variant after another, a row took the sum of every variant's start-up, window
and finish; and on a shared 2-core VM the machine's own speed drifts by 10 to 30% over
seconds, so variants timed minutes apart met different machines. Here every variant
still runs in its own process, but they start together: imports, ``wandb.init``, warm-up
steps and ``finish()`` overlap (none of that is timed), and the timed windows are cut into
turns of ``turn_s`` seconds handed round one process at a time. While one trains, the
others wait in a blocking read, so no two timed stretches overlap and neighbouring
variants meet the machine within seconds of each other.

Each turn is ``lead_s`` seconds of untimed steps, then ``turn_s`` timed (0.1 s and 0.25 s
by default; ``Window`` does the timing). Short turns cancel the drift (on a recorded series
of this VM's speed, two identical variants differed by 3.2% with 0.12 s turns and 12.7%
one after the other), but without the lead-in a logger's deferred work (rows in flight to
another thread or process) runs while its worker waits, where it slows no one: our
plain-loop overhead read 67 us/step with 0.1 s turns, 175 with 0.3 s and 225 with 1 s.
With the lead-in each timed stretch starts from the logger's steady state, and 0.25 s
and 1 s turns agree within their noise. The CPU a worker's other threads use while it
waits is recorded (``offturn_cpu_s``), not charged.

Protocol, over one Unix socket per row (the coordinator listens, each worker connects):
the worker sends its name and a newline when it reaches the window, ``Y`` when it hands
a turn on and ``E`` when its window is over; it waits for ``G`` after each. The
coordinator starts handing turns when every worker has arrived or ended, gives turns in
order until every window is over, then sends ``G`` to all at once (a worker that dies
closes its socket and is dropped).
"""

from __future__ import annotations

import os
import select
import socket
import threading
import time
from collections.abc import Sequence

GO, YIELD, END = b"G", b"Y", b"E"
TURN_S = 0.25
LEAD_S = 0.1


class TurnClient:
    """A worker's side: connect at the window's start, hand turns on, end.

    Args:
        path: the coordinator's socket.
        name: this worker's name in the row (its variant).
    """

    def __init__(self, path: str, name: str) -> None:
        self.path = path
        self.name = name
        self.turns = 0
        self._sock: socket.socket | None = None

    def _wait(self) -> None:
        assert self._sock is not None
        if self._sock.recv(1) != GO:
            raise RuntimeError("the turn coordinator went away")
        self.turns += 1

    def arrive(self) -> None:
        """Connect and wait for the first turn."""
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.connect(self.path)
        self._sock.sendall(self.name.encode() + b"\n")
        self._wait()

    def hand_on(self) -> None:
        """End this turn and wait for the next."""
        assert self._sock is not None
        self._sock.sendall(YIELD)
        self._wait()

    def end(self) -> None:
        """The window is over: wait until every worker's is, then go on alone."""
        assert self._sock is not None
        self._sock.sendall(END)
        self._wait()
        self.turns -= 1  # the release is not a timed turn
        self._sock.close()
        self._sock = None


class Turns:
    """The coordinator's side, run in a thread of the parent (``serve``) beside the launcher.

    Args:
        folder: where the socket is made.
        names: the workers of the row, in the order their turns go round.
    """

    def __init__(self, folder: str, names: Sequence[str]) -> None:
        self.names = list(names)
        self.path = os.path.join(folder, "turns.sock")
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.path)
        self._listener.listen(len(self.names))
        self._gone: set[str] = set()
        self._lock = threading.Lock()
        self.rounds = 0
        self.error = ""

    def gone(self, name: str) -> None:
        """The launcher saw worker ``name`` end (it is not waited for any more)."""
        with self._lock:
            self._gone.add(name)

    def _arrivals(self, deadline: float) -> dict[str, socket.socket]:
        ready: dict[str, socket.socket] = {}
        while time.monotonic() < deadline:
            with self._lock:
                if set(self.names) <= set(ready) | self._gone:
                    break
            readable, _, _ = select.select([self._listener], [], [], 0.2)
            if not readable:
                continue
            conn, _ = self._listener.accept()
            conn.settimeout(max(1.0, deadline - time.monotonic()))
            name = b""
            while not name.endswith(b"\n"):
                chunk = conn.recv(64)
                if not chunk:
                    break
                name += chunk
            if name.endswith(b"\n") and name[:-1].decode() in self.names:
                ready[name[:-1].decode()] = conn
            else:
                conn.close()
        return ready

    def serve(self, timeout: float) -> None:
        """Hand the turns round until every window is over (or ``timeout`` seconds have passed)."""
        deadline = time.monotonic() + timeout
        ready = self._arrivals(deadline)
        active = [name for name in self.names if name in ready]
        ended: list[str] = []
        try:
            while active:
                self.rounds += 1
                for name in list(active):
                    conn = ready[name]
                    try:
                        conn.sendall(GO)
                        code = conn.recv(1)
                    except OSError:
                        code = b""
                    if code == YIELD:
                        continue
                    active.remove(name)
                    if code == END:
                        ended.append(name)
                    else:
                        self.error = f"{name} left its window before the end"
            for name in ended:
                try:
                    ready[name].sendall(GO)
                except OSError:
                    continue
        finally:
            for conn in ready.values():
                conn.close()
            self._listener.close()
