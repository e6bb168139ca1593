"""The deployment files keep their contract with the code: docker-compose.yml, Dockerfile, Prometheus and Grafana.

Nothing here starts a container. The checks catch what would otherwise only show once the stack runs: an
environment variable reverify does not read, a command that does not exist, a scrape target that names no
service, a dashboard panel querying a metric nobody exports, or a table no migration creates.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "reverify.json"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources"
DASHBOARD_PROVIDERS = DEPLOY / "grafana" / "provisioning" / "dashboards"

SEED_GAUGES = (
    "drift_psi",
    "rl_avg_reward",
    "circuit_breaker_state",
    "degradation_level",
    "assurance_failures_total",
    "recovery_time",
)

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


def _interpolate(value: Any) -> Any:
    """What Compose substitutes with an empty environment: ``${X:-d}`` -> ``d``, ``${X}`` -> ``''``, ``$$`` -> ``$``."""
    if isinstance(value, str):
        return _VAR.sub(lambda m: "$" if m.group(0) == "$$" else (m.group(2) or ""), value)
    if isinstance(value, list):
        return [_interpolate(v) for v in value]
    if isinstance(value, dict):
        return {k: _interpolate(v) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _interpolate(yaml.safe_load(COMPOSE.read_text()))


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # the "KEY=value" list form
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def _reverify_services(services: dict[str, Any]) -> dict[str, Any]:
    """The services that run reverify's image (they read REVERIFY_*)."""
    return {name: s for name, s in services.items() if str(s.get("image", "")).startswith("reverify")}


def _container_ports(service: dict[str, Any]) -> set[int]:
    ports = {int(str(p)) for p in service.get("expose", [])}
    for p in service.get("ports", []):
        ports.add(int(str(p["target"] if isinstance(p, dict) else p).rsplit(":", 1)[-1].split("/")[0]))
    return ports


# ---------------------------------------------------------------------- settings


def _section_fields() -> dict[str, set[str]]:
    """Every ``REVERIFY_<SECTION>__<FIELD>`` reverify reads: processor dataclasses and the sink's ``[sink]`` keys."""
    from reverify.processors.alerting import AlertingSettings
    from reverify.processors.drift import DriftSettings
    from reverify.processors.errors import ErrorSettings
    from reverify.processors.learning import LearningSettings
    from reverify.sinks.config import SinkOptions

    return {
        name: {f.name for f in dataclasses.fields(cls)}
        for name, cls in (
            ("learning", LearningSettings),
            ("drift", DriftSettings),
            ("alerting", AlertingSettings),
            ("errors", ErrorSettings),
            ("sink", SinkOptions),
        )
    }


def _known_env_names() -> set[str]:
    from reverify.streams.settings import Settings

    # REVERIFY_CONFIG is the file's path (field config_path); sections come as REVERIFY_<SECTION>__<FIELD>
    fields = [f.name for f in dataclasses.fields(Settings) if f.name not in ("sections", "config_path")]
    return {"REVERIFY_" + name.upper() for name in fields} | {"REVERIFY_CONFIG"}


def test_the_stack_has_the_documented_services(services: dict[str, Any]) -> None:
    assert {"kafka", "clickhouse", "migrate", "worker", "sink", "prometheus", "grafana"} <= set(services)
    assert set(_reverify_services(services)) == {"migrate", "worker", "sink"}


def test_every_reverify_variable_is_a_real_setting(services: dict[str, Any]) -> None:
    known = _known_env_names()
    sections = _section_fields()
    for name, service in services.items():
        for key in _env(service):
            if not key.startswith("REVERIFY_"):
                continue
            if "__" in key:
                section, _, field = key[len("REVERIFY_") :].lower().partition("__")
                assert field in sections.get(section, set()), f"{name}: {key} is not a setting of [{section}]"
            else:
                assert key in known, f"{name}: {key} is not a setting; known: {sorted(known)}"


def test_each_reverify_service_loads_its_settings_and_config(services: dict[str, Any]) -> None:
    from reverify.processors.pipeline import PipelineConfig
    from reverify.streams.settings import Settings

    for name, service in _reverify_services(services).items():
        env = _env(service)
        # the file mounted at REVERIFY_CONFIG is the repository's deploy/reverify.toml
        mounts = {v.split(":")[1]: v.split(":")[0] for v in service.get("volumes", []) if isinstance(v, str)}
        assert env["REVERIFY_CONFIG"] in mounts, f"{name}: REVERIFY_CONFIG is not mounted"
        local = ROOT / mounts[env["REVERIFY_CONFIG"]]
        assert local.resolve() == (DEPLOY / "reverify.toml").resolve()
        env = {k: v for k, v in env.items() if k != "REVERIFY_CONFIG"}
        settings = Settings.load(env=env, path=local)
        assert settings.clickhouse.startswith("http://") and settings.partitions >= 1
        config = PipelineConfig.from_settings(settings)
        assert config.cases, "deploy/reverify.toml declares assurance cases"
        unknown = set(settings.sections.get("sink", {})) - _section_fields()["sink"]
        assert not unknown, f"deploy/reverify.toml [sink] has keys the sink does not read: {unknown}"


