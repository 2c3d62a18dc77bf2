"""Regressions from fuzzing the config loader: every bad file is a ConfigError naming the
file and line, never another exception, never a hang."""

import time
from pathlib import Path

import pytest

from kubeloop.config import ConfigError, load, parse
from kubeloop.config.loader import MAX_BYTES, MAX_DEPTH

GOOD = "name: shop\nmanifests: {raw: [k8s/*.yaml]}\nvalues: {replicas: 2}\n"
PATH = Path("/p/kubeloop.yaml")


def refused(text: str | bytes) -> str:
    """The loader's problems for ``text``, which must be refused with ConfigError."""
    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        parse(text, PATH)
    assert time.monotonic() - started < 1, "the loader took too long"
    return "\n".join(caught.value.problems)


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-8-sig"])
def test_utf16_and_utf32_files_load(tmp_path: Path, codec: str) -> None:
    (tmp_path / "kubeloop.yaml").write_bytes(GOOD.encode(codec))
    assert load(tmp_path / "kubeloop.yaml").project.values == {"replicas": 2}


def test_bytes_that_are_not_text_name_the_line() -> None:
    assert refused(GOOD.encode() + b"x: \xff\xfe\n").startswith(
        "kubeloop.yaml:4: not UTF-8 text (byte 67: invalid start byte)"
    )
    assert "kubeloop.yaml:2: not valid text" in refused("name: x\nv: '\ud800'\n")


def test_recursive_aliases_are_refused() -> None:
    for shape, where in (("&r [*r]", "0"), ("&r {k: *r}", "k"), ("&r {<<: *r}", "<<"),
                         ("&r [[a, {b: *r}]]", "0.1.b")):  # fmt: skip
        problems = refused(f"name: x\nmanifests: {{raw: [a]}}\nvalues: {shape}\n")
        assert f"kubeloop.yaml:3: values.{where}: an alias refers to a value that contains it" in (
            problems
        ), shape


def test_a_billion_laughs_is_refused_at_once() -> None:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 30)]
    text = "name: x\nmanifests: {raw: [a]}\nvalues:\n" + "".join(f"  {x}\n" for x in lines)
    assert "aliases expand to more than 100000 values" in refused(text)


def test_aliases_within_bounds_still_work() -> None:
    text = "name: x\nmanifests: {raw: [a]}\nbase: &b {db: {host: h}}\n"
    config = parse(text.replace("base: &b", "values: &b") + "environments: {e: {values: *b}}\n",
                   PATH, "e")  # fmt: skip
    assert config.project.values == {"db": {"host": "h"}}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("9" * 5000, "kubeloop.yaml:3: not valid YAML: cannot read this value (Exceeds the limit"),
        ("2001-13-45", "kubeloop.yaml:3: not valid YAML: cannot read this value (month must be"),
        ("!!float ''", "kubeloop.yaml:3: not valid YAML: cannot read this value"),
        ("!!binary 'a'", "kubeloop.yaml:3: not valid YAML"),
        ("!!python/object:os.system x", "kubeloop.yaml:3: not valid YAML"),
    ],
    ids=["5000-digits", "bad-date", "empty-float", "bad-base64", "python-tag"],
)
def test_values_python_cannot_hold(value: str, expected: str) -> None:
    assert expected in refused(f"name: x\nmanifests: {{raw: [a]}}\nvalues: {{v: {value}}}\n")


def test_complex_keys_deep_nesting_and_huge_files() -> None:
    assert "not valid YAML" in refused("name: x\n? [a, b]\n: 1\n")  # unhashable key
    deep = "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5)
    assert f"nested more than {MAX_DEPTH} levels deep" in refused(f"name: x\nvalues: {deep}\n")
    assert "nesting depth" in refused("v: " + "[" * 5000 + "]" * 5000)  # past libyaml's own limit
    assert "larger than 1024 KiB" in refused(b"#" * (MAX_BYTES + 1))


def test_documents_and_top_level_shapes() -> None:
    assert "not valid YAML" in refused(GOOD + "---\n" + GOOD)
    assert "expected a mapping of settings" in refused("- a\n- b\n")
    assert "expected a mapping of settings" in refused("")
