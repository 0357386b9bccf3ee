"""The secrets file follows python-dotenv's rules, one test per rule; bad lines by number only."""

from __future__ import annotations

from pathlib import Path

import pytest

from genai_workstation.secrets import load_secrets


def parse(tmp_path: Path, text: str, mode: int = 0o600):
    path = tmp_path / "secrets.env"
    path.write_text(text)
    path.chmod(mode)
    secrets, problems = load_secrets(tmp_path / "inv.yaml", {"GENAI_SECRETS": str(path)})
    return secrets.values, problems


@pytest.mark.parametrize("rule, text, expected", [
    ("plain", "HF_TOKEN=abc\n", "abc"),
    ("inline comment after an unquoted value", "HF_TOKEN=abc  # mine\n", "abc"),
    ("# glued to the value is part of it", "HF_TOKEN=abc#def\n", "abc#def"),
    ("export prefix", "export HF_TOKEN=abc\n", "abc"),
    ("whitespace around =", "HF_TOKEN = abc\n", "abc"),
    ("trailing whitespace", "HF_TOKEN=abc   \n", "abc"),
    ("single quotes, # kept", "HF_TOKEN='a b # c'  # comment\n", "a b # c"),
    ("double quotes, # kept", 'HF_TOKEN="a b # c"\n', "a b # c"),
    ("escapes in double quotes", 'HF_TOKEN="line1\\nsaid \\"hi\\""\n', 'line1\nsaid "hi"'),
    ("no escapes in single quotes but \\'", "HF_TOKEN='a\\nb\\'c'\n", "a\\nb'c"),
    ("$ is not expanded", "HF_TOKEN=pa$$word${HOME}\n", "pa$$word${HOME}"),
    ("empty value", "HF_TOKEN=\n", ""),
    ("multi-line double-quoted value", 'HF_TOKEN="a\nb"\n', "a\nb"),
    ("CRLF line ends (Windows editors)", "HF_TOKEN=abc\r\nX=1\r\n", "abc"),
])
def test_dotenv_rule(tmp_path, rule, text, expected):
    values, problems = parse(tmp_path, text)
    assert problems == []
    assert values["HF_TOKEN"] == expected


def test_blank_and_comment_lines(tmp_path):
    values, problems = parse(tmp_path, "\n# a comment\n   \n  # indented comment\nA_B=1\n\n")
    assert (values, problems) == ({"A_B": "1"}, [])


def test_bad_lines_by_number_without_their_text(tmp_path):
    text = ("HF_TOKEN=fine\n"
            "\n"
            "CIVITAI_TOKEN abcdef123456\n"     # 3: no =
            "# ok\n"
            "hf_token=lowercase-value\n"       # 5: not a secret name
            "LONELY\n"                         # 6: a name without a value
            'QUOTED="never closed\n')         # 7: unterminated quote
    values, problems = parse(tmp_path, text)
    assert values["HF_TOKEN"] == "fine"
    assert [p.line for p in problems] == [3, 5, 6, 7]
    shown = "\n".join(p.render("secrets.env") for p in problems)
    assert "secrets.env:3: this line is not NAME=value" in shown
    assert "secrets.env:5: hf_token: is not a secret name" in shown
    for value in ("abcdef123456", "lowercase-value", "never closed"):
        assert value not in shown


def test_readable_by_others_is_refused_unread(tmp_path):
    values, problems = parse(tmp_path, "HF_TOKEN=abc\n", mode=0o640)
    assert values == {}
    assert "readable by others (mode 0640)" in problems[0].message
    assert "chmod 600" in problems[0].hint
