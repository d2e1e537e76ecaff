"""torchrun (``torch.distributed.run``) as ``forge run`` starts it: the same launcher, except that a stop signal
(Ctrl-C/SIGTERM/SIGHUP, which torchrun has passed on to its workers before it gives up) ends it with exit status 130
and no traceback of its own: the workers have checkpointed and said so."""

from __future__ import annotations

import sys


def main() -> None:
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.run import main as torchrun

    try:
        torchrun()
    except SignalException:
        sys.exit(130)


if __name__ == "__main__":
    main()
