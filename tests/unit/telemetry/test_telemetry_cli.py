"""``courtyard slo`` against the SLO routes served for real (uvicorn on loopback)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
import yaml
from fastapi import FastAPI
from telemetry_testkit import START, metrics
from typer.testing import CliRunner, Result

from cli_testkit import cli_of, served
from courtyard.cli._slo import register
from courtyard.contracts import SloSpec
from courtyard.core import FakeClock
from courtyard.telemetry import MemoryMinuteStore, Telemetry
from courtyard.telemetry.api import slo_router

runner = CliRunner()


def cli() -> typer.Typer:
    return cli_of(register)


@pytest.fixture
def node_url() -> Iterator[str]:
    telemetry = Telemetry(MemoryMinuteStore(), clock=FakeClock(START))
    telemetry.set_slos(
        "shop",
        [
            SloSpec("shop", "availability", "availability", 0.999),
            SloSpec("shop", "fast", "latency", 0.99, threshold=0.3),
        ],
    )
    telemetry.ingest(1, metrics("shop", 9990, 10))

    async def app_exists(name: str) -> bool:
        return name in ("shop", "plain")

    app = FastAPI()
    app.include_router(slo_router(telemetry, app_exists))
    with served(app) as url:
        yield url


def run(url: str, tmp_path: Path, *args: str) -> Result:
    arguments = ["slo", *args, "--url", url, "--data-dir", str(tmp_path)]
    return runner.invoke(cli(), arguments, env={"COLUMNS": "200", "COURTYARD_TOKEN": "t"})


def test_slo_table_and_json(node_url: str, tmp_path: Path) -> None:
    table = run(node_url, tmp_path, "shop")
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert "BUDGET LEFT" in lines[0] and "BURN 1h" in lines[0] and "BURN 3d" in lines[0]
    availability = next(line for line in lines if line.strip().startswith("availability"))
    # 10 bad of 10,000 on a 99.9 % SLO: exactly the budget, nothing left, burn 1x.
    assert "99.9%" in availability and "28d" in availability and "99.900%" in availability
    assert "0.0%" in availability and "1.00x" in availability and "10/10000 bad" in availability
    assert "fast (<= 300 ms)" in table.stdout
    as_json = json.loads(run(node_url, tmp_path, "shop", "--json").stdout)
    assert [slo["name"] for slo in as_json] == ["availability", "fast"]
    none = run(node_url, tmp_path, "plain")
    assert none.exit_code == 0 and "plain declares no SLOs" in none.stdout


@pytest.mark.parametrize(
    ("form", "key"), [("openslo", "apiVersion"), ("sloth", "service"), ("prometheus", "groups")]
)
def test_slo_exports_print_yaml(node_url: str, tmp_path: Path, form: str, key: str) -> None:
    result = run(node_url, tmp_path, "shop", "--export", form)
    assert result.exit_code == 0, result.output
    documents = list(yaml.safe_load_all(result.stdout))
    assert key in documents[0]


def test_slo_errors_are_one_line(node_url: str, tmp_path: Path) -> None:
    bad = run(node_url, tmp_path, "shop", "--export", "nagios")
    assert bad.exit_code == 1 and "--export must be openslo, sloth or prometheus" in bad.stderr
    unknown = run(node_url, tmp_path, "nope")
    assert unknown.exit_code == 1 and "no app named nope" in unknown.stderr