def test_connections_match_the_kafka_and_clickhouse_services(services: dict[str, Any]) -> None:
    kafka_env = _env(services["kafka"])
    ch_env = _env(services["clickhouse"])
    assert "controller" in kafka_env["KAFKA_PROCESS_ROLES"] and "KAFKA_CONTROLLER_QUORUM_VOTERS" in kafka_env  # KRaft
    assert kafka_env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    advertised = {u.split("://", 1)[1] for u in kafka_env["KAFKA_ADVERTISED_LISTENERS"].split(",")}
    for name, service in _reverify_services(services).items():
        env = _env(service)
        for broker in env["REVERIFY_KAFKA"].split(","):
            assert broker in advertised, f"{name}: {broker} is not an advertised Kafka listener"
            assert broker.split(":")[0] in services
        url = urlsplit(env["REVERIFY_CLICKHOUSE"])
        assert (url.hostname, url.port) == ("clickhouse", 8123), name
        assert 8123 in _container_ports(services["clickhouse"]) or url.hostname == "clickhouse"
        assert url.username == ch_env["CLICKHOUSE_USER"] and url.password == ch_env["CLICKHOUSE_PASSWORD"], name
        assert url.path.strip("/") == ch_env["CLICKHOUSE_DB"] == "reverify", name


# ---------------------------------------------------------------------- commands and ordering


def test_reverify_commands_exist_and_parse(services: dict[str, Any]) -> None:
    from reverify.streams.cli import cli

    for name, service in _reverify_services(services).items():
        assert "entrypoint" not in service, f"{name}: the image's entrypoint is `reverify`"
        command = service["command"]
        assert command[0] in cli.commands, f"{name}: `reverify {command[0]}` is not a command"
        # parses the options without running the command
        cli.commands[command[0]].make_context(command[0], list(command[1:]))
    assert services["worker"]["command"] == ["worker"]
    assert services["migrate"]["command"][0] == "migrate"
    assert services["sink"]["command"][0] == "sink"


