"""training/settings.py: each setting declared once (default, help, check), and everything made
from that declaration: the command line, the table a run prints, the notebook's defaults and
validation. No TensorFlow is needed for any of it."""
import subprocess
import sys

import pytest

from conftest import ROOT

import cli
from training import settings as S


@pytest.fixture
def one_more_setting(monkeypatch):
    """A setting added as a student would: one entry in SETTINGS."""
    added = dict(S.SETTINGS, warmup_epochs=S.Setting(
        2, "epochs of linear learning-rate warm-up before the schedule", S.number(0, 50, integer=True)))
    monkeypatch.setattr(S, "SETTINGS", added)
    return "warmup_epochs"


def test_a_setting_declared_once_is_seen_everywhere(one_more_setting, capsys):
    key = one_more_setting
    # The defaults and help columns read the declaration.
    assert S.DEFAULTS[key] == 2 and key in S.DEFAULTS and "warm-up" in S.HELP[key]
    # The command line: the option, its help with the value used, the value parsed.
    parser = S.build_parser(["--model", "v1"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--warmup-epochs N" in help_text and "epochs of linear learning-rate warm-up" in help_text
    assert S.command_line_values(parser.parse_args(["--warmup-epochs", "5"]))[key] == 5
    # Resolving (a keyword train() takes), the table a run prints, the notebook's parameter cell.
    settings, sources = S.resolve_settings_and_sources(model="v1", warmup_epochs=4)
    assert settings[key] == 4 and sources[key] == "given"
    assert "warmup-epochs" in S.settings_table(settings, sources)
    overrides, settings, _, table = S.notebook_settings(model="v1", warmup_epochs=None)
    assert key not in overrides and settings[key] == 2 and "warmup-epochs        2" in table
    # Validation: the declared check, naming the option.
    with pytest.raises(cli.UsageError, match="--warmup-epochs: got 99; must be an integer at least 0 and at most 50"):
        S.validate_settings(S.resolve_settings(model="v1", warmup_epochs=99))


def test_an_unknown_keyword_names_the_known_ones():
    with pytest.raises(S.UnknownSettingError, match="unknown setting.s. epoch;.*epochs"):
        S.resolve_settings(epoch=3)


def test_every_default_passes_its_own_check():
    for version in ("v1", "v2", "v6"):
        S.validate_settings(S.resolve_settings(model=version))


def test_tools_that_need_paths_or_settings_do_not_load_tensorflow():
    code = ("import sys, training.runs, training.settings, training; "
            "training.runs.protected_model_dir('models/v6_resnet_integral'); "
            "training.settings.build_parser([]).parse_args(['--epochs', '3']); "
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr
