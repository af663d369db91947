"""`python -m fake_signer`: the same as the `fake-signer` console script."""

import sys

from fake_signer.cli import main

if __name__ == "__main__":
    sys.exit(main())
