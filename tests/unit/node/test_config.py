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


def test_plain_http_by_default() -> None:
    config = NodeConfig()
    assert (config.is_tls, config.scheme) == (False, "http")


def test_tls_settings_follow_the_same_precedence(tmp_path: Path) -> None:
    toml = tmp_path / "courtyard.toml"
    toml.write_text(
        '[node]\ntls-cert = "file.pem"\ntls-key = "file.key"\ntls_self_signed = false\n'
    )
    from_file = load_config({}, {}, toml)
    assert (from_file.tls_cert, from_file.tls_key) == (Path("file.pem"), Path("file.key"))
    assert from_file.url == "https://127.0.0.1:8080"
    environ = {"COURTYARD_TLS_CERT": "env.pem", "COURTYARD_TLS_KEY": "env.key"}
    from_env = load_config({}, environ, toml)
    assert (from_env.tls_cert, from_env.tls_key) == (Path("env.pem"), Path("env.key"))
    from_flags = load_config(
        {"tls_cert": Path("flag.pem"), "tls_key": Path("flag.key"), "tls_self_signed": None},
        environ,
        toml,
    )
    assert (from_flags.tls_cert, from_flags.tls_key) == (Path("flag.pem"), Path("flag.key"))
    assert from_flags.tls_self_signed is False


def test_self_signed_turns_https_on() -> None:
    config = load_config({}, {"COURTYARD_TLS_SELF_SIGNED": "yes", "COURTYARD_PORT": "8443"})
    assert (config.tls_self_signed, config.scheme) == (True, "https")
    assert config.url == "https://127.0.0.1:8443"
    assert config.tls_cert is None
    assert load_config({"tls_self_signed": False}, {"COURTYARD_TLS_SELF_SIGNED": "1"}).scheme == (
        "http"
    )


def test_public_url_is_told_as_given() -> None:
    config = load_config({"tls_self_signed": True, "public_url": "https://apps.example/"})
    assert config.url == "https://apps.example"


def test_empty_variable_unsets_an_optional_path(tmp_path: Path) -> None:
    toml = tmp_path / "courtyard.toml"
    toml.write_text('[node]\ntls_cert = "a.pem"\ntls_key = "a.key"\n')
    config = load_config({}, {"COURTYARD_TLS_CERT": "", "COURTYARD_TLS_KEY": ""}, toml)
    assert (config.tls_cert, config.tls_key, config.scheme) == (None, None, "http")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"tls_cert": Path("c.pem")}, "'tls_cert' and 'tls_key' go together"),
        ({"tls_key": Path("k.pem")}, "'tls_cert' and 'tls_key' go together"),
        ({"tls_self_signed": "sometimes"}, "'tls_self_signed': 'sometimes' is not a valid boolean"),
    ],
)
def test_incomplete_tls_settings_are_named(flags: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigInvalid, match=message):
        load_config(flags, {})


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("workload_lifetime", "0"),
        ("workload_lifetime", "901"),
        ("events_max_attempts", "0"),
        ("events_base_delay", "0"),
    ],
)
def test_mesh_settings_out_of_range_are_one_clear_error(key: str, value: str) -> None:
    with pytest.raises(ConfigInvalid, match=key):
        load_config({}, {f"COURTYARD_{key.upper()}": value})