def test_sink_command_serves_metrics_and_runs_the_sink(
    services: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run the sink service's command (``reverify sink ...``) with its arguments, sink and HTTP server replaced."""
    import prometheus_client
    from click.testing import CliRunner
    from reverify.streams import sink as shell
    from reverify.streams.cli import cli

    started: list[int] = []
    made: list[dict[str, Any]] = []

    class FakeSink:
        rows_written: dict[str, int] = {}
        duplicates_dropped = 0

        def __init__(self, config: Any, **kwargs: Any) -> None:
            made.append({"config": config, **kwargs})

        def run(self, stop: Any) -> None:
            return None

    monkeypatch.setattr(prometheus_client, "start_http_server", lambda port, *a, **k: started.append(port))
    monkeypatch.setattr(shell, "ClickHouseSink", FakeSink)
    monkeypatch.setattr(shell.signal, "signal", lambda *a: None)  # keep pytest's own handlers
    env = _env(services["sink"])
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("REVERIFY_CONFIG", str(DEPLOY / "reverify.toml"))
    result = CliRunner().invoke(cli, list(services["sink"]["command"]))
    assert result.exit_code == 0, result.output
    assert started == [int(env["REVERIFY_METRICS_PORT"])]
    assert made and made[0]["batch_size"] == 10_000 and made[0]["max_delay"] == 1.0
    assert made[0]["config"].kafka["bootstrap.servers"] == env["REVERIFY_KAFKA"]
    assert made[0]["config"].options.ttl_days == 365  # deploy/reverify.toml [sink]


def test_health_checks_and_start_order(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for dep, spec in (service.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            condition = spec.get("condition") if isinstance(spec, dict) else "service_started"
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} to be healthy, which it cannot report"
    assert services["migrate"]["depends_on"]["clickhouse"]["condition"] == "service_healthy"
    assert services["migrate"].get("restart") == "no"
    assert services["sink"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["worker"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    # the probes ask the ports the processes actually serve
    worker_env, sink_env = _env(services["worker"]), _env(services["sink"])
    worker_probe = " ".join(services["worker"]["healthcheck"]["test"])
    assert f":{worker_env['REVERIFY_WEB_PORT']}/healthz" in worker_probe
    assert f":{sink_env['REVERIFY_METRICS_PORT']}/metrics" in " ".join(services["sink"]["healthcheck"]["test"])
    # scalable: no fixed container name or host port on the workers
    worker = services["worker"]
    assert "container_name" not in worker and not worker.get("ports")
    assert worker.get("deploy", {}).get("replicas", 1) >= 2


def test_migrate_and_sink_agree_on_the_history_ttl(services: dict[str, Any]) -> None:
    """The sink applies ``[sink] ttl_days`` when it connects; ``reverify migrate`` without it would remove the TTL."""
    import tomllib

    sink_ttl = tomllib.loads((DEPLOY / "reverify.toml").read_text()).get("sink", {}).get("ttl_days")
    command = services["migrate"]["command"]
    migrate_ttl = int(command[command.index("--ttl-days") + 1]) if "--ttl-days" in command else None
    assert migrate_ttl == sink_ttl


# ---------------------------------------------------------------------- Prometheus


def test_prometheus_scrapes_every_reverify_process(services: dict[str, Any]) -> None:
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    scraped: set[str] = set()
    for job in config["scrape_configs"]:
        targets: list[tuple[str, int]] = []
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, port = target.rsplit(":", 1)
                targets.append((host, int(port)))
        for dns in job.get("dns_sd_configs", []):
            assert dns.get("type", "SRV") == "A", "Compose's DNS answers A records, not SRV"
            targets += [(host, int(dns["port"])) for host in dns["names"]]
        assert targets, f"job {job['job_name']} has no targets"
        for host, port in targets:
            assert host in services, f"job {job['job_name']}: {host} is not a compose service"
            env = _env(services[host])
            if "REVERIFY_METRICS_PORT" in env:
                assert port == int(env["REVERIFY_METRICS_PORT"]), f"{host} serves /metrics on another port"
            assert port in _container_ports(services[host]), f"{host} does not expose {port}"
            scraped.add(host)
    long_running = {n for n, s in _reverify_services(services).items() if s.get("restart") != "no"}
    assert long_running == {"worker", "sink"} and long_running <= scraped


# ---------------------------------------------------------------------- Grafana


def _exported_metric_names() -> set[str]:
    """Every sample name the workers' and the sink's /metrics can show (as Prometheus sees them)."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics import MetricWrapperBase
    from reverify.sinks.writer import SinkMetrics
    from reverify.streams import metrics

    wrappers = [m for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)]
    wrappers += [m for m in vars(SinkMetrics(CollectorRegistry())).values() if isinstance(m, MetricWrapperBase)]
    suffixes = {
        "counter": ("_total", "_created"),
        "gauge": ("",),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
    }
    names = {"up"}  # Prometheus' own series per target
    for m in wrappers:
        names.update(m._name + s for s in suffixes[m._type])
    return names


# PromQL's keywords: words in an expression that are not metric names
_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
_PROMQL_WORDS |= {"and", "or", "unless"}


def promql_metrics(expr: str) -> set[str]:
    """The metric names a PromQL expression selects.

    >>> sorted(promql_metrics('sum by (le) (rate(a_bucket{job=~"x.*"}[5m])) / on (job) b + histogram_quantile(0.5, c)'))
    ['a_bucket', 'b', 'c']
    """
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    found = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        if expr[match.end() :].lstrip().startswith("(") or match.group() in _PROMQL_WORDS:
            continue  # a function or an aggregation
        found.add(match.group())
    return found


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out += panel.get("panels", [])  # collapsed rows hold their panels
    return out


def _datasource_uids() -> dict[str, str]:
    uids = {}
    for path in sorted(DATASOURCES.glob("*.y*ml")):
        for ds in yaml.safe_load(path.read_text()).get("datasources", []):
            uids[ds["uid"]] = ds["type"]
    return uids


def test_grafana_datasources_point_at_compose_services(services: dict[str, Any]) -> None:
    uids = _datasource_uids()
    assert uids.get("prometheus") == "prometheus"
    for path in sorted(DATASOURCES.glob("*.y*ml")):
        for ds in yaml.safe_load(path.read_text())["datasources"]:
            if ds["type"] == "prometheus":
                url = urlsplit(ds["url"])
                assert url.hostname in services and url.port in _container_ports(services[url.hostname])
            elif ds["type"] == "grafana-clickhouse-datasource":
                data = ds["jsonData"]
                ch_env = _env(services["clickhouse"])
                assert data["host"] in services and data["defaultDatabase"] == ch_env["CLICKHOUSE_DB"]
                assert data["username"] == ch_env["CLICKHOUSE_USER"]
                # the plugin has to be installed for this datasource to load
                assert ds["type"] in _env(services["grafana"]).get("GF_INSTALL_PLUGINS", "")
                # Grafana fills ${VAR} in provisioning files from its own environment
                for var in re.findall(r"\$\{(\w+)\}", path.read_text()):
                    assert var in _env(services["grafana"]), f"grafana has no {var} for {path.name}"


def test_grafana_provisioning_is_mounted_where_it_is_read(services: dict[str, Any]) -> None:
    mounts = {}
    for volume in services["grafana"]["volumes"]:
        source, target = volume.split(":")[:2]
        mounts[target] = source
    assert Path(ROOT / mounts["/etc/grafana/provisioning"]).resolve() == (DEPLOY / "grafana/provisioning").resolve()
    providers = [p for f in DASHBOARD_PROVIDERS.glob("*.y*ml") for p in yaml.safe_load(f.read_text())["providers"]]
    assert providers
    for provider in providers:
        path = provider["options"]["path"]
        assert path in mounts and (ROOT / mounts[path]).resolve() == DASHBOARD.parent.resolve()


def test_dashboard_queries_only_exported_metrics_and_existing_tables() -> None:
    from reverify.sinks.migrate import load_migrations

    dashboard = json.loads(DASHBOARD.read_text())
    uids = _datasource_uids()
    exported = _exported_metric_names()
    tables = {
        name
        for m in load_migrations()
        for name in re.findall(r"CREATE\s+(?:TABLE|MATERIALIZED VIEW|VIEW)\s+IF NOT EXISTS\s+(\w+)", m.sql, re.I)
    }
    queried: set[str] = set()
    ids = [p["id"] for p in _panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    for panel in _panels(dashboard):
        for target in panel.get("targets", []):
            ds = target.get("datasource") or panel.get("datasource")
            assert ds["uid"] in uids, f"{panel['title']}: datasource {ds['uid']} is not provisioned"
            if "expr" in target:
                names = promql_metrics(target["expr"])
                assert names, f"{panel['title']}: no metric in {target['expr']!r}"
                missing = names - exported
                assert not missing, f"{panel['title']}: {sorted(missing)} are not exported by reverify"
                queried |= names
            if "rawSql" in target:
                used = set(re.findall(r"\b(?:FROM|JOIN)\s+(\w+)", target["rawSql"], re.I))
                assert used and used <= tables, f"{panel['title']}: unknown tables {used - tables}"
    for gauge in SEED_GAUGES:
        assert any(q == gauge or q.startswith(gauge + "_") for q in queried), f"dashboard lacks {gauge}"
    for metric in (
        "reverify_events_consumed_total",
        "reverify_events_produced_total",
        "reverify_decode_failures_total",
        "reverify_sink_rows_total",
        "reverify_sink_lag",
    ):
        assert metric in queried, f"dashboard lacks {metric}"


# ---------------------------------------------------------------------- image


def test_dockerfile_builds_a_non_root_reverify_image() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r'^ENTRYPOINT \["reverify"\]', text, re.M)
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    # the build needs these: pyproject's readme and the packages it lists
    assert not ignored & {"README.md", "pyproject.toml", "reverify", "schemas", "streams", "processors", "sinks"}


def test_dockerfile_dependency_layer_stands_in_for_every_package() -> None:
    """The dependency layer installs pyproject.toml before the code: every listed package needs a folder then."""
    import tomllib

    text = (ROOT / "Dockerfile").read_text()
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = tool.get("package-dir", {})
    for package in tool["packages"]:
        parent = max((p for p in folders if package == p or package.startswith(p + ".")), key=len, default=None)
        folder = (folders[parent] + package[len(parent) :] if parent else package).replace(".", "/")
        assert f"{folder}/__init__.py" in text, f"Dockerfile: the dependency layer lacks {folder}/__init__.py"
        top = folder.split("/")[0]
        assert re.search(rf"^COPY {top} \./{top}$", text, re.M), f"Dockerfile does not copy {top}/"


def _compose_cli() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


def test_compose_file_is_valid_for_docker_compose() -> None:
    """``docker compose config -q`` validates against the Compose schema offline (skipped without the client)."""
    cli = _compose_cli()
    if cli is None:
        pytest.skip("neither `docker compose` nor docker-compose is installed")
    done = subprocess.run(
        [*cli, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True, cwd=ROOT, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
