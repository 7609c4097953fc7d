"""One measurement in a fresh process of its own (its peak memory its own), for the benchmark scripts."""
from __future__ import annotations

import multiprocessing as mp
import queue as queues
from typing import Any, Callable


def in_child(target: Callable[..., None], *args: Any) -> Any:
    """Run `target(*args, queue)` in a spawned process and return what it puts on `queue`. A child that fails (an
    exception, its traceback printed above; killed for memory) stops the script with a message: the parent waited on
    the queue forever (thirty-third session's audit)."""
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, results))
    proc.start()
    while True:
        try:
            result = results.get(timeout=1.0)
            break
        except queues.Empty:
            if not proc.is_alive():
                try:  # what it put just before it ended
                    result = results.get(timeout=1.0)
                    break
                except queues.Empty:
                    raise SystemExit(f"the measurement {args} failed in its process (exit status {proc.exitcode}"
                                     f"{': killed, out of memory?' if proc.exitcode == -9 else ''}; its error is "
                                     "above)") from None
    proc.join()
    return result


def at_least(least: int) -> Callable[[str], int]:
    """An argparse `type` for a count of at least `least` (repeats, rounds, steps): 0 ran the work, then failed on an
    empty table or printed none (thirty-fifth session's audit)."""
    import argparse

    def count(text: str) -> int:
        value = int(text)
        if value < least:
            raise argparse.ArgumentTypeError(f"must be at least {least}, got {value}")
        return value

    return count


def resolution(least: int) -> Callable[[str], int]:
    """An argparse `type` for a generator's resolution: a power of two from `least` to 1024 (a generator's largest).
    100 px ended in a traceback from building the generator, after the other work (forty-second session's audit)."""
    import argparse

    def res(text: str) -> int:
        value = int(text)
        if value < least or value & (value - 1):
            raise argparse.ArgumentTypeError(f"must be a power of two >= {least}, got {text}")
        if value > 1024:
            raise argparse.ArgumentTypeError(f"must be at most 1024 (a generator's largest resolution), got {text}")
        return value

    return res
