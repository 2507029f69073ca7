from __future__ import annotations

import stat
from pathlib import Path

import pytest

from research_kit.core.errors import BadInput, MissingData, PolicyRefusal
from research_kit.pseudonymise.keys import fingerprint, load_key, new_key


def test_a_new_key_is_256_random_bits_readable_by_its_owner_only(tmp_path: Path) -> None:
    path, fp = new_key(tmp_path / "k" / "a.key")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    key = load_key(path)
    assert len(key.secret) == 32
    assert key.fingerprint == fp == fingerprint(key.secret)
    assert load_key(new_key(tmp_path / "b.key")[0]).secret != key.secret


def test_a_key_is_never_overwritten(tmp_path: Path) -> None:
    path, _ = new_key(tmp_path / "a.key")
    before = path.read_bytes()
    with pytest.raises(PolicyRefusal, match="never overwritten"):
        new_key(path)
    assert path.read_bytes() == before


def test_a_key_inside_the_workspace_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyRefusal, match="outside the workspace"):
        new_key(tmp_path / "ws" / "secrets" / "a.key", workspace_root=tmp_path / "ws")


def test_a_key_others_can_read_is_refused(tmp_path: Path) -> None:
    path, _ = new_key(tmp_path / "a.key")
    path.chmod(0o640)
    with pytest.raises(PolicyRefusal, match=r"can be read by others \(mode 0640\)"):
        load_key(path)


def test_a_short_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "short.key"
    path.write_text("ab" * 16)
    path.chmod(0o600)
    with pytest.raises(PolicyRefusal, match="the key has 128 bits; at least 256"):
        load_key(path)


def test_a_file_that_is_not_a_key_is_bad_input_and_its_content_is_not_echoed(tmp_path: Path) -> None:
    path = tmp_path / "junk.key"
    path.write_text("this-is-not-hex-secret-material")
    path.chmod(0o600)
    with pytest.raises(BadInput) as caught:
        load_key(path)
    assert "secret-material" not in str(caught.value)


def test_a_missing_key_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(MissingData, match="research-kit key new"):
        load_key(tmp_path / "none.key")


def test_the_key_never_shows_in_its_repr(tmp_path: Path) -> None:
    key = load_key(new_key(tmp_path / "a.key")[0])
    assert key.secret.hex() not in repr(key)
    assert key.fingerprint in repr(key)
