"""The config: defaults, the file, environment overrides, and errors that name the key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.config import (
    MAX_WORKERS,
    Config,
    SipSection,
    Workers,
    config_as_dict,
    load_config,
    usable_cpus,
)
from gateway.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sipsgate.toml"
    path.write_text(text)
    return path


class TestLoadConfig:
    def test_no_file_is_the_defaults(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """With no file and no ./sipsgate.toml, every key has its default."""
        monkeypatch.chdir(tmp_path)
        config = load_config(env={})
        assert config == Config()
        assert config.gateway.data_dir == "./var"
        assert config.sip.keepalive == 30.0
        assert config.source == "embedded defaults"

    def test_default_file_in_cwd(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.chdir(tmp_path)
        write(tmp_path, '[gateway]\nname = "closet-1"\n')
        assert load_config(env={}).gateway.name == "closet-1"

    def test_file_values(self, tmp_path: Path) -> None:
        path = write(
            tmp_path,
            '[sip]\nlisten_udp = ["0.0.0.0:5060"]\nkeepalive = "45s"\n'
            '[provisioning]\ninterval = "2h"\n[store]\nrejected_limit = 50\n',
        )
        config = load_config(path, env={})
        assert config.sip.listen_udp == ("0.0.0.0:5060",)
        assert config.sip.keepalive == 45.0
        assert config.provisioning.interval == 7200.0
        assert config.store.rejected_limit == 50

    def test_environment_overrides_file(self, tmp_path: Path) -> None:
        path = write(tmp_path, '[gateway]\ndata_dir = "/srv/a"\n')
        env = {
            "SIPSGATE_GATEWAY_DATA_DIR": "/srv/x",
            "SIPSGATE_SIP_LISTEN_TCP": "127.0.0.1:5070, 127.0.0.2:5070",
            "SIPSGATE_STORE_REJECTED_LIMIT": "7",
            "SIPSGATE_GATEWAY_ALLOW_WEAK_KEYS": "yes",
        }
        config = load_config(path, env=env)
        assert config.data_dir == Path("/srv/x")
        assert config.sip.listen_tcp == ("127.0.0.1:5070", "127.0.0.2:5070")
        assert config.store.rejected_limit == 7
        assert config.gateway.allow_weak_keys is True

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("[gateway]\nnmae = 'x'\n", "gateway.nmae"),
            ("[gatway]\n", r"\[gatway\]"),
            ("[store]\nrejected_limit = '10'\n", "store.rejected_limit must be an integer"),
            ("[store]\nrejected_limit = true\n", "store.rejected_limit must be an integer"),
            ("[sip]\nkeepalive = 30\n", "sip.keepalive must be a duration"),
            ("[sip]\nkeepalive = '30 parsecs'\n", "sip.keepalive"),
            ("[sip]\nlisten_udp = '0.0.0.0:5060'\n", "sip.listen_udp must be a list"),
            ("[sip]\nlisten_udp = [5060]\n", r"sip.listen_udp\[0\] must be a string"),
            ("gateway = 3\n", "gateway must be a table"),
            ("[gateway\n", "not valid TOML"),
        ],
    )
    def test_wrong_key_or_type_names_the_key(self, tmp_path: Path, text: str, message: str) -> None:
        """A wrong key or type stops with a message naming the key path."""
        with pytest.raises(ConfigError, match=message):
            load_config(write(tmp_path, text), env={})

    @pytest.mark.parametrize(
        ("upstream", "message"),
        [
            (
                "sip.provider.example",
                r"sip.upstream must be a sips: URI.*sips:sip.provider.exa",
            ),
            ("sip:sip.provider.example", r"sip.upstream must be a sips: URI.*sips:sip.provider"),
            ("sips://sip.provider.example", r"sip.upstream.*no '//' after the colon"),
            ("sips:sip.provider.example:99999", r"sip.upstream.*port"),
        ],
    )
    def test_upstream_must_be_a_sips_uri(self, tmp_path: Path, upstream: str, message: str) -> None:
        """A bare host name is refused at start, naming the key and the form it needs."""
        path = write(tmp_path, f'[sip]\nupstream = "{upstream}"\n')
        with pytest.raises(ConfigError, match=message):
            load_config(path, env={})
        with pytest.raises(ConfigError, match=message):
            load_config(write(tmp_path, ""), env={"SIPSGATE_SIP_UPSTREAM": upstream})

    @pytest.mark.parametrize(
        ("line", "message"),
        [
            ("source_rate = 0", r"sip\.source_rate and sip\.source_burst must be at least 1"),
            ("source_burst = 0", r"sip\.source_rate and sip\.source_burst must be at least 1"),
            ("source_answers = -1", r"sip\.source_answers must be 0 \(never answer\) or more"),
            ("max_transactions = 0", r"sip\.max_transactions must be at least 1, not 0"),
        ],
    )
    def test_limits_that_cannot_apply_are_refused(
        self, tmp_path: Path, line: str, message: str
    ) -> None:
        with pytest.raises(ConfigError, match=message):
            load_config(write(tmp_path, f"[sip]\n{line}\n"), env={})
        assert load_config(write(tmp_path, "[sip]\nsource_answers = 0\n"), env={}).sip

    def test_upstream_address_must_be_host_port(self, tmp_path: Path) -> None:
        path = write(tmp_path, '[sip]\nupstream = "sips:p.example"\nupstream_address = "a b:1"\n')
        with pytest.raises(ConfigError, match=r"sip\.upstream_address must be HOST:PORT"):
            load_config(path, env={})
        ok = write(
            tmp_path, '[sip]\nupstream = "sips:p.example"\nupstream_address = "[::1]:5061"\n'
        )
        assert load_config(ok, env={}).sip.upstream_address == "[::1]:5061"

    def test_bad_environment_value(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="SIPSGATE_STORE_REJECTED_LIMIT"):
            load_config(write(tmp_path, ""), env={"SIPSGATE_STORE_REJECTED_LIMIT": "many"})

    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="does not exist"):
            load_config(tmp_path / "nope.toml", env={})

    def test_as_dict_round_trips(self, tmp_path: Path) -> None:
        """The effective config written back as TOML loads to the same config."""
        config = load_config(write(tmp_path, '[gateway]\nhost_names = ["gw.lan"]\n'), env={})
        data = config_as_dict(config)
        assert data["gateway"]["host_names"] == ["gw.lan"]
        assert data["tls"]["min_version"] == "1.2"


class TestWorkers:
    """sip.workers: a count or "auto", from the file or the environment."""

    def test_default_is_one_worker(self) -> None:
        assert Config().sip.workers.resolve(cpus=8) == 1

    def test_file_number_and_auto(self, tmp_path: Path) -> None:
        assert (
            load_config(write(tmp_path, "[sip]\nworkers = 3\n"), env={}).sip.workers.resolve(8) == 3
        )
        auto = load_config(write(tmp_path, '[sip]\nworkers = "auto"\n'), env={}).sip.workers
        assert auto == "auto"
        assert auto.resolve(cpus=6) == 6
        assert auto.resolve(cpus=500) == MAX_WORKERS

    def test_environment_override(self, tmp_path: Path) -> None:
        path = write(tmp_path, "[sip]\nworkers = 3\n")
        assert load_config(path, env={"SIPSGATE_SIP_WORKERS": "auto"}).sip.workers == "auto"
        assert load_config(path, env={"SIPSGATE_SIP_WORKERS": "2"}).sip.workers.resolve(8) == 2

    @pytest.mark.parametrize("value", ["0", "-1", '"many"', "true", "2.5", f"{MAX_WORKERS + 1}"])
    def test_bad_value_names_the_key(self, tmp_path: Path, value: str) -> None:
        with pytest.raises(ConfigError, match=r"sip\.workers must be \"auto\" or a number"):
            load_config(write(tmp_path, f"[sip]\nworkers = {value}\n"), env={})

    def test_bad_environment_names_the_variable(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="SIPSGATE_SIP_WORKERS"):
            load_config(None, env={"SIPSGATE_SIP_WORKERS": "lots"})

    def test_shown_as_written(self) -> None:
        assert config_as_dict(Config())["sip"]["workers"] == 1
        auto = Config(sip=SipSection(workers=Workers.parse("auto")))
        assert config_as_dict(auto)["sip"]["workers"] == "auto"

    def test_usable_cpus_is_the_affinity_mask(self) -> None:
        assert usable_cpus() == len(os.sched_getaffinity(0))


class TestStoreUrl:
    def test_empty_is_the_embedded_store(self, tmp_path: Path) -> None:
        assert load_config(write(tmp_path, ""), env={}).store.url == ""

    def test_file_and_environment(self, tmp_path: Path) -> None:
        path = write(tmp_path, '[store]\nurl = "postgresql://gw@db.lan/sipsgate"\n')
        assert load_config(path, env={}).store.url == "postgresql://gw@db.lan/sipsgate"
        env = {"SIPSGATE_STORE_URL": "postgres://other@db2.lan/fleet"}
        assert load_config(path, env=env).store.url == "postgres://other@db2.lan/fleet"

    @pytest.mark.parametrize("url", ["mysql://db/x", "sqlite:///var/x.db", "db.lan"])
    def test_other_urls_are_refused(self, tmp_path: Path, url: str) -> None:
        with pytest.raises(ConfigError, match=r"store\.url must be a PostgreSQL URL"):
            load_config(write(tmp_path, f'[store]\nurl = "{url}"\n'), env={})
