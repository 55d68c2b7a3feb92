"""The persisted last result and validators, and the MAC address adapter."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.provisioning.apply import ApplyResult, ApplyStatus, SettingChange
from gateway.provisioning.client import expand_url, without_credentials
from gateway.provisioning.errors import ProvisioningUrlError
from gateway.provisioning.mac import PrimaryInterfaceMac
from gateway.provisioning.result import FetchResult, FetchStatus, Trigger
from gateway.provisioning.state import KEEP, ProvisioningState, Validators

AT = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)


def result(status: FetchStatus = FetchStatus.APPLIED) -> FetchResult:
    return FetchResult(
        at=AT,
        trigger=Trigger.INTERVAL,
        status=status,
        url="https://prov.test/x.xml",
        http_status=200,
        attempts=1,
        apply=ApplyResult(
            status=ApplyStatus.APPLIED,
            document_sha256="ab" * 32,
            format="xml",
            changes=(SettingChange(parameter="P", setting="s", old="0", new="1"),),
        ),
        etag='"v1"',
    )


class TestState:
    def test_the_last_result_survives_a_restart(self, tmp_path: Path) -> None:
        ProvisioningState(tmp_path).record(result())
        assert ProvisioningState(tmp_path).last_result() == result()
        assert (tmp_path / "provisioning.json").stat().st_mode & 0o777 == 0o600

    def test_validators_belong_to_their_url(self, tmp_path: Path) -> None:
        state = ProvisioningState(tmp_path)
        kept = Validators(url="https://prov.test/x.xml", etag='"v1"', last_modified=None)
        state.record(result(), validators=kept)
        assert state.validators("https://prov.test/x.xml") == kept
        assert state.validators("https://prov.test/other.xml") is None
        state.record(result(FetchStatus.FAILED), validators=KEEP)
        assert state.validators("https://prov.test/x.xml") == kept
        state.record(result(FetchStatus.INVALID), validators=None)
        assert state.validators("https://prov.test/x.xml") is None
        assert state.last_result() == result(FetchStatus.INVALID)

    def test_a_damaged_file_is_set_aside(self, tmp_path: Path) -> None:
        (tmp_path / "provisioning.json").write_text("{not json")
        state = ProvisioningState(tmp_path)
        assert state.last_result() is None
        assert (tmp_path / "provisioning.json.damaged").exists()
        state.record(result())
        assert state.last_result() == result()

    def test_no_file_is_no_result(self, tmp_path: Path) -> None:
        assert ProvisioningState(tmp_path / "new").last_result() is None


def fake_sys(
    tmp_path: Path, interfaces: dict[str, str], default: str | None
) -> PrimaryInterfaceMac:
    net = tmp_path / "net"
    for name, address in interfaces.items():
        (net / name).mkdir(parents=True)
        (net / name / "address").write_text(address + "\n")
    route = tmp_path / "route"
    lines = ["Iface\tDestination\tGateway\tFlags"]
    if default is not None:
        lines += [f"{default}\t0000A8C0\t00000000\t0001", f"{default}\t00000000\t0101A8C0\t0003"]
    route.write_text("\n".join(lines) + "\n")
    return PrimaryInterfaceMac(sys_class_net=net, proc_net_route=route)


class TestMac:
    def test_the_default_route_interface_wins(self, tmp_path: Path) -> None:
        mac = fake_sys(
            tmp_path,
            {"eth0": "00:11:22:33:44:55", "wlan0": "7c:2f:80:c6:e5:c2", "lo": "00:00:00:00:00:00"},
            default="wlan0",
        )
        assert mac() == "7C2F80C6E5C2"

    def test_without_a_default_route_the_first_real_interface(self, tmp_path: Path) -> None:
        mac = fake_sys(
            tmp_path, {"lo": "00:00:00:00:00:00", "dummy0": "00:00:00:00:00:00",
                       "eth1": "aa:bb:cc:dd:ee:ff"}, default=None,
        )  # fmt: skip
        assert mac() == "AABBCCDDEEFF"

    def test_no_interface_no_mac(self, tmp_path: Path) -> None:
        assert fake_sys(tmp_path, {"lo": "00:00:00:00:00:00"}, default=None)() is None


class TestUrl:
    def test_placeholders_are_filled_and_encoded(self) -> None:
        url = expand_url(
            "https://prov.test/{name}/{mac}.xml?n={name}", name="gw 1", mac=lambda: "7C2F80C6E5C2"
        )
        assert url == "https://prov.test/gw%201/7C2F80C6E5C2.xml?n=gw%201"

    def test_mac_is_read_only_when_used(self) -> None:
        def no_mac() -> str | None:
            raise AssertionError("read")

        assert expand_url("https://prov.test/a.xml", name="x", mac=no_mac)

    @pytest.mark.parametrize(
        ("template", "message"),
        [
            ("https://prov.test/{serial}.xml", "only {name} and {mac}"),
            ("https://prov.test/{mac}.xml", "no MAC address"),
            ("http://prov.test/a.xml", "https://"),
            ("https://user:pw@prov.test/a.xml", "must not hold a user name"),
            ("http://user:pw@prov.test/a.xml", "must not hold a user name"),
            ("https:///a.xml", "https://"),
        ],
    )
    def test_bad_urls(self, template: str, message: str) -> None:
        with pytest.raises(ProvisioningUrlError, match=message.replace("{", r"\{")) as caught:
            expand_url(template, name="x", mac=lambda: None)
        assert ":pw@" not in str(caught.value)

    @pytest.mark.parametrize(
        ("url", "shown"),
        [
            ("https://user:pw@prov.test/a.xml", "https://prov.test/a.xml"),
            ("https://u:p@ss@prov.test:8443/{mac}.xml", "https://prov.test:8443/{mac}.xml"),
            ("https://prov.test/a.xml?next=a@b", "https://prov.test/a.xml?next=a@b"),
            ("https://prov.test", "https://prov.test"),
            ("prov.test/a.xml", "prov.test/a.xml"),
        ],
    )
    def test_credentials_are_left_out_of_a_shown_url(self, url: str, shown: str) -> None:
        assert without_credentials(url) == shown
