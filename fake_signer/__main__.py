"""`python -m fake_signer` and the `fake-signer` console script.

The stop signals are taken before `fake_signer.cli` is imported, which takes most of the start.
"""

import sys

from fake_signer.stop_signals import take_stop_signals


def main() -> int:
    """Take the stop signals, then run `fake_signer.cli.main`."""
    take_stop_signals()
    from fake_signer import cli  # noqa: PLC0415 - only once a signal stops the process cleanly

    return cli.main()


if __name__ == "__main__":
    sys.exit(main())
