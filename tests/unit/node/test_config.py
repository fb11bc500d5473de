from pathlib import Path

import pytest

from courtyard.node import ConfigInvalid, NodeConfig, load_config


def test_defaults() -> None:
    config = load_config()
    assert config == NodeConfig()
    assert config.url == "http://127.0.0.1:8080"
    assert config.database.startswith("sqlite:///") and config.database.endswith("courtyard.db")


def test_flags_beat_environment_beat_file(tmp_path: Path) -> None:
    toml = tmp_path / "courtyard.toml"
    toml.write_text('[node]\nport = 9000\nworkers = 2\ndomain = "apps.test"\n')
    config = load_config(
        {"port": 9100, "workers": None},
        {"COURTYARD_PORT": "9050", "COURTYARD_WORKERS": "3", "UNRELATED": "x"},
        toml,
    )
    assert (config.port, config.workers, config.domain) == (9100, 3, "apps.test")


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"COURTYARD_PORT": "eighty"}, "'port': 'eighty' is not a valid whole number"),
        ({"COURTYARD_PORT": "70000"}, "'port'"),
        ({"COURTYARD_WORKERS": "0"}, "'workers'"),
        ({"COURTYARD_ACCESS_LOG": "maybe"}, "'access_log': 'maybe' is not a valid boolean"),
    ],
)
def test_bad_values_name_the_setting(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigInvalid, match=message):
        load_config({}, environ)


def test_unknown_file_setting_is_named(tmp_path: Path) -> None:
    toml = tmp_path / "courtyard.toml"
    toml.write_text("[node]\nprot = 1\n")
    with pytest.raises(ConfigInvalid, match="unknown setting 'prot'"):
        load_config({}, {}, toml)


def test_broken_file_is_one_clear_error(tmp_path: Path) -> None:
    toml = tmp_path / "courtyard.toml"
    toml.write_text("[node\n")
    with pytest.raises(ConfigInvalid, match=str(toml)):
        load_config({}, {}, toml)
