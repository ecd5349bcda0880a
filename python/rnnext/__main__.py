# `python -m rnnext`: the same command line as `rnnext`.
from rnnext.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
